//! File access for the log, behind a small trait.
//!
//! Everything the log does to a file goes through [`Fs`] and [`FileHandle`],
//! so tests can put [`FaultyFs`] in between and make writes short or torn,
//! flip bits on their way to disk, or fail an fsync, then check what the log
//! does about it. [`OsFs`] is the real thing. This module never interprets
//! the bytes it moves.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

/// A directory tree the log keeps its files in.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Names of the entries of `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>>;
    /// Deletes `path`.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, deletions) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file.
#[allow(clippy::len_without_is_empty)] // a file's emptiness is never asked
pub trait FileHandle: Send + Sync + fmt::Debug {
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Writes at `pos`; may write fewer bytes than asked (a short write).
    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize>;
    /// Reads at `pos`; may read fewer bytes than asked.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
    /// Makes written data durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// A read-only view of the first `len` bytes. `len` may run past the end
    /// of the file to leave room for appends; the caller promises never to
    /// read past what it knows was written.
    fn map(&self, len: usize) -> io::Result<Bytes>;
}

/// Writes all of `buf` at `pos`, carrying on after short writes.
pub(crate) fn write_all_at(file: &dyn FileHandle, mut buf: &[u8], mut pos: u64) -> io::Result<()> {
    while !buf.is_empty() {
        match file.write_at(buf, pos) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "write returned 0 bytes",
                ));
            }
            Ok(n) => {
                buf = &buf[n..];
                pos += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Batches up to this size are written with one call, their stamped
/// header and body put together on the stack; larger ones as two writes,
/// so the body is never copied.
const ONE_WRITE_BYTES: usize = 4096;

/// Writes a batch at `pos`: `header` in place of the first
/// `header.len()` bytes of `batch`, then the rest of `batch`.
pub(crate) fn write_batch(
    file: &dyn FileHandle,
    header: &[u8],
    batch: &[u8],
    pos: u64,
) -> io::Result<()> {
    let Some(body) = batch.get(header.len()..) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a batch shorter than its header",
        ));
    };
    if batch.len() <= ONE_WRITE_BYTES {
        let mut whole = [0u8; ONE_WRITE_BYTES];
        whole[..header.len()].copy_from_slice(header);
        whole[header.len()..batch.len()].copy_from_slice(body);
        return write_all_at(file, &whole[..batch.len()], pos);
    }
    write_all_at(file, header, pos)?;
    write_all_at(file, body, pos + header.len() as u64)
}

/// Reads all of `path` (small files only: indexes).
pub(crate) fn read_small(fs: &dyn Fs, path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = fs.open(path, false)?;
    let len = file.len()?;
    if len > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} bytes is past the {limit}-byte limit", len),
        ));
    }
    let mut buf = vec![0u8; len as usize];
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

/// The operating system's file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

impl Fs for OsFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

#[derive(Debug)]
struct OsFile(File);

impl FileHandle for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        self.0.write_at(buf, pos)
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.0.read_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn map(&self, len: usize) -> io::Result<Bytes> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        // SAFETY: the mapping is read-only and private to the log. Its two
        // hazards are handled by the log's rules: the file is only ever
        // appended to while mapped (never truncated below a mapped byte
        // that is read), and deleting the file keeps the inode, and so the
        // pages, alive until the last `Bytes` over the mapping is dropped.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map(&self.0)? };
        Ok(Bytes::from_owner(map))
    }
}

/// What [`FaultyFs`] does to one write or sync of a log segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The write stores only the first `bytes` bytes and says so.
    ShortWrite {
        /// Bytes written.
        bytes: usize,
    },
    /// The write stores the first `bytes` bytes and the process "dies":
    /// this call and every later one fail, as if the machine went down.
    TornWrite {
        /// Bytes that reach the file.
        bytes: usize,
    },
    /// The write reaches the file with one bit flipped and reports success
    /// (a misdirected or rotted write).
    FlipBit {
        /// Byte within the written buffer.
        byte: usize,
        /// Bit within that byte.
        bit: u8,
    },
    /// The write fails with an I/O error; nothing is written.
    WriteError,
    /// `sync_data` fails with an I/O error.
    SyncError,
}

