//! What we send on Exotel's stream: media, mark, clear and stop frames, encoded straight into
//! the socket's output buffer (`websocket::ServerSocket::send_text`).

use super::*;

/// PCM bytes encoded per block by [`Encoder::media`]: a multiple of 3, so that the blocks'
/// base64 joins without padding between them.
const PCM_BLOCK_BYTES: usize = 1536;

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
    /// `samples` as 16-bit little-endian PCM. The samples become bytes a block at a time on the
    /// stack and each block is encoded into the spare capacity of `out`: no PCM buffer of its
    /// own, and no zero-fill of the room first.
    pub fn media(&self, out: &mut Vec<u8>, samples: &[i16]) {
        out.reserve(self.media_len(samples.len() * 2));
        out.extend_from_slice(b"{\"event\":\"media\",\"stream_sid\":");
        out.extend_from_slice(self.stream_sid_json.as_bytes());
        out.extend_from_slice(b",\"media\":{\"payload\":\"");
        let mut block = [0u8; PCM_BLOCK_BYTES];
        for part in samples.chunks(PCM_BLOCK_BYTES / 2) {
            let bytes = &mut block[..part.len() * 2];
            crate::media::audio::samples_to_pcm_in(part, bytes);
            base64_simd::STANDARD.encode_append(&*bytes, out);
        }
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
