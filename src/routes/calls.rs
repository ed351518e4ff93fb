//! `GET /calls`, `GET /calls/{callLogId}` and its `/transcript`: the call log ([`crate::calls::log`]) as JSON,
//! for the user, guarded like `/call`.

use super::Answer;
use crate::calls::log::{CallLog, Direction, ListQuery, Status};
use crate::calls::Refusal;
use crate::http::{Params, Request, Response};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub(crate) const DEFAULT_LIMIT: usize = 50;
pub(crate) const MAX_LIMIT: usize = 500;

/// `GET /calls?limit=&before=&status=&direction=`, newest first, with `next` for the next page.
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
            ],
            "is neither inbound nor outbound",
        )?,
        handoff: params
            .one_of(
                "handoff",
                &[("1", true), ("true", true), ("0", false), ("false", false)],
                "is neither 1 nor 0",
            )?
            .unwrap_or(false),
    })
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
        for (q, refused) in [
            ("limit=0", "limit \"0\" is not a number from 1 to 500"),
            ("limit=501", "limit \"501\" is not a number from 1 to 500"),
            ("before=x", "before \"x\" is not a cursor from `next`"),
            ("status=ringing", "status \"ringing\" is not a call status"),
            (
                "direction=sideways",
                "direction \"sideways\" is neither inbound nor outbound",
            ),
            ("handoff=yes", "handoff \"yes\" is neither 1 nor 0"),
        ] {
            assert_eq!(query(q).unwrap_err(), refused, "{q}");
        }
    }
}
