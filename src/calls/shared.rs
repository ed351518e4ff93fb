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
#[cfg(feature = "postgres")]
pub mod listen;

pub use leases::LeaseRefused;

pub use crate::store::schema::CALL_ENDED;

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

/// Now, in Unix milliseconds (the unit of every stored time).
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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
