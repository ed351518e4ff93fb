//! Keeping `DATA_DIR` in shape while the server runs: `RETENTION_DAYS` (the server deletes
//! ended calls older than that, rows and recordings, once an hour) and `exotel-voicebot backup`
//! (SQLite's online backup of `calls.db`, consistent while the server writes, which copying the
//! file under WAL is not).
//!
//! Both block in the kernel, so they run on their own thread or process, never on a coroutine.

use super::log::CallLog;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often retention runs (and once at start).
pub const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Copies the call log at `source` to `dest` (which must not exist) in one step of SQLite's
/// backup API, so the copy is one consistent moment of the database; answers how many calls it
/// holds.
pub fn backup(source: &Path, dest: &Path) -> Result<u64, String> {
    if !source.exists() {
        return Err("there is no call log there (is DATA_DIR right?)".into());
    }
    // Created here, exclusively and readable by this user only: a name that exists, even as
    // a dangling symlink, is refused rather than written through.
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dest)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    "the file exists (or is a link); choose a new name".to_owned()
                }
                _ => e.to_string(),
            })?;
    }
    // Read and write, though only read: a read-only connection cannot rebuild the WAL index
    // when it finds it being reset by the server's checkpoint, and answered SQLITE_PROTOCOL
    // ("locking protocol") again and again (a test's backup failed after its five tries). No
    // CREATE: a missing database is an error, not a new empty one.
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE;
    let opened = rusqlite::Connection::open_with_flags(source, flags)
        .and_then(|from| from.busy_timeout(Duration::from_secs(5)).map(|()| from))
        .and_then(|from| rusqlite::Connection::open(dest).map(|to| (from, to)));
    let (from, mut to) = match opened {
        Ok(both) => both,
        Err(e) => {
            let _ = std::fs::remove_file(dest);
            return Err(e.to_string());
        }
    };
    // A reader of a WAL database may lose a race with the writer's checkpoint and get
    // SQLITE_PROTOCOL ("locking protocol"), which no busy timeout covers: tried again, for up
    // to a second.
    let mut copied = Ok(());
    for _ in 0..20 {
        copied = rusqlite::backup::Backup::new(&from, &mut to)
            .and_then(|b| b.run_to_completion(i32::MAX, Duration::ZERO, None));
        let raced = matches!(&copied, Err(e) if e.sqlite_error_code()
            == Some(rusqlite::ErrorCode::FileLockingProtocolFailed));
        if !raced {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if let Err(e) = copied {
        drop(to);
        let _ = std::fs::remove_file(dest);
        return Err(e.to_string());
    }
    to.query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
        .map(|n| n as u64)
        .map_err(|e| e.to_string())
}

/// Starts the retention thread: every [`PRUNE_EVERY`], deletes ended calls created more than
/// `keep` ago, the recordings those rows named, and any recording file in `recordings` last
/// written more than `keep` ago (left by a row already gone).
pub fn start_retention(call_log: CallLog, recordings: PathBuf, keep: Duration) {
    let spawned = std::thread::Builder::new()
        .name("retention".into())
        .spawn(move || loop {
            prune_once(&call_log, &recordings, keep);
            std::thread::sleep(PRUNE_EVERY);
        });
    if let Err(e) = spawned {
        crate::error!("retention.not_started", error = e);
    }
}

/// One pass of retention; logs what it deleted. Only regular `*.wav` files directly inside
/// `recordings` are deleted, never through a link: a row's path that points elsewhere, or a
/// `recordings` that is itself a link (into a shared directory, say), is left alone and said.
pub fn prune_once(call_log: &CallLog, recordings: &Path, keep: Duration) {
    let cutoff = SystemTime::now() - keep;
    let pruned = match call_log.prune(cutoff) {
        Ok(pruned) => pruned,
        Err(e) => {
            crate::warn!(
                "retention.failed",
                error = e,
                detail = "tried again in an hour"
            );
            return;
        }
    };
    let Some(ours) = own_directory(recordings) else {
        if pruned.calls > 0 {
            crate::info!(
                "retention.pruned",
                keptDays = keep.as_secs() / 86_400,
                calls = pruned.calls,
                recordings = 0
            );
        }
        return;
    };
    let mut files = 0usize;
    let mut refused = 0usize;
    for path in &pruned.recordings {
        if !is_our_recording(&ours, Path::new(path)) {
            refused += 1;
        } else if std::fs::remove_file(path).is_ok() {
            files += 1;
        }
    }
    if refused > 0 {
        crate::warn!(
            "retention.left_alone",
            files = refused,
            detail = "rows named recordings outside DATA_DIR/recordings, or links: not deleted"
        );
    }
    files += remove_older_files(&ours, cutoff);
    if pruned.calls > 0 || files > 0 {
        crate::info!(
            "retention.pruned",
            keptDays = keep.as_secs() / 86_400,
            calls = pruned.calls,
            recordings = files
        );
    }
}

/// `recordings` resolved, when it is a directory of its own (not a link); `None`, said once
/// per pass, when it is a link.
fn own_directory(recordings: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(recordings).ok()?;
    if !meta.is_dir() {
        crate::warn!(
            "retention.left_alone",
            path = recordings.display(),
            detail = "DATA_DIR/recordings is a link or not a directory: retention deletes no file through it"
        );
        return None;
    }
    recordings.canonicalize().ok()
}

/// Whether `path` is a regular `*.wav` file (not a link) directly inside `ours`.
fn is_our_recording(ours: &Path, path: &Path) -> bool {
    let in_ours = path
        .parent()
        .and_then(|parent| parent.canonicalize().ok())
        .is_some_and(|parent| parent == ours);
    in_ours
        && path.extension().is_some_and(|e| e == "wav")
        && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file())
}

/// Deletes the regular `*.wav` files (not links) in `dir` last modified before `cutoff`; how
/// many.
fn remove_older_files(dir: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
        .filter(|e| {
            std::fs::symlink_metadata(e.path())
                .is_ok_and(|m| m.modified().is_ok_and(|t| t < cutoff))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}
