//! The call log: one SQLite row per call in `$DATA_DIR/calls.db` (WAL, schema versioned with
//! `PRAGMA user_version`), plus each call's status history.
//!
//! One OS thread owns the connection (docs/ARCHITECTURE.md §2: SQLite blocks in the kernel, so never on a
//! coroutine). Coroutines hand it [`LogEvent`]s without waiting; reads wait for their answer on a
//! `may` channel. Events arrive at lifecycle moments only, never per media frame. A status never
//! moves backwards, so repeated or late events (Exotel's callbacks repeat) change nothing.

pub use super::status::Status;
use super::CallLogId;
use crate::metrics::Metrics;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The schema this code writes; older databases are migrated on open.
pub const SCHEMA_VERSION: i32 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Outbound,
    Inbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        }
    }
}

/// Media counts for the row, from the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MediaCounts {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub dtmf: String,
}

/// Something that happened to a call.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// `POST /call` was accepted: a new outbound row, `queued`.
    Requested {
        id: CallLogId,
        to: String,
        caller_id: String,
    },
    /// Exotel accepted `Calls/connect`: `initiated`.
    Placed { id: CallLogId, call_sid: String },
    /// No call: Exotel refused, or nothing was sent. `failed` with the reason.
    PlaceFailed { id: CallLogId, error: String },
    /// `/call` could not tell whether Exotel placed the call (504); noted, status kept.
    PlaceUnknown { id: CallLogId, error: String },
    /// The connect webhook answered for the call (a new inbound row, or the outbound one).
    Connected {
        id: CallLogId,
        direction: Direction,
        call_sid: String,
        from: String,
        to: String,
    },
    /// The media stream started: `in-progress`.
    MediaStarted {
        id: CallLogId,
        stream_sid: String,
        call_sid: String,
        from: String,
        to: String,
        recording_path: Option<String>,
    },
    /// The media stream ended: `status` (normally `completed`; none when another socket took
    /// the call over), the reason and the counts.
    MediaEnded {
        id: CallLogId,
        status: Option<Status>,
        reason: String,
        counts: MediaCounts,
    },
    /// The caller pressed the do-not-call key; their number is on the list now.
    DoNotCall { id: CallLogId },
    /// The call's stream ended handing the caller to a person, for this reason.
    Handoff { id: CallLogId, reason: String },
    /// Exotel's Passthru after the stream: how the stream ended, and what we answered.
    StreamEnd(Box<StreamEnd>),
    /// Exotel's status callback, matched by `CustomField`, else `CallSid`.
    ExotelStatus {
        custom_field: Option<String>,
        call_sid: Option<String>,
        status: Option<Status>,
        duration_s: Option<u64>,
        recording_url: Option<String>,
    },
}

impl LogEvent {
    /// The call the event is about, as a log line names it: its callLogId, else Exotel's
    /// CustomField or CallSid.
    fn call(&self) -> String {
        match self {
            LogEvent::Requested { id, .. }
            | LogEvent::Placed { id, .. }
            | LogEvent::PlaceFailed { id, .. }
            | LogEvent::PlaceUnknown { id, .. }
            | LogEvent::Connected { id, .. }
            | LogEvent::MediaStarted { id, .. }
            | LogEvent::MediaEnded { id, .. }
            | LogEvent::DoNotCall { id }
            | LogEvent::Handoff { id, .. } => id.as_str().to_owned(),
            LogEvent::StreamEnd(end) => end
                .custom_field
                .clone()
                .or_else(|| end.call_sid.clone())
                .unwrap_or_default(),
            LogEvent::ExotelStatus {
                custom_field,
                call_sid,
                ..
            } => custom_field
                .clone()
                .or_else(|| call_sid.clone())
                .unwrap_or_default(),
        }
    }
}

/// What Exotel's Passthru said of a stream's end, matched by `CustomField`, else `CallSid`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    pub custom_field: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    /// `Stream[Status]`: `completed`, `failed`, …
    pub status: Option<String>,
    pub duration_s: Option<i64>,
    pub recording_url: Option<String>,
    /// `bot` or `user`.
    pub disconnected_by: Option<String>,
    /// `Stream[DetailedStatus]` or an error field, on failures.
    pub error: Option<String>,
    /// What we answered (200 or 302).
    pub answer: u16,
}

