//! The file system under the raft log: the real disk, or the real disk with faults a test
//! can inject.
//!
//! raft-engine reaches its files only through its `FileSystem` trait, so a test can stand
//! between it and the disk. [`LogFileSystem::Disk`] is what a store runs on: raft-engine's
//! own file handles, unchanged. [`LogFileSystem::Faulty`] uses the same handles and keeps,
//! per file, what its content was at the last `sync`: how long it was and the bytes that
//! writes since then overwrote. [`DiskFaults`] then lets a test
//! - **crash** the disk: every file goes back to its content at its last sync (what a power
//!   loss keeps), optionally with a prefix of the last unsynced write kept (a torn write).
//!   From then on the disk is dead: writes and syncs answer "done" (raft-engine panics on
//!   a failed sync, and closes its files with one) but nothing reaches the files. The
//!   caller stops the store before it crashes the disk, so nothing acts on the lost
//!   writes, and then drops the engine;
//! - make every write and sync **fail** with an I/O error, until told otherwise.
//!
//! Creating, renaming and deleting files take effect at once and survive a crash (as if
//! the directory were synced every time); only file contents are lost.

use std::io::{Error, ErrorKind, Read, Result as IoResult, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use raft_engine::env::{DefaultFileSystem, FileSystem, Handle, Permission, WriteExt};

type DiskFd = <DefaultFileSystem as FileSystem>::Handle;
type DiskFile = <DefaultFileSystem as FileSystem>::Reader;

/// The raft log's file system: see the module doc.
#[derive(Clone)]
pub enum LogFileSystem {
    /// The disk, through raft-engine's own file handles.
    Disk,
    /// The disk, with the faults its [`DiskFaults`] injects.
    Faulty(DiskFaults),
}

/// A test's handle on a [`LogFileSystem::Faulty`]: injects crashes and I/O errors.
#[derive(Clone, Default)]
pub struct DiskFaults {
    inner: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    state: Mutex<FaultState>,
}

#[derive(Default)]
struct FaultState {
    /// The disk crashed: writes and syncs are dropped.
    crashed: bool,
    /// Every write and sync fails with an I/O error.
    failing: bool,
    /// Files written through this file system, to be rolled back by a crash.
    files: Vec<Weak<TrackedFd>>,
}

impl DiskFaults {
    /// A new, healthy disk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loses everything written since each file's last sync. With `torn`, the last file
    /// written keeps the first half of what it had not synced (raft-engine must notice the
    /// torn record and drop it). Nothing written from now on reaches the files. Returns how
    /// many bytes were lost.
    pub fn crash(&self, torn: bool) -> u64 {
        let mut state = self.inner.state.lock();
        state.crashed = true;
        let files: Vec<Arc<TrackedFd>> = state.files.iter().filter_map(Weak::upgrade).collect();
        state.files.clear();
        drop(state);
        // The file written most recently is where a write can be torn.
        let last = files
            .iter()
            .enumerate()
            .max_by_key(|(_, f)| f.undo.lock().last_write_seq)
            .map(|(i, _)| i);
        let mut lost = 0;
        for (i, f) in files.iter().enumerate() {
            lost += f.roll_back(torn && Some(i) == last);
        }
        lost
    }

    /// From now on every write and sync fails with an I/O error (`false`: works again).
    pub fn fail_io(&self, failing: bool) {
        self.inner.state.lock().failing = failing;
    }

    /// What a write or sync meets now: `Some(Ok)` on a crashed disk (dropped),
    /// `Some(Err)` on a failing one, `None` when it goes to the disk.
    fn fault(&self) -> Option<IoResult<()>> {
        let state = self.inner.state.lock();
        if state.crashed {
            Some(Ok(()))
        } else if state.failing {
            Some(Err(injected()))
        } else {
            None
        }
    }

    fn track(&self, fd: &Arc<TrackedFd>) {
        let mut state = self.inner.state.lock();
        state.files.retain(|w| w.strong_count() > 0);
        state.files.push(Arc::downgrade(fd));
    }
}

fn injected() -> Error {
    Error::other("injected disk fault")
}

/// A file handle of either kind.
pub enum LogFd {
    /// raft-engine's own handle.
    Disk(Arc<DiskFd>),
    /// raft-engine's handle with what the last sync made durable.
    Faulty(Arc<TrackedFd>),
}

/// A raft-engine file handle that remembers its content at the last sync.
pub struct TrackedFd {
    fd: Arc<DiskFd>,
    faults: DiskFaults,
    undo: Mutex<Undo>,
}

#[derive(Default)]
struct Undo {
    /// The file's length at its last sync.
    synced_len: usize,
    /// Bytes inside `synced_len` overwritten since the last sync: (offset, old bytes), in
    /// the order written.
    overwritten: Vec<(usize, Vec<u8>)>,
    /// Offset and bytes of the last write since the last sync (where a write can tear).
    last_write: Option<(usize, Vec<u8>)>,
    /// Orders writes across files, to find the last one.
    last_write_seq: u64,
}

static WRITE_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl TrackedFd {
    fn new(fd: DiskFd, faults: DiskFaults) -> IoResult<Arc<Self>> {
        let synced_len = fd.file_size()?;
        let t = Arc::new(TrackedFd {
            fd: Arc::new(fd),
            faults,
            undo: Mutex::new(Undo {
                synced_len,
                ..Default::default()
            }),
        });
        t.faults.track(&t);
        Ok(t)
    }

    fn write_at(&self, offset: usize, buf: &[u8]) -> IoResult<usize> {
        // Under the file's lock: a crash marks the disk failing before it rolls a file
        // back under the same lock, so no write lands after the roll-back.
        let mut undo = self.undo.lock();
        if let Some(r) = self.faults.fault() {
            return r.map(|()| buf.len());
        }
        if offset < undo.synced_len {
            let end = (offset + buf.len()).min(undo.synced_len);
            let mut old = vec![0; end - offset];
            let mut read = 0;
            while read < old.len() {
                let n = self.fd.read(offset + read, &mut old[read..])?;
                if n == 0 {
                    break;
                }
                read += n;
            }
            old.truncate(read);
            undo.overwritten.push((offset, old));
        }
        let n = self.fd.write(offset, buf)?;
        undo.last_write = Some((offset, buf[..n].to_vec()));
        undo.last_write_seq = WRITE_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        Ok(n)
    }

    /// Puts the file back as it was at its last sync; returns the bytes lost (unsynced
    /// writes over synced content, which may have been zeros raft-engine preallocated, and
    /// unsynced growth).
    fn roll_back(&self, keep_torn_half: bool) -> u64 {
        let mut undo = self.undo.lock();
        let size = self.fd.file_size().unwrap_or(0);
        let mut restored = 0;
        for (offset, old) in undo.overwritten.drain(..).rev() {
            restored += old.len() as u64;
            let _ = self.fd.write(offset, &old);
        }
        let mut keep = undo.synced_len;
        if keep_torn_half {
            if let Some((offset, bytes)) = undo.last_write.take() {
                if bytes.len() > 1 {
                    // The first half of the torn write reached the disk. Unsynced writes
                    // before it over synced bytes are undone above; those that grew the
                    // file stay if they lie before it (a disk may keep any of them).
                    let half = &bytes[..bytes.len() / 2];
                    let _ = self.fd.write(offset, half);
                    keep = keep.max(offset + half.len());
                }
            }
        }
        let keep = keep.min(size);
        let _ = self.fd.truncate(keep);
        let _ = self.fd.sync();
        undo.last_write = None;
        restored + (size.saturating_sub(keep)) as u64
    }
}

impl Handle for LogFd {
    fn truncate(&self, offset: usize) -> IoResult<()> {
        match self {
            LogFd::Disk(fd) => fd.truncate(offset),
            LogFd::Faulty(t) => {
                let mut undo = t.undo.lock();
                if let Some(r) = t.faults.fault() {
                    return r;
                }
                // Shrinking is durable at once (raft-engine truncates only zeros it
                // preallocated, or a torn tail it found at recovery).
                undo.synced_len = undo.synced_len.min(offset);
                t.fd.truncate(offset)
            }
        }
    }

    fn file_size(&self) -> IoResult<usize> {
        match self {
            LogFd::Disk(fd) => fd.file_size(),
            LogFd::Faulty(t) => t.fd.file_size(),
        }
    }

    fn sync(&self) -> IoResult<()> {
        match self {
            LogFd::Disk(fd) => fd.sync(),
            LogFd::Faulty(t) => {
                let mut undo = t.undo.lock();
                if let Some(r) = t.faults.fault() {
                    return r;
                }
                t.fd.sync()?;
                undo.synced_len = t.fd.file_size()?;
                undo.overwritten.clear();
                undo.last_write = None;
                Ok(())
            }
        }
    }
}

/// A reader or writer over a [`LogFd`].
pub enum LogFile {
    /// raft-engine's own.
    Disk(DiskFile),
    /// Position in a tracked file.
    Faulty {
        /// The file.
        fd: Arc<TrackedFd>,
        /// Where the next read or write goes.
        offset: usize,
    },
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        match self {
            LogFile::Disk(f) => f.write(buf),
            LogFile::Faulty { fd, offset } => {
                let n = fd.write_at(*offset, buf)?;
                *offset += n;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> IoResult<()> {
        Ok(())
    }
}

impl Read for LogFile {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        match self {
            LogFile::Disk(f) => f.read(buf),
            LogFile::Faulty { fd, offset } => {
                let n = fd.fd.read(*offset, buf)?;
                *offset += n;
                Ok(n)
            }
        }
    }
}

impl Seek for LogFile {
    fn seek(&mut self, pos: SeekFrom) -> IoResult<u64> {
        match self {
            LogFile::Disk(f) => f.seek(pos),
            LogFile::Faulty { fd, offset } => {
                let to = match pos {
                    SeekFrom::Start(o) => o as i64,
                    SeekFrom::Current(d) => *offset as i64 + d,
                    SeekFrom::End(d) => fd.fd.file_size()? as i64 + d,
                };
                if to < 0 {
                    return Err(Error::new(ErrorKind::InvalidInput, "seek before start"));
                }
                *offset = to as usize;
                Ok(to as u64)
            }
        }
    }
}

impl WriteExt for LogFile {
    fn truncate(&mut self, offset: usize) -> IoResult<()> {
        match self {
            LogFile::Disk(f) => f.truncate(offset),
            LogFile::Faulty { fd, offset: pos } => {
                LogFd::Faulty(fd.clone()).truncate(offset)?;
                *pos = offset;
                Ok(())
            }
        }
    }

    fn allocate(&mut self, offset: usize, size: usize) -> IoResult<()> {
        match self {
            LogFile::Disk(f) => f.allocate(offset, size),
            LogFile::Faulty { fd, .. } => {
                if let Some(r) = fd.faults.fault() {
                    return r;
                }
                // Preallocated zeros past the synced length are dropped by a crash, like
                // any other unsynced growth.
                fd.fd.allocate(offset, size)
            }
        }
    }
}

impl FileSystem for LogFileSystem {
    type Handle = LogFd;
    type Reader = LogFile;
    type Writer = LogFile;

    fn create<P: AsRef<Path>>(&self, path: P) -> IoResult<LogFd> {
        let fd = DefaultFileSystem.create(path)?;
        self.wrap(fd)
    }

    fn open<P: AsRef<Path>>(&self, path: P, perm: Permission) -> IoResult<LogFd> {
        let fd = DefaultFileSystem.open(path, perm)?;
        self.wrap(fd)
    }

    fn delete<P: AsRef<Path>>(&self, path: P) -> IoResult<()> {
        if let LogFileSystem::Faulty(f) = self {
            if let Some(r) = f.fault() {
                return r;
            }
        }
        DefaultFileSystem.delete(path)
    }

    fn rename<P: AsRef<Path>>(&self, src_path: P, dst_path: P) -> IoResult<()> {
        if let LogFileSystem::Faulty(f) = self {
            if let Some(r) = f.fault() {
                return r;
            }
        }
        DefaultFileSystem.rename(src_path, dst_path)
    }

    fn new_reader(&self, handle: Arc<LogFd>) -> IoResult<LogFile> {
        Self::file(&handle)
    }

    fn new_writer(&self, handle: Arc<LogFd>) -> IoResult<LogFile> {
        Self::file(&handle)
    }
}

impl LogFileSystem {
    fn wrap(&self, fd: DiskFd) -> IoResult<LogFd> {
        Ok(match self {
            LogFileSystem::Disk => LogFd::Disk(Arc::new(fd)),
            LogFileSystem::Faulty(faults) => LogFd::Faulty(TrackedFd::new(fd, faults.clone())?),
        })
    }

    fn file(handle: &LogFd) -> IoResult<LogFile> {
        Ok(match handle {
            LogFd::Disk(fd) => LogFile::Disk(DefaultFileSystem.new_reader(fd.clone())?),
            LogFd::Faulty(t) => LogFile::Faulty {
                fd: t.clone(),
                offset: 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use raft::eraftpb::Entry;

    use super::*;
    use crate::storage::log_engine::MIN_PURGE_THRESHOLD;
    use crate::storage::{LogWriteBatch, RaftLogEngine};

    fn content(path: &Path) -> Vec<u8> {
        std::fs::read(path).unwrap()
    }

    fn writer(fs: &LogFileSystem, path: &Path) -> (Arc<LogFd>, LogFile) {
        let fd = Arc::new(fs.create(path).unwrap());
        let w = fs.new_writer(fd.clone()).unwrap();
        (fd, w)
    }

    #[test]
    fn a_crash_keeps_what_was_synced_and_nothing_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let faults = DiskFaults::new();
        let fs = LogFileSystem::Faulty(faults.clone());
        let (fd, mut w) = writer(&fs, &path);
        w.write_all(b"synced").unwrap();
        fd.sync().unwrap();
        // An overwrite inside the synced part and an append, neither synced.
        w.seek(SeekFrom::Start(0)).unwrap();
        w.write_all(b"XX").unwrap();
        w.seek(SeekFrom::End(0)).unwrap();
        w.write_all(b" and lost").unwrap();
        assert_eq!(content(&path), b"XXnced and lost");
        // Two bytes overwritten, nine appended.
        assert_eq!(faults.crash(false), 11);
        assert_eq!(content(&path), b"synced");
        // A crashed disk takes nothing more.
        w.write_all(b"more").unwrap();
        fd.sync().unwrap();
        assert_eq!(content(&path), b"synced");
    }

    #[test]
    fn a_torn_crash_keeps_half_of_the_last_write() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::new();
        let fs = LogFileSystem::Faulty(faults.clone());
        let (fd_a, mut a) = writer(&fs, &dir.path().join("a"));
        let (_fd_b, mut b) = writer(&fs, &dir.path().join("b"));
        a.write_all(b"a0").unwrap();
        fd_a.sync().unwrap();
        a.write_all(b"a1a1").unwrap();
        b.write_all(b"b1b1b1").unwrap();
        faults.crash(true);
        // Only the last write (to b) tears; a loses its unsynced write whole.
        assert_eq!(content(&dir.path().join("a")), b"a0");
        assert_eq!(content(&dir.path().join("b")), b"b1b");
    }

    #[test]
    fn io_errors_come_and_go_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let faults = DiskFaults::new();
        let fs = LogFileSystem::Faulty(faults.clone());
        let (fd, mut w) = writer(&fs, &dir.path().join("f"));
        faults.fail_io(true);
        assert!(w.write_all(b"x").is_err());
        assert!(fd.sync().is_err());
        faults.fail_io(false);
        w.write_all(b"x").unwrap();
        fd.sync().unwrap();
        assert_eq!(content(&dir.path().join("f")), b"x");
    }

    fn entries(from: u64, to: u64) -> Vec<Entry> {
        (from..=to)
            .map(|index| Entry {
                index,
                term: 1,
                data: vec![index as u8; 100].into(),
                ..Default::default()
            })
            .collect()
    }

    fn write(raft: &RaftLogEngine, from: u64, to: u64, sync: bool) {
        let mut batch = LogWriteBatch::default();
        batch.append(1, &entries(from, to)).unwrap();
        raft.write(&mut batch, sync).unwrap();
    }

    /// raft-engine recovers from what a crash leaves: the synced entries, whole, and none of
    /// the unsynced ones; a torn record at the tail is dropped, not an error.
    #[test]
    fn the_raft_log_recovers_from_a_crash_with_its_synced_entries() {
        for torn in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let faults = DiskFaults::new();
            let raft = RaftLogEngine::open_on(
                dir.path(),
                MIN_PURGE_THRESHOLD,
                LogFileSystem::Faulty(faults.clone()),
            )
            .unwrap();
            write(&raft, 1, 10, true);
            write(&raft, 11, 20, false);
            write(&raft, 21, 30, false);
            assert_eq!(raft.last_index(1), Some(30));
            assert!(faults.crash(torn) > 0);
            drop(raft);

            let faults = DiskFaults::new();
            let raft = RaftLogEngine::open_on(
                dir.path(),
                MIN_PURGE_THRESHOLD,
                LogFileSystem::Faulty(faults.clone()),
            )
            .unwrap();
            assert_eq!(raft.last_index(1), Some(10), "torn: {torn}");
            let mut got = Vec::new();
            raft.fetch_entries(1, 1, 11, None, &mut got).unwrap();
            assert_eq!(got, entries(1, 10));
            // And it goes on from there.
            write(&raft, 11, 12, true);
            assert_eq!(raft.last_index(1), Some(12));
        }
    }
}
