//! `/dnc`: the do-not-call list ([`crate::calls::dnc`]), guarded like `/call`. `POST /dnc`
//! adds numbers (a JSON list, or CSV text with one number per line in its first column),
//! `GET /dnc` lists them, `DELETE /dnc/{number}` takes one off.

use super::Answer;
use crate::calls::dnc::DoNotCall;
use crate::http::{Request, Response};

/// `POST /dnc`.
pub(super) fn add(dnc: &DoNotCall, request: &Request) -> Answer {
    let added = dnc.add(&request.content_type().unwrap_or_default(), &request.body)?;
    let body = serde_json::json!({
        "added": added.added,
        "alreadyListed": added.already_listed,
        "invalid": added.invalid.listed,
        "invalidSummary": added.invalid.summary(),
    });
    if added.added == 0 && added.already_listed == 0 {
        // Nothing could be taken: the request was wrong, not half right.
        let mut refused = body;
        refused["error"] = "bad_request".into();
        refused["detail"] = "no number could be taken: see invalid".into();
        return Err(Response::json(400, &refused));
    }
    Ok(Response::json(200, &body))
}

/// `GET /dnc`.
pub(super) fn list(dnc: &DoNotCall) -> Answer {
    let numbers = dnc.numbers();
    Ok(Response::json(
        200,
        &serde_json::json!({"count": numbers.len(), "numbers": numbers}),
    ))
}

/// `DELETE /dnc/{number}`.
pub(super) fn remove(dnc: &DoNotCall, number: &str) -> Answer {
    let removed = dnc.remove(number)?;
    Ok(Response::json(
        200,
        &serde_json::json!({"removed": removed}),
    ))
}
