//! The base64 of media payloads, strict standard base64 with padding: decoded into the caller's
//! PCM, and 16-bit samples encoded into the frame we send.
//!
//! On x86-64 with AVX2 the bulk, 32 characters (24 bytes) at a time, goes through vector code
//! of our own ([`avx2`], after Muła and Lemire's method: docs/PERFORMANCE.md), and so does a
//! payload's end, padding and all, as one more block filled out with zero bits; what follows a
//! block with a character outside the alphabet, and every other machine, go to `base64-simd`.
//! The answer is always the one `base64-simd` gives for the whole text: the bulk ends on a
//! whole block of the alphabet, so its bytes and the rest's join exactly (unit tests over every
//! byte in every place of a block and every ending, and `fuzzing::stream_frame`, hold the two
//! to it).
//!
//! Owns: the codec. Must not know about frames or sockets.

#[cfg(target_arch = "x86_64")]
mod avx2;

/// A payload that is not strict standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

/// Decodes `text` after what `out` holds. On an error `out` is left as it was.
pub fn decode_append(text: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    let start = out.len();
    let decoded = vector_decode(text, out).unwrap_or_else(|| simd_decode(text, out));
    if decoded.is_err() {
        out.truncate(start);
    }
    decoded
}

fn simd_decode(text: &[u8], out: &mut Vec<u8>) -> Result<(), Invalid> {
    base64_simd::STANDARD
        .decode_append(text, out)
        .map_err(|_| Invalid)
}

/// Encodes `bytes` after what `out` holds.
pub fn encode_append(bytes: &[u8], out: &mut Vec<u8>) {
    let taken = vector_encode(bytes, out);
    base64_simd::STANDARD.encode_append(&bytes[taken..], out);
}

/// Encodes `samples` as 16-bit little-endian PCM after what `out` holds.
pub fn encode_samples_append(samples: &[i16], out: &mut Vec<u8>) {
    #[cfg(target_endian = "little")]
    encode_append(le_bytes(samples), out);
    #[cfg(not(target_endian = "little"))]
    encode_samples_by_blocks(samples, out);
}

/// The samples' memory as bytes: on a little-endian machine, their 16-bit little-endian PCM.
#[cfg(target_endian = "little")]
fn le_bytes(samples: &[i16]) -> &[u8] {
    // SAFETY: the pointer and length cover exactly the slice's memory, borrowed for as long as
    // `samples`; `i16` has no padding and any byte is a valid `u8`, and `u8` needs no alignment.
    unsafe {
        std::slice::from_raw_parts(
            samples.as_ptr().cast::<u8>(),
            std::mem::size_of_val(samples),
        )
    }
}

/// PCM bytes converted per block by [`encode_samples_by_blocks`]: a multiple of 3, so that the
/// blocks' base64 joins without padding between them.
#[cfg(any(test, not(target_endian = "little")))]
const PCM_BLOCK_BYTES: usize = 1536;

/// [`encode_samples_append`] where memory is not little-endian: the samples become bytes a
/// block at a time on the stack.
#[cfg(any(test, not(target_endian = "little")))]
fn encode_samples_by_blocks(samples: &[i16], out: &mut Vec<u8>) {
    let mut block = [0u8; PCM_BLOCK_BYTES];
    for part in samples.chunks(PCM_BLOCK_BYTES / 2) {
        let bytes = &mut block[..part.len() * 2];
        crate::media::audio::samples_to_pcm_in(part, bytes);
        encode_append(bytes, out);
    }
}

/// `text` decoded by the vector code: its whole blocks, then its end as one more block, or
/// what is left after a block outside the alphabet by `base64-simd`. `None` without AVX2.
fn vector_decode(text: &[u8], out: &mut Vec<u8>) -> Option<Result<(), Invalid>> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, just checked.
        let taken = unsafe { avx2::decode_blocks(text, out) };
        let rest = &text[taken..];
        return Some(match rest.len() < 32 {
            // SAFETY: as above.
            true => unsafe { avx2::decode_last(rest, out) },
            false => simd_decode(rest, out),
        });
    }
    let _ = (text, out);
    None
}

/// Bytes the vector code encoded into `out`: 0 without it.
fn vector_encode(bytes: &[u8], out: &mut Vec<u8>) -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, just checked.
        return unsafe { avx2::encode_blocks(bytes, out) };
    }
    let _ = (bytes, out);
    0
}

#[cfg(test)]
mod tests;
