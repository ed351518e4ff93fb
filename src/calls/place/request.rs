//! What `POST /call` asks for, read and checked field by field before anything is placed: the
//! numbers, the callLogId, Exotel's options and the call's variables.

use crate::calls::{CallLogId, PhoneNumber};
use crate::exotel::client::RecordingChannels;
use crate::exotel::CallOptions;
use crate::http::Params;

/// Exotel's upper bound for `TimeLimit`, in seconds.
pub const MAX_TIME_LIMIT_S: u32 = 14_400;

/// What the user asked for, validated.
#[derive(Debug, PartialEq, Eq)]
pub struct PlaceCall {
    pub to: PhoneNumber,
    /// The ExoPhone to call from (one of `/phones`); `None`: the environment's line.
    pub from: Option<PhoneNumber>,
    /// The agent that answers (one of `/agents`); `None`: the phone's, else `BOT`.
    pub agent: Option<String>,
    pub call_log_id: CallLogId,
    pub options: CallOptions,
    /// The call's own values (`variables`), handed to its bot with the call's parameters.
    pub variables: Vec<(String, String)>,
}

/// Variables one call may carry at most, the longest name, and the longest value in bytes.
pub const MAX_VARIABLES: usize = 32;
pub const MAX_VARIABLE_NAME: usize = 64;
pub const MAX_VARIABLE_BYTES: usize = 1024;

/// Every field `POST /call` reads. Any other is refused with its name: a misspelt
/// `timeLimt` silently ignored would place a call the user did not ask for.
pub const FIELDS: [&str; 12] = [
    "to",
    "from",
    "agent",
    "variables",
    "callLogId",
    "timeLimit",
    "timeOut",
    "record",
    "recordingChannels",
    "statusCallback",
    "statusCallbackEvents",
    "statusCallbackContentType",
];

impl PlaceCall {
    /// Reads `to`, `callLogId` and the optional fields (`timeLimit`, `timeOut`, `record`,
    /// `recordingChannels`, `statusCallback`, `statusCallbackEvents`,
    /// `statusCallbackContentType`); the error names the field and says why.
    pub fn from_params(params: &Params) -> Result<PlaceCall, String> {
        if let Some(name) = params.first_unknown(&FIELDS) {
            return Err(format!(
                "{name:?} is not a field of POST /call (the fields are {})",
                FIELDS.join(", ")
            ));
        }
        let to = customer_number(params)?;
        let from = params
            .get_non_empty("from")
            .map(|f| PhoneNumber::parse(f).map_err(|e| format!("from: {e}")))
            .transpose()?;
        let call_log_id = match params.get_non_empty("callLogId") {
            Some(id) => CallLogId::parse(id).map_err(|e| format!("callLogId {e}"))?,
            None => CallLogId::generate(),
        };
        Ok(PlaceCall {
            to,
            from,
            agent: params.get_non_empty("agent").map(str::to_owned),
            call_log_id,
            options: call_options(params)?,
            variables: params
                .get_non_empty("variables")
                .map(variables)
                .transpose()?
                .unwrap_or_default(),
        })
    }
}

/// `variables`: a JSON object of strings, its names letters, digits, `_` and `-`.
fn variables(json: &str) -> Result<Vec<(String, String)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|_| "variables must be an object of strings, e.g. {\"name\": \"Asha\"}")?;
    if map.len() > MAX_VARIABLES {
        return Err(format!(
            "variables has {} names; at most {MAX_VARIABLES}",
            map.len()
        ));
    }
    map.into_iter()
        .map(|(name, value)| {
            let fits = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if name.is_empty() || name.len() > MAX_VARIABLE_NAME || !name.chars().all(fits) {
                return Err(format!(
                    "variables: {name:?} must be 1 to {MAX_VARIABLE_NAME} letters, digits, '_' or '-'"
                ));
            }
            match value {
                serde_json::Value::String(v) if v.len() <= MAX_VARIABLE_BYTES => Ok((name, v)),
                serde_json::Value::String(_) => Err(format!(
                    "variables.{name} is longer than {MAX_VARIABLE_BYTES} bytes"
                )),
                _ => Err(format!("variables.{name} must be a string")),
            }
        })
        .collect()
}

/// `to`, the number to dial; a form body's `+` that arrived as a space is named as the cause.
fn customer_number(params: &Params) -> Result<PhoneNumber, String> {
    let to = params
        .get_non_empty("to")
        .ok_or("to is missing: give the customer's number, e.g. \"+919876543210\"")?;
    PhoneNumber::parse(to).map_err(|e| {
        // A form body's `+` decodes as a space: `to=+9198…` arrives as " 9198…".
        if params.get("to").is_some_and(|raw| raw.starts_with(' ')) {
            format!("to: {e} (a '+' in a form body reads as a space: send it as %2B, or send JSON)")
        } else {
            format!("to: {e}")
        }
    })
}

