//! Media tokens and call plans as rows (`media_grants`, `call_plans`), so that the media
//! WebSocket of a call whose webhook (or `/call`) another instance answered is accepted here:
//! the issuing instance writes the token and the plan before the URL leaves it; an instance
//! that does not know a token looks it up, marks it taken by itself, and adopts the call.
//!
//! A row is kept a day past its token's lifetime, so that the issuing instance, when its own
//! wait for the media ends, can tell a call whose media went elsewhere from one whose media
//! never came.

use super::{now_ms, Shared};
use crate::store::sql::{self, params, Db};
use std::time::Duration;

/// How long a grant and a plan are kept after their token's lifetime.
const KEEP_AFTER_MS: i64 = 24 * 3_600_000;

/// What a call carries from its dial to its media, as stored: the parameters, the campaign,
/// the number called and the agent's name (the adopting instance looks the agent up).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredPlan {
    pub params: Vec<(String, String)>,
    pub campaign: Option<String>,
    pub customer: Option<String>,
    pub agent: Option<String>,
}

/// A token another instance issued, now this instance's.
#[derive(Debug, Clone, PartialEq)]
pub struct Adopted {
    pub call_log_id: String,
    /// How much of the token's lifetime is left.
    pub ttl_left: Duration,
    pub over_capacity: bool,
    pub plan: Option<StoredPlan>,
}

impl Shared {
    /// Writes the token (valid for `ttl`) before its URL leaves this instance. Waits.
    pub fn publish_grant(
        &self,
        token: &str,
        call_log_id: &str,
        ttl: Duration,
        over_capacity: bool,
    ) -> Result<(), String> {
        let (token, id) = (token.to_owned(), call_log_id.to_owned());
        let expires_at = now_ms() + ttl.as_millis() as i64;
        self.ask(move |conn, _| {
            conn.execute(
                "INSERT INTO media_grants (token, call_log_id, expires_at, over_capacity)
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (token) DO NOTHING",
                params![token, id, expires_at, over_capacity],
            )
            .map(drop)
        })
    }

    /// Writes the call's plan, kept for `ttl`, before its media can start anywhere. Waits.
    pub fn publish_plan(
        &self,
        call_log_id: &str,
        plan: &StoredPlan,
        ttl: Duration,
    ) -> Result<(), String> {
        let id = call_log_id.to_owned();
        let plan = serde_json::to_string(plan).map_err(|e| e.to_string())?;
        let expires_at = now_ms() + ttl.as_millis() as i64;
        self.ask(move |conn, _| {
            conn.execute(
                "INSERT INTO call_plans (call_log_id, plan, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (call_log_id) DO UPDATE SET plan = excluded.plan,
                     expires_at = excluded.expires_at",
                params![id, plan, expires_at],
            )
            .map(drop)
        })
    }

    /// The call of a token issued elsewhere and not yet expired, marked taken by this
    /// instance, with its plan; `None` when there is no such token. Waits.
    pub fn adopt(&self, token: &str) -> Result<Option<Adopted>, String> {
        let token = token.to_owned();
        self.ask(move |conn, holder| adopt(conn, holder, &token))
    }

    /// Whether the call's media was taken by another instance. Waits.
    pub fn media_elsewhere(&self, call_log_id: &str) -> Result<bool, String> {
        let id = call_log_id.to_owned();
        self.ask(move |conn, holder| {
            conn.row(
                "SELECT 1 FROM media_grants WHERE call_log_id = ?1 AND taken_by IS NOT NULL
                     AND taken_by != ?2 LIMIT 1",
                params![id, holder],
                |_| Ok(()),
            )
            .map(|found| found.is_some())
        })
    }
}

/// How a call's stream ended, as the instance that ran it wrote it (`stream_ends`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEnded {
    pub call_log_id: String,
    pub call_sid: Option<String>,
    pub handoff: Option<String>,
}

impl Shared {
    /// Writes how the call's stream ended, for a Passthru that another instance answers.
    /// Never waits (a media loop calls it).
    pub fn publish_stream_end(&self, ended: StreamEnded) {
        self.tell("stream end", move |conn, _| {
            conn.execute(
                "INSERT INTO stream_ends (call_log_id, call_sid, handoff, ended_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (call_log_id) DO UPDATE SET call_sid = excluded.call_sid,
                     handoff = excluded.handoff, ended_at = excluded.ended_at",
                params![ended.call_log_id, ended.call_sid, ended.handoff, now_ms()],
            )
            .map(drop)
        });
    }

    /// How the stream of the call named (by callLogId, else CallSid) ended on any instance,
    /// if it has. Waits.
    pub fn stream_end(
        &self,
        call_log_id: Option<&str>,
        call_sid: Option<&str>,
    ) -> Result<Option<StreamEnded>, String> {
        let (id, sid) = (call_log_id.map(str::to_owned), call_sid.map(str::to_owned));
        self.ask(move |conn, _| {
            conn.row(
                "SELECT call_log_id, call_sid, handoff FROM stream_ends
                 WHERE call_log_id = ?1 OR (CAST(?1 AS TEXT) IS NULL AND call_sid = ?2)
                 ORDER BY ended_at DESC LIMIT 1",
                params![id, sid],
                |r| {
                    Ok(StreamEnded {
                        call_log_id: r.get(0)?,
                        call_sid: r.get(1)?,
                        handoff: r.get(2)?,
                    })
                },
            )
        })
    }
}

fn adopt(conn: &dyn Db, holder: &str, token: &str) -> sql::Result<Option<Adopted>> {
    let now = now_ms();
    let grant = conn.row(
        "UPDATE media_grants SET taken_by = ?2 WHERE token = ?1 AND expires_at > ?3
         RETURNING call_log_id, expires_at, over_capacity",
        params![token, holder, now],
        |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?, r.get::<bool>(2)?)),
    )?;
    let Some((call_log_id, expires_at, over_capacity)) = grant else {
        return Ok(None);
    };
    let plan = conn
        .row(
            "SELECT plan FROM call_plans WHERE call_log_id = ?1",
            params![call_log_id],
            |r| r.get::<String>(0),
        )?
        .and_then(|json| serde_json::from_str(&json).ok());
    Ok(Some(Adopted {
        call_log_id,
        ttl_left: Duration::from_millis((expires_at - now).max(0) as u64),
        over_capacity,
        plan,
    }))
}

/// Grants and plans past their lifetime and the day after it.
pub(super) fn prune(conn: &dyn Db, now: i64) -> sql::Result<()> {
    let cutoff = now - KEEP_AFTER_MS;
    conn.execute(
        "DELETE FROM media_grants WHERE expires_at < ?1",
        params![cutoff],
    )?;
    conn.execute(
        "DELETE FROM call_plans WHERE expires_at < ?1",
        params![cutoff],
    )
    .map(drop)
}
