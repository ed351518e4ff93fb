//! Each live call's slot as a lease (`slot_leases`), held by the instance that took it and
//! renewed by it while it lives (`shared::renew`):
//!
//! - a lease is taken under a transaction-scoped advisory lock: instances admit one call at a
//!   time, counting every lease that has not lapsed;
//! - a lease not renewed for `INSTANCE_LEASE_S` lapses (its instance died) and its place comes
//!   back then, not before;
//! - a release is fenced by call and holder: a late release by an instance that lost its
//!   lease never frees another instance's slot.

use super::{now_ms, Shared};
use crate::store::sql::{params, Db};
use std::time::Duration;

/// Any fixed number, the same in every instance: the advisory lock admissions take.
const ADMISSION_LOCK: i64 = 0x6576_625f_736c_6f74;

/// Why no lease was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseRefused {
    /// `max` calls hold leases across the instances.
    Full { max: usize },
    /// The phone's `max` calls hold leases across the instances.
    LineFull { phone: String, max: usize },
    /// The database could not be asked: no call is admitted until it can.
    Unavailable(String),
}

impl Shared {
    /// Takes a lease for the call, within `max` across the instances and within its line's
    /// limit when it has one. Waits for the answer.
    pub fn take_lease(
        &self,
        call_log_id: &str,
        line: Option<(&str, usize)>,
        max: usize,
    ) -> Result<(), LeaseRefused> {
        let id = call_log_id.to_owned();
        let line = line.map(|(phone, max)| (phone.to_owned(), max));
        let lease = self.lease;
        self.ask(move |conn, holder| Ok(take(conn, holder, lease, &id, line, max)))
            .unwrap_or_else(|e| Err(LeaseRefused::Unavailable(e)))
    }

    /// Gives the call's lease back, if this instance still holds it. Never waits.
    pub fn release_lease(&self, call_log_id: &str) {
        let id = call_log_id.to_owned();
        self.tell("lease release", move |conn, holder| {
            conn.execute(
                "DELETE FROM slot_leases WHERE call_log_id = ?1 AND holder = ?2",
                params![id, holder],
            )
            .map(drop)
        });
    }
}

/// One admission, under the advisory lock: lapsed leases go, then the call is counted.
fn take(
    conn: &dyn Db,
    holder: &str,
    lease: Duration,
    call_log_id: &str,
    line: Option<(String, usize)>,
    max: usize,
) -> Result<(), LeaseRefused> {
    let now = now_ms();
    let until = now + lease.as_millis() as i64;
    let admitted = conn.transaction(|tx| {
        tx.query("SELECT pg_advisory_xact_lock(?1)", params![ADMISSION_LOCK])?;
        tx.execute("DELETE FROM slot_leases WHERE expires_at <= ?1", params![now])?;
        let phone = line.as_ref().map(|(phone, _)| phone.as_str());
        let (all, on_line): (i64, i64) = tx
            .row(
                "SELECT COUNT(*), COUNT(CASE WHEN line = ?2 THEN 1 END) FROM slot_leases
                 WHERE call_log_id != ?1",
                params![call_log_id, phone],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?
            .unwrap_or((0, 0));
        if all as usize >= max {
            return Ok(Err(LeaseRefused::Full { max }));
        }
        if let Some((phone, line_max)) = &line {
            if on_line as usize >= *line_max {
                return Ok(Err(LeaseRefused::LineFull {
                    phone: phone.clone(),
                    max: *line_max,
                }));
            }
        }
        // The same call asking again (its media on this instance after its webhook on
        // another) takes its lease over.
        tx.execute(
            "INSERT INTO slot_leases (call_log_id, holder, line, expires_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (call_log_id) DO UPDATE SET holder = excluded.holder,
                 line = COALESCE(excluded.line, slot_leases.line), expires_at = excluded.expires_at",
            params![call_log_id, holder, phone, until],
        )?;
        Ok(Ok(()))
    });
    admitted.unwrap_or_else(|e| Err(LeaseRefused::Unavailable(e.to_string())))
}
