//! The blocking client for Exotel's v1 REST API: `POST /v1/Accounts/{sid}/Calls/connect.json`
//! with HTTP Basic auth and a form body (docs/exotel.md §1).
//!
//! It blocks in the kernel (minreq's std sockets), so it must never be called on a coroutine:
//! `pool::ApiPool` runs it on OS threads. It never retries: a retried `Calls/connect` can ring a
//! customer twice.

use crate::calls::{CallLogId, PhoneNumber};
use crate::http::form;
use base64::Engine as _;
use serde::Serialize;
use std::time::Duration;

/// Where Exotel connects the answered call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallTarget {
    /// The flow with our Voicebot applet: `Url=http://my.exotel.com/{sid}/exoml/start_voice/{app}`.
    Applet { app_id: String },
    /// "Connect Voice AI": `StreamType=bidirectional`, `StreamUrl=wss://…` (max 600 characters).
    Stream { stream_url: String },
}

/// `RecordingChannels`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordingChannels {
    Single,
    Dual,
}

/// The optional fields of `Calls/connect` a user may ask for (docs/exotel.md §1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// `TimeLimit`: longest call in seconds, at most 14400.
    pub time_limit: Option<u32>,
    /// `TimeOut`: ring time in seconds.
    pub time_out: Option<u32>,
    pub record: Option<bool>,
    pub recording_channels: Option<RecordingChannels>,
    pub status_callback: Option<String>,
    /// `StatusCallbackEvents[]`: `terminal`, `answered`; sent once per value.
    pub status_callback_events: Vec<String>,
    pub status_callback_content_type: Option<String>,
}

/// One `Calls/connect` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectCall {
    /// `From`: the customer, whom Exotel dials first.
    pub to: PhoneNumber,
    /// `CallerId`: the ExoPhone the customer sees.
    pub caller_id: String,
    pub target: CallTarget,
    /// `CustomField`: comes back in the webhook and the status callbacks.
    pub call_log_id: CallLogId,
    pub options: CallOptions,
}

impl ConnectCall {
    /// The `application/x-www-form-urlencoded` body, fields in the order the original server sent
    /// them.
    pub fn form_body(&self, sid: &str) -> String {
        let mut body = String::with_capacity(256);
        form::append_pair(&mut body, "From", self.to.as_str());
        form::append_pair(&mut body, "CallerId", &self.caller_id);
        match &self.target {
            CallTarget::Applet { app_id } => {
                let url = format!("http://my.exotel.com/{sid}/exoml/start_voice/{app_id}");
                form::append_pair(&mut body, "Url", &url);
            }
            CallTarget::Stream { stream_url } => {
                form::append_pair(&mut body, "StreamType", "bidirectional");
                form::append_pair(&mut body, "StreamUrl", stream_url);
            }
        }
        form::append_pair(&mut body, "CustomField", self.call_log_id.as_str());
        let o = &self.options;
        if let Some(v) = o.time_limit {
            form::append_pair(&mut body, "TimeLimit", &v.to_string());
        }
        if let Some(v) = o.time_out {
            form::append_pair(&mut body, "TimeOut", &v.to_string());
        }
        if let Some(v) = o.record {
            form::append_pair(&mut body, "Record", if v { "true" } else { "false" });
        }
        if let Some(v) = o.recording_channels {
            let v = match v {
                RecordingChannels::Single => "single",
                RecordingChannels::Dual => "dual",
            };
            form::append_pair(&mut body, "RecordingChannels", v);
        }
        if let Some(v) = &o.status_callback {
            form::append_pair(&mut body, "StatusCallback", v);
        }
        for event in &o.status_callback_events {
            form::append_pair(&mut body, "StatusCallbackEvents[]", event);
        }
        if let Some(v) = &o.status_callback_content_type {
            form::append_pair(&mut body, "StatusCallbackContentType", v);
        }
        body
    }
}

/// What Exotel said when it accepted the call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlacedCall {
    /// `Call.Sid`
    pub call_sid: String,
    /// `Call.Status`: `queued`, `in-progress`, …
    pub status: String,
}

/// Why no call was placed (or why we cannot tell).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExotelError {
    /// Exotel answered with an error status (`RestException`).
    Refused {
        status: u16,
        message: String,
        code: Option<String>,
    },
    /// Exotel answered, but not with anything we can read: a 2xx without a call, or bytes that
    /// are not HTTP (then `status` is `None`).
    BadAnswer { status: Option<u16>, detail: String },
    /// No connection could be made (DNS, refused, TLS).
    Unreachable(String),
    /// The request went out but no answer came in time: the call may or may not exist.
    TimedOut,
}