/// One call as `GET /calls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRow {
    pub call_log_id: String,
    pub direction: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub caller_id: Option<String>,
    pub call_sid: Option<String>,
    pub stream_sid: Option<String>,
    pub status: String,
    /// Unix milliseconds, and beside each the same moment in ISO 8601 (UTC, as the logs write
    /// it), for people and for tools that parse dates.
    pub created_at: i64,
    pub created_at_iso: String,
    pub answered_at: Option<i64>,
    pub answered_at_iso: Option<String>,
    pub ended_at: Option<i64>,
    pub ended_at_iso: Option<String>,
    pub duration_s: Option<i64>,
    pub end_reason: Option<String>,
    pub frames_in: i64,
    pub bytes_in: i64,
    pub frames_out: i64,
    pub bytes_out: i64,
    pub dtmf: String,
    pub recording_path: Option<String>,
    pub exotel_recording_url: Option<String>,
    pub last_error: Option<String>,
    /// The caller pressed the do-not-call key during the call.
    pub do_not_call: bool,
    /// Why the caller was handed to a person, when they were.
    pub handoff: Option<String>,
    /// What the Passthru after the stream was answered (200 or 302).
    pub handoff_answer: Option<i64>,
    /// Who ended the stream, by Exotel's Passthru: `bot` or `user`.
    pub disconnected_by: Option<String>,
    /// The stream's status and length by Exotel's Passthru, and its error on failures.
    pub stream_status: Option<String>,
    pub stream_duration_s: Option<i64>,
    pub stream_error: Option<String>,
    /// Status changes in order, with Unix milliseconds (`GET /calls/{id}` only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StatusChange>,
    /// The `before` cursor value for the next page.
    #[serde(skip)]
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: String,
    pub at: i64,
    pub at_iso: String,
}

/// Unix milliseconds as ISO 8601 in UTC: `2026-11-24T17:52:22.123Z`.
pub fn iso_8601(ms: i64) -> String {
    let at = UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let mut out = String::with_capacity(24);
    crate::log::write_utc_timestamp(&mut out, at);
    out
}

/// What `GET /calls` asks for.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: usize,
    /// Only calls older than this cursor.
    pub before: Option<i64>,
    pub status: Option<Status>,
    pub direction: Option<Direction>,
    /// Only calls handed to a person.
    pub handoff: bool,
}

/// An event and when it happened: a write retried after a disk failure keeps its own time.
#[derive(Debug, Clone)]
struct Stamped {
    event: LogEvent,
    at: i64,
}

enum Op {
    Write(Stamped),
    List(
        ListQuery,
        may::sync::mpsc::Sender<Result<Vec<CallRow>, String>>,
    ),
    Get(
        String,
        may::sync::mpsc::Sender<Result<Option<CallRow>, String>>,
    ),
    /// Answers once everything sent before it is written.
    Sync(may::sync::mpsc::Sender<()>),
    /// The process is stopping: one last try to write everything, then one line naming what
    /// could not be written (a full disk), and the answer.
    Close(may::sync::mpsc::Sender<()>),
    /// Deletes ended calls created before this time (ms since the epoch); answers the
    /// recordings they held.
    Prune(i64, mpsc::Sender<Result<Pruned, String>>),
}

/// The handle coroutines use. Cloning shares the writer.
#[derive(Clone)]
pub struct CallLog {
    ops: mpsc::Sender<Op>,
}

/// What opening the log found.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened {
    /// Calls that were live when the process last died, now `interrupted`.
    pub interrupted: usize,
}

