//! State shared by every instance on one PostgreSQL (`DATABASE_URL`), on a thread of this
//! instance's with its own connection (the database blocks in the kernel; coroutines hand it
//! work and wait on a `may` channel, and what need not be waited for is never waited for):
//!
//! - [`leases`]: each live call's slot is also a lease, so that `MAX_CONCURRENT_CALLS` and
//!   each phone's `maxConcurrent` count every instance's calls;
//! - [`grants`]: each media token and call plan is also a row, so that the media WebSocket of
//!   a call whose webhook another instance answered is accepted here;
//! - the instance's heartbeat (a row of `instances`), renewed with its leases six times in
//!   each lease's span (`INSTANCE_LEASE_S`).
//!
//! On SQLite there is one instance and none of this runs.

use crate::store::schema::Owner;
use crate::store::sql::{self, params, Db};
use crate::store::Location;
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub mod grants;
pub mod leases;

pub use leases::LeaseRefused;

/// The channel on which a call's end is announced (its callLogId), when the transaction that
/// wrote it commits (`calls::log`'s writer).
pub const CALL_ENDED: &str = "evb_call_ended";
/// How often the listener also looks for calls that ended meanwhile, in case a notification
/// was lost (a reconnect).
pub const POLL_EVERY: Duration = Duration::from_secs(5);

/// One piece of work for the thread, on its connection and with this instance's name.
type Job = Box<dyn FnOnce(&dyn Db, &str) + Send>;

/// The handle; cloning shares the thread.
#[derive(Clone)]
pub struct Shared {
    jobs: mpsc::Sender<Job>,
    /// This instance's name in `slot_leases.holder`, `media_grants.taken_by` and
    /// `instances.id`.
    pub holder: String,
    /// How long a lease outlives its last renewal (`INSTANCE_LEASE_S`).
    pub lease: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("holder", &self.holder)
            .finish()
    }
}

impl Shared {
    /// Connects for this instance (named `holder`, its leases lasting `lease` past each
    /// renewal) and starts its thread.
    pub fn start(at: &Location, holder: String, lease: Duration) -> Result<Shared, String> {
        let conn = at.connect(Owner::Store).map_err(|e| format!("{at}: {e}"))?;
        let (jobs, queue) = mpsc::channel();
        let owner = holder.clone();
        std::thread::Builder::new()
            .name("shared".into())
            .spawn(move || run(conn.as_ref(), &owner, lease, &queue))
            .map_err(|e| e.to_string())?;
        Ok(Shared {
            jobs,
            holder,
            lease,
        })
    }

    /// Runs `work` on the thread and waits for its answer (a coroutine parks; a plain thread
    /// blocks).
    pub fn ask<T: Send + 'static>(
        &self,
        work: impl FnOnce(&dyn Db, &str) -> sql::Result<T> + Send + 'static,
    ) -> Result<T, String> {
        let (reply, answer) = may::sync::mpsc::channel();
        let job: Job = Box::new(move |conn, holder| {
            let _ = reply.send(work(conn, holder).map_err(|e| e.to_string()));
        });
        let gone = || "the shared state's thread is gone".to_string();
        self.jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    /// Runs `work` on the thread without waiting; a failure is logged as `what`.
    pub fn tell(
        &self,
        what: &'static str,
        work: impl FnOnce(&dyn Db, &str) -> sql::Result<()> + Send + 'static,
    ) {
        let job: Job = Box::new(move |conn, holder| {
            if let Err(e) = work(conn, holder) {
                crate::warn!("shared.write_failed", what = what, error = e);
            }
        });
        let _ = self.jobs.send(job);
    }
}

