//! `GET /calls`, `GET /calls/{callLogId}` and its `/transcript`: the call log ([`crate::calls::log`]) as JSON,
//! for the user, guarded like `/call`.

use super::Answer;
use crate::calls::log::{CallLog, Direction, ListQuery, Status};
use crate::calls::Refusal;
use crate::http::{Params, Request, Response};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 500;

/// `GET /calls?limit=&before=&status=&direction=&handoff=&number=&agent=&since=&until=&id=&campaign=`,
/// newest first, with `next` for the next page.
pub(super) fn list(call_log: &CallLog, request: &Request) -> Answer {
    let params = Params::from_query(&request.query);
    let query = list_query(&params).map_err(Refusal::invalid)?;
    let calls = call_log.list(query.clone()).map_err(unavailable)?;
    let next = (calls.len() == query.limit)
        .then(|| calls.last().map(|c| c.seq.to_string()))
        .flatten();
    Ok(Response::json(
        200,
        &serde_json::json!({ "calls": calls, "next": next }),
    ))
}

fn unavailable(error: String) -> Refusal {
    Refusal::unavailable("call_log_unavailable", error)
}

fn list_query(params: &Params) -> Result<ListQuery, String> {
    let limit = match params.get_non_empty("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => return Err(format!("limit {v:?} is not a number from 1 to {MAX_LIMIT}")),
        },
    };
    let before = params
        .get_non_empty("before")
        .map(|v| {
            v.parse::<i64>()
                .map_err(|_| format!("before {v:?} is not a cursor from `next`"))
        })
        .transpose()?;
    let status = params
        .get_non_empty("status")
        .map(|v| Status::parse(v).ok_or_else(|| format!("status {v:?} is not a call status")))
        .transpose()?;
    Ok(ListQuery {
        limit,
        before,
        status,
        direction: params.one_of(
            "direction",
            &[
                ("inbound", Direction::Inbound),
                ("outbound", Direction::Outbound),
                ("web", Direction::Web),
            ],
            "is not inbound, outbound or web",
        )?,
        handoff: params
            .one_of(
                "handoff",
                &[("1", true), ("true", true), ("0", false), ("false", false)],
                "is neither 1 nor 0",
            )?
            .unwrap_or(false),
        number: text(params, "number", 32)?,
        agent: text(params, "agent", 64)?,
        since: day_or_ms(params, "since", 0)?,
        until: day_or_ms(params, "until", DAY_MS)?,
        id: text(params, "id", 128)?,
        campaign: text(params, "campaign", 64)?,
    })
}

const DAY_MS: i64 = 86_400_000;

/// A text filter, at most `max` characters.
fn text(params: &Params, name: &str, max: usize) -> Result<Option<String>, String> {
    match params.get_non_empty(name) {
        Some(v) if v.chars().count() > max => {
            Err(format!("{name} is longer than {max} characters"))
        }
        v => Ok(v.map(str::to_owned)),
    }
}

