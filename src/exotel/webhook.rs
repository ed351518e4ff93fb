//! The connect webhook (`GET|POST /voicebot/connect`, `/api/v1/exotel/voice/connect`): Exotel
//! asks where to stream the call, and we answer `{"url": "wss://…/media?…"}` with a fresh media
//! token for the call (exotel-protocol.md §2).
//!
//! Open question 1 of the protocol file (GET or POST, which parameters): we accept both, from the
//! query, a form or JSON, and require only `CallSid`, as the protocol file says; every other
//! parameter is optional and logged.

use crate::app::App;
use crate::calls::CallLogId;
use crate::http::{Params, Request, Response};

/// The webhook's parameters that we use, with Exotel's names.
#[derive(Debug, PartialEq, Eq)]
pub struct ConnectWebhook {
    pub call_sid: String,
    pub call_from: Option<String>,
    pub call_to: Option<String>,
    pub direction: Option<String>,
    /// Our callLogId for calls we placed; absent for inbound calls.
    pub custom_field: Option<String>,
}

impl ConnectWebhook {
    pub fn from_params(params: &Params) -> Result<ConnectWebhook, String> {
        let get = |name: &str| params.get_non_empty(name).map(str::to_owned);
        Ok(ConnectWebhook {
            call_sid: get("CallSid").ok_or("CallSid is missing")?,
            call_from: get("CallFrom").or_else(|| get("From")),
            call_to: get("CallTo").or_else(|| get("To")),
            direction: get("Direction"),
            custom_field: get("CustomField"),
        })
    }
}

#[derive(serde::Serialize)]
struct Answer {
    url: String,
}

pub fn handle(app: &App, request: &Request) -> Response {
    let query = Params::from_query(&request.query);
    if let Err(denied) = crate::auth::exotel(&app.config, request, &query) {
        return denied;
    }
    let mut params = query;
    if let Err(bad) = params.add_body(request) {
        return bad;
    }
    let hook = match ConnectWebhook::from_params(&params) {
        Ok(hook) => hook,
        Err(why) => return Response::error(400, "bad_request", why),
    };
    // Our own calls carry their callLogId as CustomField; inbound calls get a fresh one. A
    // CustomField we could not have sent (set in Exotel's dashboard, say) is kept in the log but
    // does not become an id.
    let call_log_id = match hook.custom_field.as_deref().map(CallLogId::parse) {
        Some(Ok(id)) => id,
        Some(Err(why)) => {
            let id = CallLogId::generate();
            crate::warn!(
                "webhook.foreign_custom_field",
                callLogId = id,
                callSid = hook.call_sid,
                customField = hook.custom_field.as_deref().unwrap_or(""),
                why = why
            );
            id
        }
        None => CallLogId::generate(),
    };
    let url = match app.issue_media_url(&call_log_id) {
        Ok(url) => url,
        Err(busy) => return busy,
    };
    crate::info!(
        "webhook.connect",
        callLogId = call_log_id,
        callSid = hook.call_sid,
        direction = hook.direction.as_deref().unwrap_or("unknown"),
        from = hook.call_from.as_deref().unwrap_or(""),
        to = hook.call_to.as_deref().unwrap_or(""),
        method = request.method
    );
    Response::json(200, &Answer { url })
}
