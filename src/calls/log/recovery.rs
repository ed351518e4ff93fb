//! Crash recovery at start: marking the calls a crash left live `interrupted`. (The schema
//! itself is `store::schema`'s.)

use super::*;

/// Calls left live by a process that stopped without closing them (a crash, a `kill -9`) are
/// `interrupted` as of `now`, with that status in their history, in one transaction; answers
/// how many.
pub(super) fn mark_interrupted(conn: &dyn Db, now: i64) -> sql::Result<usize> {
    const LIVE: &str = "status IN ('queued','initiated','connected','in-progress')";
    conn.transaction(|tx| {
        tx.execute(
            &format!(
                "INSERT INTO call_history (call_log_id, status, at)
                 SELECT call_log_id, 'interrupted', ?1 FROM calls WHERE {LIVE}"
            ),
            params![now],
        )?;
        tx.execute(
            &format!(
                "UPDATE calls SET status = 'interrupted', ended_at = ?1,
                     end_reason = COALESCE(end_reason, 'process-stopped') WHERE {LIVE}"
            ),
            params![now],
        )
    })
}

/// On PostgreSQL, calls left live by an instance that died: live rows older than `cutoff`
/// whose slot no instance holds any more (its lease lapsed, `calls::shared`), at most
/// `limit`, for the watchdog to settle through Exotel's call details. (At an instance's start
/// the others' live calls are left alone: they are theirs.)
pub(super) fn find_orphans(
    conn: &dyn Db,
    now: i64,
    cutoff: i64,
    limit: usize,
) -> sql::Result<Vec<Orphan>> {
    conn.rows(
        "SELECT call_log_id, call_sid, caller_id, to_number, from_number FROM calls
         WHERE status IN ('queued','initiated','connected','in-progress')
           AND created_at < ?2
           AND NOT EXISTS (SELECT 1 FROM slot_leases l
                           WHERE l.call_log_id = calls.call_log_id AND l.expires_at > ?1)
         ORDER BY seq LIMIT ?3",
        params![now, cutoff, limit as i64],
        |r| {
            Ok(Orphan {
                call_log_id: r.get(0)?,
                call_sid: r.get(1)?,
                numbers: [r.get(2)?, r.get(3)?, r.get(4)?],
            })
        },
    )
}