/// `YYYY-MM-DD` (UTC; `past_midnight` later, so that `until` takes its whole day) or Unix
/// milliseconds.
fn day_or_ms(params: &Params, name: &str, past_midnight: i64) -> Result<Option<i64>, String> {
    let Some(v) = params.get_non_empty(name) else {
        return Ok(None);
    };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    let day = |part: Option<&str>, len: usize| {
        part.filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
    };
    let mut parts = v.split('-');
    match (
        day(parts.next(), 4),
        day(parts.next(), 2),
        day(parts.next(), 2),
        parts.next(),
    ) {
        (Some(y), Some(m), Some(d), None) if (1..=12).contains(&m) && (1..=31).contains(&d) => {
            Ok(Some(days_from_civil(y, m, d) * DAY_MS + past_midnight))
        }
        _ => Err(format!(
            "{name} {v:?} is neither YYYY-MM-DD nor Unix milliseconds"
        )),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `GET /calls/{callLogId}` with its status history.
/// `GET /calls/{callLogId}/transcript`: both sides' words, in order.
pub(super) fn transcript(call_log: &CallLog, id: &str) -> Answer {
    match call_log.transcript(id).map_err(unavailable)? {
        Some(turns) => Ok(Response::json(
            200,
            &serde_json::json!({ "callLogId": id, "turns": turns }),
        )),
        None => Err(Refusal::not_found(format!("no call with callLogId {id:?}")).into()),
    }
}

pub(super) fn get(call_log: &CallLog, id: &str) -> Answer {
    match call_log.get(id).map_err(unavailable)? {
        Some(call) => Ok(Response::json(200, &call)),
        None => Err(Refusal::not_found(format!("no call with callLogId {id:?}")).into()),
    }
}

/// Rows `GET /calls.csv` writes at most (the newest of the filter).
pub(crate) const MAX_EXPORT_ROWS: usize = 100_000;

/// `GET /calls.csv` with `GET /calls`' filters: the calls as CSV, newest first, at most
/// [`MAX_EXPORT_ROWS`] (`X-Truncated: true` when there were more).
pub(super) fn csv(call_log: &CallLog, request: &Request) -> Answer {
    let params = Params::from_query(&request.query);
    let mut query = list_query(&params).map_err(Refusal::invalid)?;
    query.limit = MAX_LIMIT;
    let mut file = csv::Writer::from_writer(Vec::new());
    let header = [
        "callLogId",
        "direction",
        "status",
        "from",
        "to",
        "callerId",
        "agent",
        "createdAt",
        "answeredAt",
        "endedAt",
        "durationS",
        "endReason",
        "handoff",
        "lastError",
        "callSid",
    ];
    let _ = file.write_record(header);
    let (mut written, mut truncated) = (0, false);
    loop {
        let page = call_log.list(query.clone()).map_err(unavailable)?;
        for c in &page {
            if written == MAX_EXPORT_ROWS {
                truncated = true;
                break;
            }
            let or = |v: &Option<String>| v.clone().unwrap_or_default();
            let _ = file.write_record([
                c.call_log_id.clone(),
                c.direction.clone(),
                c.status.clone(),
                or(&c.from),
                or(&c.to),
                or(&c.caller_id),
                or(&c.agent),
                c.created_at_iso.clone(),
                or(&c.answered_at_iso),
                or(&c.ended_at_iso),
                c.duration_s.map(|d| d.to_string()).unwrap_or_default(),
                or(&c.end_reason),
                or(&c.handoff),
                or(&c.last_error),
                or(&c.call_sid),
            ]);
            written += 1;
        }
        match page.last() {
            Some(last) if page.len() == query.limit && !truncated => query.before = Some(last.seq),
            _ => break,
        }
    }
    let body = file.into_inner().unwrap_or_default();
    Ok(Response::text(200, "text/csv; charset=utf-8", body)
        .with_header("Content-Disposition", "attachment; filename=\"calls.csv\"")
        .with_header("X-Truncated", truncated.to_string()))
}

/// Recordings being read from the disk at once; one more is asked to come back.
pub(crate) const MAX_RECORDING_READS: usize = 4;
static RECORDING_READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// `GET /calls/{callLogId}/recording`: the call's WAV (`RECORD=1`) once the call has ended,
/// read on a thread of its own (the disk blocks; a coroutine must not).
pub(super) fn recording(call_log: &CallLog, id: &str) -> Answer {
    use std::sync::atomic::Ordering;
    let call = call_log
        .get(id)
        .map_err(unavailable)?
        .ok_or_else(|| Refusal::not_found(format!("no call with callLogId {id:?}")))?;
    let Some(path) = call.recording_path else {
        return Err(Refusal::not_found(format!(
            "call {id} has no recording (RECORD=1 records calls)"
        ))
        .into());
    };
    if call.ended_at.is_none() {
        return Err(Refusal::new(
            crate::calls::Refused::Conflict,
            "call_live",
            format!("call {id} is live: its recording is whole when it ends"),
        )
        .into());
    }
    if RECORDING_READS.fetch_add(1, Ordering::AcqRel) >= MAX_RECORDING_READS {
        RECORDING_READS.fetch_sub(1, Ordering::AcqRel);
        return Err(Refusal::new(
            crate::calls::Refused::Unavailable {
                retry_after_s: Some(1),
            },
            "busy",
            format!("{MAX_RECORDING_READS} recordings are being read; ask again"),
        )
        .into());
    }
    let (tx, rx) = may::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("recording-read".into())
        .spawn(move || {
            let _ = tx.send(std::fs::read(&path));
        });
    let read = match spawned {
        Ok(_) => rx
            .recv()
            .unwrap_or_else(|_| Err(std::io::Error::other("the reader stopped"))),
        Err(e) => Err(e),
    };
    RECORDING_READS.fetch_sub(1, Ordering::AcqRel);
    let wav =
        read.map_err(|e| Refusal::not_found(format!("call {id}'s recording cannot be read: {e}")))?;
    Ok(Response::text(200, "audio/wav", wav).with_header(
        "Content-Disposition",
        format!("inline; filename=\"{id}.wav\""),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(q: &str) -> Result<ListQuery, String> {
        list_query(&Params::from_query(q))
    }

    #[test]
    fn a_list_query_is_read_at_its_edges_or_refused_by_name() {
        let all = query("").unwrap();
        assert_eq!(
            (all.limit, all.before, all.direction),
            (DEFAULT_LIMIT, None, None)
        );
        assert!(!all.handoff && all.status.is_none());
        let q =
            query("limit=500&before=42&status=completed&direction=inbound&handoff=true").unwrap();
        assert_eq!((q.limit, q.before), (MAX_LIMIT, Some(42)));
        assert_eq!(q.status, Some(Status::Completed));
        assert_eq!(q.direction, Some(Direction::Inbound));
        assert!(q.handoff);
        assert_eq!(query("limit=1").unwrap().limit, 1);
        assert!(!query("handoff=0").unwrap().handoff);
        let days = query("since=2026-12-06&until=2026-12-06&number=98765&agent=a&id=x").unwrap();
        assert_eq!(days.since, Some(1_796_515_200_000), "midnight UTC");
        assert_eq!(
            days.until,
            Some(1_796_515_200_000 + DAY_MS),
            "the whole day"
        );
        assert_eq!(query("since=1970-01-01").unwrap().since, Some(0));
        assert_eq!(query("since=1234").unwrap().since, Some(1234));
        assert_eq!(days.number.as_deref(), Some("98765"));
        assert_eq!(
            query("direction=web").unwrap().direction,
            Some(Direction::Web)
        );
        for (q, refused) in [
            ("limit=0", "limit \"0\" is not a number from 1 to 500"),
            ("limit=501", "limit \"501\" is not a number from 1 to 500"),
            ("before=x", "before \"x\" is not a cursor from `next`"),
            ("status=ringing", "status \"ringing\" is not a call status"),
            (
                "direction=sideways",
                "direction \"sideways\" is not inbound, outbound or web",
            ),
            ("handoff=yes", "handoff \"yes\" is neither 1 nor 0"),
            (
                "since=2026-13-01",
                "since \"2026-13-01\" is neither YYYY-MM-DD nor Unix milliseconds",
            ),
            (
                "until=yesterday",
                "until \"yesterday\" is neither YYYY-MM-DD nor Unix milliseconds",
            ),
            (
                "number=123456789012345678901234567890123",
                "number is longer than 32 characters",
            ),
        ] {
            assert_eq!(query(q).unwrap_err(), refused, "{q}");
        }
    }
}
