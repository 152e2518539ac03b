//! The file-system seam. The log and the snapshots reach the disk only through
//! [`FileSystem`], so tests can inject failed writes and failed fsyncs without root
//! ([`FaultyFs`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A file being appended to (a log segment, a snapshot being written).
pub trait WriteFile: Send + Sync {
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync: the data written so far survives a power loss.
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates (or extends) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Reserves disk blocks for the first `len` bytes without changing the file's length
    /// (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so later writes there cannot fail for
    /// lack of space. File systems that cannot do it report success and reserve nothing.
    fn allocate(&self, len: u64) -> io::Result<()>;
}

pub trait FileSystem: Send + Sync + 'static {
    /// Creates `path` (truncating it if it exists) for writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>>;
    /// Opens `path` for reading.
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// Up to `len` bytes of `path` from `offset` (fewer at the end of the file).
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let f = File::open(path)?;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match f.read_at(&mut buf[got..], offset + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }
    fn read_all(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open(path)?.read_to_end(&mut v)?;
        Ok(v)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Truncates an existing file to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// fsync of the directory itself, so created, renamed and removed names are durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    fn file_len(&self, path: &Path) -> io::Result<u64>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

struct StdFile(File);

impl WriteFile for StdFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: fallocate on a descriptor we own; it touches no memory of ours.
        let rc = unsafe {
            libc::fallocate(
                self.0.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                0,
                len as libc::off_t,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(()),
            _ => Err(e),
        }
    }
}

impl FileSystem for StdFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        let f = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .read(true)
            .open(path)?;
        Ok(Arc::new(StdFile(f)))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::BufReader::with_capacity(
            1 << 20,
            File::open(path)?,
        )))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            out.push(e?.path());
        }
        Ok(out)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
}

/// A file system that fails on demand: writes past a byte budget fail with ENOSPC, and
/// fsyncs fail with EIO while `fail_sync` is set. For tests of the failure paths.
#[derive(Clone, Default)]
pub struct FaultyFs {
    inner: StdFs,
    state: Arc<FaultState>,
}

#[derive(Default)]
struct FaultState {
    /// Bytes that may still be written; `u64::MAX` for no limit (the default is set in
    /// `new`).
    write_budget: AtomicU64,
    fail_sync: AtomicBool,
}

impl FaultyFs {
    pub fn new() -> Self {
        let fs = FaultyFs::default();
        fs.state.write_budget.store(u64::MAX, Ordering::SeqCst);
        fs
    }

    /// Lets only `bytes` more bytes be written (then ENOSPC), like a disk filling up.
    pub fn fill_after(&self, bytes: u64) {
        self.state.write_budget.store(bytes, Ordering::SeqCst);
    }

    /// The disk has room again.
    pub fn heal(&self) {
        self.state.write_budget.store(u64::MAX, Ordering::SeqCst);
        self.state.fail_sync.store(false, Ordering::SeqCst);
    }

    pub fn fail_sync(&self, fail: bool) {
        self.state.fail_sync.store(fail, Ordering::SeqCst);
    }
}

struct FaultyFile {
    inner: Arc<dyn WriteFile>,
    state: Arc<FaultState>,
    /// Bytes reserved by `allocate`: writes below this never run out of space.
    allocated: AtomicU64,
}

impl WriteFile for FaultyFile {
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        if offset + buf.len() as u64 <= self.allocated.load(Ordering::SeqCst) {
            return self.inner.write_all_at(buf, offset);
        }
        let budget = self.state.write_budget.load(Ordering::SeqCst);
        if (buf.len() as u64) > budget {
            // A short write, then the error: what a filling disk does.
            let part = budget as usize;
            self.inner.write_all_at(&buf[..part], offset)?;
            self.state.write_budget.store(0, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if budget != u64::MAX {
            self.state
                .write_budget
                .store(budget - buf.len() as u64, Ordering::SeqCst);
        }
        self.inner.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.state.fail_sync.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        let have = self.allocated.load(Ordering::SeqCst);
        if len <= have {
            return Ok(());
        }
        let more = len - have;
        let budget = self.state.write_budget.load(Ordering::SeqCst);
        if more > budget {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        if budget != u64::MAX {
            self.state
                .write_budget
                .store(budget - more, Ordering::SeqCst);
        }
        self.allocated.store(len, Ordering::SeqCst);
        self.inner.allocate(len)
    }
}

impl FileSystem for FaultyFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn WriteFile>> {
        Ok(Arc::new(FaultyFile {
            inner: self.inner.create(path)?,
            state: self.state.clone(),
            allocated: AtomicU64::new(0),
        }))
    }
    fn open(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        self.inner.open(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.inner.file_len(path)
    }
}