/// An [`Fs`] that injects [`Fault`]s into the writes and syncs of `.log`
/// files. Faults are armed by ordinal: "the 3rd write from now".
#[derive(Debug, Clone)]
pub struct FaultyFs {
    inner: Arc<dyn Fs>,
    state: Arc<Mutex<FaultState>>,
}

#[derive(Debug, Default)]
struct FaultState {
    writes: u64,
    syncs: u64,
    on_write: Vec<(u64, Fault)>,
    on_sync: Vec<u64>,
    dead: bool,
}

impl FaultyFs {
    /// Wraps `inner`; no fault is armed.
    pub fn new(inner: Arc<dyn Fs>) -> FaultyFs {
        FaultyFs {
            inner,
            state: Arc::new(Mutex::new(FaultState::default())),
        }
    }

    /// Arms `fault` for the `n`th segment write from now (1 = the next).
    pub fn fail_write(&self, n: u64, fault: Fault) {
        let mut s = self.state.lock();
        let at = s.writes + n;
        s.on_write.push((at, fault));
    }

    /// Makes the `n`th segment sync from now fail (1 = the next).
    pub fn fail_sync(&self, n: u64) {
        let mut s = self.state.lock();
        let at = s.syncs + n;
        s.on_sync.push(at);
    }

    /// Whether a torn write has "killed" this file system.
    pub fn is_dead(&self) -> bool {
        self.state.lock().dead
    }
}

fn dead() -> io::Error {
    io::Error::other("injected: the process died in a torn write")
}

impl Fs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn FileHandle>> {
        if self.state.lock().dead {
            return Err(dead());
        }
        let file = self.inner.open(path, create)?;
        if path.extension().is_some_and(|e| e == "log") {
            Ok(Arc::new(FaultyFile {
                inner: file,
                state: self.state.clone(),
            }))
        } else {
            Ok(file)
        }
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.state.lock().dead {
            return Err(dead());
        }
        self.inner.remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        if self.state.lock().dead {
            return Err(dead());
        }
        self.inner.sync_dir(dir)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn FileHandle>,
    state: Arc<Mutex<FaultState>>,
}

impl FileHandle for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }

    fn write_at(&self, buf: &[u8], pos: u64) -> io::Result<usize> {
        let fault = {
            let mut s = self.state.lock();
            if s.dead {
                return Err(dead());
            }
            s.writes += 1;
            let now = s.writes;
            let hit = s.on_write.iter().position(|(at, _)| *at == now);
            hit.map(|i| s.on_write.swap_remove(i).1)
        };
        match fault {
            None => self.inner.write_at(buf, pos),
            Some(Fault::ShortWrite { bytes }) => {
                self.inner.write_at(&buf[..bytes.clamp(1, buf.len())], pos)
            }
            Some(Fault::TornWrite { bytes }) => {
                write_all_at(self.inner.as_ref(), &buf[..bytes.min(buf.len())], pos)?;
                self.state.lock().dead = true;
                Err(dead())
            }
            Some(Fault::FlipBit { byte, bit }) => {
                let mut copy = buf.to_vec();
                if let Some(b) = copy.get_mut(byte) {
                    *b ^= 1 << (bit % 8);
                }
                self.inner.write_at(&copy, pos)
            }
            Some(Fault::WriteError) => Err(io::Error::other("injected write error")),
            Some(Fault::SyncError) => self.inner.write_at(buf, pos),
        }
    }

    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        self.inner.read_at(buf, pos)
    }

    fn sync_data(&self) -> io::Result<()> {
        let fail = {
            let mut s = self.state.lock();
            if s.dead {
                return Err(dead());
            }
            s.syncs += 1;
            let now = s.syncs;
            let hit = s.on_sync.iter().position(|at| *at == now);
            hit.map(|i| s.on_sync.swap_remove(i)).is_some()
        };
        if fail {
            return Err(io::Error::other("injected fsync error"));
        }
        self.inner.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.state.lock().dead {
            return Err(dead());
        }
        self.inner.set_len(len)
    }

    fn map(&self, len: usize) -> io::Result<Bytes> {
        self.inner.map(len)
    }
}
