//! `/dnc`: the do-not-call list ([`crate::calls::dnc`]), guarded like `/call`. `POST /dnc`
//! adds numbers (a JSON list, or CSV text with one number per line in its first column),
//! `GET /dnc` lists them, `DELETE /dnc/{number}` takes one off.

use super::Answer;
use crate::calls::dnc::DoNotCall;
use crate::http::{Request, Response};

/// `POST /dnc`.
pub(super) fn add(dnc: &DoNotCall, request: &Request) -> Answer {
    let added = dnc.add(&request.content_type().unwrap_or_default(), &request.body)?;
    Ok(Response::json(
        200,
        &serde_json::json!({
            "added": added.added,
            "alreadyListed": added.already_listed,
            "invalid": added.invalid.listed,
            "invalidSummary": added.invalid.summary(),
        }),
    ))
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