/// Now, in Unix milliseconds: the call log's (and the store's) unit of time.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl CallLog {
    /// Opens (or creates) the database, migrates it, marks calls left live by a crash as
    /// `interrupted`, and starts the writer thread.
    pub fn open(path: &Path, metrics: Arc<Metrics>) -> Result<(CallLog, Opened), String> {
        let conn = Connection::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let interrupted = prepare(&conn).map_err(|e| format!("{}: {e}", path.display()))?;
        let (ops, queue) = mpsc::channel::<Op>();
        let writer = Writer::new(conn, path.to_owned(), metrics);
        std::thread::Builder::new()
            .name("call-log".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| e.to_string())?;
        Ok((CallLog { ops }, Opened { interrupted }))
    }

    /// Hands an event to the writer; never waits.
    pub fn record(&self, event: LogEvent) {
        let at = now_ms();
        if self.ops.send(Op::Write(Stamped { event, at })).is_err() {
            crate::error!("calllog.writer_gone", detail = "an event was not written");
        }
    }

    /// Newest first. Waits for the writer (coroutine-safe).
    pub fn list(&self, query: ListQuery) -> Result<Vec<CallRow>, String> {
        let (tx, rx) = may::sync::mpsc::channel();
        self.ops
            .send(Op::List(query, tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    pub fn get(&self, id: &str) -> Result<Option<CallRow>, String> {
        let (tx, rx) = may::sync::mpsc::channel();
        self.ops
            .send(Op::Get(id.to_owned(), tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    /// Deletes the rows (and status history) of calls created before `cutoff` that have
    /// ended; answers how many and the recording files they named, for the caller to delete.
    /// Blocks: call it from a thread.
    pub fn prune(&self, cutoff: SystemTime) -> Result<Pruned, String> {
        let cutoff_ms = cutoff
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let (tx, rx) = mpsc::channel();
        self.ops
            .send(Op::Prune(cutoff_ms, tx))
            .map_err(|_| "the call log is closed")?;
        rx.recv()
            .map_err(|_| "the call log is closed".to_string())?
    }

    /// Waits until every event recorded so far is written.
    pub fn sync(&self) {
        let (tx, rx) = may::sync::mpsc::channel();
        if self.ops.send(Op::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }

    /// At shutdown: tries once more to write every event recorded so far, even while the disk
    /// has been failing, and says in one line how many could not be and which calls they were
    /// (their rows stay as last written; a live one is marked `interrupted` at the next start,
    /// as after a crash).
    pub fn close(&self) {
        let (tx, rx) = may::sync::mpsc::channel();
        if self.ops.send(Op::Close(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// What [`CallLog::prune`] deleted.
#[derive(Debug, Default)]
pub struct Pruned {
    pub calls: usize,
    /// The recording files the deleted rows named, for the caller to delete.
    pub recordings: Vec<String>,
}

/// Deletes ended calls created before `cutoff`, in one transaction.
fn prune(conn: &mut Connection, cutoff: i64) -> rusqlite::Result<Pruned> {
    let tx = conn.transaction()?;
    let ended =
        "created_at < ?1 AND status NOT IN ('queued','initiated','connected','in-progress')";
    let recordings = {
        let mut stmt = tx.prepare(&format!(
            "SELECT recording_path FROM calls WHERE {ended} AND recording_path IS NOT NULL"
        ))?;
        let paths = stmt
            .query_map([cutoff], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        paths
    };
    tx.execute(
        &format!("DELETE FROM call_history WHERE call_log_id IN (SELECT call_log_id FROM calls WHERE {ended})"),
        [cutoff],
    )?;
    let calls = tx.execute(&format!("DELETE FROM calls WHERE {ended}"), [cutoff])?;
    tx.commit()?;
    Ok(Pruned { calls, recordings })
}

/// SQLite's page cache, in KiB. Its default (2 MiB) fills as the call log grows and would be a
/// fifth of the server's memory on a small board; the call log appends and looks up single rows,
/// which the kernel's page cache serves as well.
const PAGE_CACHE_KIB: i64 = 512;

/// The connection's settings: WAL, a bounded page cache, and waiting up to 5 s for a lock.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Schema, migration and crash recovery; returns how many calls were marked interrupted.
fn prepare(conn: &Connection) -> rusqlite::Result<usize> {
    configure(conn)?;
    migrate(conn)?;
    mark_interrupted(conn, now_ms())
}

/// Brings the schema to `SCHEMA_VERSION`, one transaction per version; refuses a newer one.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the database has schema version {version}, newer than this program's {SCHEMA_VERSION}"
        )));
    }
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE calls (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 call_log_id TEXT NOT NULL UNIQUE,
                 direction TEXT NOT NULL,
                 from_number TEXT, to_number TEXT, caller_id TEXT,
                 call_sid TEXT, stream_sid TEXT,
                 status TEXT NOT NULL,
                 created_at INTEGER NOT NULL, answered_at INTEGER, ended_at INTEGER,
                 duration_s INTEGER, end_reason TEXT,
                 frames_in INTEGER NOT NULL DEFAULT 0, bytes_in INTEGER NOT NULL DEFAULT 0,
                 frames_out INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0,
                 dtmf TEXT NOT NULL DEFAULT '',
                 recording_path TEXT, exotel_recording_url TEXT, last_error TEXT
             );
             CREATE INDEX calls_call_sid ON calls(call_sid);
             CREATE INDEX calls_status ON calls(status, seq);
             CREATE TABLE call_history (
                 call_log_id TEXT NOT NULL, status TEXT NOT NULL, at INTEGER NOT NULL
             );
             CREATE INDEX call_history_call ON call_history(call_log_id);
             PRAGMA user_version = 1;
             COMMIT;",
        )?;
    }
    if version < 2 {
        // 2: whether the caller asked not to be called again (the campaigns' key).
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE calls ADD COLUMN do_not_call INTEGER NOT NULL DEFAULT 0;
             PRAGMA user_version = 2;
             COMMIT;",
        )?;
    }
    if version < 3 {
        // 3: how the stream ended (Exotel's Passthru after the Voicebot applet) and the
        // handoff to a person.
        conn.execute_batch(
            "BEGIN;
             ALTER TABLE calls ADD COLUMN handoff TEXT;
             ALTER TABLE calls ADD COLUMN handoff_answer INTEGER;
             ALTER TABLE calls ADD COLUMN disconnected_by TEXT;
             ALTER TABLE calls ADD COLUMN stream_status TEXT;
             ALTER TABLE calls ADD COLUMN stream_duration_s INTEGER;
             ALTER TABLE calls ADD COLUMN stream_error TEXT;
             CREATE INDEX IF NOT EXISTS calls_handoff ON calls(seq) WHERE handoff IS NOT NULL;
             PRAGMA user_version = 3;
             COMMIT;",
        )?;
    }
    Ok(())
}

/// Calls left live by a process that stopped without closing them (a crash, a `kill -9`) are
/// `interrupted` as of `now`, with that status in their history, in one transaction; answers
/// how many.
fn mark_interrupted(conn: &Connection, now: i64) -> rusqlite::Result<usize> {
    const LIVE: &str = "status IN ('queued','initiated','connected','in-progress')";
    conn.execute_batch("BEGIN")?;
    let marked = (|| {
        conn.execute(
            &format!(
                "INSERT INTO call_history (call_log_id, status, at)
                 SELECT call_log_id, 'interrupted', ?1 FROM calls WHERE {LIVE}"
            ),
            [now],
        )?;
        conn.execute(
            &format!(
                "UPDATE calls SET status = 'interrupted', ended_at = ?1,
                     end_reason = COALESCE(end_reason, 'process-stopped') WHERE {LIVE}"
            ),
            [now],
        )
    })();
    match marked {
        Ok(n) => conn.execute_batch("COMMIT").map(|()| n),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Events written in one transaction at most.
const WRITE_BATCH: usize = 256;
/// After an event arrives the writer waits this long for more to join its transaction (group
/// commit): with calls starting and ending a few hundred a second, one transaction per event
/// made this thread a quarter of the server's CPU (perf, 1,000 calls ramped over 5 s), most of
/// it writing the same WAL pages again and being woken per event. A read (`GET /calls`) still
/// sees every write queued before it; a crash loses at most these milliseconds more.
const COMMIT_LINGER: std::time::Duration = std::time::Duration::from_millis(10);
/// Events kept for a retry while the disk fails; past it the oldest are dropped (and counted in
/// the log). About 200 bytes an event: 20 MB at most.
pub const MAX_PENDING_WRITES: usize = 100_000;
/// How often kept events are tried again while the disk fails.
const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the writer looks whether `calls.db` is still where it was opened.
const FILE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// A failing disk is logged at most this often (with the count of events waiting).
const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs one statement through the connection's statement cache. Parsing SQL again for every
/// event was a third of this thread's time under a call-heavy load (perf: `sqlite3RunParser`).
fn exec<P: rusqlite::Params>(conn: &Connection, sql: &str, params: P) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql)?.execute(params)
}

/// Whether an error is the disk's (full, failing, gone, locked) rather than the event's: the
/// disk's are retried, an event's own is logged and skipped.
fn is_disk_error(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            DiskFull
                | SystemIoFailure
                | CannotOpen
                | ReadOnly
                | DatabaseBusy
                | DatabaseLocked
                | FileLockingProtocolFailed
                | OutOfMemory
        )
    )
}

/// The file's identity, to notice it replaced or deleted under us.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The thread that owns the connection. Events wait in `pending`, in order, until a transaction
/// that holds them commits: a disk that fails costs time, never a row.
struct Writer {
    conn: Connection,
    path: PathBuf,
    identity: Option<(u64, u64)>,
    pending: VecDeque<Stamped>,
    metrics: Arc<Metrics>,
    /// Set while writes fail: when to try again, and when the failure was last logged.
    retry_at: Option<Instant>,
    last_failure_log: Option<Instant>,
    dropped: u64,
    next_file_check: Instant,
}

impl Writer {
    fn new(conn: Connection, path: PathBuf, metrics: Arc<Metrics>) -> Writer {
        let identity = file_identity(&path);
        Writer {
            conn,
            path,
            identity,
            pending: VecDeque::new(),
            metrics,
            retry_at: None,
            last_failure_log: None,
            dropped: 0,
            next_file_check: Instant::now() + FILE_CHECK_EVERY,
        }
    }

    fn run(mut self, queue: mpsc::Receiver<Op>) {
        loop {
            let now = Instant::now();
            let wake = self
                .retry_at
                .map_or(self.next_file_check, |r| r.min(self.next_file_check));
            let op = match queue.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(op) => Some(op),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.flush();
                    return;
                }
            };
            let answer_after = match op {
                Some(Op::Write(event)) => {
                    self.keep(event);
                    std::thread::sleep(COMMIT_LINGER);
                    let next = self.take_queued_writes(&queue);
                    if self.retry_at.is_none() {
                        self.flush();
                    }
                    next
                }
                other => other,
            };
            if let Some(op) = answer_after {
                self.answer(op);
            }
            if self.retry_at.is_some_and(|r| Instant::now() >= r) {
                self.flush();
            }
            if Instant::now() >= self.next_file_check {
                self.check_file();
            }
        }
    }

    /// Moves the writes already queued into `pending` (up to a batch); returns the first
    /// other operation met, to answer once they are written.
    fn take_queued_writes(&mut self, queue: &mpsc::Receiver<Op>) -> Option<Op> {
        for _ in 1..WRITE_BATCH {
            match queue.try_recv() {
                Ok(Op::Write(event)) => self.keep(event),
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    }

    fn keep(&mut self, event: Stamped) {
        if self.pending.len() >= MAX_PENDING_WRITES {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(event);
    }

    fn answer(&mut self, op: Op) {
        match op {
            Op::Write(event) => self.keep(event),
            Op::List(query, reply) => {
                let _ = reply.send(list(&self.conn, &query).map_err(|e| e.to_string()));
            }
            Op::Get(id, reply) => {
                let _ = reply.send(get(&self.conn, &id).map_err(|e| e.to_string()));
            }
            Op::Prune(cutoff, reply) => {
                let _ = reply.send(prune(&mut self.conn, cutoff).map_err(|e| e.to_string()));
            }
            // Answered at once even while writes fail: a shutdown must not wait for a disk.
            Op::Sync(reply) => {
                if self.retry_at.is_none() {
                    self.flush();
                }
                let _ = reply.send(());
            }
            Op::Close(reply) => {
                self.flush();
                self.report_unwritten();
                let _ = reply.send(());
            }
        }
    }

    /// One line for the events that will never be written (the process is stopping with the
    /// disk still failing): how many, and the calls they were about.
    fn report_unwritten(&mut self) {
        if self.pending.is_empty() && self.dropped == 0 {
            return;
        }
        let mut calls: Vec<String> = self.pending.iter().map(|s| s.event.call()).collect();
        calls.sort_unstable();
        calls.dedup();
        crate::error!(
            "calllog.unwritten_at_shutdown",
            events = self.pending.len() as u64 + self.dropped,
            calls = calls.join(","),
            detail = "the disk refused these writes until the end; the rows stay as last written, and live ones are marked interrupted at the next start"
        );
        self.pending.clear();
    }

    /// Writes everything pending, a batch per transaction, oldest first. On a disk error the
    /// batch is rolled back and kept, and the next try is set; an event's own error (a bug, not
    /// the disk) is logged and skipped.
    fn flush(&mut self) {
        while !self.pending.is_empty() {
            let n = self.pending.len().min(WRITE_BATCH);
            match self.commit(n) {
                Ok(()) => {
                    self.pending.drain(..n);
                }
                Err(e) => {
                    self.failed(&e);
                    return;
                }
            }
        }
        if self.retry_at.take().is_some() {
            self.last_failure_log = None;
            crate::info!(
                "calllog.recovered",
                detail = "the call log is written again; every kept event is in",
                droppedEvents = self.dropped
            );
        }
        self.metrics.call_log_pending.store(0, Ordering::Relaxed);
    }

    /// One transaction of the first `n` pending events; final statuses reach the metrics only
    /// once it has committed.
    fn commit(&mut self, n: usize) -> rusqlite::Result<()> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN")?;
        let mut ended = Vec::new();
        for stamped in self.pending.iter().take(n) {
            match apply(conn, &stamped.event, stamped.at, &mut ended) {
                Ok(()) => {}
                Err(e) if is_disk_error(&e) => {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e);
                }
                Err(e) => crate::error!(
                    "calllog.write_failed",
                    error = e,
                    event = format!("{:?}", stamped.event)
                ),
            }
        }
        if let Err(e) = conn.execute_batch("COMMIT") {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        for status in ended {
            self.metrics.call_ended(status);
        }
        Ok(())
    }

    fn failed(&mut self, e: &rusqlite::Error) {
        let now = Instant::now();
        self.retry_at = Some(now + RETRY_EVERY);
        self.metrics
            .call_log_failures
            .fetch_add(1, Ordering::Relaxed);
        self.metrics
            .call_log_pending
            .store(self.pending.len() as u64, Ordering::Relaxed);
        let due = self
            .last_failure_log
            .is_none_or(|t| now.duration_since(t) >= FAILURE_LOG_EVERY);
        if due {
            self.last_failure_log = Some(now);
            crate::error!(
                "calllog.write_failed",
                error = e,
                pendingEvents = self.pending.len(),
                droppedEvents = self.dropped,
                detail = "kept in memory and retried every second until the disk takes them"
            );
        }
    }

    /// Notices `calls.db` (or `DATA_DIR` with it) deleted or replaced while running, says so
    /// loudly, and writes the open database back where it belongs: SQLite still holds the
    /// deleted file, so nothing is lost unless the process dies first.
    fn check_file(&mut self) {
        self.next_file_check = Instant::now() + FILE_CHECK_EVERY;
        let now_identity = file_identity(&self.path);
        if now_identity.is_some() && now_identity == self.identity {
            return;
        }
        self.metrics.data_dir_missing.store(1, Ordering::Relaxed);
        crate::error!(
            "calllog.file_missing",
            path = self.path.display(),
            detail = "calls.db was deleted or replaced while the server ran; writing it back"
        );
        match self.restore() {
            Ok(()) => {
                self.metrics.data_dir_missing.store(0, Ordering::Relaxed);
                crate::warn!("calllog.restored", path = self.path.display());
            }
            Err(e) => crate::error!(
                "calllog.restore_failed",
                path = self.path.display(),
                error = e,
                detail = "history since the last start lives only in this process until it can be written"
            ),
        }
    }

    fn restore(&mut self) -> Result<(), String> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if self.path.exists() {
            // Someone else's file is there now: keep ours where it is and leave theirs alone.
            return Err("another file now stands at this path".into());
        }
        let target = self.path.to_string_lossy().into_owned();
        self.conn
            .execute("VACUUM INTO ?1", [&target])
            .map_err(|e| e.to_string())?;
        let conn = Connection::open(&self.path).map_err(|e| e.to_string())?;
        configure(&conn).map_err(|e| e.to_string())?;
        self.conn = conn;
        self.identity = file_identity(&self.path);
        Ok(())
    }
}

