//! Reading rows back: one call, a page of the log, and retention's delete.

use super::*;

/// Deletes ended calls created before `cutoff`, in one transaction.
pub(super) fn prune(conn: &dyn Db, cutoff: i64) -> sql::Result<Pruned> {
    let ended =
        "created_at < ?1 AND status NOT IN ('queued','initiated','connected','in-progress')";
    conn.transaction(|tx| {
        let recordings = tx.rows(
            &format!("SELECT recording_path FROM calls WHERE {ended} AND recording_path IS NOT NULL"),
            params![cutoff],
            |r| r.get::<String>(0),
        )?;
        for table in ["call_history", "call_transcript"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE call_log_id IN (SELECT call_log_id FROM calls WHERE {ended})"),
                params![cutoff],
            )?;
        }
        let calls = tx.execute(&format!("DELETE FROM calls WHERE {ended}"), params![cutoff])?;
        Ok(Pruned { calls, recordings })
    })
}

pub(super) const COLUMNS: &str =
    "seq, call_log_id, direction, from_number, to_number, caller_id, call_sid, stream_sid,
    status, created_at, answered_at, ended_at, duration_s, end_reason, frames_in, bytes_in,
    frames_out, bytes_out, dtmf, recording_path, exotel_recording_url, last_error, do_not_call,
    handoff, handoff_answer, disconnected_by, stream_status, stream_duration_s, stream_error,
    agent, bot";

pub(super) fn row(r: &Row) -> sql::Result<CallRow> {
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
        do_not_call: r.get(22)?,
        handoff: r.get(23)?,
        handoff_answer: r.get(24)?,
        disconnected_by: r.get(25)?,
        stream_status: r.get(26)?,
        stream_duration_s: r.get(27)?,
        stream_error: r.get(28)?,
        agent: r.get(29)?,
        bot: r.get(30)?,
        history: Vec::new(),
    })
}

pub(super) fn list(conn: &dyn Db, q: &ListQuery) -> sql::Result<Vec<CallRow>> {
    // A campaign's calls are its attempts, which the campaigns' store keeps in the same
    // database (`store::campaigns`); the clause is there only when asked for, so that a call
    // log without the store's tables (its own tests) still lists.
    let by_campaign = if q.campaign.is_some() {
        "AND call_log_id IN (SELECT call_log_id FROM attempts WHERE campaign_id = ?11)"
    } else {
        "AND CAST(?11 AS TEXT) IS NULL"
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM calls
         WHERE (CAST(?1 AS BIGINT) IS NULL OR seq < ?1)
             AND (CAST(?2 AS TEXT) IS NULL OR status = ?2)
             AND (CAST(?3 AS TEXT) IS NULL OR direction = ?3)
             AND (?5 = 0 OR handoff IS NOT NULL)
             AND (CAST(?6 AS TEXT) IS NULL OR from_number LIKE ?6 ESCAPE '\\'
                 OR to_number LIKE ?6 ESCAPE '\\' OR caller_id LIKE ?6 ESCAPE '\\')
             AND (CAST(?7 AS TEXT) IS NULL OR agent = ?7)
             AND (CAST(?8 AS BIGINT) IS NULL OR created_at >= ?8)
             AND (CAST(?9 AS BIGINT) IS NULL OR created_at < ?9)
             AND (CAST(?10 AS TEXT) IS NULL OR call_log_id = ?10 OR call_sid = ?10)
             {by_campaign}
         ORDER BY seq DESC LIMIT ?4"
    );
    // A number's part, matched anywhere in the number: its `%` and `_` (never in a number,
    // but a filter may hold them) are escaped with a backslash. A parameter first met in
    // `IS NULL` is given its type (`CAST`): PostgreSQL cannot tell it otherwise.
    let contains = q.number.as_ref().map(|n| {
        let escaped = n
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    conn.rows(
        &sql,
        params![
            q.before,
            q.status.map(Status::as_str),
            q.direction.map(Direction::as_str),
            q.limit as i64,
            q.handoff,
            contains,
            q.agent,
            q.since,
            q.until,
            q.id,
            q.campaign
        ],
        row,
    )
}

/// A call's transcript in the order it was written; `None` when there is no such call.
pub(super) fn transcript(conn: &dyn Db, id: &str) -> sql::Result<Option<Vec<TranscriptTurn>>> {
    let known = conn.row(
        "SELECT 1 FROM calls WHERE call_log_id = ?1",
        params![id],
        |_| Ok(()),
    )?;
    if known.is_none() {
        return Ok(None);
    }
    let turns = conn.rows(
        "SELECT role, text, at FROM call_transcript WHERE call_log_id = ?1 ORDER BY rowid",
        params![id],
        |r| {
            let at: i64 = r.get(2)?;
            Ok(TranscriptTurn {
                role: r.get(0)?,
                text: r.get(1)?,
                at,
                at_iso: iso_8601(at),
            })
        },
    )?;
    Ok(Some(turns))
}

pub(super) fn get(conn: &dyn Db, id: &str) -> sql::Result<Option<CallRow>> {
    let sql = format!("SELECT {COLUMNS} FROM calls WHERE call_log_id = ?1");
    let Some(mut call) = conn.row(&sql, params![id], row)? else {
        return Ok(None);
    };
    call.history = conn.rows(
        "SELECT status, at FROM call_history WHERE call_log_id = ?1 ORDER BY rowid",
        params![id],
        |r| {
            let at: i64 = r.get(1)?;
            Ok(StatusChange {
                status: r.get(0)?,
                at,
                at_iso: iso_8601(at),
            })
        },
    )?;
    Ok(Some(call))
}
