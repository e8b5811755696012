//! The disk's own figure: sequential 1 MiB `write` + `fdatasync` in the
//! directory the node writes to, the baseline that durable acks are held
//! against. Also tells what file system a directory is on, so that a run
//! on tmpfs (where fsync is free) is flagged.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::report::{CpuClock, Measurement, Recorder};

/// Bytes per write in the baseline.
pub(crate) const BASELINE_WRITE_BYTES: usize = 1 << 20;

/// Most bytes the baseline writes, whatever the duration (its file is
/// deleted afterwards).
const BASELINE_MAX_BYTES: u64 = 8 << 30;

/// Writes 1 MiB and fdatasyncs it, over and over for `duration`, into a
/// new file in `dir`; `message_bytes` only sets how msgs/s is counted.
pub(crate) fn fdatasync_baseline(
    dir: &Path,
    duration: Duration,
    message_bytes: u64,
) -> Result<Measurement, BenchError> {
    let path = dir.join(format!("fdatasync-baseline-{}.bin", std::process::id()));
    let result = write_and_sync(&path, duration, message_bytes);
    let _ = std::fs::remove_file(&path);
    result
}

fn write_and_sync(
    path: &Path,
    duration: Duration,
    message_bytes: u64,
) -> Result<Measurement, BenchError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(BenchError::io(path))?;
    // Bytes that vary, so that no layer on the way can shrink them.
    let block: Vec<u8> = (0..BASELINE_WRITE_BYTES)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut latency = Recorder::new();
    let cpu = CpuClock::start();
    let start = Instant::now();
    let mut written = 0u64;
    while start.elapsed() < duration && written < BASELINE_MAX_BYTES {
        let t = Instant::now();
        file.write_all(&block).map_err(BenchError::io(path))?;
        file.sync_data().map_err(BenchError::io(path))?;
        latency.record(t.elapsed());
        written += block.len() as u64;
    }
    let elapsed = start.elapsed();
    let mut m = Measurement::new(
        "baseline: 1 MiB write + fdatasync",
        written / message_bytes.max(1),
        message_bytes,
        written,
        elapsed,
    );
    m.latency = latency.latency("one 1 MiB write + fdatasync");
    m.cpu = cpu.cores();
    Ok(m)
}

/// The file system `dir` is on, by name where it is a common one.
pub(crate) fn fs_type(dir: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero statfs is a valid value of this plain C struct.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the path is a NUL-terminated string that outlives the call,
    // and statfs writes one struct through a valid pointer to a local.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)]
    let magic = st.f_type as i64;
    Some(
        match magic {
            0x0102_1994 => "tmpfs",
            0xEF53 => "ext4",
            0x5846_5342 => "xfs",
            0x9123_683E => "btrfs",
            0x0102_1997 => "9p",
            0x6573_5546 => "fuse",
            0x794C_7630 => "overlayfs",
            other => return Some(format!("unknown (magic {other:#x})")),
        }
        .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_runs_and_cleans_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = fdatasync_baseline(dir.path(), Duration::from_millis(50), 1024).expect("runs");
        assert!(m.bytes >= BASELINE_WRITE_BYTES as u64);
        assert_eq!(m.messages, m.bytes / 1024);
        assert!(m.latency.is_some());
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
        assert!(fs_type(dir.path()).is_some());
    }
}
