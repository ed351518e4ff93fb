//! What we send on Exotel's stream: media, mark, clear and stop frames, encoded straight into
//! the socket's buffer.

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

    /// `{"event":"media","stream_sid":"S…","media":{"payload":"<base64>"}}`
    pub fn media(&self, out: &mut BytesMut, pcm: &[u8]) {
        out.reserve(self.media_len(pcm.len()));
        out.put_slice(b"{\"event\":\"media\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"media\":{\"payload\":\"");
        let start = out.len();
        let b64_len = base64::encoded_len(pcm.len(), true).unwrap_or(0);
        out.resize(start + b64_len, 0);
        let written = base64_simd::STANDARD
            .encode(pcm, base64_simd::Out::from_slice(&mut out[start..]))
            .len();
        out.truncate(start + written);
        out.put_slice(b"\"}}");
    }

    /// `{"event":"mark","stream_sid":"S…","mark":{"name":"…"}}`
    pub fn mark(&self, out: &mut BytesMut, name: &str) {
        out.put_slice(b"{\"event\":\"mark\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"mark\":{\"name\":");
        let _ = serde_json::to_writer(out.writer(), name);
        out.put_slice(b"}}");
    }

    /// `{"event":"stop","stream_sid":"S…","stop":{"call_sid":"C…","account_sid":"A…","reason":"…"}}`,
    /// Exotel's own `stop`, for telling a relayed bot that the call ended when Exotel's `stop`
    /// never came (the caller's socket broke, the server is shutting down, …).
    pub fn stop(&self, out: &mut BytesMut, start: &StartEvent, reason: &str) {
        out.put_slice(b"{\"event\":\"stop\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b",\"stop\":");
        let stop = serde_json::json!({
            "call_sid": start.call_sid,
            "account_sid": start.account_sid,
            "reason": reason,
        });
        let _ = serde_json::to_writer(out.writer(), &stop);
        out.put_slice(b"}");
    }

    /// `{"event":"clear","stream_sid":"S…"}`
    pub fn clear(&self, out: &mut BytesMut) {
        out.put_slice(b"{\"event\":\"clear\",\"stream_sid\":");
        out.put_slice(self.stream_sid_json.as_bytes());
        out.put_slice(b"}");
    }
}
