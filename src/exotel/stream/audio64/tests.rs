use super::*;
use base64::Engine as _;

const STANDARD: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Bytes from a fixed xorshift: the same every run.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn decoded(text: &[u8]) -> Result<Vec<u8>, Invalid> {
    let mut out = b"kept".to_vec();
    let read = decode_append(text, &mut out);
    match read {
        Ok(()) => Ok(out.split_off(4)),
        Err(e) => {
            assert_eq!(
                out, b"kept",
                "a refused payload leaves the buffer as it was"
            );
            Err(e)
        }
    }
}

#[test]
fn this_machine_takes_the_vector_path() {
    // The tests below hold the vector code to the `base64` crate only where it runs.
    assert!(
        std::arch::is_x86_feature_detected!("avx2"),
        "these tests run on x86-64 with AVX2 (the machines CI runs on)"
    );
    let text = STANDARD.encode(noise(96, 1));
    let mut out = Vec::new();
    assert_eq!(vector_decode(text.as_bytes(), &mut out), Some(Ok(())));
    assert_eq!(out, noise(96, 1));
    assert_eq!(vector_encode(&noise(96, 1), &mut Vec::new()), 72);
}

#[test]
fn every_byte_in_every_place_of_a_block_decodes_as_the_base64_crate_decodes_it() {
    for place in 0..32 {
        for byte in 0..=255u8 {
            // Two blocks and a padded end, so that the byte is in a block the vector code reads.
            let mut text = STANDARD.encode(noise(48, place as u64 + 7)).into_bytes();
            text.extend_from_slice(b"QUJDRA==");
            text[place] = byte;
            let expected = STANDARD.decode(&text).map_err(|_| Invalid);
            assert_eq!(decoded(&text), expected, "byte {byte:#04x} at {place}");
        }
    }
}

#[test]
fn every_length_round_trips_as_the_base64_crate_encodes_and_decodes() {
    for n in 0..400 {
        let bytes = noise(n, n as u64 + 1);
        let mut text = b"head".to_vec();
        encode_append(&bytes, &mut text);
        assert_eq!(&text[4..], STANDARD.encode(&bytes).as_bytes(), "{n} bytes");
        assert_eq!(decoded(&text[4..]), Ok(bytes), "{n} bytes");
    }
}

#[test]
fn every_sextet_value_encodes_to_its_character_in_both_lanes() {
    // 64 values, each as the first index of a group, fill both lanes of several blocks.
    let bytes: Vec<u8> = (0..64u8).flat_map(|v| [v << 2, 0, 0]).collect();
    let mut text = Vec::new();
    encode_append(&bytes, &mut text);
    assert_eq!(text, STANDARD.encode(&bytes).as_bytes());
}

#[test]
fn every_ending_is_read_as_the_base64_crate_reads_it() {
    // The last quad, padded or not, with every character in each place: what the vector code
    // leaves to base64-simd, after whole blocks and alone.
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=";
    let mut ends: Vec<[u8; 4]> = Vec::new();
    for &x in alphabet.iter().chain(b"-_ \n\0\xff") {
        for place in 0..4 {
            for base in [*b"QUJD", *b"QUI=", *b"QQ==", *b"Q===", *b"===="] {
                let mut end = base;
                end[place] = x;
                ends.push(end);
            }
        }
    }
    for head in [
        &b""[..],
        b"QUJD",
        &STANDARD.encode(noise(24 * 3, 5)).into_bytes(),
    ] {
        for end in &ends {
            let text = [head, &end[..]].concat();
            let expected = STANDARD.decode(&text).map_err(|_| Invalid);
            assert_eq!(
                decoded(&text),
                expected,
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }
    for short in [&b""[..], b"Q", b"QU", b"QUJ", b"QUJDR", b"="] {
        let expected = STANDARD.decode(short).map_err(|_| Invalid);
        assert_eq!(decoded(short), expected, "{short:?}");
    }
}

#[test]
fn padding_or_a_break_anywhere_is_refused_or_read_as_the_base64_crate_reads_it() {
    let whole = STANDARD.encode(noise(300, 9)).into_bytes();
    for cut in [0, 1, 31, 32, 33, 63, 64, 100, 399, 400] {
        for insert in [
            &b"="[..],
            b"==",
            b"\n",
            b" ",
            b"-",
            b"_",
            b"\0",
            &[0xc3, 0xa9],
        ] {
            let mut text = whole.clone();
            text.splice(cut..cut, insert.iter().copied());
            let expected = STANDARD.decode(&text).map_err(|_| Invalid);
            assert_eq!(decoded(&text), expected, "{insert:?} at {cut}");
        }
    }
}

#[test]
fn samples_encode_as_their_little_endian_bytes() {
    for n in [0, 1, 13, 14, 767, 768, 769, 800, 2000] {
        let samples: Vec<i16> = (0..n).map(|i| (i as i16).wrapping_mul(-3001)).collect();
        let pcm: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut direct = b"{".to_vec();
        encode_samples_append(&samples, &mut direct);
        let mut by_blocks = b"{".to_vec();
        encode_samples_by_blocks(&samples, &mut by_blocks);
        assert_eq!(
            &direct[1..],
            STANDARD.encode(&pcm).as_bytes(),
            "{n} samples"
        );
        assert_eq!(direct, by_blocks, "{n} samples");
    }
}
