//! The node's data directory: created on first start, locked while a node
//! runs so that two nodes never write the same logs.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Name of the file that marks a directory as a weir data directory.
const MARKER: &str = "WEIR_DATA";
/// What the marker holds: the layout version of the directory.
const LAYOUT: &str = "weir data directory, layout 1\n";
const LOCK: &str = "LOCK";

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// A file system call failed.
    #[error("data directory {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Another process holds the directory.
    #[error("data directory {path} is in use by another weir node (lock held on {path}/LOCK)")]
    Locked {
        /// The directory.
        path: PathBuf,
    },
    /// The directory holds something other than a weir layout we know.
    #[error("{path} is not a weir data directory of a known layout (found {found:?} in {MARKER})")]
    UnknownLayout {
        /// The directory.
        path: PathBuf,
        /// What the marker held.
        found: String,
    },
}

/// An open, exclusively locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    // Held for the lifetime of the node; the lock goes with the descriptor.
    _lock: File,
    created: bool,
}

impl DataDir {
    /// Opens `path`, creating it and its marker if it does not exist, and
    /// takes an exclusive lock on it.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let data = weir_node::DataDir::open(dir.path().join("weir-data"))?;
    /// assert!(data.created());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<DataDir, DataDirError> {
        let path = path.as_ref().to_path_buf();
        let io_err = |source| DataDirError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(io_err)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(LOCK))
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            return Err(if err.kind() == io::ErrorKind::WouldBlock {
                DataDirError::Locked { path }
            } else {
                io_err(err)
            });
        }
        let marker = path.join(MARKER);
        let created = match File::open(&marker) {
            Ok(f) => {
                let mut found = String::new();
                f.take(256).read_to_string(&mut found).map_err(io_err)?;
                if found != LAYOUT {
                    return Err(DataDirError::UnknownLayout { path, found });
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if std::fs::read_dir(&path).map_err(io_err)?.count() > 1 {
                    // Only LOCK may be there: refuse to adopt a directory
                    // that holds files of something else.
                    return Err(DataDirError::UnknownLayout {
                        path,
                        found: String::new(),
                    });
                }
                let mut f = File::create(&marker).map_err(io_err)?;
                f.write_all(LAYOUT.as_bytes()).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                File::open(&path)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err)?;
                true
            }
            Err(e) => return Err(io_err(e)),
        };
        tracing::info!(path = %path.display(), created, "data directory opened");
        Ok(DataDir {
            path,
            _lock: lock,
            created,
        })
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this open created the directory.
    pub fn created(&self) -> bool {
        self.created
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_while_locked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = DataDir::open(dir.path().join("d")).expect("first open");
        assert!(first.created());
        let err = DataDir::open(dir.path().join("d")).expect_err("locked");
        assert!(matches!(err, DataDirError::Locked { .. }), "{err}");
        drop(first);
        let again = DataDir::open(dir.path().join("d")).expect("reopen after release");
        assert!(!again.created());
    }

    #[test]
    fn foreign_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("important.txt"), b"not ours").expect("write");
        let err = DataDir::open(dir.path()).expect_err("foreign");
        assert!(matches!(err, DataDirError::UnknownLayout { .. }), "{err}");
    }
}