fn current_status(conn: &Connection, id: &str) -> rusqlite::Result<Option<Status>> {
    conn.prepare_cached("SELECT status FROM calls WHERE call_log_id = ?1")?
        .query_row([id], |r| r.get::<_, String>(0))
        .optional()
        .map(|s| s.and_then(|s| Status::parse(&s)))
}

/// One event's writes, inside the batch's transaction: the connection, when the event
/// happened (ms since the epoch), and the final statuses reached, counted in the metrics once
/// the transaction commits.
struct EventWrite<'a> {
    conn: &'a Connection,
    now: i64,
    ended: &'a mut Vec<Status>,
}

/// Writes one event, as of `now`.
fn apply(
    conn: &Connection,
    event: &LogEvent,
    now: i64,
    ended: &mut Vec<Status>,
) -> rusqlite::Result<()> {
    let mut w = EventWrite { conn, now, ended };
    match event {
        LogEvent::Requested { id, to, caller_id } => w.requested(id.as_str(), to, caller_id),
        LogEvent::Placed { id, call_sid } => w.placed(id.as_str(), call_sid),
        LogEvent::PlaceFailed { id, error } => w.place_failed(id.as_str(), error),
        LogEvent::PlaceUnknown { id, error } => w.set(
            "UPDATE calls SET last_error = ?2 WHERE call_log_id = ?1",
            params![id.as_str(), error],
        ),
        LogEvent::Connected {
            id,
            direction,
            call_sid,
            from,
            to,
        } => w.connected(id.as_str(), *direction, call_sid, from, to),
        LogEvent::MediaStarted {
            id,
            stream_sid,
            call_sid,
            from,
            to,
            recording_path,
        } => {
            w.media_started(id.as_str(), stream_sid, call_sid, from, to)?;
            match recording_path {
                Some(path) => w.set(
                    "UPDATE calls SET recording_path = ?2 WHERE call_log_id = ?1",
                    params![id.as_str(), path],
                ),
                None => Ok(()),
            }
        }
        LogEvent::MediaEnded {
            id,
            status,
            reason,
            counts,
        } => w.media_ended(id.as_str(), *status, reason, counts),
        LogEvent::Handoff { id, reason } => w.set(
            "UPDATE calls SET handoff = ?2 WHERE call_log_id = ?1",
            params![id.as_str(), reason],
        ),
        LogEvent::StreamEnd(end) => stream_end(conn, end),
        LogEvent::DoNotCall { id } => w.set(
            "UPDATE calls SET do_not_call = 1 WHERE call_log_id = ?1",
            [id.as_str()],
        ),
        LogEvent::ExotelStatus {
            custom_field,
            call_sid,
            status,
            duration_s,
            recording_url,
        } => {
            let Some(id) = status_row(conn, custom_field.as_deref(), call_sid.as_deref())? else {
                return Ok(());
            };
            w.exotel_status(
                &id,
                call_sid.as_deref(),
                *status,
                *duration_s,
                recording_url,
            )
        }
    }
}