impl std::fmt::Display for ExotelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExotelError::Refused {
                status, message, ..
            } => write!(f, "Exotel answered {status}: {message}"),
            ExotelError::BadAnswer {
                status: Some(status),
                detail,
            } => write!(
                f,
                "Exotel answered {status} with an unreadable body: {detail}"
            ),
            ExotelError::BadAnswer {
                status: None,
                detail,
            } => write!(f, "Exotel's answer was not HTTP: {detail}"),
            ExotelError::Unreachable(why) => write!(f, "Exotel could not be reached: {why}"),
            ExotelError::TimedOut => write!(f, "Exotel did not answer in time"),
        }
    }
}

/// A value that becomes one segment of an Exotel API URL path (an account SID, an app id):
/// letters, digits, `.`, `_` and `-` only, so that it cannot change the URL around it.
pub fn check_url_segment(value: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if value.is_empty() || !value.chars().all(fits) || value == "." || value == ".." {
        return Err(format!(
            "{value:?} goes into Exotel's URLs and may hold only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

/// Credentials and where to reach the API.
#[derive(Clone)]
pub struct ExotelClient {
    base_url: String,
    sid: String,
    authorization: String,
    timeout: Duration,
}

impl std::fmt::Debug for ExotelClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExotelClient")
            .field("base_url", &self.base_url)
            .field("sid", &self.sid)
            .finish_non_exhaustive()
    }
}

impl ExotelClient {
    pub fn new(
        base_url: &str,
        sid: &str,
        api_key: &str,
        api_token: &str,
        timeout: Duration,
    ) -> Self {
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{api_key}:{api_token}"));
        ExotelClient {
            base_url: base_url.trim_end_matches('/').to_owned(),
            sid: sid.to_owned(),
            authorization: format!("Basic {basic}"),
            timeout,
        }
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Places one call. Blocks for up to the timeout (rounded up to whole seconds, minreq's unit):
    /// call it only from an OS thread.
    pub fn connect_call(&self, call: &ConnectCall) -> Result<PlacedCall, ExotelError> {
        let url = format!(
            "{}/v1/Accounts/{}/Calls/connect.json",
            self.base_url, self.sid
        );
        let seconds = self.timeout.as_millis().div_ceil(1000).max(1) as u64;
        let response = minreq::post(url)
            .with_header("Authorization", &self.authorization)
            .with_header("Content-Type", "application/x-www-form-urlencoded")
            .with_header("Accept", "application/json")
            .with_body(call.form_body(&self.sid))
            .with_timeout(seconds)
            .with_max_redirects(0)
            .send()
            .map_err(classify_transport_error)?;
        // minreq reads an answer without a status line as 503 with this reason phrase
        // (minreq 2.14 response.rs, parse_status_line); that is not Exotel saying 503.
        if response.status_code == 503 && response.reason_phrase == MINREQ_NO_STATUS_LINE {
            return Err(ExotelError::BadAnswer {
                status: None,
                detail: format!("no status line; body {}", snippet(response.as_bytes())),
            });
        }
        read_answer(response.status_code as u16, response.as_bytes())
    }
}

impl ExotelClient {
    /// `GET /v1/Accounts/{sid}/Calls/{CallSid}.json`: how a call we placed is going, for a call
    /// whose status callback never came. Blocks like [`ExotelClient::connect_call`].
    pub fn call_details(&self, call_sid: &str) -> Result<CallDetails, ExotelError> {
        let mut url = format!("{}/v1/Accounts/{}/Calls/", self.base_url, self.sid);
        form::encode_into(&mut url, call_sid);
        url.push_str(".json");
        let seconds = self.timeout.as_millis().div_ceil(1000).max(1) as u64;
        let response = minreq::get(url)
            .with_header("Authorization", &self.authorization)
            .with_header("Accept", "application/json")
            .with_timeout(seconds)
            .with_max_redirects(0)
            .send()
            .map_err(classify_transport_error)?;
        let status = response.status_code as u16;
        let placed = read_answer(status, response.as_bytes())?;
        let json: serde_json::Value =
            serde_json::from_slice(response.as_bytes()).unwrap_or_default();
        let call = json.get("Call").or_else(|| json.get("call"));
        let duration_s = call
            .and_then(|c| c.get("Duration").or_else(|| c.get("duration")))
            .and_then(|d| match d {
                serde_json::Value::Number(n) => n.as_u64(),
                serde_json::Value::String(s) => s.trim().parse().ok(),
                _ => None,
            });
        Ok(CallDetails {
            status: placed.status,
            duration_s,
        })
    }
}

/// What Exotel's call-details API says of a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CallDetails {
    /// `Call.Status`: `queued`, `ringing`, `in-progress`, `completed`, `busy`, `no-answer`, …
    pub status: String,
    /// `Call.Duration`, seconds.
    pub duration_s: Option<u64>,
}

const MINREQ_NO_STATUS_LINE: &str = "Server did not provide a status line";

fn classify_transport_error(e: minreq::Error) -> ExotelError {
    match e {
        minreq::Error::IoError(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ) =>
        {
            ExotelError::TimedOut
        }
        minreq::Error::IoError(io) => ExotelError::Unreachable(io.to_string()),
        other => ExotelError::Unreachable(other.to_string()),
    }
}

/// Reads `{"Call": {"Sid", "Status", …}}` (or the lower-case form of the newer guide) from a 2xx
/// answer, and `{"RestException": {"Status", "Message", "Code"}}` (or XML, or anything) from the
/// others.
pub fn read_answer(status: u16, body: &[u8]) -> Result<PlacedCall, ExotelError> {
    let json: Option<serde_json::Value> = serde_json::from_slice(body).ok();
    let field = |v: &serde_json::Value, names: &[&str]| -> Option<String> {
        names.iter().find_map(|n| match v.get(*n)? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    if (200..300).contains(&status) {
        let call = json
            .as_ref()
            .and_then(|j| j.get("Call").or_else(|| j.get("call")));
        return match call.and_then(|c| field(c, &["Sid", "sid"]).map(|sid| (c, sid))) {
            Some((c, call_sid)) => Ok(PlacedCall {
                call_sid,
                status: field(c, &["Status", "status"]).unwrap_or_else(|| "queued".into()),
            }),
            None => Err(ExotelError::BadAnswer {
                status: Some(status),
                detail: format!("no Call.Sid in {}", snippet(body)),
            }),
        };
    }
    let exception = json
        .as_ref()
        .and_then(|j| j.get("RestException").or_else(|| j.get("restException")));
    let message = exception
        .and_then(|e| field(e, &["Message", "message"]))
        .or_else(|| xml_element(body, "Message"))
        .unwrap_or_else(|| snippet(body));
    let code = exception.and_then(|e| field(e, &["Code", "code"]));
    Err(ExotelError::Refused {
        status,
        message,
        code,
    })
}

/// The text of the first `<name>…</name>`, for Exotel's XML error answers.
fn xml_element(body: &[u8], name: &str) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find(&format!("<{name}>"))? + name.len() + 2;
    let end = start + text[start..].find(&format!("</{name}>"))?;
    Some(text[start..end].trim().to_owned())
}

/// At most 200 printable characters of a body, for error details.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if cleaned.trim().is_empty() {
        "an empty body".into()
    } else {
        format!("{:?}", cleaned.trim())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_upper_and_lower_case_answers() {
        let ok = read_answer(
            200,
            br#"{"Call":{"Sid":"abc","Status":"queued","From":"x"}}"#,
        );
        assert_eq!(
            ok.unwrap(),
            PlacedCall {
                call_sid: "abc".into(),
                status: "queued".into()
            }
        );
        let ok = read_answer(200, br#"{"call":{"sid":"d","status":"in-progress"}}"#);
        assert_eq!(ok.unwrap().status, "in-progress");
        assert!(matches!(
            read_answer(200, b"<html>"),
            Err(ExotelError::BadAnswer { .. })
        ));
    }

    #[test]
    fn reads_refusals_in_json_xml_and_garbage() {
        let e = read_answer(401, br#"{"RestException":{"Status":401,"Message":"Authentication is required","Code":20003}}"#);
        assert_eq!(
            e.unwrap_err(),
            ExotelError::Refused {
                status: 401,
                message: "Authentication is required".into(),
                code: Some("20003".into())
            }
        );
        let e = read_answer(400, b"<TwilioResponse><RestException><Message>bad From</Message></RestException></TwilioResponse>");
        assert!(matches!(e, Err(ExotelError::Refused { message, .. }) if message == "bad From"));
        let e = read_answer(500, b"\x00\x01oops");
        assert!(
            matches!(e, Err(ExotelError::Refused { status: 500, message, .. }) if message.contains("oops"))
        );
    }
}
