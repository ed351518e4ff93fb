//! Base64 in AVX2 registers: 32 characters to 24 bytes and 24 bytes to 32 characters per step,
//! with lookups by `vpshufb` on a character's high and low nibbles, as Wojciech Muła and Daniel
//! Lemire describe in "Faster Base64 Encoding and Decoding Using AVX2 Instructions" (ACM TOWEB,
//! 2018). The tables are derived in the comments beside them and checked against the `base64`
//! crate for every byte in every place (`super::tests`).
//!
//! Only whole blocks of the alphabet are taken here; the caller hands the rest to `base64-simd`.

use std::arch::x86_64::*;

/// Decodes whole 32-character blocks of `text` after what `out` holds, up to the first block
/// with a character outside the alphabet (padding included). Answers the characters taken.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn decode_blocks(text: &[u8], out: &mut Vec<u8>) -> usize {
    if text.len() < 32 {
        return 0;
    }
    // Room for everything `text` can decode to, and 8 bytes over: each step stores 32 bytes,
    // of which 24 are the block's.
    out.reserve(text.len() / 4 * 3 + 8);
    let nibbles = _mm256_set1_epi8(0x0f);
    let mut taken = 0;
    let mut len = out.len();
    while taken + 32 <= text.len() {
        // SAFETY: `taken + 32 <= text.len()`: the 32 bytes read are `text`'s.
        let chars = unsafe { _mm256_loadu_si256(text.as_ptr().add(taken).cast()) };
        let hi = _mm256_and_si256(_mm256_srli_epi32::<4>(chars), nibbles);
        let lo = _mm256_and_si256(chars, nibbles);
        if _mm256_testz_si256(invalid_for_low(lo), class_of_high(hi)) == 0 {
            break;
        }
        let bytes = pack(sextets(chars, hi));
        // SAFETY: `len` is `start + 24k` after k blocks of 32 characters, and the capacity is
        // at least `start + text.len() / 4 * 3 + 8 >= start + 24 (k + 1) + 8 = len + 32`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(len).cast(), bytes) };
        taken += 32;
        len += 24;
    }
    // SAFETY: every byte up to `len` was written above; `len` is within the capacity.
    unsafe { out.set_len(len) };
    taken
}

/// For each character's low nibble, the classes of high nibble in which it is not a base64
/// character, as bits:
/// 0x01 high 2 (`+` at B and `/` at F only), 0x02 high 3 (digits, 0 to 9 only),
/// 0x04 high 4 and 6 (letters, not 0), 0x08 high 5 and 7 (letters, 0 to A only),
/// 0x10 every other high nibble (no character at all).
#[target_feature(enable = "avx2")]
fn invalid_for_low(lo: __m256i) -> __m256i {
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a,
        0x15, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x13, 0x1a, 0x1b, 0x1b, 0x1b, 0x1a,
    );
    _mm256_shuffle_epi8(table, lo)
}

/// Each character's high nibble as its class's bit (see [`invalid_for_low`]).
#[target_feature(enable = "avx2")]
fn class_of_high(hi: __m256i) -> __m256i {
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
        0x10, 0x10, 0x01, 0x02, 0x04, 0x08, 0x04, 0x08, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10,
    );
    _mm256_shuffle_epi8(table, hi)
}

/// Valid characters to their 6-bit values, by what is added to each: chosen by the high
/// nibble, with `/` (high 2, like `+`) moved down one place by its comparison's -1:
/// `/` +16 (at 1), `+` +19 (at 2), digits +4 (3), `A`-`Z` -65 (4, 5), `a`-`z` -71 (6, 7).
#[target_feature(enable = "avx2")]
fn sextets(chars: __m256i, hi: __m256i) -> __m256i {
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 16, 19, 4, -65, -65, -71, -71, 0, 0, 0, 0, 0, 0, 0, 0,
    );
    let slash = _mm256_cmpeq_epi8(chars, _mm256_set1_epi8(b'/' as i8));
    _mm256_add_epi8(
        chars,
        _mm256_shuffle_epi8(table, _mm256_add_epi8(slash, hi)),
    )
}

/// 32 sextets to 24 bytes at the front: pairs to 12 bits (`a << 6 | b`), pairs of those to 24
/// (`ab << 12 | cd`), each 24 bits' bytes turned big-end first, the two lanes' 12 bytes joined.
#[target_feature(enable = "avx2")]
fn pack(sextets: __m256i) -> __m256i {
    let pairs = _mm256_maddubs_epi16(sextets, _mm256_set1_epi32(0x0140_0140));
    let words = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x0001_1000));
    #[rustfmt::skip]
    let order = _mm256_setr_epi8(
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
    );
    let lanes = _mm256_shuffle_epi8(words, order);
    _mm256_permutevar8x32_epi32(lanes, _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7))
}

