//! `weir bench compare`: the whole suite in one invocation, on one
//! machine, with 1 KiB messages, and the ratios of issue 6's target table.
//!
//! In order: raw QUIC up and down (the ceiling); weir produce and consume
//! at batch 1000 and 100 (acks stored, flush none); raw QUIC up and down
//! again (the ratios use the mean of the two, as the ceiling drifts);
//! produce at batch 10 and 1 for the chart; e2e latency at 10k msg/s; produce through
//! json-filter → dedup-by-field → kafka-partitioner; the fdatasync
//! baseline, produce with acks durable, the baseline again (the target
//! uses their mean, as the disk drifts); NATS JetStream publish at windows
//! 1000, 100, 10 and 1 and an ordered consumer. A part that cannot run
//! here (no plugins built, no nats-server) is skipped with a note, never
//! silently.

use std::path::{Path, PathBuf};
use std::time::Duration;

use weir_client::Acks;

use crate::args::{CompareArgs, Direction};
use crate::chart::{self, Series};
use crate::nats::{self, NatsServer};
use crate::progress::Goal;
use crate::report::{Machine, Measurement, Ratio, Report};
use crate::target::Target;
use crate::weir::{E2eSpec, ProduceSpec};
use crate::{BenchError, disk, raw_quic, weir};

/// Every message is 1 KiB.
const SIZE: usize = 1024;
/// Messages per throughput run by default.
const DEFAULT_MESSAGES: u64 = 1_000_000;
/// A throughput run stops after this long even if it has not sent them all.
const RUN_CAP: Duration = Duration::from_secs(20);
/// Chart points other than the two main batch sizes stop after this long.
const POINT_CAP: Duration = Duration::from_secs(4);
/// Raw QUIC, the baseline and e2e run this long by default.
const TIMED: Duration = Duration::from_secs(5);
/// e2e rate.
const E2E_RATE: u64 = 10_000;
/// The plugin chain of the target table.
const CHAIN: [&str; 3] = ["json-filter", "dedup-by-field", "kafka-partitioner"];
/// NATS async publish window of the target table.
const NATS_WINDOW: usize = 1000;

/// The figures the ratios are made of, as they come in.
#[derive(Default)]
struct Figures {
    /// Raw QUIC before and after weir's produce and consume runs.
    raw_up: Vec<Measurement>,
    raw_down: Vec<Measurement>,
    produce_1000: Option<Measurement>,
    consume_1000: Option<Measurement>,
    chain: Option<Measurement>,
    baselines: Vec<Measurement>,
    durable: Option<Measurement>,
    e2e: Option<Measurement>,
    nats_publish: Option<Measurement>,
    nats_consume: Option<Measurement>,
    weir_points: Vec<(u32, f64)>,
    nats_points: Vec<(u32, f64)>,
}

pub(crate) async fn run(args: CompareArgs) -> Result<Report, BenchError> {
    let goal = match args.duration {
        Some(d) => Goal {
            messages: None,
            duration: Some(d),
        },
        None => Goal {
            messages: Some(args.messages.unwrap_or(DEFAULT_MESSAGES)),
            duration: Some(RUN_CAP),
        },
    };
    let point_goal = Goal {
        messages: goal.messages,
        duration: Some(args.duration.unwrap_or(POINT_CAP)),
    };
    let timed = args.duration.unwrap_or(TIMED);

    let mut report = Report::new("compare");
    let target = Target::start(&args.target).await?;
    let fs = disk::fs_type(target.work_dir()).unwrap_or_else(|| "unknown".into());
    if fs == "tmpfs" {
        report.notes.push(format!(
            "{} is on tmpfs: fsync costs nothing there, so the durable figures say nothing about a disk (pass --dir)",
            target.work_dir().display()
        ));
    }
    if !target.is_own_node() {
        report.notes.push(
            "--server: the fdatasync baseline ran in --dir on this machine, which may not be the node's disk"
                .into(),
        );
    }
    report.machine = Some(Machine::describe(format!(
        "{} ({fs})",
        target.work_dir().display()
    )));
    let mut figures = Figures::default();
    let result = suite(
        &args,
        &target,
        goal,
        point_goal,
        timed,
        &mut report,
        &mut figures,
    )
    .await;
    let shutdown = target.shutdown().await;
    result?;
    shutdown?;

    report.ratios = ratios(&figures);
    if let Some(machine) = &mut report.machine {
        machine.date = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    }
    if !args.no_chart {
        let path = args.chart.clone().unwrap_or_else(default_chart_path);
        let mut series = vec![Series {
            name: "weir produce (acks stored)".into(),
            points: sorted(figures.weir_points.clone()),
        }];
        if !figures.nats_points.is_empty() {
            series.push(Series {
                name: "NATS JetStream publish (file storage)".into(),
                points: sorted(figures.nats_points.clone()),
            });
        }
        let title = "Throughput by batch size, 1 KiB messages";
        match tokio::task::spawn_blocking({
            let path = path.clone();
            move || chart::draw(&path, title, &series)
        })
        .await?
        {
            Ok(()) => report.chart = Some(path.display().to_string()),
            Err(e) => report.notes.push(format!("no chart: {e}")),
        }
    }
    Ok(report)
}

