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
    if dest.exists() {
        return Err("the file exists; choose a new name".into());
    }
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let from = rusqlite::Connection::open_with_flags(source, flags).map_err(|e| e.to_string())?;
    from.busy_timeout(Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let mut to = rusqlite::Connection::open(dest).map_err(|e| e.to_string())?;
    let copied = rusqlite::backup::Backup::new(&from, &mut to)
        .and_then(|b| b.run_to_completion(i32::MAX, Duration::ZERO, None));
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

/// One pass of retention; logs what it deleted.
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
    let mut files = 0usize;
    for path in &pruned.recordings {
        if std::fs::remove_file(path).is_ok() {
            files += 1;
        }
    }
    files += remove_older_files(recordings, cutoff);
    if pruned.calls > 0 || files > 0 {
        crate::info!(
            "retention.pruned",
            keptDays = keep.as_secs() / 86_400,
            calls = pruned.calls,
            recordings = files
        );
    }
}

/// Deletes the regular files in `dir` last modified before `cutoff`; how many.
fn remove_older_files(dir: &Path, cutoff: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.modified().is_ok_and(|t| t < cutoff))
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}
