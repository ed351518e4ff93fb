//! The unit tests of `sim/caller.rs`.

use super::{echo_mismatches, media_fast, ServerEvent};

/// Only the samples that fall on the caller's audio count: not the delay's, not the
/// padding after the audio's end.
#[test]
fn an_echo_is_compared_where_it_falls_on_the_callers_audio_only() {
    let pcm =
        |samples: &[i16]| -> Vec<u8> { samples.iter().flat_map(|s| s.to_le_bytes()).collect() };
    let audio = [10, 20, 30];
    // Bot samples 0..6 with a delay of 2: samples 2, 3, 4 are the echo, 5 is padding.
    assert_eq!(
        echo_mismatches(&pcm(&[7, 7, 10, 20, 30, 7]), 0, 2, &audio),
        0
    );
    assert_eq!(
        echo_mismatches(&pcm(&[7, 7, 10, 21, 30, 7]), 0, 2, &audio),
        1
    );
    // The same echo split across chunks at bot samples 0, 3 and 5.
    assert_eq!(echo_mismatches(&pcm(&[0, 0, 11]), 0, 2, &audio), 1);
    assert_eq!(echo_mismatches(&pcm(&[20, 31]), 3, 2, &audio), 1);
    assert_eq!(echo_mismatches(&pcm(&[99]), 5, 2, &audio), 0);
    // A chunk wholly in the delay, or wholly after the audio.
    assert_eq!(echo_mismatches(&pcm(&[5, 5]), 0, 4, &audio), 0);
    assert_eq!(echo_mismatches(&pcm(&[5, 5]), 9, 2, &audio), 0);
}

#[test]
fn the_fast_read_agrees_with_serde_on_what_the_encoder_writes_and_declines_the_rest() {
    let encoder = crate::exotel::stream::Encoder::new("MZ1");
    let mut frame = Vec::new();
    encoder.media(&mut frame, &[1, 2, 3, 4, 5]);
    let text = std::str::from_utf8(&frame).unwrap();
    let fast = media_fast(text).expect("the encoder's own shape");
    let slow: ServerEvent<'_> = serde_json::from_str(text).unwrap();
    assert_eq!(fast.event, slow.event);
    assert_eq!(fast.stream_sid, slow.stream_sid);
    assert_eq!(fast.media.map(|m| m.payload), slow.media.map(|m| m.payload));
    // Another layout, an escaped sid, or another event: serde_json reads those.
    for other in [
        r#"{"stream_sid":"MZ1","event":"media","media":{"payload":"AQID"}}"#,
        r#"{"event":"media","stream_sid":"M\"Z","media":{"payload":"AQID"}}"#,
        r#"{"event":"mark","stream_sid":"MZ1","mark":{"name":"a"}}"#,
        r#"{"event":"media","stream_sid":"MZ1","media":{"payload":"AQ"ID"}}"#,
    ] {
        assert!(media_fast(other).is_none(), "{other}");
    }
}
