//! `POST /call`: whether we take calls and what the request asks for; then
//! [`crate::calls::place`] places it, and Exotel's answer becomes ours.

use crate::app::App;
use crate::calls::place::{place, NotPlaced, PlaceCall};
use crate::calls::{CallLogId, Refusal};
use crate::exotel::ExotelError;
use crate::http::{BodyFraming, Params, Request, Response};
use serde::Serialize;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Placed<'a> {
    call_log_id: &'a str,
    call_sid: &'a str,
    status: &'a str,
}

/// `POST /call`.
pub(super) fn place_call(app: &App, request: &Request) -> Response {
    let call = match read_request(app, request) {
        Ok(call) => call,
        Err(refused) => return refused,
    };
    let id = call.call_log_id.clone();
    match place(app, call) {
        // 200, not 201, as the server this one replaced answered; Location names the row.
        Ok(placed) => Response::json(
            200,
            &Placed {
                call_log_id: id.as_str(),
                call_sid: &placed.call_sid,
                status: &placed.status,
            },
        )
        .with_header("Location", calls_path(&id)),
        Err(NotPlaced::Refused(refusal)) => refusal.into(),
        Err(NotPlaced::Exotel(failure)) => exotel_failure(&id, &failure),
        Err(NotPlaced::NotSent { detail }) => {
            Response::error(503, "exotel_busy", detail).with_header("Retry-After", "1")
        }
        Err(NotPlaced::NoAnswer { detail }) => Response::error(504, "exotel_timeout", detail),
    }
}

/// Whether we take calls, and what the request asks for (who asks was checked by the router).
fn read_request(app: &App, request: &Request) -> Result<PlaceCall, Response> {
    app.refuse_if_draining()?;
    if request.framing == BodyFraming::None {
        return Err(Response::error(
            411,
            "length_required",
            "POST /call needs a body with Content-Length (or chunked): {\"to\": \"+91…\"}",
        ));
    }
    let mut params = Params::default();
    params.add_body(request)?;
    PlaceCall::from_params(&params).map_err(|why| Refusal::invalid(why).into())
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

/// `/calls/{callLogId}`, the id `%`-escaped as a path segment needs.
fn calls_path(id: &CallLogId) -> String {
    let mut path = "/calls/".to_owned();
    crate::http::form::encode_into(&mut path, id.as_str());
    path
}
