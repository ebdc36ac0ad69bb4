//! How a process ended, recorded where the next start of the same data directory finds it.
//!
//! A store must never stay half alive: a fatal error (a failed log write, a full disk, a
//! state it cannot read; see `raftstore::fatal`) panics a thread, and [`install_panic_hook`]
//! turns any panic into the end of the whole process with [`FATAL_EXIT_CODE`]. Before it
//! exits, the hook writes the reason into every registered data directory's `LAST_EXIT`
//! file, and the next start prints it ([`ExitRecord::open`]).
//!
//! The file is created at its full size when the process starts and later only
//! overwritten in place, so the reason can be recorded even when the disk is full (which
//! is one of the reasons it exists).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// Exit code of a process ended by a fatal error (EX_SOFTWARE).
pub const FATAL_EXIT_CODE: i32 = 70;

/// Name of the record in a data directory.
pub const FILE_NAME: &str = "LAST_EXIT";

/// Bytes reserved for the record; a longer reason is cut.
const RECORD_BYTES: usize = 4096;

const RUNNING: &str = "running";
const CLEAN: &str = "clean shutdown";
const FATAL: &str = "fatal error: ";

/// Records of the data directories this process serves (one per store or scheduler).
fn records() -> &'static Mutex<Vec<ExitRecord>> {
    static RECORDS: OnceLock<Mutex<Vec<ExitRecord>>> = OnceLock::new();
    RECORDS.get_or_init(|| Mutex::new(Vec::new()))
}

/// What the previous run of a data directory left in its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PreviousExit {
    /// No record: a new directory, or one from before records existed.
    Unknown,
    /// Stopped cleanly.
    Clean,
    /// Still marked running: the process was killed or lost power.
    Unclean,
    /// Ended by a fatal error, with its reason.
    Fatal(String),
}

/// The `LAST_EXIT` file of one data directory, open for the life of the process.
#[derive(Debug)]
pub struct ExitRecord {
    path: PathBuf,
    file: File,
}

impl ExitRecord {
    /// Reads what the previous run recorded, logs it, marks the directory as running and
    /// registers it for the panic hook. The directory must exist.
    pub fn open(dir: &Path) -> std::io::Result<PreviousExit> {
        let path = dir.join(FILE_NAME);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let previous = parse(&text);
        match &previous {
            PreviousExit::Fatal(reason) => tracing::error!(
                "the previous run on {} ended with a fatal error: {reason}",
                dir.display()
            ),
            PreviousExit::Unclean => tracing::warn!(
                "the previous run on {} did not shut down cleanly (killed or crashed); \
                 recovering from the logs",
                dir.display()
            ),
            PreviousExit::Clean | PreviousExit::Unknown => {}
        }
        let mut record = ExitRecord { path, file };
        record.write(RUNNING)?;
        records()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        Ok(previous)
    }

    fn write(&mut self, text: &str) -> std::io::Result<()> {
        let mut buf = vec![b' '; RECORD_BYTES];
        let n = text.len().min(RECORD_BYTES);
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&buf)?;
        self.file.sync_data()
    }
}

fn parse(text: &str) -> PreviousExit {
    let text = text.trim_end();
    if text.is_empty() {
        PreviousExit::Unknown
    } else if text == RUNNING {
        PreviousExit::Unclean
    } else if text == CLEAN {
        PreviousExit::Clean
    } else if let Some(reason) = text.strip_prefix(FATAL) {
        PreviousExit::Fatal(reason.to_string())
    } else {
        PreviousExit::Unknown
    }
}

/// Marks every registered directory as cleanly stopped (call at the end of a normal
/// shutdown).
pub fn record_clean_exit() {
    let mut records = records().lock().unwrap_or_else(|e| e.into_inner());
    for r in records.iter_mut() {
        if let Err(e) = r.write(CLEAN) {
            tracing::warn!("recording the clean exit in {}: {e}", r.path.display());
        }
    }
}

/// Makes any panic end the process: print it, record it in every registered data
/// directory, exit with [`FATAL_EXIT_CODE`]. Installed by the `tessera` binary only; the
/// in-process test harness lets a panicked store thread die and restarts the store.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let what = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("panic");
        let place = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        let reason = format!("{what}{place}");
        // try_lock: the panic may come from a thread that holds the lock.
        if let Ok(mut records) = records().try_lock() {
            for r in records.iter_mut() {
                let _ = r.write(&format!("{FATAL}{reason}"));
            }
        }
        eprintln!(
            "tessera: fatal: {reason}; the process stops (exit code {FATAL_EXIT_CODE}) \
             rather than serve from a state it cannot trust"
        );
        std::process::exit(FATAL_EXIT_CODE);
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_says_how_the_previous_run_ended() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(ExitRecord::open(dir.path()).unwrap(), PreviousExit::Unknown);
        // Still marked running: the next open reports an unclean stop.
        assert_eq!(ExitRecord::open(dir.path()).unwrap(), PreviousExit::Unclean);
        record_clean_exit();
        assert_eq!(ExitRecord::open(dir.path()).unwrap(), PreviousExit::Clean);
        // What the panic hook writes.
        let mut r = ExitRecord {
            path: dir.path().join(FILE_NAME),
            file: OpenOptions::new()
                .write(true)
                .open(dir.path().join(FILE_NAME))
                .unwrap(),
        };
        r.write(&format!(
            "{FATAL}raft log write failed: No space left on device"
        ))
        .unwrap();
        assert_eq!(
            ExitRecord::open(dir.path()).unwrap(),
            PreviousExit::Fatal("raft log write failed: No space left on device".into())
        );
        assert_eq!(
            std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len(),
            RECORD_BYTES as u64,
            "the record keeps its size, so a full disk can still take a reason"
        );
    }
}