fn sorted(mut points: Vec<(u32, f64)>) -> Vec<(u32, f64)> {
    points.sort_by_key(|p| p.0);
    points
}

/// docs/bench-throughput.png in a weir checkout, else the current directory.
fn default_chart_path() -> PathBuf {
    if Path::new("docs").is_dir() && Path::new("runtime/bench/Cargo.toml").is_file() {
        PathBuf::from("docs/bench-throughput.png")
    } else {
        PathBuf::from("bench-throughput.png")
    }
}

fn produce_spec(goal: Goal, batch: u32, acks: Acks) -> ProduceSpec {
    ProduceSpec {
        goal,
        size: SIZE,
        batch,
        producers: 1,
        acks,
        linger: Duration::from_millis(5),
    }
}

async fn suite(
    args: &CompareArgs,
    target: &Target,
    goal: Goal,
    point_goal: Goal,
    timed: Duration,
    report: &mut Report,
    f: &mut Figures,
) -> Result<(), BenchError> {
    // The ceiling, in both directions: 1 KiB messages, 1000 per write.
    // It drifts with the machine, so it runs again after weir's produce
    // and consume runs and the ratios use the mean.
    ceiling("before", timed, report, f).await?;

    let admin = target.connect().await?;

    // Produce and consume at the two batch sizes of the target table.
    for batch in [1000u32, 100] {
        let (m, c) = produce_point(target, &admin, batch, goal, true, report, f).await?;
        if batch == 1000 {
            f.produce_1000 = Some(m);
            f.consume_1000 = c;
        }
    }
    ceiling("after", timed, report, f).await?;
    // The rest of the chart's weir line.
    for batch in [10u32, 1] {
        produce_point(target, &admin, batch, point_goal, false, report, f).await?;
    }

    // Latency at a steady 10k msg/s.
    let topic = target.create_topic(&admin, "e2e", 1, false).await?;
    let e2e_spec = E2eSpec {
        produce: ProduceSpec {
            linger: Duration::ZERO,
            ..produce_spec(
                Goal {
                    messages: None,
                    duration: Some(timed),
                },
                100,
                Acks::Stored,
            )
        },
        rate: E2E_RATE,
    };
    let m = weir::e2e(target, &topic, &e2e_spec, "weir e2e at 10,000 msg/s").await?;
    report.measurements.push(m.clone());
    f.e2e = Some(m);
    target.delete_topic(&admin, &topic).await?;
    // The plugin chain.
    let chain: Vec<String> = CHAIN.iter().map(|s| s.to_string()).collect();
    match chain
        .iter()
        .try_for_each(|p| target.plugin_path(p).map(drop))
    {
        Err(e) => report.notes.push(format!("plugin chain skipped: {e}")),
        Ok(()) => {
            let topic = target.create_topic(&admin, "chain", 1, false).await?;
            target.attach_chain(&admin, &topic, &chain, &[]).await?;
            let m = weir::produce(
                target,
                &topic,
                &produce_spec(goal, 1000, Acks::Stored),
                "weir produce, batch 1000, json-filter → dedup-by-field → kafka-partitioner",
            )
            .await?;
            report.measurements.push(m.clone());
            f.chain = Some(m);
            target.delete_topic(&admin, &topic).await?;
        }
    }

    // Durable acks between two runs of the baseline on the same disk.
    let dir = target.work_dir().to_path_buf();
    let baseline = |label: &'static str| {
        let dir = dir.clone();
        async move {
            let mut m = tokio::task::spawn_blocking(move || {
                disk::fdatasync_baseline(&dir, timed, SIZE as u64)
            })
            .await??;
            m.name = format!("{} ({label})", m.name);
            Ok::<Measurement, BenchError>(m)
        }
    };
    let before = baseline("before").await?;
    report.measurements.push(before.clone());
    f.baselines.push(before);
    let topic = target.create_topic(&admin, "durable", 1, true).await?;
    let durable_goal = Goal {
        messages: goal.messages,
        duration: Some(args.duration.unwrap_or(RUN_CAP).min(RUN_CAP)),
    };
    let m = weir::produce(
        target,
        &topic,
        &produce_spec(durable_goal, 1000, Acks::Durable),
        "weir produce, batch 1000, acks durable",
    )
    .await?;
    report.measurements.push(m.clone());
    f.durable = Some(m);
    target.delete_topic(&admin, &topic).await?;
    let after = baseline("after").await?;
    report.measurements.push(after.clone());
    f.baselines.push(after);

    admin.close().await;

    if args.skip_nats {
        report
            .notes
            .push("NATS JetStream skipped (--skip-nats)".into());
        return Ok(());
    }
    let binary = match nats::ensure_server().await {
        Ok(b) => b,
        Err(why) => {
            let note = format!("NATS JetStream skipped: {why}");
            eprintln!("weir bench: {note}");
            report.notes.push(note);
            return Ok(());
        }
    };
    if let Err(e) = nats_suite(&binary, target, goal, point_goal, report, f).await {
        let note = format!("NATS JetStream did not finish: {e}");
        eprintln!("weir bench: {note}");
        report.notes.push(note);
    }
    Ok(())
}

