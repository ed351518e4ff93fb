//! Base64 in AVX2 registers: 32 characters to 24 bytes and 24 bytes to 32 characters per step,
//! with lookups by `vpshufb` on a character's high and low nibbles, as Wojciech Muła and Daniel
//! Lemire describe in "Faster Base64 Encoding and Decoding Using AVX2 Instructions" (ACM TOWEB,
//! 2018). The tables are derived in the comments beside them and checked against the `base64`
//! crate for every byte in every place (`super::tests`).
//!
//! Whole blocks of the alphabet are taken here, and a payload's end shorter than a block; the
//! caller hands what follows a block outside the alphabet to `base64-simd`.

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
    let start = out.len();
    let blocks = text.len() / 32;
    let order = PackOrder::new();
    let load = |block: usize| {
        debug_assert!(block < blocks);
        // SAFETY: `block < text.len() / 32`: the 32 bytes read are `text`'s.
        unsafe { _mm256_loadu_si256(text.as_ptr().add(block * 32).cast()) }
    };
    let store = |out: &mut Vec<u8>, block: usize, bytes: __m256i| {
        debug_assert!(block < blocks);
        // SAFETY: the capacity is at least `start + text.len() / 4 * 3 + 8`, and
        // `text.len() / 4 * 3 >= 24 (block + 1)` for `block < text.len() / 32`: the 32 bytes
        // stored at `start + 24 block` are within it.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(start + block * 24).cast(), bytes) };
    };
    // Two blocks a step, with one test of both; then one, should the second of a pair have
    // been the one outside the alphabet.
    let mut done = 0;
    while done + 2 <= blocks {
        let (first, second) = (Block::read(load(done)), Block::read(load(done + 1)));
        if !first.or_invalid(&second).is_valid() {
            break;
        }
        store(out, done, first.bytes(&order));
        store(out, done + 1, second.bytes(&order));
        done += 2;
    }
    if done < blocks {
        let block = Block::read(load(done));
        if block.is_valid() {
            store(out, done, block.bytes(&order));
            done += 1;
        }
    }
    // SAFETY: every byte up to `start + 24 done` was written above, within the capacity.
    unsafe { out.set_len(start + done * 24) };
    done * 32
}

/// Decodes `text`, shorter than a block, as the end of a payload: whole quads, at most two `=`
/// at its very end, and the bits that padding leaves unused zero (one text per byte string, as
/// `base64-simd` and the `base64` crate read it). The quads are decoded as one block, filled
/// out with `A`s (zero bits) in place of the padding and after the text. On an error `out` is
/// as it was.
///
/// # Safety
/// The CPU must have AVX2.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn decode_last(text: &[u8], out: &mut Vec<u8>) -> Result<(), super::Invalid> {
    if text.len() >= 32 || text.len() % 4 != 0 {
        return Err(super::Invalid);
    }
    if text.is_empty() {
        return Ok(());
    }
    let pads = text
        .iter()
        .rev()
        .take(2)
        .take_while(|&&c| c == b'=')
        .count();
    let mut chars = [b'A'; 32];
    chars[..text.len() - pads].copy_from_slice(&text[..text.len() - pads]);
    // SAFETY: `chars` is 32 bytes.
    let block = Block::read(unsafe { _mm256_loadu_si256(chars.as_ptr().cast()) });
    if !block.is_valid() {
        return Err(super::Invalid);
    }
    let mut bytes = [0u8; 32];
    // SAFETY: `bytes` is 32 bytes.
    unsafe { _mm256_storeu_si256(bytes.as_mut_ptr().cast(), block.bytes(&PackOrder::new())) };
    let whole = text.len() / 4 * 3;
    let (decoded, unused) = bytes[..whole].split_at(whole - pads);
    if unused.iter().any(|&b| b != 0) {
        return Err(super::Invalid);
    }
    out.extend_from_slice(decoded);
    Ok(())
}

/// 32 characters, and what their nibbles say of them.
struct Block {
    chars: __m256i,
    high: __m256i,
    /// Non-zero in the place of a character outside the alphabet.
    invalid: __m256i,
}

impl Block {
    #[target_feature(enable = "avx2")]
    fn read(chars: __m256i) -> Block {
        let nibbles = _mm256_set1_epi8(0x0f);
        let high = _mm256_and_si256(_mm256_srli_epi32::<4>(chars), nibbles);
        let low = _mm256_and_si256(chars, nibbles);
        let invalid = _mm256_and_si256(invalid_for_low(low), class_of_high(high));
        Block {
            chars,
            high,
            invalid,
        }
    }

    #[target_feature(enable = "avx2")]
    fn is_valid(&self) -> bool {
        _mm256_testz_si256(self.invalid, self.invalid) == 1
    }

    /// Both blocks' invalid places, as one block's.
    #[target_feature(enable = "avx2")]
    fn or_invalid(&self, other: &Block) -> Block {
        Block {
            invalid: _mm256_or_si256(self.invalid, other.invalid),
            ..*self
        }
    }

    /// The block's 24 bytes, at the front.
    #[target_feature(enable = "avx2")]
    fn bytes(&self, order: &PackOrder) -> __m256i {
        pack(sextets(self.chars, self.high), order)
    }
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
fn pack(sextets: __m256i, order: &PackOrder) -> __m256i {
    let pairs = _mm256_maddubs_epi16(sextets, _mm256_set1_epi32(0x0140_0140));
    let words = _mm256_madd_epi16(pairs, _mm256_set1_epi32(0x0001_1000));
    let lanes = _mm256_shuffle_epi8(words, order.in_lanes);
    _mm256_permutevar8x32_epi32(lanes, order.across)
}

/// [`pack`]'s orders, opaque to the compiler: seeing that the last 8 bytes are zero it zeroes
/// them again, an instruction a block, where they are past the block's bytes anyway.
#[derive(Clone, Copy)]
struct PackOrder {
    in_lanes: __m256i,
    across: __m256i,
}

impl PackOrder {
    #[target_feature(enable = "avx2")]
    fn new() -> PackOrder {
        #[rustfmt::skip]
        let in_lanes = _mm256_setr_epi8(
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
            2, 1, 0, 6, 5, 4, 10, 9, 8, 14, 13, 12, -1, -1, -1, -1,
        );
        std::hint::black_box(PackOrder {
            in_lanes,
            across: _mm256_setr_epi32(0, 1, 2, 4, 5, 6, 3, 7),
        })
    }
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
    let start = out.len();
    let multipliers = Multipliers::new();
    let encode = |out: &mut Vec<u8>, block: usize| {
        debug_assert!(block < blocks);
        // SAFETY: `24 block + 28 <= 24 blocks + 4 <= bytes.len()`: both 16-byte reads are
        // `bytes`'.
        let (low, high) = unsafe {
            let p = bytes.as_ptr().add(block * 24);
            (_mm_loadu_si128(p.cast()), _mm_loadu_si128(p.add(12).cast()))
        };
        let chars = ascii(sextet_indices(_mm256_set_m128i(high, low), &multipliers));
        // SAFETY: `blocks * 32` bytes were reserved past `start`.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().add(start + block * 32).cast(), chars) };
    };
    // Two blocks a step: half the loop's own instructions.
    for pair in 0..blocks / 2 {
        encode(out, 2 * pair);
        encode(out, 2 * pair + 1);
    }
    if blocks % 2 == 1 {
        encode(out, blocks - 1);
    }
    // SAFETY: every byte up to `start + 32 blocks` was written above, within the capacity.
    unsafe { out.set_len(start + blocks * 32) };
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
