//! `GET /calls` and `GET /calls/{callLogId}`: the call log as JSON, for the user (authenticated
//! like `/call`).

use super::log::{Direction, ListQuery, Status};
use crate::app::App;
use crate::http::{Params, Request, Response};

/// Rows per page unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 500;

/// `GET /calls?limit=&before=&status=&direction=`, newest first, with `next` for the next page.
pub fn list(app: &App, request: &Request) -> Response {
    if let Err(denied) = crate::auth::user(&app.config, request) {
        return denied;
    }
    let params = Params::from_query(&request.query);
    let query = match list_query(&params) {
        Ok(q) => q,
        Err(why) => return Response::error(400, "bad_request", why),
    };
    match app.call_log.list(query.clone()) {
        Ok(calls) => {
            let next = (calls.len() == query.limit)
                .then(|| calls.last().map(|c| c.seq.to_string()))
                .flatten();
            Response::json(200, &serde_json::json!({ "calls": calls, "next": next }))
        }
        Err(e) => Response::error(503, "call_log_unavailable", e),
    }
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
    let direction = match params.get_non_empty("direction") {
        None => None,
        Some("inbound") => Some(Direction::Inbound),
        Some("outbound") => Some(Direction::Outbound),
        Some(v) => return Err(format!("direction {v:?} is neither inbound nor outbound")),
    };
    let handoff = match params.get_non_empty("handoff") {
        None | Some("0" | "false") => false,
        Some("1" | "true") => true,
        Some(v) => return Err(format!("handoff {v:?} is neither 1 nor 0")),
    };
    Ok(ListQuery {
        limit,
        before,
        status,
        direction,
        handoff,
    })
}

/// `GET /calls/{callLogId}` with its status history.
pub fn get(app: &App, request: &Request, id: &str) -> Response {
    if let Err(denied) = crate::auth::user(&app.config, request) {
        return denied;
    }
    match app.call_log.get(id) {
        Ok(Some(call)) => Response::json(200, &call),
        Ok(None) => Response::error(404, "not_found", format!("no call with callLogId {id:?}")),
        Err(e) => Response::error(503, "call_log_unavailable", e),
    }
}