async fn nats_suite(
    binary: &Path,
    target: &Target,
    goal: Goal,
    point_goal: Goal,
    report: &mut Report,
    f: &mut Figures,
) -> Result<(), BenchError> {
    let mut server = NatsServer::start(binary, target.work_dir()).await?;
    if !server.version.is_empty() {
        report.notes.push(format!("NATS: {}", server.version));
    }
    let result = async {
        for window in [NATS_WINDOW, 100, 10, 1] {
            let (stream, subject) = server.create_stream().await?;
            let g = if window == NATS_WINDOW {
                goal
            } else {
                point_goal
            };
            let m = server
                .publish(
                    &subject,
                    g,
                    SIZE,
                    window,
                    &format!("NATS JetStream publish, {window} in flight"),
                )
                .await?;
            f.nats_points.push((window as u32, m.msgs_per_s));
            report.measurements.push(m.clone());
            if window == NATS_WINDOW {
                let c = server
                    .consume(&stream, m.messages, "NATS JetStream ordered consumer")
                    .await?;
                report.measurements.push(c.clone());
                f.nats_consume = Some(c);
                f.nats_publish = Some(m);
            }
            server.delete_stream(&stream).await?;
        }
        Ok::<(), BenchError>(())
    }
    .await;
    server.stop().await;
    result
}

fn ratio(
    figure: &str,
    num: Option<&Measurement>,
    den: Option<&Measurement>,
    pick: fn(&Measurement) -> f64,
    unit: &str,
    target: f64,
) -> Option<Ratio> {
    let (n, d) = (pick(num?), pick(den?));
    if d <= 0.0 {
        return None;
    }
    let value = n / d;
    Some(Ratio {
        figure: figure.to_owned(),
        value,
        target: format!("≥ {target:.2}"),
        pass: value >= target,
        from: format!("{n:.0} / {d:.0} {unit}"),
    })
}

