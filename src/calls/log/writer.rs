//! The thread that owns the call log's connection: events kept in order until a transaction
//! holding them commits, retried while the disk (or the database server) fails, reported at shutdown if never written;
//! reads answered in between.

use super::*;
use std::path::Path;

/// Events written in one transaction at most.
pub(super) const WRITE_BATCH: usize = 256;
/// After an event arrives the writer waits this long for more to join its transaction (group
/// commit): with calls starting and ending a few hundred a second, one transaction per event
/// made this thread a quarter of the server's CPU (perf, 1,000 calls ramped over 5 s), most of
/// it writing the same WAL pages again and being woken per event. A read (`GET /calls`) still
/// sees every write queued before it; a crash loses at most these milliseconds more.
pub(super) const COMMIT_LINGER: std::time::Duration = std::time::Duration::from_millis(10);
/// Events kept for a retry while the disk fails; past it the oldest are dropped (and counted in
/// the log). About 200 bytes an event: 20 MB at most.
pub const MAX_PENDING_WRITES: usize = 100_000;
/// How often kept events are tried again while the disk fails.
pub(super) const RETRY_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How often the writer looks whether `calls.db` is still where it was opened.
pub(super) const FILE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// A failing disk is logged at most this often (with the count of events waiting).
pub(super) const FAILURE_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The file's identity, to notice it replaced or deleted under us.
pub(super) fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The thread that owns the connection. Events wait in `pending`, in order, until a transaction
/// that holds them commits: a disk (or a database server) that fails costs time, never a row.
pub(super) struct Writer {
    conn: Box<dyn Db + Send>,
    location: Location,
    /// A SQLite file's identity when opened, to notice it deleted or replaced.
    identity: Option<(u64, u64)>,
    pub(super) pending: VecDeque<Stamped>,
    metrics: Arc<Metrics>,
    /// Set while writes fail: when to try again, and when the failure was last logged.
    retry_at: Option<Instant>,
    last_failure_log: Option<Instant>,
    pub(super) dropped: u64,
    next_file_check: Instant,
    /// Calls' changes make events for the user's backend (`EVENTS_URL` is set).
    pub(super) outbox: bool,
}

impl Writer {
    pub(super) fn new(
        conn: Box<dyn Db + Send>,
        location: Location,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let identity = location.sqlite_path().and_then(file_identity);
        Writer {
            conn,
            location,
            identity,
            pending: VecDeque::new(),
            metrics,
            retry_at: None,
            last_failure_log: None,
            dropped: 0,
            next_file_check: Instant::now() + FILE_CHECK_EVERY,
            outbox: false,
        }
    }

    pub(super) fn run(mut self, queue: mpsc::Receiver<Op>) {
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
    pub(super) fn take_queued_writes(&mut self, queue: &mpsc::Receiver<Op>) -> Option<Op> {
        for _ in 1..WRITE_BATCH {
            match queue.try_recv() {
                Ok(Op::Write(event)) => self.keep(event),
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    }

    pub(super) fn keep(&mut self, event: Stamped) {
        if self.pending.len() >= MAX_PENDING_WRITES {
            self.pending.pop_front();
            self.dropped += 1;
        }
        self.pending.push_back(event);
    }

    pub(super) fn answer(&mut self, op: Op) {
        match op {
            Op::Write(event) => self.keep(event),
            Op::List(query, reply) => {
                let _ = reply.send(list(self.conn.as_ref(), &query).map_err(|e| e.to_string()));
            }
            Op::Get(id, reply) => {
                let _ = reply.send(get(self.conn.as_ref(), &id).map_err(|e| e.to_string()));
            }
            Op::Outbox(work) => work(self.conn.as_ref()),
            Op::Transcript(id, reply) => {
                let _ = reply.send(transcript(self.conn.as_ref(), &id).map_err(|e| e.to_string()));
            }
            Op::Orphans(cutoff, limit, reply) => {
                self.flush();
                let found = find_orphans(self.conn.as_ref(), now_ms(), cutoff, limit);
                let _ = reply.send(found.map_err(|e| e.to_string()));
            }
            Op::Prune(cutoff, reply) => {
                let _ = reply.send(prune(self.conn.as_ref(), cutoff).map_err(|e| e.to_string()));
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
    pub(super) fn report_unwritten(&mut self) {
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
    pub(super) fn flush(&mut self) {
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
    pub(super) fn commit(&mut self, n: usize) -> sql::Result<()> {
        let conn = self.conn.as_ref();
        conn.batch("BEGIN")?;
        let mut ended = Vec::new();
        for stamped in self.pending.iter().take(n) {
            match apply(conn, &stamped.event, stamped.at, &mut ended, self.outbox) {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    let _ = conn.batch("ROLLBACK");
                    return Err(e);
                }
                Err(e) => crate::error!(
                    "calllog.write_failed",
                    error = e,
                    event = format!("{:?}", stamped.event)
                ),
            }
        }
        if let Err(e) = conn.batch("COMMIT") {
            let _ = conn.batch("ROLLBACK");
            return Err(e);
        }
        for status in ended {
            self.metrics.call_ended(status);
        }
        Ok(())
    }

    pub(super) fn failed(&mut self, e: &sql::Error) {
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
    pub(super) fn check_file(&mut self) {
        self.next_file_check = Instant::now() + FILE_CHECK_EVERY;
        let Some(path) = self.location.sqlite_path() else {
            return;
        };
        let now_identity = file_identity(path);
        if now_identity.is_some() && now_identity == self.identity {
            return;
        }
        self.metrics.data_dir_missing.store(1, Ordering::Relaxed);
        crate::error!(
            "calllog.file_missing",
            path = path.display(),
            detail = "calls.db was deleted or replaced while the server ran; writing it back"
        );
        let path = path.to_owned();
        match self.restore(&path) {
            Ok(()) => {
                self.metrics.data_dir_missing.store(0, Ordering::Relaxed);
                crate::warn!("calllog.restored", path = path.display());
            }
            Err(e) => crate::error!(
                "calllog.restore_failed",
                path = path.display(),
                error = e,
                detail = "history since the last start lives only in this process until it can be written"
            ),
        }
    }

    pub(super) fn restore(&mut self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        if path.exists() {
            // Someone else's file is there now: keep ours where it is and leave theirs alone.
            return Err("another file now stands at this path".into());
        }
        let target = path.to_string_lossy().into_owned();
        self.conn
            .execute("VACUUM INTO ?1", params![target])
            .map_err(|e| e.to_string())?;
        self.conn = self
            .location
            .connect(schema::Owner::CallLog)
            .map_err(|e| e.to_string())?;
        self.identity = file_identity(path);
        Ok(())
    }
}
