//! G.711 μ-law (ITU-T G.711, the North American and Japanese companding law): 8-bit samples
//! for 8 kHz telephone audio, which speech-to-speech services (`audio/pcmu`) and Twilio Media
//! Streams (`audio/x-mulaw`) speak. Pure functions over slices; the decoder is a table made once.

/// The bias added before the segment search (G.711's 0x84).
const BIAS: i32 = 0x84;
/// The largest magnitude μ-law represents after the bias is added.
const CLIP: i32 = 32_635;

/// One 16-bit linear sample as μ-law.
pub fn encode_sample(sample: i16) -> u8 {
    let sample = i32::from(sample);
    let sign = if sample < 0 { 0x80 } else { 0 };
    let magnitude = sample.unsigned_abs().min(CLIP as u32) as i32 + BIAS;
    // The segment: where the magnitude's highest bit is, from bit 7 (segment 0) to bit 14.
    let exponent = (31 - magnitude.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (magnitude >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

/// One μ-law sample as 16-bit linear.
pub fn decode_sample(code: u8) -> i16 {
    let code = !code;
    let sign = code & 0x80;
    let exponent = i32::from((code >> 4) & 0x07);
    let mantissa = i32::from(code & 0x0F);
    let magnitude = (((mantissa << 3) + BIAS) << exponent) - BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// `samples` as μ-law, appended to `out`.
pub fn encode(samples: &[i16], out: &mut Vec<u8>) {
    out.extend(samples.iter().map(|s| encode_sample(*s)));
}

/// μ-law `codes` as 16-bit linear, appended to `out`.
pub fn decode(codes: &[u8], out: &mut Vec<i16>) {
    let table = decode_table();
    out.extend(codes.iter().map(|c| table[usize::from(*c)]));
}

/// Every code's linear value, made once.
fn decode_table() -> &'static [i16; 256] {
    static TABLE: std::sync::OnceLock<[i16; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|c| decode_sample(c as u8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standards_reference_points_hold() {
        // Silence is 0xFF (and 0x7F, negative zero); the extremes are 0x80 and 0x00.
        assert_eq!(encode_sample(0), 0xFF);
        assert_eq!(decode_sample(0xFF), 0);
        assert_eq!(decode_sample(0x7F), 0);
        assert_eq!(decode_sample(0x80), 32_124);
        assert_eq!(decode_sample(0x00), -32_124);
        assert_eq!(encode_sample(i16::MAX), 0x80);
        assert_eq!(encode_sample(i16::MIN), 0x00);
    }

    #[test]
    fn every_code_survives_a_round_trip() {
        for code in 0..=255u8 {
            let linear = decode_sample(code);
            let again = encode_sample(linear);
            // Both zeros decode to 0, which encodes as 0xFF.
            if code == 0x7F {
                assert_eq!(again, 0xFF);
            } else {
                assert_eq!(again, code, "code {code:#04x} decoded to {linear}");
            }
        }
    }

    #[test]
    fn the_error_is_within_half_a_step_of_each_segment() {
        // μ-law's step doubles with each segment: 8 at the bottom (after the bias), 1024 at
        // the top. Encoding and decoding any sample up to the clip level errs by at most half
        // the step there (beyond it, by the clipping).
        for sample in (-CLIP..=CLIP).step_by(7) {
            let back = decode_sample(encode_sample(sample as i16));
            let (sample, back) = (sample, i32::from(back));
            let magnitude = sample.abs();
            let step = 8 << ((31 - (magnitude + BIAS).leading_zeros() as i32 - 7).clamp(0, 7));
            assert!(
                (back - sample).abs() <= step / 2,
                "{sample} came back as {back} (step {step})"
            );
        }
    }

    #[test]
    fn slices_encode_and_decode_through_the_table() {
        let samples: Vec<i16> = (-40..40).map(|i| i * 800).collect();
        let mut codes = Vec::new();
        encode(&samples, &mut codes);
        let mut back = Vec::new();
        decode(&codes, &mut back);
        let one_by_one: Vec<i16> = codes.iter().map(|c| decode_sample(*c)).collect();
        assert_eq!(back, one_by_one);
        assert_eq!(back.len(), samples.len());
    }
}
