//! Plays the rest of Exotel's flow after a stream: the Passthru applet's request, in any of
//! the shapes Exotel sends, and which branch the flow would take (`simulate --passthru`).

use super::client::Server;

/// The shapes of Exotel's Passthru request (docs/exotel.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `GET ?CallSid=…&Stream[Status]=…` (nested keys).
    Nested,
    /// `GET ?CallSid=…&Stream={"Status": …}` (the stream object as one JSON string).
    Json,
    /// `GET ?CallSid=…&CustomField=…` only: the call's parameters, no stream's.
    Flat,
    /// `POST` JSON body as the Passthru before the stream sends it (`EventType: stream-start`).
    Body,
}

impl Form {
    pub fn parse(s: &str) -> Result<Form, String> {
        match s {
            "nested" => Ok(Form::Nested),
            "json" => Ok(Form::Json),
            "flat" => Ok(Form::Flat),
            "body" => Ok(Form::Body),
            other => Err(format!("{other:?} is not nested, json, flat or body")),
        }
    }
}

/// Where the flow goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Branch {
    pub status: u16,
    pub body: String,
}

/// Asks `path` (the passthru URL) about the call as Exotel would once its stream ended
/// (`disconnected_by`: `bot` when the server closed the stream, `user` when the caller hung up).
pub fn ask(
    server: &Server,
    path: &str,
    form: Form,
    call_sid: &str,
    call_log_id: &str,
    disconnected_by: &str,
) -> Result<Branch, String> {
    let mut query = String::new();
    let mut pair = |k: &str, v: &str| crate::http::form::append_pair(&mut query, k, v);
    pair("CallSid", call_sid);
    pair("CustomField", call_log_id);
    pair("CallFrom", "+919876543210");
    pair("CallTo", "08047112233");
    pair("Direction", "inbound");
    let stream = serde_json::json!({
        "StreamSID": format!("sim-{call_sid}"),
        "Status": "completed",
        "Duration": "3",
        "DisconnectedBy": disconnected_by,
    });
    let (method, body) = match form {
        Form::Nested => {
            for (k, v) in stream.as_object().into_iter().flatten() {
                pair(&format!("Stream[{k}]"), v.as_str().unwrap_or(""));
            }
            ("GET", None)
        }
        Form::Json => {
            pair("Stream", &stream.to_string());
            ("GET", None)
        }
        Form::Flat => ("GET", None),
        Form::Body => {
            query.clear();
            let body = serde_json::json!({
                "CallSid": call_sid, "StreamSid": format!("sim-{call_sid}"),
                "StreamUrl": "wss://example.invalid/media", "AccountSid": "sim",
                "EventType": "stream-start", "From": "+919876543210", "To": "08047112233",
                "Direction": "inbound",
            });
            ("POST", Some(body.to_string()))
        }
    };
    let sep = if path.contains('?') { '&' } else { '?' };
    let target = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}{sep}{query}")
    };
    let (status, body) = server
        .fetch(method, &target, body.as_deref())
        .map_err(|e| format!("passthru {path}: {e}"))?;
    Ok(Branch {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
