//! `POST /call`: check the caller, read and validate the request, then hand one `Calls/connect`
//! to the API pool and turn Exotel's answer into ours (design §3, §5).
//!
//! Everything is validated before Exotel is asked; nothing is retried.

use crate::app::App;
use crate::calls::log::LogEvent;
use crate::calls::slots::NewCallRefused;
use crate::calls::{CallLogId, PhoneNumber};
use crate::config::ConnectMode;
use crate::exotel::client::RecordingChannels;
use crate::exotel::{CallOptions, CallTarget, ConnectCall, ExotelError, PoolError};
use crate::http::{BodyFraming, Params, Request, Response};
use crate::metrics::ExotelOutcome;
use serde::Serialize;

/// Exotel's upper bound for `TimeLimit`, in seconds.
pub const MAX_TIME_LIMIT_S: u32 = 14_400;

/// What the user asked for, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct PlaceCall {
    pub to: PhoneNumber,
    pub call_log_id: CallLogId,
    pub options: CallOptions,
}

impl PlaceCall {
    /// Reads `to`, `callLogId` and the optional fields (`timeLimit`, `timeOut`, `record`,
    /// `recordingChannels`, `statusCallback`, `statusCallbackEvents`,
    /// `statusCallbackContentType`); the error names the field and says why.
    pub fn from_params(params: &Params) -> Result<PlaceCall, String> {
        let to = params
            .get_non_empty("to")
            .ok_or("to is missing: give the customer's number, e.g. \"+919876543210\"")?;
        let to = PhoneNumber::parse(to).map_err(|e| format!("to: {e}"))?;
        let call_log_id = match params.get_non_empty("callLogId") {
            Some(id) => CallLogId::parse(id).map_err(|e| format!("callLogId {e}"))?,
            None => CallLogId::generate(),
        };
        let seconds = |name: &str, max: u32| -> Result<Option<u32>, String> {
            params
                .get_non_empty(name)
                .map(|v| match v.parse::<u32>() {
                    Ok(n) if (1..=max).contains(&n) => Ok(n),
                    _ => Err(format!(
                        "{name} {v:?} is not a whole number of seconds from 1 to {max}"
                    )),
                })
                .transpose()
        };
        let record = params
            .get_non_empty("record")
            .map(|v| match v {
                "true" | "1" => Ok(true),
                "false" | "0" => Ok(false),
                _ => Err(format!("record {v:?} is neither true nor false")),
            })
            .transpose()?;
        let recording_channels = params
            .get_non_empty("recordingChannels")
            .map(|v| match v {
                "single" => Ok(RecordingChannels::Single),
                "dual" => Ok(RecordingChannels::Dual),
                _ => Err(format!(
                    "recordingChannels {v:?} is neither single nor dual"
                )),
            })
            .transpose()?;
        let status_callback = params
            .get_non_empty("statusCallback")
            .map(|v| {
                if v.starts_with("https://") || v.starts_with("http://") {
                    Ok(v.to_owned())
                } else {
                    Err(format!("statusCallback {v:?} is not an http(s) URL"))
                }
            })
            .transpose()?;
        let mut status_callback_events = Vec::new();
        for event in params.get_all("statusCallbackEvents") {
            match event {
                "terminal" | "answered" => status_callback_events.push(event.to_owned()),
                _ => {
                    return Err(format!(
                        "statusCallbackEvents {event:?} is neither terminal nor answered"
                    ))
                }
            }
        }
        let status_callback_content_type = params
            .get_non_empty("statusCallbackContentType")
            .map(|v| match v {
                "application/json" | "multipart/form-data" => Ok(v.to_owned()),
                _ => Err(format!("statusCallbackContentType {v:?} is neither application/json nor multipart/form-data")),
            })
            .transpose()?;
        Ok(PlaceCall {
            to,
            call_log_id,
            options: CallOptions {
                time_limit: seconds("timeLimit", MAX_TIME_LIMIT_S)?,
                time_out: seconds("timeOut", 3_600)?,
                record,
                recording_channels,
                status_callback,
                status_callback_events,
                status_callback_content_type,
            },
        })
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Placed<'a> {
    call_log_id: &'a str,
    call_sid: &'a str,
    status: &'a str,
}

pub fn handle(app: &App, request: &Request) -> Response {
    if let Err(denied) = crate::auth::user(&app.config, request) {
        return denied;
    }
    if let Err(draining) = app.refuse_if_draining() {
        return draining;
    }
    if request.framing == BodyFraming::None {
        return Response::error(
            411,
            "length_required",
            "POST /call needs a body with Content-Length (or chunked): {\"to\": \"+91…\"}",
        );
    }
    let mut params = Params::default();
    if let Err(bad) = params.add_body(request) {
        return bad;
    }
    let mut call = match PlaceCall::from_params(&params) {
        Ok(call) => call,
        Err(why) => return Response::error(400, "bad_request", why),
    };
    let pool = match &app.exotel {
        Ok(pool) => pool,
        Err(missing) => {
            return Response::error(
                503,
                "not_configured",
                format!(
                    "placing calls needs {} in the environment or .env",
                    missing.join(", ")
                ),
            )
        }
    };
    let id = call.call_log_id.clone();
    // One row per callLogId: a used id would leave this call under another call's final status.
    match app.call_log.get(id.as_str()) {
        Ok(None) => {}
        Ok(Some(existing)) => {
            return Response::error(
                409,
                "call_log_id_taken",
                format!(
                    "callLogId {id} was already used (status {}); send a new one or none",
                    existing.status
                ),
            )
        }
        Err(e) => return Response::error(503, "call_log_unavailable", e),
    }
    match app.slots.acquire_new(&id) {
        Ok(()) => {}
        Err(NewCallRefused::InUse) => {
            return Response::error(
                409,
                "call_log_id_taken",
                format!("callLogId {id} belongs to a call that is live; send a new one or none"),
            )
        }
        Err(NewCallRefused::Full { max }) => {
            return Response::error(
                429,
                "too_many_calls",
                format!("all {max} call slots are in use (MAX_CONCURRENT_CALLS); nothing was sent to Exotel"),
            )
            .with_header("Retry-After", "5")
        }
    }
    let e = &app.config.exotel;
    let target = match e.connect_mode {
        ConnectMode::Applet => CallTarget::Applet {
            app_id: e.app_id.clone().unwrap_or_default(),
        },
        ConnectMode::Stream => match app.issue_media_url(&id, false) {
            Ok(stream_url) => CallTarget::Stream { stream_url },
            Err(busy) => {
                app.slots.release(&id);
                return busy;
            }
        },
    };
    // Exotel tells us how the call ended through our status callback, unless the user asked
    // for the callbacks to go elsewhere.
    if call.options.status_callback.is_none() {
        call.options.status_callback = Some(app.status_callback_url());
        call.options.status_callback_events = vec!["terminal".into(), "answered".into()];
    }
    let mode = match e.connect_mode {
        ConnectMode::Applet => "applet",
        ConnectMode::Stream => "stream",
    };
    crate::info!(
        "call.requested",
        callLogId = id,
        to = call.to.as_str(),
        mode = mode
    );
    app.call_log.record(LogEvent::Requested {
        id: id.clone(),
        to: call.to.as_str().to_owned(),
        caller_id: e.caller_id.clone().unwrap_or_default(),
    });
    let started = std::time::Instant::now();
    let result = pool.connect_call(ConnectCall {
        to: call.to,
        caller_id: e.caller_id.clone().unwrap_or_default(),
        target,
        call_log_id: id.clone(),
        options: call.options,
    });
    let took = started.elapsed();
    let ms = took.as_millis();
    let outcome = match &result {
        Ok(_) => ExotelOutcome::Placed,
        Err(PoolError::Exotel(ExotelError::Refused { .. })) => ExotelOutcome::Refused,
        Err(PoolError::Exotel(ExotelError::BadAnswer { .. })) => ExotelOutcome::BadAnswer,
        Err(PoolError::Exotel(ExotelError::Unreachable(_))) => ExotelOutcome::Unreachable,
        Err(PoolError::Exotel(ExotelError::TimedOut) | PoolError::NoAnswer) => {
            ExotelOutcome::Timeout
        }
        Err(PoolError::NotSent) => ExotelOutcome::NotSent,
    };
    app.metrics.exotel_request(outcome, took);
    match result {
        Ok(placed) => {
            crate::info!(
                "call.placed",
                callLogId = id,
                callSid = placed.call_sid,
                status = placed.status,
                ms = ms
            );
            app.call_log.record(LogEvent::Placed {
                id: id.clone(),
                call_sid: placed.call_sid.clone(),
            });
            Response::json(
                200,
                &Placed {
                    call_log_id: id.as_str(),
                    call_sid: &placed.call_sid,
                    status: &placed.status,
                },
            )
        }
        Err(PoolError::Exotel(failure)) => {
            crate::warn!("call.refused", callLogId = id, error = failure, ms = ms);
            app.slots.release(&id);
            app.call_log.record(LogEvent::PlaceFailed {
                id: id.clone(),
                error: failure.to_string(),
            });
            exotel_failure(&id, &failure)
        }
        Err(PoolError::NotSent) => {
            crate::warn!("call.not_sent", callLogId = id, ms = ms);
            app.slots.release(&id);
            let detail = format!(
                "every Exotel API thread was busy for {ms} ms; nothing was sent to Exotel, so it is safe to try again with a new callLogId"
            );
            app.call_log.record(LogEvent::PlaceFailed {
                id: id.clone(),
                error: detail.clone(),
            });
            Response::error(503, "exotel_busy", detail).with_header("Retry-After", "1")
        }
        Err(PoolError::NoAnswer) => {
            // The call may exist: it keeps its slot until a status callback or the slot timeout.
            crate::warn!("call.no_answer", callLogId = id, ms = ms);
            let detail = format!(
                "Exotel did not answer within {} ms; the call may still have been placed (callLogId {id}), so it was not retried",
                pool.timeout().as_millis()
            );
            app.call_log.record(LogEvent::PlaceUnknown {
                id: id.clone(),
                error: detail.clone(),
            });
            Response::error(504, "exotel_timeout", detail)
        }
    }
}

/// 502 with Exotel's own status and message inside.
fn exotel_failure(id: &CallLogId, failure: &ExotelError) -> Response {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        error: &'a str,
        detail: String,
        call_log_id: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        exotel_status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exotel_message: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        exotel_code: Option<&'a str>,
    }
    let (status, message, code) = match failure {
        ExotelError::Refused {
            status,
            message,
            code,
        } => (Some(*status), Some(message.as_str()), code.as_deref()),
        ExotelError::BadAnswer { status, .. } => (*status, None, None),
        _ => (None, None, None),
    };
    let kind = match failure {
        ExotelError::Refused { .. } => "exotel_refused",
        ExotelError::BadAnswer { .. } => "exotel_bad_answer",
        ExotelError::Unreachable(_) => "exotel_unreachable",
        ExotelError::TimedOut => "exotel_timeout",
    };
    Response::json(
        502,
        &Body {
            error: kind,
            detail: failure.to_string(),
            call_log_id: id.as_str(),
            exotel_status: status,
            exotel_message: message,
            exotel_code: code,
        },
    )
}
