//! `GET|POST /api/v1/exotel/passthru`: Exotel's Passthru applet, the way a flow hands a caller
//! to a person after the bot (docs/exotel.md §7). Placed after the Voicebot applet, it asks us
//! which way to go once the stream has ended: `PASSTHRU_HANDOFF_STATUS` (200 by default) takes
//! the flow to the person (a Connect applet), the other answer (302) to the end (a Hangup).
//! Placed before the Voicebot applet, it only announces the stream (`EventType=stream-start`),
//! answered 200 to continue.
//!
//! A caller waits on the line while this answers, so the decision is one lookup in memory
//! ([`crate::calls::handoffs`]); what Exotel says of the stream goes to the call log without
//! being waited for. Every shape Exotel sends is read: flat query parameters, nested keys
//! (`Stream[Status]`), the whole stream object as one JSON string (`Stream={…}`), and a JSON
//! body. An unknown call gets "no handoff" and a log line, never a 4xx that would send the
//! caller down Exotel's error branch.

use crate::app::App;
use crate::calls::handoffs::Lookup;
use crate::calls::log::{LogEvent, StreamEnd};
use crate::http::{Params, Request, Response};
use crate::metrics::PassthruAnswer;

/// What a Passthru request says, from any of its shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passthru {
    pub call_sid: Option<String>,
    /// Our callLogId, for calls we placed.
    pub custom_field: Option<String>,
    /// `stream-start` for the Passthru before the stream.
    pub event_type: Option<String>,
    pub stream_sid: Option<String>,
    pub status: Option<String>,
    pub duration_s: Option<i64>,
    pub recording_url: Option<String>,
    pub disconnected_by: Option<String>,
    pub error: Option<String>,
}

impl Passthru {
    /// Reads the request's parameters; fields in an unexpected shape are left out.
    pub fn from_params(params: &Params) -> Passthru {
        let get = |name: &str| params.get_non_empty(name).map(str::to_owned);
        // `Stream` as one JSON string (or a nested object of a JSON body).
        let object: Option<serde_json::Map<String, serde_json::Value>> = params
            .get_non_empty("Stream")
            .and_then(|s| serde_json::from_str(s).ok());
        let stream = |field: &str| -> Option<String> {
            get(&format!("Stream[{field}]")).or_else(|| {
                let object = object.as_ref()?;
                let value = object
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(field))
                    .map(|(_, v)| v)?;
                match value {
                    serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
                    serde_json::Value::Number(n) => Some(n.to_string()),
                    _ => None,
                }
            })
        };
        Passthru {
            call_sid: get("CallSid"),
            custom_field: get("CustomField"),
            event_type: get("EventType"),
            stream_sid: stream("StreamSID").or_else(|| get("StreamSid")),
            status: stream("Status"),
            duration_s: stream("Duration")
                .and_then(|d| d.parse::<f64>().ok())
                .map(|d| d as i64),
            recording_url: stream("RecordingUrl"),
            disconnected_by: stream("DisconnectedBy"),
            error: stream("DetailedStatus")
                .or_else(|| stream("Error"))
                .or_else(|| stream("ErrorMessage")),
        }
    }
}

pub fn handle(app: &App, request: &Request) -> Response {
    let query = Params::from_query(&request.query);
    if let Err(refused) = crate::auth::exotel(&app.config, request, &query) {
        return refused;
    }
    let mut params = query;
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
    let found = match app
        .handoffs
        .find(hook.custom_field.as_deref(), hook.call_sid.as_deref())
    {
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

/// A recording URL worth keeping on the row: `https://` to a host, strictly parsed (it is
/// shown to operators, who will click it).
pub fn is_recording_url(url: &str) -> bool {
    crate::calls::destination::Destination::parse("RecordingUrl", url, "https", "https").is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_of_the_stream_reads_the_same() {
        let nested = Params::from_query(
            "CallSid=CA1&CustomField=c1&Stream%5BStreamSID%5D=S1&Stream%5BStatus%5D=completed&Stream%5BDuration%5D=28&Stream%5BRecordingUrl%5D=https%3A%2F%2Fr%2F1.mp3&Stream%5BDisconnectedBy%5D=bot",
        );
        let json_string = Params::from_query(
            "CallSid=CA1&CustomField=c1&Stream=%7B%22StreamSID%22%3A%22S1%22%2C%22Status%22%3A%22completed%22%2C%22Duration%22%3A%2228%22%2C%22RecordingUrl%22%3A%22https%3A%2F%2Fr%2F1.mp3%22%2C%22DisconnectedBy%22%3A%22bot%22%7D",
        );
        let a = Passthru::from_params(&nested);
        assert_eq!(a, Passthru::from_params(&json_string));
        assert_eq!(a.stream_sid.as_deref(), Some("S1"));
        assert_eq!(a.status.as_deref(), Some("completed"));
        assert_eq!(a.duration_s, Some(28));
        assert_eq!(a.disconnected_by.as_deref(), Some("bot"));
        // A field in a shape we do not expect is left out, never an error.
        let odd = Params::from_query("CallSid=CA2&Stream=not-json&Stream%5BDuration%5D=soon");
        let b = Passthru::from_params(&odd);
        assert_eq!(b.call_sid.as_deref(), Some("CA2"));
        assert_eq!((b.duration_s, b.status), (None, None));
    }
}
