//! What Exotel's Passthru applet says (docs/exotel.md §7), from any of its shapes: flat query
//! parameters, nested keys (`Stream[Status]`), the whole stream object as one JSON string
//! (`Stream={…}`), and a JSON body. The route that answers it is `routes::passthru`.

use crate::http::Params;

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

/// A recording URL worth keeping on the row: `https://` to a host, strictly parsed (it is
/// shown to operators, who will click it).
pub fn is_recording_url(url: &str) -> bool {
    crate::calls::destination::Destination::parse("RecordingUrl", url, "https", "https").is_ok()
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