/// Encodes whole 24-byte blocks of `bytes` after what `out` holds, while 28 bytes remain (each
/// step reads 16 bytes at 0 and at 12). Answers the bytes taken, a multiple of 3.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn encode_blocks(bytes: &[u8], out: &mut Vec<u8>) -> usize {
    if bytes.len() < 28 {
        return 0;
    }
    let blocks = (bytes.len() - 4) / 24;
    out.reserve(blocks * 32);
    let mut len = out.len();
    let multipliers = Multipliers::new();
    for block in 0..blocks {
        let at = block * 24;
        // SAFETY: `at + 28 <= 24 * blocks + 4 <= bytes.len()`: both 16-byte reads are `bytes`'.
        let (low, high) = unsafe {
            let p = bytes.as_ptr().add(at);
            (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(12).cast()))
        };
        let chars = ascii(sextet_indices(_mm256_set_m128i(high, low), &multipliers));
        // SAFETY: `blocks * 32` bytes were reserved past the length at the start.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(len).cast(), chars) };
        len += 32;
    }
    // SAFETY: every byte up to `len` was written above; `len` is within the capacity.
    unsafe { out.set_len(len) };
    blocks * 24
}

/// Each lane's first 12 bytes, as groups of three `s0 s1 s2`, to the four 6-bit indices of
/// each group in a 32-bit place. The group is spread as `s1 s0 s2 s1`, so that its 16-bit
/// halves are `s0 s1` and `s1 s2` with the most significant first; then a multiply moves each
/// index to its byte: the first by `>> 10` (high half of `* 2^6`), the third by `>> 6`
/// (`* 2^10`), the second by `<< 4` (low half) and the fourth by `<< 8`.
#[target_feature(enable = "avx2")]
fn sextet_indices(lanes: __m256i, multipliers: &Multipliers) -> __m256i {
    #[rustfmt::skip]
    let spread = _mm256_setr_epi8(
        1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
        1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10,
    );
    let groups = _mm256_shuffle_epi8(lanes, spread);
    let first_third = _mm256_and_si256(groups, multipliers.high_mask);
    let first_third = _mm256_mulhi_epu16(first_third, multipliers.high);
    let second_fourth = _mm256_and_si256(groups, multipliers.low_mask);
    let second_fourth = _mm256_mullo_epi16(second_fourth, multipliers.low);
    _mm256_or_si256(first_third, second_fourth)
}

/// The masks and multipliers of [`sextet_indices`], made opaque to the compiler: seeing the
/// constants, it turns each multiply (one instruction) into widenings, shifts and blends
/// (three to seven).
struct Multipliers {
    high_mask: __m256i,
    high: __m256i,
    low_mask: __m256i,
    low: __m256i,
}

impl Multipliers {
    #[target_feature(enable = "avx2")]
    fn new() -> Multipliers {
        std::hint::black_box(Multipliers {
            high_mask: _mm256_set1_epi32(0x0fc0_fc00),
            high: _mm256_set1_epi32(0x0400_0040),
            low_mask: _mm256_set1_epi32(0x003f_03f0),
            low: _mm256_set1_epi32(0x0100_0010),
        })
    }
}

/// 6-bit indices to base64's characters, by what is added to each: indices 52 and up are
/// brought to 1-12 by a saturating subtraction of 51, those under 26 marked 13, the rest 0;
/// then 0 (`a`-`z`) +71, 1-10 (digits) -4, 11 (`+`) -19, 12 (`/`) -16, 13 (`A`-`Z`) +65.
#[target_feature(enable = "avx2")]
fn ascii(indices: __m256i) -> __m256i {
    #[rustfmt::skip]
    let table = _mm256_setr_epi8(
        71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0,
        71, -4, -4, -4, -4, -4, -4, -4, -4, -4, -4, -19, -16, 65, 0, 0,
    );
    let reduced = _mm256_subs_epu8(indices, _mm256_set1_epi8(51));
    let upper = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), indices);
    let reduced = _mm256_or_si256(reduced, _mm256_and_si256(upper, _mm256_set1_epi8(13)));
    _mm256_add_epi8(indices, _mm256_shuffle_epi8(table, reduced))
}