/// What Exotel's `Calls/connect` takes besides the numbers, each field checked.
fn call_options(params: &Params) -> Result<CallOptions, String> {
    Ok(CallOptions {
        time_limit: seconds(params, "timeLimit", MAX_TIME_LIMIT_S)?,
        time_out: seconds(params, "timeOut", 3_600)?,
        record: params.one_of(
            "record",
            &[("true", true), ("1", true), ("false", false), ("0", false)],
            "is neither true nor false",
        )?,
        recording_channels: params.one_of(
            "recordingChannels",
            &[
                ("single", RecordingChannels::Single),
                ("dual", RecordingChannels::Dual),
            ],
            "is neither single nor dual",
        )?,
        status_callback: params
            .get_non_empty("statusCallback")
            .map(|v| {
                if v.starts_with("https://") || v.starts_with("http://") {
                    Ok(v.to_owned())
                } else {
                    Err(format!("statusCallback {v:?} is not an http(s) URL"))
                }
            })
            .transpose()?,
        status_callback_events: params
            .get_all("statusCallbackEvents")
            .into_iter()
            .map(|event| match event {
                "terminal" | "answered" => Ok(event.to_owned()),
                _ => Err(format!(
                    "statusCallbackEvents {event:?} is neither terminal nor answered"
                )),
            })
            .collect::<Result<_, _>>()?,
        status_callback_content_type: params
            .one_of(
                "statusCallbackContentType",
                &[
                    ("application/json", "application/json"),
                    ("multipart/form-data", "multipart/form-data"),
                ],
                "is neither application/json nor multipart/form-data",
            )?
            .map(str::to_owned),
    })
}

/// A whole number of seconds from 1 to `max`, when given.
fn seconds(params: &Params, name: &str, max: u32) -> Result<Option<u32>, String> {
    params
        .get_non_empty(name)
        .map(|v| match v.parse::<u32>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!(
                "{name} {v:?} is not a whole number of seconds from 1 to {max}"
            )),
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(fields: &str) -> Result<PlaceCall, String> {
        PlaceCall::from_params(&Params::from_query(&format!("to=%2B919876543210&{fields}")))
    }

    #[test]
    fn variables_are_read_at_their_limits_or_refused_by_name() {
        let json = |n: usize, value_bytes: usize| {
            let value = "v".repeat(value_bytes);
            let pairs: Vec<String> = (0..n).map(|i| format!("\"k{i}\":\"{value}\"")).collect();
            format!("{{{}}}", pairs.join(","))
        };
        let with = |v: &str| {
            let mut encoded = String::new();
            crate::http::form::encode_into(&mut encoded, v);
            read(&format!("variables={encoded}"))
        };
        let call = with(&json(MAX_VARIABLES, MAX_VARIABLE_BYTES)).unwrap();
        assert_eq!(call.variables.len(), MAX_VARIABLES);
        assert_eq!(call.variables[0].1.len(), MAX_VARIABLE_BYTES);
        assert!(with(&json(MAX_VARIABLES + 1, 1))
            .unwrap_err()
            .contains("at most 32"));
        assert!(with(&json(1, MAX_VARIABLE_BYTES + 1))
            .unwrap_err()
            .contains("longer than 1024 bytes"));
        let long_name = format!("{{\"{}\":\"x\"}}", "n".repeat(MAX_VARIABLE_NAME + 1));
        assert!(with(&long_name).unwrap_err().contains("1 to 64 letters"));
        assert!(read("").unwrap().variables.is_empty());
    }

    #[test]
    fn each_option_is_read_at_its_edges_or_refused_by_name() {
        let call = read(
            "timeLimit=14400&timeOut=1&record=0&recordingChannels=dual&statusCallback=https://me.example/s\
             &statusCallbackEvents=terminal&statusCallbackEvents=answered\
             &statusCallbackContentType=multipart/form-data",
        )
        .unwrap();
        assert_eq!(
            call.options,
            CallOptions {
                time_limit: Some(14_400),
                time_out: Some(1),
                record: Some(false),
                recording_channels: Some(RecordingChannels::Dual),
                status_callback: Some("https://me.example/s".into()),
                status_callback_events: vec!["terminal".into(), "answered".into()],
                status_callback_content_type: Some("multipart/form-data".into()),
            }
        );
        assert_eq!(read("record=1").unwrap().options.record, Some(true));
        assert_eq!(
            read("record=").unwrap().options.record,
            None,
            "empty is absent"
        );
        for (field, refused) in [
            ("timeLimit=14401", "timeLimit \"14401\" is not a whole number of seconds from 1 to 14400"),
            ("timeLimit=0", "timeLimit \"0\" is not a whole number of seconds from 1 to 14400"),
            ("timeOut=3601", "timeOut \"3601\" is not a whole number of seconds from 1 to 3600"),
            ("record=yes", "record \"yes\" is neither true nor false"),
            ("recordingChannels=stereo", "recordingChannels \"stereo\" is neither single nor dual"),
            ("statusCallback=ftp://x", "statusCallback \"ftp://x\" is not an http(s) URL"),
            ("statusCallbackEvents=ringing", "statusCallbackEvents \"ringing\" is neither terminal nor answered"),
            (
                "statusCallbackContentType=text/plain",
                "statusCallbackContentType \"text/plain\" is neither application/json nor multipart/form-data",
            ),
        ] {
            assert_eq!(read(field).unwrap_err(), refused, "{field}");
        }
    }
}
