//! What Exotel's connect webhook says (docs/exotel.md §2): its parameters, from the query, a
//! form or JSON; only `CallSid` is required (point 1 of docs/exotel.md §6). The route that
//! answers it is `routes::webhooks`.

use crate::http::Params;

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
