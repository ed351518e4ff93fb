//! Reading rows back: one call, a page of the log, and retention's delete.

use super::*;
use crate::store::sql::Value;

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
    let mut filter = Filter::default();
    if let Some(before) = q.before {
        filter.add("seq < ?", &[Value::Int(before)]);
    }
    if let Some(status) = q.status {
        filter.add("status = ?", &[status.as_str().to_value()]);
    }
    if let Some(direction) = q.direction {
        filter.add("direction = ?", &[direction.as_str().to_value()]);
    }
    if q.handoff {
        filter.add("handoff IS NOT NULL", &[]);
    }
    if let Some(number) = &q.number {
        // A number's part, matched anywhere in the number: its `%` and `_` (never in a
        // number, but a filter may hold them) are escaped with a backslash.
        let escaped = number
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        let like = Value::Text(format!("%{escaped}%"));
        filter.add(
            "(from_number LIKE ? ESCAPE '\\' OR to_number LIKE ? ESCAPE '\\' OR caller_id LIKE ? ESCAPE '\\')",
            &[like.clone(), like.clone(), like],
        );
    }
    if let Some(agent) = &q.agent {
        filter.add("agent = ?", &[agent.to_value()]);
    }
    if let Some(since) = q.since {
        filter.add("created_at >= ?", &[Value::Int(since)]);
    }
    if let Some(until) = q.until {
        filter.add("created_at < ?", &[Value::Int(until)]);
    }
    if let Some(id) = &q.id {
        filter.add(
            "(call_log_id = ? OR call_sid = ?)",
            &[id.to_value(), id.to_value()],
        );
    }
    // A campaign's calls are its attempts, which the campaigns' store keeps in the same
    // database (`store::campaigns`).
    if let Some(campaign) = &q.campaign {
        filter.add(
            "call_log_id IN (SELECT call_log_id FROM attempts WHERE campaign_id = ?)",
            &[campaign.to_value()],
        );
    }
    filter.values.push(Value::Int(q.limit as i64));
    let sql = format!(
        "SELECT {COLUMNS} FROM calls {} ORDER BY seq DESC LIMIT ?{}",
        filter.clause(),
        filter.values.len()
    );
    let params: Vec<&dyn ToValue> = filter.values.iter().map(|v| v as &dyn ToValue).collect();
    conn.rows(&sql, &params, row)
}

/// A `WHERE` of only the conditions asked for, each with its numbered parameters: a query
/// the database can plan for what is given (a page deep in the log walks the index from its
/// cursor, not from the newest row).
#[derive(Default)]
struct Filter {
    conditions: Vec<String>,
    values: Vec<Value>,
}

impl Filter {
    /// `condition` with each `?` numbered in turn for `values`.
    fn add(&mut self, condition: &str, values: &[Value]) {
        let mut numbered = String::with_capacity(condition.len() + 8);
        let mut next = self.values.len();
        for c in condition.chars() {
            numbered.push(c);
            if c == '?' {
                next += 1;
                numbered.push_str(&next.to_string());
            }
        }
        self.conditions.push(numbered);
        self.values.extend_from_slice(values);
    }

    fn clause(&self) -> String {
        if self.conditions.is_empty() {
            return String::new();
        }
        format!("WHERE {}", self.conditions.join(" AND "))
    }
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
