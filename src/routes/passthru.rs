//! `GET|POST /api/v1/exotel/passthru`: Exotel's Passthru applet, the way a flow hands a caller
//! to a person after the bot (docs/exotel.md §7). Placed after the Voicebot applet, it asks us
//! which way to go once the stream has ended: `PASSTHRU_HANDOFF_STATUS` (200 by default) takes
//! the flow to the person (a Connect applet), the other answer (302) to the end (a Hangup).
//! Placed before the Voicebot applet, it only announces the stream (`EventType=stream-start`),
//! answered 200 to continue.
//!
//! A caller waits on the line while this answers, so the decision is one lookup in memory
//! ([`crate::calls::handoffs`]); what Exotel says of the stream goes to the call log without
//! being waited for. Every shape Exotel sends is read ([`crate::exotel::passthru`]). An unknown call gets "no handoff" and a log line, never a 4xx that would send the
//! caller down Exotel's error branch.

use crate::app::App;
use crate::calls::handoffs::Lookup;
use crate::calls::log::{LogEvent, StreamEnd};
use crate::exotel::passthru::{is_recording_url, Passthru};
use crate::http::{Params, Request, Response};
use crate::metrics::PassthruAnswer;

pub(super) fn answer_passthru(app: &App, request: &Request) -> Response {
    let mut params = Params::from_query(&request.query);
    // A body Exotel did not send right must not strand the caller: its query still counts.
    if let Err(e) = params.add_body(request) {
        crate::warn!(
            "passthru.unreadable_body",
            status = e.status,
            detail = "the body was not read; the query parameters were"
        );
    }
    let hook = Passthru::from_params(&params);
    if hook.event_type.as_deref() == Some("stream-start") {
        return stream_start(app, &hook);
    }
    let (custom_field, call_sid) = (hook.custom_field.as_deref(), hook.call_sid.as_deref());
    let lookup = match app.handoffs.find(custom_field, call_sid) {
        Lookup::Unknown => app.handoffs.find_elsewhere(custom_field, call_sid),
        known => known,
    };
    let found = match lookup {
        Lookup::Found(ended) => Some(ended),
        Lookup::WrongCallSid(id) => return not_about_the_call(app, &hook, &id),
        Lookup::Unknown => None,
    };
    let handoff = found.as_ref().and_then(|f| f.handoff.clone());
    let status = if handoff.is_some() {
        app.config.passthru_handoff_status
    } else {
        other_answer(app.config.passthru_handoff_status)
    };
    app.metrics.passthru(if handoff.is_some() {
        PassthruAnswer::Handoff
    } else {
        PassthruAnswer::NoHandoff
    });
    let id = found.as_ref().map(|f| f.id.as_str().to_owned());
    match &found {
        Some(_) => crate::info!(
            "passthru.answered",
            callLogId = id.as_deref().unwrap_or(""),
            callSid = hook.call_sid.as_deref().unwrap_or(""),
            handoff = handoff.as_deref().unwrap_or(""),
            answer = status,
            streamStatus = hook.status.as_deref().unwrap_or(""),
            disconnectedBy = hook.disconnected_by.as_deref().unwrap_or("")
        ),
        None => crate::warn!(
            "passthru.unknown_call",
            customField = hook.custom_field.as_deref().unwrap_or(""),
            callSid = hook.call_sid.as_deref().unwrap_or(""),
            answer = status,
            detail = "no stream of this call ended here lately: answered no handoff"
        ),
    }
    app.call_log.record(LogEvent::StreamEnd(Box::new(StreamEnd {
        custom_field: id.or(hook.custom_field.clone()),
        call_sid: hook.call_sid.clone(),
        stream_sid: hook.stream_sid.clone(),
        status: hook.status.clone(),
        duration_s: hook.duration_s,
        recording_url: hook
            .recording_url
            .clone()
            .filter(|url| is_recording_url(url)),
        disconnected_by: hook.disconnected_by.clone(),
        error: hook.error.clone(),
        answer: status,
    })));
    answer(status, handoff.is_some(), handoff.as_deref())
}

/// A Passthru that names a call which ended here, with a CallSid that is not the call's: no
/// handoff, nothing recorded, nothing in the answer about that call; one line in the log.
fn not_about_the_call(app: &App, hook: &Passthru, id: &crate::calls::CallLogId) -> Response {
    let status = other_answer(app.config.passthru_handoff_status);
    app.metrics.passthru(PassthruAnswer::NoHandoff);
    crate::warn!(
        "passthru.call_sid_mismatch",
        callLogId = id,
        callSid = hook.call_sid.as_deref().unwrap_or(""),
        answer = status,
        detail = "the CallSid is not this call's: answered no handoff, recorded nothing"
    );
    answer(status, false, None)
}

/// The Passthru before the stream: noted, answered "continue".
fn stream_start(app: &App, hook: &Passthru) -> Response {
    app.metrics.passthru(PassthruAnswer::StreamStart);
    crate::info!(
        "passthru.stream_start",
        callSid = hook.call_sid.as_deref().unwrap_or(""),
        streamSid = hook.stream_sid.as_deref().unwrap_or("")
    );
    Response::json(200, &serde_json::json!({ "continue": true }))
}

/// 200 for 302 and 302 for 200.
fn other_answer(status: u16) -> u16 {
    if status == 200 {
        302
    } else {
        200
    }
}

fn answer(status: u16, handoff: bool, reason: Option<&str>) -> Response {
    let body = serde_json::json!({ "handoff": handoff, "reason": reason });
    let response = Response::json(status, &body);
    if status == 302 {
        // A 302 names where it points; Exotel reads only the status. Nothing of the request's
        // query (its secret) goes back into it.
        response.with_header("Location", "/api/v1/exotel/passthru")
    } else {
        response
    }
}
