//! A one-line progress bar on standard error while a run goes, drawn only
//! when standard error is a terminal (never into a pipe or a log). It
//! reads a shared counter from its own thread, so a busy async runtime
//! cannot stall it, and it never touches standard output, where the
//! report goes.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::report::group_digits;

/// How often the bar is redrawn.
const REDRAW: Duration = Duration::from_millis(200);
/// Width of the bar, in cells.
const CELLS: usize = 24;

/// A running progress bar; [`Progress::finish`] (or drop) clears it.
#[derive(Debug)]
pub(crate) struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// How far a run has to go: messages, time, or whichever comes first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Goal {
    pub(crate) messages: Option<u64>,
    pub(crate) duration: Option<Duration>,
}

impl Progress {
    /// Starts drawing `label` and the `done` counter towards `goal`.
    pub(crate) fn start(label: &str, done: Arc<AtomicU64>, goal: Goal) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        if !std::io::stderr().is_terminal() {
            return Progress { stop, thread: None };
        }
        let label = label.to_owned();
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("bench-progress".into())
            .spawn(move || draw(&label, &done, goal, &stopped))
            .ok();
        Progress { stop, thread }
    }

    /// Stops and clears the bar.
    pub(crate) fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

fn draw(label: &str, done: &AtomicU64, goal: Goal, stop: &AtomicBool) {
    let start = Instant::now();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(REDRAW);
        let n = done.load(Ordering::Relaxed);
        let elapsed = start.elapsed();
        let by_count = goal.messages.map(|m| n as f64 / m.max(1) as f64);
        let by_time = goal
            .duration
            .map(|d| elapsed.as_secs_f64() / d.as_secs_f64().max(1e-9));
        let fraction = match (by_count, by_time) {
            (Some(a), Some(b)) => a.max(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => 0.0,
        }
        .clamp(0.0, 1.0);
        let filled = (fraction * CELLS as f64).round() as usize;
        let rate = n as f64 / elapsed.as_secs_f64().max(1e-9);
        let line = format!(
            "\r\x1b[2K{label} [{}{}] {:>3.0}% {} msgs, {} msg/s",
            "#".repeat(filled),
            " ".repeat(CELLS - filled),
            fraction * 100.0,
            group_digits(n),
            group_digits(rate as u64)
        );
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(line.as_bytes());
        let _ = err.flush();
    }
}
