//! The events outbox (`EVENTS_URL`): an event is a row of `events`, written in the transaction
//! of the change it reports, so that it exists exactly when the change does. The deliverer
//! (`crate::events`) reads and updates the rows on a connection of its own; this file holds
//! every statement on the table, and knows no HTTP.
//!
//! An event's body is `{"type", "timestamp", "data"}`; its `id` (`msg_…`) is the Standard
//! Webhooks `webhook-id`, the same on every attempt.

use super::sql::{self, params, Db, Row};

/// What events a call's changes make, in the writer's transaction.
pub(crate) fn enqueue(
    conn: &dyn Db,
    kind: &str,
    call_log_id: Option<&str>,
    data: serde_json::Value,
    now: i64,
) -> sql::Result<()> {
    let body = serde_json::json!({
        "type": kind,
        "timestamp": iso_8601(now),
        "data": data,
    });
    conn.execute(
        "INSERT INTO events (id, type, call_log_id, body, created_at, next_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![new_id(), kind, call_log_id, body.to_string(), now],
    )
    .map(drop)
}

/// Unix milliseconds as ISO 8601 in UTC, as the logs write it.
fn iso_8601(ms: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let mut out = String::with_capacity(24);
    crate::log::write_utc_timestamp(&mut out, at);
    out
}

/// `msg_` and 22 random characters: the event's id on every attempt.
fn new_id() -> String {
    let mut bytes = [0u8; 16];
    let _ = getrandom::fill(&mut bytes);
    use base64::Engine as _;
    format!(
        "msg_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// One event as the deliverer and `GET /events` see it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub call_log_id: Option<String>,
    #[serde(skip)]
    pub body: String,
    pub created_at: i64,
    pub status: String,
    pub attempts: i64,
    pub next_at: i64,
    pub last_error: Option<String>,
}

const COLUMNS: &str =
    "seq, id, type, call_log_id, body, created_at, status, attempts, next_at, last_error";

fn stored(r: &Row) -> sql::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: r.get(0)?,
        id: r.get(1)?,
        kind: r.get(2)?,
        call_log_id: r.get(3)?,
        body: r.get(4)?,
        created_at: r.get(5)?,
        status: r.get(6)?,
        attempts: r.get(7)?,
        next_at: r.get(8)?,
        last_error: r.get(9)?,
    })
}

/// The pending events due by `now`, oldest first, but none behind an earlier pending event of
/// the same call: a call's events go in order.
pub fn due(conn: &dyn Db, now: i64, limit: usize) -> sql::Result<Vec<StoredEvent>> {
    conn.rows(
        &format!(
            "SELECT {COLUMNS} FROM events e
             WHERE status = 'pending' AND next_at <= ?1
               AND NOT EXISTS (SELECT 1 FROM events p WHERE p.status = 'pending'
                               AND p.call_log_id = e.call_log_id AND p.seq < e.seq)
             ORDER BY seq LIMIT ?2"
        ),
        params![now, limit as i64],
        stored,
    )
}

/// The receiver took it.
pub fn delivered(conn: &dyn Db, seq: i64) -> sql::Result<()> {
    conn.execute(
        "UPDATE events SET status = 'delivered', attempts = attempts + 1, last_error = NULL
         WHERE seq = ?1",
        params![seq],
    )
    .map(drop)
}

/// It was not taken: tried again at `next_at`, or given up (`failed`) when `next_at` is `None`.
pub fn not_taken(conn: &dyn Db, seq: i64, error: &str, next_at: Option<i64>) -> sql::Result<()> {
    conn.execute(
        "UPDATE events SET attempts = attempts + 1, last_error = ?2,
             status = CASE WHEN CAST(?3 AS BIGINT) IS NULL THEN 'failed' ELSE 'pending' END,
             next_at = COALESCE(?3, next_at)
         WHERE seq = ?1",
        params![seq, error, next_at],
    )
    .map(drop)
}

/// The events in `status` (`pending` or `failed`), oldest first, at most `limit`.
pub fn list(conn: &dyn Db, status: &str, limit: usize) -> sql::Result<Vec<StoredEvent>> {
    conn.rows(
        &format!("SELECT {COLUMNS} FROM events WHERE status = ?1 ORDER BY seq LIMIT ?2"),
        params![status, limit as i64],
        stored,
    )
}

/// Sends `id` again now (a failed one is pending again); `false` when there is no such event.
pub fn retry(conn: &dyn Db, id: &str, now: i64) -> sql::Result<bool> {
    conn.execute(
        "UPDATE events SET status = 'pending', next_at = ?2 WHERE id = ?1 AND status != 'delivered'",
        params![id, now],
    )
    .map(|n| n > 0)
}

/// Whether an event with this id exists (delivered or not).
pub fn exists(conn: &dyn Db, id: &str) -> sql::Result<bool> {
    conn.row(
        "SELECT 1 FROM events WHERE id = ?1",
        params![id],
        |_| Ok(()),
    )
    .map(|found| found.is_some())
}

/// When the oldest pending event was made, if any is pending.
pub fn oldest_pending(conn: &dyn Db) -> sql::Result<Option<i64>> {
    conn.row(
        "SELECT MIN(created_at) FROM events WHERE status = 'pending'",
        params![],
        |r| r.get(0),
    )
    .map(Option::flatten)
}

/// Deletes delivered and failed events made before `cutoff`.
pub fn prune(conn: &dyn Db, cutoff: i64) -> sql::Result<usize> {
    conn.execute(
        "DELETE FROM events WHERE status IN ('delivered', 'failed') AND created_at < ?1",
        params![cutoff],
    )
}