/// The thread: work as it comes, renewals between.
fn run(conn: &dyn Db, holder: &str, lease: Duration, queue: &mpsc::Receiver<Job>) {
    let mut next_renewal = Instant::now();
    loop {
        let now = Instant::now();
        if now >= next_renewal {
            if let Err(e) = renew(conn, holder, lease) {
                crate::warn!("shared.renew_failed", error = e);
            }
            next_renewal = now + lease / 6;
        }
        match queue.recv_timeout(next_renewal.saturating_duration_since(Instant::now())) {
            Ok(job) => job(conn, holder),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Starts the thread that hears of calls ended by another instance (a status callback, a
/// Passthru or Exotel's call details taken up there) and gives back their slots here: at once
/// through `NOTIFY`, and by looking at the calls' history every [`POLL_EVERY`] as a backstop.
#[cfg(feature = "postgres")]
pub fn listen(at: &Location, slots: std::sync::Arc<crate::calls::slots::Slots>) {
    let Location::Postgres(url) = at else {
        return;
    };
    let mut listener = crate::store::postgres::Listener::new(url, CALL_ENDED);
    // Listening before the server takes its first request: a call ended elsewhere from then
    // on is heard.
    if let Err(e) = listener.wait(Duration::ZERO) {
        crate::warn!("shared.listen_failed", error = e);
    }
    let at = at.clone();
    let spawned = std::thread::Builder::new()
        .name("listener".into())
        .spawn(move || {
            let mut poll = Poll::new(at);
            loop {
                match listener.wait(POLL_EVERY) {
                    Ok(ids) => ended(&slots, ids.iter().map(String::as_str), "notified"),
                    Err(e) => {
                        crate::warn!("shared.listen_failed", error = e);
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
                if let Some(ids) = poll.due() {
                    ended(&slots, ids.iter().map(String::as_str), "polled");
                }
            }
        });
    if let Err(e) = spawned {
        crate::error!("shared.listener_not_started", error = e);
    }
}

/// Calls that ended elsewhere: the slots this instance holds for them come back.
fn ended<'a>(
    slots: &crate::calls::slots::Slots,
    ids: impl Iterator<Item = &'a str>,
    how: &'static str,
) {
    for id in ids {
        let Ok(id) = crate::calls::CallLogId::parse(id) else {
            continue;
        };
        if slots.holds(&id) {
            slots.release(&id);
            crate::info!("call.ended_elsewhere", callLogId = id, heard = how);
        }
    }
}

/// The backstop: the calls that reached a final status since the last look.
struct Poll {
    at: Location,
    conn: Option<Box<dyn Db + Send>>,
    since: i64,
    next: Instant,
}

impl Poll {
    fn new(at: Location) -> Poll {
        Poll {
            at,
            conn: None,
            since: now_ms(),
            next: Instant::now() + POLL_EVERY,
        }
    }

    /// When due, the calls ended since the last look (with a margin for commits that were
    /// in flight then).
    fn due(&mut self) -> Option<Vec<String>> {
        if Instant::now() < self.next {
            return None;
        }
        self.next = Instant::now() + POLL_EVERY;
        let now = now_ms();
        if self.conn.is_none() {
            self.conn = self.at.connect(Owner::Events).ok();
        }
        let conn: &dyn Db = self.conn.as_deref()?;
        let ids = conn.rows(
            "SELECT DISTINCT call_log_id FROM call_history WHERE at >= ?1 AND status NOT IN
                 ('queued', 'initiated', 'connected', 'in-progress')",
            params![self.since - 2 * POLL_EVERY.as_millis() as i64],
            |r| r.get(0),
        );
        match ids {
            Ok(ids) => {
                self.since = now;
                Some(ids)
            }
            Err(e) => {
                crate::warn!("shared.poll_failed", error = e);
                self.conn = None;
                None
            }
        }
    }
}

fn now_ms() -> i64 {
    crate::calls::log::now_ms()
}

/// The instance's heartbeat, and every lease it holds renewed.
fn renew(conn: &dyn Db, holder: &str, lease: Duration) -> sql::Result<()> {
    let now = now_ms();
    let until = now + lease.as_millis() as i64;
    conn.execute(
        "INSERT INTO instances (id, started_at, heartbeat_at) VALUES (?1, ?2, ?2)
         ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        params![holder, now],
    )?;
    conn.execute(
        "UPDATE slot_leases SET expires_at = ?2 WHERE holder = ?1",
        params![holder, until],
    )?;
    grants::prune(conn, now)
}
