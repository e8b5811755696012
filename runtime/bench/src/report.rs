//! What a run measured and how it is shown: a [`Measurement`] per figure
//! (throughput, latency percentiles from an HDR histogram, CPU use), the
//! ratios `compare` holds against the targets, and their rendering as
//! text (Markdown tables, ready for docs/benchmarks.md) or JSON. Nothing
//! here measures; it only counts and formats.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Latency {
    /// What the latency is of (e.g. "send to ack").
    pub of: String,
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// One figure: how many messages and bytes in how long.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured, e.g. "weir produce, batch 1000, acks stored".
    pub name: String,
    /// Messages moved (for raw QUIC and the disk, bytes over the message size).
    pub messages: u64,
    /// Payload bytes per message.
    pub message_bytes: u64,
    /// Payload bytes moved (MB/s counts these, in 10^6 bytes).
    pub bytes: u64,
    /// Wall time of the run.
    pub seconds: f64,
    /// Messages per second.
    pub msgs_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    /// Latency percentiles, when the run measures latency.
    pub latency: Option<Latency>,
    /// Process CPU time over wall time (cores kept busy) of this process,
    /// which holds the bench's own node and clients.
    pub cpu: Option<f64>,
    /// The same for a server in another process (nats-server).
    pub server_cpu: Option<f64>,
    /// Anything a reader should know about this figure.
    pub notes: Vec<String>,
}

impl Measurement {
    /// A figure from counts and a wall time.
    pub(crate) fn new(
        name: impl Into<String>,
        messages: u64,
        message_bytes: u64,
        bytes: u64,
        elapsed: Duration,
    ) -> Measurement {
        let seconds = elapsed.as_secs_f64().max(1e-9);
        Measurement {
            name: name.into(),
            messages,
            message_bytes,
            bytes,
            seconds,
            msgs_per_s: messages as f64 / seconds,
            mb_per_s: bytes as f64 / seconds / 1e6,
            latency: None,
            cpu: None,
            server_cpu: None,
            notes: Vec::new(),
        }
    }
}

/// A latency histogram in nanoseconds.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    hist: Histogram<u64>,
}

/// Longest latency the histogram tells apart from it (one hour).
const MAX_TRACKED_NS: u64 = 3_600_000_000_000;

impl Recorder {
    pub(crate) fn new() -> Recorder {
        // Three significant digits from 1 ns to an hour.
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
            .expect("constant histogram bounds are valid");
        Recorder { hist }
    }

    pub(crate) fn record(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.hist.saturating_record(ns.max(1));
    }

    pub(crate) fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides, so adding cannot overflow the range.
        let _ = self.hist.add(&other.hist);
    }

    pub(crate) fn len(&self) -> u64 {
        self.hist.len()
    }

    pub(crate) fn latency(&self, of: &str) -> Option<Latency> {
        if self.hist.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Some(Latency {
            of: of.to_owned(),
            count: self.hist.len(),
            p50_us: us(self.hist.value_at_quantile(0.50)),
            p90_us: us(self.hist.value_at_quantile(0.90)),
            p99_us: us(self.hist.value_at_quantile(0.99)),
            p999_us: us(self.hist.value_at_quantile(0.999)),
            max_us: us(self.hist.max()),
        })
    }
}

/// Process CPU time, to tell a run that kept the cores busy from one that
/// waited (on the disk, on a timer, on another process).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    wall: Instant,
    cpu: Option<Duration>,
}

impl CpuClock {
    pub(crate) fn start() -> CpuClock {
        CpuClock {
            wall: Instant::now(),
            cpu: process_cpu(),
        }
    }

    /// CPU time over wall time since [`CpuClock::start`].
    pub(crate) fn cores(&self) -> Option<f64> {
        let used = process_cpu()?.checked_sub(self.cpu?)?;
        let wall = self.wall.elapsed().as_secs_f64();
        (wall > 0.0).then(|| used.as_secs_f64() / wall)
    }
}

fn process_cpu() -> Option<Duration> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer to
    // a local and has no other effect.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32))
}

/// A ratio held against a target.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The figure, as the target table names it.
    pub figure: String,
    /// The measured value (a ratio, or milliseconds for a latency target).
    pub value: f64,
    /// The target, e.g. "≥ 0.70" or "< 2 ms".
    pub target: String,
    /// Whether the value meets the target.
    pub pass: bool,
    /// How the value was computed.
    pub from: String,
}

/// The machine a report was measured on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// When the run finished (UTC, RFC 3339).
    pub date: String,
    /// CPU model.
    pub cpu: String,
    /// Cores this process may use.
    pub cores: usize,
    /// Total memory, GiB.
    pub memory_gib: f64,
    /// Kernel release.
    pub kernel: String,
    /// The 1-minute load average when the run started: other work on the
    /// machine shares its cores with the run.
    pub load_average: f64,
    /// Where the node's data and the fdatasync baseline went, and its file
    /// system.
    pub data_dir: String,
}

impl Machine {
    pub(crate) fn describe(data_dir: String) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_gib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".into());
        let load_average = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        Machine {
            load_average,
            date: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            cpu,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib,
            kernel,
            data_dir,
        }
    }
}