impl EventWrite<'_> {
    /// One statement on the call's row.
    fn set<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<()> {
        exec(self.conn, sql, params).map(drop)
    }

    /// Moves the call to `status` if that is forward; returns whether it moved. A call
    /// reaching a final status is noted in `ended`.
    fn advance(&mut self, id: &str, status: Status) -> rusqlite::Result<bool> {
        let Some(current) = current_status(self.conn, id)? else {
            return Ok(false);
        };
        if !status.is_after(current) {
            return Ok(false);
        }
        self.set(
            "UPDATE calls SET status = ?2 WHERE call_log_id = ?1",
            params![id, status.as_str()],
        )?;
        self.set(
            "INSERT INTO call_history (call_log_id, status, at) VALUES (?1, ?2, ?3)",
            params![id, status.as_str(), self.now],
        )?;
        if status.is_final() {
            self.ended.push(status);
        }
        Ok(true)
    }

    /// A new row in `status` with its history, unless the call has one already.
    fn insert(&self, id: &str, direction: Direction, status: Status) -> rusqlite::Result<()> {
        let inserted = exec(
            self.conn,
            "INSERT OR IGNORE INTO calls (call_log_id, direction, status, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![id, direction.as_str(), status.as_str(), self.now],
        )?;
        if inserted == 1 {
            self.set(
                "INSERT INTO call_history (call_log_id, status, at) VALUES (?1, ?2, ?3)",
                params![id, status.as_str(), self.now],
            )?;
        }
        Ok(())
    }

    /// `POST /call` accepted it: a new outbound row, `queued`.
    fn requested(&self, id: &str, to: &str, caller_id: &str) -> rusqlite::Result<()> {
        self.insert(id, Direction::Outbound, Status::Queued)?;
        self.set(
            "UPDATE calls SET to_number = ?2, caller_id = ?3 WHERE call_log_id = ?1",
            params![id, to, caller_id],
        )
    }

    fn placed(&mut self, id: &str, call_sid: &str) -> rusqlite::Result<()> {
        self.set(
            "UPDATE calls SET call_sid = ?2 WHERE call_log_id = ?1",
            params![id, call_sid],
        )?;
        self.advance(id, Status::Initiated).map(drop)
    }

    fn place_failed(&mut self, id: &str, error: &str) -> rusqlite::Result<()> {
        self.set(
            "UPDATE calls SET last_error = ?2, ended_at = COALESCE(ended_at, ?3) WHERE call_log_id = ?1",
            params![id, error, self.now],
        )?;
        self.advance(id, Status::Failed).map(drop)
    }

    fn connected(
        &mut self,
        id: &str,
        direction: Direction,
        call_sid: &str,
        from: &str,
        to: &str,
    ) -> rusqlite::Result<()> {
        self.insert(id, direction, Status::Connected)?;
        self.set(
            "UPDATE calls SET call_sid = COALESCE(call_sid, ?2),
                 from_number = COALESCE(from_number, NULLIF(?3, '')),
                 to_number = COALESCE(to_number, NULLIF(?4, '')) WHERE call_log_id = ?1",
            params![id, call_sid, from, to],
        )?;
        self.advance(id, Status::Connected).map(drop)
    }

    fn media_started(
        &mut self,
        id: &str,
        stream_sid: &str,
        call_sid: &str,
        from: &str,
        to: &str,
    ) -> rusqlite::Result<()> {
        // A static MEDIA_SECRET URL has no webhook before it: the row may start here.
        self.insert(id, Direction::Inbound, Status::InProgress)?;
        self.set(
            "UPDATE calls SET stream_sid = ?2, call_sid = COALESCE(call_sid, NULLIF(?3, '')),
                 from_number = COALESCE(from_number, NULLIF(?4, '')),
                 to_number = COALESCE(to_number, NULLIF(?5, '')),
                 answered_at = COALESCE(answered_at, ?6) WHERE call_log_id = ?1",
            params![id, stream_sid, call_sid, from, to, self.now],
        )?;
        self.advance(id, Status::InProgress).map(drop)
    }

    /// The stream's counts are added; a status (none when another socket took the call over)
    /// ends the call with its reason.
    fn media_ended(
        &mut self,
        id: &str,
        status: Option<Status>,
        reason: &str,
        counts: &MediaCounts,
    ) -> rusqlite::Result<()> {
        self.set(
            "UPDATE calls SET frames_in = frames_in + ?2, bytes_in = bytes_in + ?3,
                 frames_out = frames_out + ?4, bytes_out = bytes_out + ?5,
                 dtmf = dtmf || ?6 WHERE call_log_id = ?1",
            params![
                id,
                counts.frames_in as i64,
                counts.bytes_in as i64,
                counts.frames_out as i64,
                counts.bytes_out as i64,
                counts.dtmf
            ],
        )?;
        let Some(status) = status else {
            return Ok(());
        };
        self.set(
            "UPDATE calls SET ended_at = COALESCE(ended_at, ?2), end_reason = ?3,
                 duration_s = COALESCE(duration_s, (?2 - answered_at) / 1000)
             WHERE call_log_id = ?1",
            params![id, self.now, reason],
        )?;
        self.advance(id, status).map(drop)
    }

    /// Exotel's status callback on the call's row (`status_row` found it).
    fn exotel_status(
        &mut self,
        id: &str,
        call_sid: Option<&str>,
        status: Option<Status>,
        duration_s: Option<u64>,
        recording_url: &Option<String>,
    ) -> rusqlite::Result<()> {
        // Exotel's billing duration is authoritative over ours.
        self.set(
            "UPDATE calls SET duration_s = COALESCE(?2, duration_s),
                 exotel_recording_url = COALESCE(exotel_recording_url, ?3),
                 call_sid = COALESCE(call_sid, ?4) WHERE call_log_id = ?1",
            params![id, duration_s.map(|d| d as i64), recording_url, call_sid],
        )?;
        if let Some(status) = status {
            if self.advance(id, status)? && status.is_final() {
                self.set(
                    "UPDATE calls SET ended_at = COALESCE(ended_at, ?2) WHERE call_log_id = ?1",
                    params![id, self.now],
                )?;
            }
        }
        Ok(())
    }
}

