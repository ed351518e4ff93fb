//! What we send on Exotel's stream: media, mark, clear and stop frames, encoded straight into
//! the socket's output buffer (`websocket::ServerSocket::send_text`).

use super::*;

/// The events we send. Encoded by hand into the session's buffer: the layout is fixed, and the
/// only strings (stream sid, mark names) go through serde_json's escaping.
pub struct Encoder {
    /// `"S…"` with its quotes, escaped once per call.
    stream_sid_json: String,
}

impl Encoder {
    pub fn new(stream_sid: &str) -> Encoder {
        Encoder {
            stream_sid_json: serde_json::to_string(stream_sid).unwrap_or_else(|_| "\"\"".into()),
        }
    }

    /// Bytes `media` takes for `pcm_len` bytes of audio, for reserving once.
    pub fn media_len(&self, pcm_len: usize) -> usize {
        64 + self.stream_sid_json.len() + base64::encoded_len(pcm_len, true).unwrap_or(0)
    }

    /// `{"event":"media","stream_sid":"S…","media":{"payload":"<base64>"}}`, the payload
    /// `samples` as 16-bit little-endian PCM, encoded straight from the samples into the spare
    /// capacity of `out`: no PCM buffer of its own, and no zero-fill of the room first.
    pub fn media(&self, out: &mut Vec<u8>, samples: &[i16]) {
        out.reserve(self.media_len(samples.len() * 2));
        out.extend_from_slice(b"{\"event\":\"media\",\"stream_sid\":");
        out.extend_from_slice(self.stream_sid_json.as_bytes());
        out.extend_from_slice(b",\"media\":{\"payload\":\"");
        super::audio64::encode_samples_append(samples, out);
        out.extend_from_slice(b"\"}}");
    }

    /// `{"event":"mark","stream_sid":"S…","mark":{"name":"…"}}`
    pub fn mark(&self, out: &mut Vec<u8>, name: &str) {
        out.extend_from_slice(b"{\"event\":\"mark\",\"stream_sid\":");
        out.extend_from_slice(self.stream_sid_json.as_bytes());
        out.extend_from_slice(b",\"mark\":{\"name\":");
        let _ = serde_json::to_writer(&mut *out, name);
        out.extend_from_slice(b"}}");
    }

    /// `{"event":"stop","stream_sid":"S…","stop":{"call_sid":"C…","account_sid":"A…","reason":"…"}}`,
    /// Exotel's own `stop`, for telling a relayed bot that the call ended when Exotel's `stop`
    /// never came (the caller's socket broke, the server is shutting down, …).
    pub fn stop(&self, out: &mut Vec<u8>, start: &StartEvent, reason: &str) {
        out.extend_from_slice(b"{\"event\":\"stop\",\"stream_sid\":");
        out.extend_from_slice(self.stream_sid_json.as_bytes());
        out.extend_from_slice(b",\"stop\":");
        let stop = serde_json::json!({
            "call_sid": start.call_sid,
            "account_sid": start.account_sid,
            "reason": reason,
        });
        let _ = serde_json::to_writer(&mut *out, &stop);
        out.push(b'}');
    }

    /// `{"event":"clear","stream_sid":"S…"}`
    pub fn clear(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"event\":\"clear\",\"stream_sid\":");
        out.extend_from_slice(self.stream_sid_json.as_bytes());
        out.push(b'}');
    }
}