/// Everything a `weir bench` command measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The subcommand.
    pub command: String,
    /// The figures, in the order they were measured.
    pub measurements: Vec<Measurement>,
    /// The ratios against the targets (compare only).
    pub ratios: Vec<Ratio>,
    /// The machine (compare only).
    pub machine: Option<Machine>,
    /// Where the chart went (compare only).
    pub chart: Option<String>,
    /// What was skipped or is worth knowing about the run.
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn new(command: &str) -> Report {
        Report {
            command: command.to_owned(),
            measurements: Vec::new(),
            ratios: Vec::new(),
            machine: None,
            chart: None,
            notes: Vec::new(),
        }
    }

    /// The report as JSON text (one object, one line).
    pub fn to_json(&self) -> String {
        // Plain data with no maps keyed by non-strings: this cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report for a person: Markdown tables.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        if let Some(m) = &self.machine {
            let _ = writeln!(
                out,
                "weir bench {} on {} ({} cores, {:.0} GiB, Linux {}), {}; data in {}; load average {:.2} at the start\n",
                self.command,
                m.cpu,
                m.cores,
                m.memory_gib,
                m.kernel,
                m.date,
                m.data_dir,
                m.load_average
            );
        }
        out.push_str(
            "| figure | msgs/s | MB/s | p50 | p90 | p99 | p99.9 | max | cpu |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for m in &self.measurements {
            let lat = |f: fn(&Latency) -> f64| {
                m.latency
                    .as_ref()
                    .map_or_else(String::new, |l| format_us(f(l)))
            };
            let cpu = match (m.cpu, m.server_cpu) {
                (Some(c), Some(s)) => format!("{c:.2} + {s:.2}"),
                (Some(c), None) => format!("{c:.2}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |",
                m.name,
                group_digits(m.msgs_per_s.round() as u64),
                m.mb_per_s,
                lat(|l| l.p50_us),
                lat(|l| l.p90_us),
                lat(|l| l.p99_us),
                lat(|l| l.p999_us),
                lat(|l| l.max_us),
                cpu
            );
        }
        let lat_notes: Vec<String> = {
            let mut seen = Vec::new();
            for m in &self.measurements {
                if let Some(l) = &m.latency
                    && !seen.contains(&l.of)
                {
                    seen.push(l.of.clone());
                }
            }
            seen
        };
        if !lat_notes.is_empty() {
            let _ = writeln!(out, "\nLatency: {}.", lat_notes.join("; "));
        }
        for m in &self.measurements {
            for n in &m.notes {
                let _ = writeln!(out, "- {}: {n}", m.name);
            }
        }
        if !self.ratios.is_empty() {
            out.push_str(
                "\n| target | measured | target | |\n\
                 |---|---:|---:|---|\n",
            );
            for r in &self.ratios {
                let _ = writeln!(
                    out,
                    "| {} ({}) | {} | {} | {} |",
                    r.figure,
                    r.from,
                    if r.target.contains("ms") {
                        format!("{:.2} ms", r.value)
                    } else {
                        format!("{:.2}", r.value)
                    },
                    r.target,
                    if r.pass { "PASS" } else { "MISS" }
                );
            }
        }
        if let Some(chart) = &self.chart {
            let _ = writeln!(out, "\nChart: {chart}");
        }
        for n in &self.notes {
            let _ = writeln!(out, "\nNote: {n}");
        }
        out
    }
}

/// Microseconds as a person reads them: µs below a millisecond, else ms.
fn format_us(us: f64) -> String {
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else {
        format!("{:.2} ms", us / 1000.0)
    }
}

/// 1234567 as "1,234,567".
pub(crate) fn group_digits(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_histogram() {
        let mut r = Recorder::new();
        for us in 1..=1000u64 {
            r.record(Duration::from_micros(us));
        }
        let l = r.latency("send to ack").expect("samples");
        assert_eq!(l.count, 1000);
        assert!((l.p50_us - 500.0).abs() < 1.0, "{l:?}");
        assert!((l.p99_us - 990.0).abs() < 1.0, "{l:?}");
        assert!((l.max_us - 1000.0).abs() < 1.0, "{l:?}");
        assert!(Recorder::new().latency("x").is_none());
    }

    #[test]
    fn text_and_json() {
        let mut report = Report::new("produce");
        let mut m = Measurement::new(
            "weir produce",
            2000,
            1024,
            2_048_000,
            Duration::from_secs(2),
        );
        let mut r = Recorder::new();
        r.record(Duration::from_micros(1500));
        m.latency = r.latency("send to ack");
        report.measurements.push(m);
        report.ratios.push(Ratio {
            figure: "e2e p99".into(),
            value: 1.5,
            target: "< 2 ms".into(),
            pass: true,
            from: "x".into(),
        });
        let text = report.to_text();
        assert!(
            text.contains("| weir produce | 1,000 | 1.0 | 1.50 ms"),
            "{text}"
        );
        assert!(text.contains("| 1.50 ms | < 2 ms | PASS |"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&report.to_json()).expect("json");
        assert_eq!(v["measurements"][0]["msgs_per_s"], 1000.0);
        assert_eq!(v["measurements"][0]["latency"]["of"], "send to ack");
        assert_eq!(group_digits(1_234_567), "1,234,567");
        assert_eq!(group_digits(12), "12");
    }
}