/// The row a status callback is about: the one its CustomField names, else the one with its
/// CallSid. `None` (logged) when no row matches, or when the named row has another CallSid: a
/// callback naming another CallSid than the call's is not about this call.
fn status_row(
    conn: &Connection,
    custom_field: Option<&str>,
    call_sid: Option<&str>,
) -> rusqlite::Result<Option<String>> {
    let by_field: Option<(String, Option<String>)> = match custom_field {
        Some(f) => conn
            .query_row(
                "SELECT call_log_id, call_sid FROM calls WHERE call_log_id = ?1",
                [f],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        None => None,
    };
    if let (Some((id, Some(row_sid))), Some(given)) = (&by_field, call_sid) {
        if !row_sid.is_empty() && row_sid != given {
            crate::warn!(
                "calllog.status_call_sid_mismatch",
                callLogId = id,
                callSid = given,
                rowCallSid = row_sid
            );
            return Ok(None);
        }
    }
    let id = row_by(conn, by_field.map(|(id, _)| id), call_sid)?;
    if id.is_none() {
        crate::warn!(
            "calllog.unmatched_status",
            customField = custom_field.unwrap_or(""),
            callSid = call_sid.unwrap_or("")
        );
    }
    Ok(id)
}

/// The row of an Exotel request: the one its CustomField named (`by_id`, already looked up),
/// else the one with its CallSid.
fn row_by(
    conn: &Connection,
    by_id: Option<String>,
    call_sid: Option<&str>,
) -> rusqlite::Result<Option<String>> {
    match (by_id, call_sid) {
        (Some(id), _) => Ok(Some(id)),
        (None, Some(sid)) => conn
            .query_row(
                "SELECT call_log_id FROM calls WHERE call_sid = ?1",
                [sid],
                |r| r.get(0),
            )
            .optional(),
        (None, None) => Ok(None),
    }
}

/// Exotel's word on how a stream ended, on the call's row (found by callLogId, else CallSid).
fn stream_end(conn: &Connection, end: &StreamEnd) -> rusqlite::Result<()> {
    let named: Option<(String, Option<String>)> = match &end.custom_field {
        Some(f) => conn
            .query_row(
                "SELECT call_log_id, call_sid FROM calls WHERE call_log_id = ?1",
                [f],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?,
        None => None,
    };
    // A row that knows its CallSid is written only by a request with that CallSid.
    if let Some((id, Some(row_sid))) = &named {
        if end.call_sid.as_deref() != Some(row_sid.as_str()) {
            crate::warn!(
                "calllog.passthru_call_sid_mismatch",
                callLogId = id,
                callSid = end.call_sid.as_deref().unwrap_or(""),
                detail = "the CallSid is not this call's: nothing recorded"
            );
            return Ok(());
        }
    }
    let id = row_by(conn, named.map(|(id, _)| id), end.call_sid.as_deref())?;
    let Some(id) = id else {
        crate::warn!(
            "calllog.unmatched_passthru",
            customField = end.custom_field.as_deref().unwrap_or(""),
            callSid = end.call_sid.as_deref().unwrap_or("")
        );
        return Ok(());
    };
    conn.execute(
        "UPDATE calls SET stream_sid = COALESCE(stream_sid, ?2), stream_status = ?3,
             stream_duration_s = ?4, exotel_recording_url = COALESCE(exotel_recording_url, ?5),
             disconnected_by = ?6, stream_error = ?7, handoff_answer = ?8
         WHERE call_log_id = ?1",
        params![
            id,
            end.stream_sid,
            end.status,
            end.duration_s,
            end.recording_url,
            end.disconnected_by,
            end.error,
            end.answer
        ],
    )?;
    Ok(())
}

const COLUMNS: &str =
    "seq, call_log_id, direction, from_number, to_number, caller_id, call_sid, stream_sid,
    status, created_at, answered_at, ended_at, duration_s, end_reason, frames_in, bytes_in,
    frames_out, bytes_out, dtmf, recording_path, exotel_recording_url, last_error, do_not_call,
    handoff, handoff_answer, disconnected_by, stream_status, stream_duration_s, stream_error";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CallRow> {
    let created_at: i64 = r.get(9)?;
    let answered_at: Option<i64> = r.get(10)?;
    let ended_at: Option<i64> = r.get(11)?;
    Ok(CallRow {
        seq: r.get(0)?,
        call_log_id: r.get(1)?,
        direction: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        caller_id: r.get(5)?,
        call_sid: r.get(6)?,
        stream_sid: r.get(7)?,
        status: r.get(8)?,
        created_at,
        created_at_iso: iso_8601(created_at),
        answered_at,
        answered_at_iso: answered_at.map(iso_8601),
        ended_at,
        ended_at_iso: ended_at.map(iso_8601),
        duration_s: r.get(12)?,
        end_reason: r.get(13)?,
        frames_in: r.get(14)?,
        bytes_in: r.get(15)?,
        frames_out: r.get(16)?,
        bytes_out: r.get(17)?,
        dtmf: r.get(18)?,
        recording_path: r.get(19)?,
        exotel_recording_url: r.get(20)?,
        last_error: r.get(21)?,
        do_not_call: r.get::<_, i64>(22)? != 0,
        handoff: r.get(23)?,
        handoff_answer: r.get(24)?,
        disconnected_by: r.get(25)?,
        stream_status: r.get(26)?,
        stream_duration_s: r.get(27)?,
        stream_error: r.get(28)?,
        history: Vec::new(),
    })
}

fn list(conn: &Connection, q: &ListQuery) -> rusqlite::Result<Vec<CallRow>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM calls
         WHERE (?1 IS NULL OR seq < ?1) AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR direction = ?3)
             AND (?5 = 0 OR handoff IS NOT NULL)
         ORDER BY seq DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt
        .query_map(
            params![
                q.before,
                q.status.map(Status::as_str),
                q.direction.map(Direction::as_str),
                q.limit as i64,
                q.handoff
            ],
            row,
        )?
        .collect();
    rows
}

fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<CallRow>> {
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE call_log_id = ?1");
    let Some(mut call) = conn.query_row(&sql, [id], row).optional()? else {
        return Ok(None);
    };
    let mut stmt = conn.prepare_cached(
        "SELECT status, at FROM call_history WHERE call_log_id = ?1 ORDER BY rowid",
    )?;
    call.history = stmt
        .query_map([id], |r| {
            let at: i64 = r.get(1)?;
            Ok(StatusChange {
                status: r.get(0)?,
                at,
                at_iso: iso_8601(at),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(Some(call))
}

#[cfg(test)]
mod tests;