/// Produces at `batch` into a fresh topic (a point of the chart's weir
/// line) and, if `consume`, reads it back on one subscription.
async fn produce_point(
    target: &Target,
    admin: &weir_client::Client,
    batch: u32,
    goal: Goal,
    consume: bool,
    report: &mut Report,
    f: &mut Figures,
) -> Result<(Measurement, Option<Measurement>), BenchError> {
    let topic = target
        .create_topic(admin, &format!("b{batch}"), 1, false)
        .await?;
    let m = weir::produce(
        target,
        &topic,
        &produce_spec(goal, batch, Acks::Stored),
        &format!("weir produce, batch {batch}, acks stored"),
    )
    .await?;
    f.weir_points.push((batch, m.msgs_per_s));
    report.measurements.push(m.clone());
    let c = if consume {
        let c = weir::consume(
            target,
            &topic,
            1,
            &format!("weir consume, written in batches of {batch}"),
        )
        .await?;
        report.measurements.push(c.clone());
        Some(c)
    } else {
        None
    };
    target.delete_topic(admin, &topic).await?;
    Ok((m, c))
}

/// Raw QUIC up and down, labelled `when`.
async fn ceiling(
    when: &str,
    timed: Duration,
    report: &mut Report,
    f: &mut Figures,
) -> Result<(), BenchError> {
    for direction in [Direction::Up, Direction::Down] {
        let mut m = raw_quic::run(direction, SIZE, 1000, timed).await?;
        m.name = format!("{}, {when}", m.name);
        report.measurements.push(m.clone());
        match direction {
            Direction::Down => f.raw_down.push(m),
            _ => f.raw_up.push(m),
        }
    }
    Ok(())
}

/// One measurement whose MB/s is the mean of `runs` (the first run's
/// other figures), or `None` when there were none.
fn mean_of(runs: &[Measurement]) -> Option<Measurement> {
    let first = runs.first()?;
    let mut mean = first.clone();
    mean.mb_per_s = runs.iter().map(|m| m.mb_per_s).sum::<f64>() / runs.len() as f64;
    mean.msgs_per_s = runs.iter().map(|m| m.msgs_per_s).sum::<f64>() / runs.len() as f64;
    Some(mean)
}

fn ratios(f: &Figures) -> Vec<Ratio> {
    let mb = |m: &Measurement| m.mb_per_s;
    let msgs = |m: &Measurement| m.msgs_per_s;
    let mut out = Vec::new();
    out.extend(ratio(
        "weir produce, batch 1000, acks stored / raw-quic upload (mean of before and after)",
        f.produce_1000.as_ref(),
        mean_of(&f.raw_up).as_ref(),
        mb,
        "MB/s",
        0.70,
    ));
    out.extend(ratio(
        "weir consume / raw-quic download (mean of before and after)",
        f.consume_1000.as_ref(),
        mean_of(&f.raw_down).as_ref(),
        mb,
        "MB/s",
        0.70,
    ));
    out.extend(ratio(
        "produce with the 3-plugin chain / produce without",
        f.chain.as_ref(),
        f.produce_1000.as_ref(),
        msgs,
        "msg/s",
        0.85,
    ));
    out.extend(ratio(
        "produce acks durable / fdatasync baseline (mean of before and after)",
        f.durable.as_ref(),
        mean_of(&f.baselines).as_ref(),
        mb,
        "MB/s",
        0.60,
    ));
    if let Some(l) = f.e2e.as_ref().and_then(|m| m.latency.as_ref()) {
        let ms = l.p99_us / 1000.0;
        out.push(Ratio {
            figure: "e2e p99 at 10k msg/s".into(),
            value: ms,
            target: "< 2 ms".into(),
            pass: ms < 2.0,
            from: format!("{} samples", l.count),
        });
    }
    out.extend(ratio(
        "weir produce msg/s / NATS JetStream publish msg/s",
        f.produce_1000.as_ref(),
        f.nats_publish.as_ref(),
        msgs,
        "msg/s",
        2.0,
    ));
    out.extend(ratio(
        "weir consume msg/s / NATS JetStream consume msg/s",
        f.consume_1000.as_ref(),
        f.nats_consume.as_ref(),
        msgs,
        "msg/s",
        2.0,
    ));
    out
}
