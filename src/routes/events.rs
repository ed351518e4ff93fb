//! `/events`: the events for the user's backend (`EVENTS_URL`) that have not been taken
//! ([`crate::store::outbox`]), guarded like `/call`. `GET /events?status=pending|failed`
//! lists them, oldest first; `POST /events/{id}/retry` sends one again now.

use super::Answer;
use crate::calls::log::CallLog;
use crate::calls::Refusal;
use crate::http::{Params, Request, Response};
use crate::store::outbox;

/// Events listed at most.
pub(crate) const MAX_LISTED: usize = 500;

/// `GET /events?status=pending|failed`.
pub(super) fn list(call_log: &CallLog, request: &Request) -> Answer {
    let params = Params::from_query(&request.query);
    let status = match params.get_non_empty("status") {
        None => "pending",
        Some(s @ ("pending" | "failed")) => s,
        Some(other) => {
            return Err(
                Refusal::invalid(format!("status {other:?} is neither pending nor failed")).into(),
            )
        }
    }
    .to_owned();
    let events = call_log
        .outbox(move |conn| outbox::list(conn, &status, MAX_LISTED))
        .map_err(|e| Refusal::unavailable("call_log_unavailable", e))?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "events": events }),
    ))
}

/// `POST /events/{id}/retry`.
pub(super) fn retry(call_log: &CallLog, id: &str) -> Answer {
    let id = id.to_owned();
    let now = crate::calls::log::now_ms();
    let (retried, known) = call_log
        .outbox({
            let id = id.clone();
            move |conn| Ok((outbox::retry(conn, &id, now)?, outbox::exists(conn, &id)?))
        })
        .map_err(|e| Refusal::unavailable("call_log_unavailable", e))?;
    match (retried, known) {
        (true, _) => Ok(Response::json(
            200,
            &serde_json::json!({"id": id, "status": "pending"}),
        )),
        (false, true) => Err(Refusal::new(
            crate::calls::Refused::Conflict,
            "already_delivered",
            format!("event {id} was delivered"),
        )
        .into()),
        (false, false) => Err(Refusal::not_found(format!("no event {id:?}")).into()),
    }
}
