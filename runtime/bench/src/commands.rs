//! The single benchmarks (produce, consume, e2e, raw-quic): each sets up
//! its node and topic, runs one workload and reports. `compare` is in its
//! own module.

use std::time::Duration;

use weir_client::Acks;

use crate::args::{ConsumeArgs, Direction, E2eArgs, ProduceArgs, RawQuicArgs, WorkloadArgs};
use crate::payload::{JSON_MIN_BYTES, TIMED_MIN_BYTES};
use crate::progress::Goal;
use crate::report::Report;
use crate::target::Target;
use crate::weir::{E2eSpec, ProduceSpec};
use crate::{BenchError, raw_quic, weir};

/// Messages per run when neither --messages nor --duration is given.
const DEFAULT_MESSAGES: u64 = 100_000;
/// How long e2e runs when neither is given.
const DEFAULT_E2E: Duration = Duration::from_secs(5);

fn spec(w: &WorkloadArgs, linger: Duration, default_goal: Goal) -> Result<ProduceSpec, BenchError> {
    let size = w.size as usize;
    if size.saturating_mul(w.batch as usize) > weir_proto::limits::MAX_BATCH_BYTES {
        return Err(BenchError::Invalid(format!(
            "--batch {} of --size {} is more than a batch may hold ({} bytes)",
            w.batch,
            w.size,
            weir_proto::limits::MAX_BATCH_BYTES
        )));
    }
    if !w.chain.is_empty() && !crate::payload::Payloads::new(size).is_json() {
        return Err(BenchError::Invalid(format!(
            "--chain needs JSON payloads: pass --size {JSON_MIN_BYTES} or more"
        )));
    }
    let goal = match (w.messages, w.duration) {
        (None, None) => default_goal,
        (messages, duration) => Goal { messages, duration },
    };
    Ok(ProduceSpec {
        goal,
        size,
        batch: w.batch,
        producers: w.producers,
        acks: w.acks.acks(),
        linger,
    })
}

fn describe(w: &WorkloadArgs) -> String {
    let acks = match w.acks {
        crate::args::AckLevel::None => "none",
        crate::args::AckLevel::Stored => "stored",
        crate::args::AckLevel::Durable => "durable",
    };
    let mut s = format!("{} B, batch {}, acks {acks}", w.size, w.batch);
    if w.producers > 1 {
        s.push_str(&format!(", {} producers", w.producers));
    }
    if w.partitions > 1 {
        s.push_str(&format!(", {} partitions", w.partitions));
    }
    if !w.chain.is_empty() {
        s.push_str(&format!(", chain {}", w.chain.join(" → ")));
    }
    s
}

/// A topic set up as the workload says, on a fresh connection.
async fn topic(target: &Target, w: &WorkloadArgs, what: &str) -> Result<String, BenchError> {
    let admin = target.connect().await?;
    let durable = w.acks.acks() == Acks::Durable;
    let topic = target
        .create_topic(&admin, what, w.partitions, durable)
        .await?;
    if !w.chain.is_empty() {
        target
            .attach_chain(&admin, &topic, &w.chain, &w.plugin_configs)
            .await?;
    }
    admin.close().await;
    Ok(topic)
}

/// Shuts the target down whatever the run's result, and reports the run's
/// error first.
async fn finish(target: Target, result: Result<Report, BenchError>) -> Result<Report, BenchError> {
    let shutdown = target.shutdown().await;
    let report = result?;
    shutdown?;
    Ok(report)
}

pub(crate) async fn produce(args: ProduceArgs) -> Result<Report, BenchError> {
    let w = args.workload;
    let spec = spec(
        &w,
        args.linger,
        Goal {
            messages: Some(DEFAULT_MESSAGES),
            duration: None,
        },
    )?;
    let name = format!("weir produce ({})", describe(&w));
    let target = Target::start(&w.target).await?;
    let result = async {
        let topic = topic(&target, &w, "produce").await?;
        let m = weir::produce(&target, &topic, &spec, &name).await?;
        let mut report = Report::new("produce");
        report.measurements.push(m);
        Ok(report)
    }
    .await;
    finish(target, result).await
}

pub(crate) async fn consume(args: ConsumeArgs) -> Result<Report, BenchError> {
    let w = args.workload;
    if args.consumers > w.partitions {
        return Err(BenchError::Invalid(format!(
            "--consumers {} needs --partitions {} or more: each consumer reads whole partitions",
            args.consumers, args.consumers
        )));
    }
    let spec = spec(
        &w,
        args.linger,
        Goal {
            messages: Some(DEFAULT_MESSAGES),
            duration: None,
        },
    )?;
    let desc = describe(&w);
    let consumers = args.consumers;
    let target = Target::start(&w.target).await?;
    let result = async {
        let topic = topic(&target, &w, "consume").await?;
        let fill = weir::produce(
            &target,
            &topic,
            &spec,
            &format!("fill: weir produce ({desc})"),
        )
        .await?;
        let mut name = format!("weir consume ({desc}");
        if consumers > 1 {
            name.push_str(&format!(", {consumers} consumers"));
        }
        name.push(')');
        let m = weir::consume(&target, &topic, consumers, &name).await?;
        let mut report = Report::new("consume");
        report.measurements.push(fill);
        report.measurements.push(m);
        Ok(report)
    }
    .await;
    finish(target, result).await
}

pub(crate) async fn e2e(args: E2eArgs) -> Result<Report, BenchError> {
    let w = args.workload;
    if (w.size as usize) < TIMED_MIN_BYTES {
        return Err(BenchError::Invalid(format!(
            "e2e payloads carry their send time: pass --size {TIMED_MIN_BYTES} or more"
        )));
    }
    let spec = E2eSpec {
        produce: spec(
            &w,
            args.linger,
            Goal {
                messages: None,
                duration: Some(DEFAULT_E2E),
            },
        )?,
        rate: args.rate,
    };
    let name = format!("weir e2e at {} msg/s ({})", args.rate, describe(&w));
    let target = Target::start(&w.target).await?;
    let result = async {
        let topic = topic(&target, &w, "e2e").await?;
        let m = weir::e2e(&target, &topic, &spec, &name).await?;
        let mut report = Report::new("e2e");
        report.measurements.push(m);
        Ok(report)
    }
    .await;
    finish(target, result).await
}

pub(crate) async fn raw_quic(args: RawQuicArgs) -> Result<Report, BenchError> {
    let mut report = Report::new("raw-quic");
    let size = args.size as usize;
    if size.saturating_mul(args.batch as usize) > 256 << 20 {
        return Err(BenchError::Invalid(
            "--size × --batch is more than 256 MiB per write".into(),
        ));
    }
    if matches!(args.direction, Direction::Up | Direction::Both) {
        report
            .measurements
            .push(raw_quic::run(Direction::Up, size, args.batch, args.duration).await?);
    }
    if matches!(args.direction, Direction::Down | Direction::Both) {
        report
            .measurements
            .push(raw_quic::run(Direction::Down, size, args.batch, args.duration).await?);
    }
    Ok(report)
}
