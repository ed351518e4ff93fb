//! The base64 payloads of media frames: decoded into the caller's buffer by the SIMD engine,
//! and leniently (any padding, whitespace, a trailing partial byte) when the strict decoder
//! refuses one.

/// Decodes a base64 payload into `pcm` after what it already holds (no allocation within its
/// capacity). Standard base64 takes the fast path; anything else Exotel might send — no
/// padding, line breaks or spaces, the URL-safe alphabet — goes through [`decode_lenient`].
/// `Ok(true)` when the lenient path was needed.
pub fn decode_payload_into(payload: &str, pcm: &mut Vec<u8>) -> Result<bool, PayloadError> {
    let start = pcm.len();
    // Appended straight into the spare capacity: no zero-fill of the room first. On an error
    // `pcm` is left as it was (its length is set only after a whole decode).
    if super::audio64::decode_append(payload.as_bytes(), pcm).is_ok() {
        return Ok(false);
    }
    let max = payload.len().div_ceil(4) * 3;
    pcm.resize(start + max, 0);
    match decode_lenient(payload.as_bytes(), &mut pcm[start..]) {
        Some(n) => {
            pcm.truncate(start + n);
            Ok(true)
        }
        None => {
            pcm.truncate(start);
            Err(PayloadError)
        }
    }
}

/// Decodes a base64 payload into `pcm` (cleared first; see [`decode_payload_into`]).
pub fn decode_payload(payload: &str, pcm: &mut Vec<u8>) -> Result<(), PayloadError> {
    pcm.clear();
    decode_payload_into(payload, pcm).map(|_| ())
}

/// A payload that is not base64 in any variant we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadError;

impl std::fmt::Display for PayloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("media payload is not base64")
    }
}

/// Base64 in either alphabet (`+/` or `-_`), padded or not, with ASCII whitespace anywhere.
/// Writes into `out` (at least 3/4 of the input long) and returns the bytes written, or `None`
/// for a character outside both alphabets, data after padding, or a lone trailing character.
pub fn decode_lenient(input: &[u8], out: &mut [u8]) -> Option<usize> {
    let (mut acc, mut bits, mut n, mut padded) = (0u32, 0u32, 0usize, false);
    for &c in input {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => {
                padded = true;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return None,
        };
        if padded {
            return None;
        }
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            *out.get_mut(n)? = (acc >> bits) as u8;
            n += 1;
        }
    }
    // Six bits left over is a lone character: not a byte of anything.
    (bits < 6).then_some(n)
}
