//! The unit tests of `exotel/stream.rs`.

use super::*;
use base64::Engine as _;

#[test]
fn parses_what_a_bot_sends() {
    let media = r#"{"event":"media","stream_sid":"S","media":{"payload":"AAA=","chunk":3}}"#;
    assert_eq!(
        BotCommand::parse(media),
        Ok(BotCommand::Media {
            payload: Cow::Borrowed("AAA=")
        })
    );
    assert_eq!(
        BotCommand::parse(r#"{"event":"mark","mark":{"name":"a\"b"}}"#),
        Ok(BotCommand::Mark {
            name: Cow::Owned("a\"b".into())
        })
    );
    assert_eq!(
        BotCommand::parse(r#"{"event":"clear"}"#),
        Ok(BotCommand::Clear)
    );
    assert!(matches!(
        BotCommand::parse(r#"{"event":"start"}"#),
        Err(DecodeError::UnknownEvent(_))
    ));
    assert!(matches!(
        BotCommand::parse(r#"{"event":"media"}"#),
        Err(DecodeError::Missing("media"))
    ));
    assert!(matches!(
        BotCommand::parse("hello"),
        Err(DecodeError::NotJson(_))
    ));
}

#[test]
fn a_synthesized_stop_reads_as_exotels_own() {
    let start = StartEvent {
        stream_sid: "S1".into(),
        call_sid: "C1".into(),
        account_sid: "A1".into(),
        from: String::new(),
        to: String::new(),
        custom_parameters: BTreeMap::new(),
        sample_rate: 8000,
    };
    let mut out = Vec::new();
    Encoder::new("S1").stop(&mut out, &start, "socket-closed");
    let text = std::str::from_utf8(&out).unwrap();
    assert_eq!(
        Inbound::parse(text),
        Ok(Inbound::Stop {
            reason: Cow::Borrowed("socket-closed")
        })
    );
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(v["stream_sid"], "S1");
    assert_eq!(v["stop"]["call_sid"], "C1");
}

#[test]
fn parses_the_documented_events() {
    assert_eq!(
        Inbound::parse(r#"{"event":"connected","protocol":"x"}"#),
        Ok(Inbound::Connected)
    );
    let start = Inbound::parse(
        r#"{"event":"start","sequence_number":"1","start":{"stream_sid":"S1","call_sid":"C1","account_sid":"A1","from":"+91","to":"0","custom_parameters":{"k":"v","n":3},"media_format":{"encoding":"base64","sample_rate":"16000","bit_rate":"128kbps"}}}"#,
    )
    .unwrap();
    let Inbound::Start(s) = start else { panic!() };
    assert_eq!(
        (s.stream_sid.as_str(), s.call_sid.as_str(), s.sample_rate),
        ("S1", "C1", 16000)
    );
    assert_eq!(s.custom_parameters["k"], "v");
    assert_eq!(s.custom_parameters["n"], "3");
    let media = Inbound::parse(
        r#"{"event":"media","sequence_number":2,"stream_sid":"S1","media":{"chunk":1,"timestamp":"100","payload":"AAA="}}"#,
    );
    assert_eq!(
        media,
        Ok(Inbound::Media {
            payload: "AAA=".into(),
            timestamp: Some(100),
            chunk: Some(1),
            inbound_track: true
        })
    );
    assert_eq!(
        Inbound::parse(r#"{"event":"dtmf","dtmf":{"digit":"5","duration":"200"}}"#),
        Ok(Inbound::Dtmf {
            digit: '5',
            duration_ms: Some(200)
        })
    );
    assert_eq!(
        Inbound::parse(r#"{"event":"mark","mark":{"name":"g"}}"#),
        Ok(Inbound::Mark { name: "g".into() })
    );
    assert_eq!(
        Inbound::parse(r#"{"event":"stop","stop":{"call_sid":"C","reason":"callended"}}"#),
        Ok(Inbound::Stop {
            reason: "callended".into()
        })
    );
}

#[test]
fn stream_sid_at_the_top_level_wins_and_rates_default_to_8000() {
    let Ok(Inbound::Start(s)) =
        Inbound::parse(r#"{"event":"start","stream_sid":"TOP","start":{"stream_sid":"IN"}}"#)
    else {
        panic!()
    };
    assert_eq!((s.stream_sid.as_str(), s.sample_rate), ("TOP", 8000));
    let Ok(Inbound::Start(s)) = Inbound::parse(r#"{"event":"start","start":{"streamSid":"IN"}}"#)
    else {
        panic!()
    };
    assert_eq!(s.stream_sid, "IN");
}

#[test]
fn strings_with_escapes_are_read_too() {
    let mark = Inbound::parse(r#"{"event":"mark","stream_sid":"S\u0031","mark":{"name":"a\"b"}}"#);
    assert_eq!(
        mark,
        Ok(Inbound::Mark {
            name: "a\"b".into()
        })
    );
    let Ok(Inbound::Media { payload, .. }) =
        Inbound::parse(r#"{"event":"media","media":{"payload":"AA\u003d\u003d"}}"#)
    else {
        panic!()
    };
    assert!(matches!(payload, Cow::Owned(_)));
    assert_eq!(payload, "AA==");
}

#[test]
fn a_scanned_read_gives_what_a_whole_read_gives() {
    let p = "AQID".repeat(300);
    let frames = [
        // Exotel's shape: the scan takes it.
        format!(
            r#"{{"event":"media","sequence_number":"3","stream_sid":"S1","media":{{"chunk":"2","timestamp":"200","payload":"{p}"}}}}"#
        ),
        format!(
            r#"{{"event":"media","stream_sid":"S1","media":{{"payload":"{p}","track":"outbound"}}}}"#
        ),
        // A decoy key, a payload in another object, an escaped quote in the sid.
        format!(r#"{{"event":"media","payload":"AAAA","media":{{"payload":"{p}"}}}}"#),
        format!(r#"{{"event":"media","extra":{{"payload":"{p}"}},"media":{{"payload":"AQID"}}}}"#),
        format!(r#"{{"event":"media","payload":"{p}","media":{{"payload":""}}}}"#),
        format!(
            r#"{{"event":"media","stream_sid":"x\"payload\":\"y","media":{{"payload":"{p}"}}}}"#
        ),
        // Escapes, spaces, a number, no closing quote, another event, not JSON.
        format!(r#"{{"event":"media","media":{{"payload":"{p}\u003d\u003d"}}}}"#),
        format!(r#"{{"event":"media","media":{{"payload" : "{p}"}}}}"#),
        format!(r#"{{"event":"media","extra":"{p}","media":{{"payload":12}}}}"#),
        format!(r#"{{"event":"media","media":{{"payload":"{p}"#),
        format!(r#"{{"event":"mark","mark":{{"name":"m","payload":"{p}"}}}}"#),
        format!(r#"{{"event":"stop","payload":"{p}"}}"#),
        format!(r#"{{"event":"media","media":{{"payload":"{p}"}}"#),
        format!(r#"{{"event":"media","media":"payload","payload":"{p}"}}"#),
    ];
    for text in &frames {
        assert_eq!(
            Frame::read_scanned(text, 8000),
            Frame::read(text, 8000),
            "{text}"
        );
    }
    // The payload the scan reads is the frame's own text, not a copy.
    let text = &frames[0];
    let frame = scan::media_frame(text).unwrap();
    let Inbound::Media { payload, .. } = &frame.event else {
        panic!()
    };
    let at = text.find(&p).unwrap();
    assert!(matches!(payload, Cow::Borrowed(b) if b.as_ptr() == text[at..].as_ptr()));
}

#[test]
fn bad_frames_are_errors_not_panics() {
    assert!(matches!(
        Inbound::parse("not json"),
        Err(DecodeError::NotJson(_))
    ));
    assert!(matches!(
        Inbound::parse(r#"{"event":"dance"}"#),
        Err(DecodeError::UnknownEvent(_))
    ));
    assert!(matches!(
        Inbound::parse(r#"{"event":"media"}"#),
        Err(DecodeError::Missing("media"))
    ));
    assert!(matches!(
        Inbound::parse(r#"{"event":"dtmf","dtmf":{"digit":"55"}}"#),
        Err(DecodeError::BadField(..))
    ));
    assert!(matches!(
        Inbound::parse(r#"{"no_event":1}"#),
        Err(DecodeError::NotJson(_))
    ));
    let outbound =
        Inbound::parse(r#"{"event":"media","media":{"payload":"","track":"outbound"}}"#).unwrap();
    assert!(matches!(
        outbound,
        Inbound::Media {
            inbound_track: false,
            ..
        }
    ));
}

#[test]
fn encodes_what_exotel_expects() {
    let e = Encoder::new("S\"1");
    let mut out = Vec::new();
    e.media(&mut out, &[0x0201, 0x0403]);
    assert_eq!(
        &out[..],
        br#"{"event":"media","stream_sid":"S\"1","media":{"payload":"AQIDBA=="}}"#
    );
    // Past one block of samples, the payload is still the PCM's base64 in one piece.
    for n in [767, 768, 769, 2000] {
        let samples: Vec<i16> = (0..n).map(|i| (i * 37 - 9000) as i16).collect();
        let mut pcm = Vec::new();
        crate::media::audio::samples_to_pcm(&samples, &mut pcm);
        out.clear();
        e.media(&mut out, &samples);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&pcm);
        let expected =
            format!(r#"{{"event":"media","stream_sid":"S\"1","media":{{"payload":"{b64}"}}}}"#);
        assert_eq!(std::str::from_utf8(&out).unwrap(), expected, "{n} samples");
    }
    out.clear();
    e.mark(&mut out, "greet\"ing");
    assert_eq!(
        &out[..],
        br#"{"event":"mark","stream_sid":"S\"1","mark":{"name":"greet\"ing"}}"#
    );
    out.clear();
    e.clear(&mut out);
    assert_eq!(&out[..], br#"{"event":"clear","stream_sid":"S\"1"}"#);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["stream_sid"], "S\"1");
}

#[test]
fn payloads_decode_into_the_callers_buffer() {
    let mut pcm = Vec::with_capacity(16);
    decode_payload("AQID", &mut pcm).unwrap();
    assert_eq!(pcm, [1, 2, 3]);
    assert!(decode_payload("!!!!", &mut pcm).is_err());
    // What the buffer already held (a byte carried from the last frame) stays ahead of
    // the payload, whether the strict decoder took it, the lenient one, or neither.
    let cases: [(&str, Result<bool, PayloadError>, &[u8]); 3] = [
        ("AQID", Ok(false), &[9, 1, 2, 3]),
        ("AQI", Ok(true), &[9, 1, 2]),
        ("!!!!", Err(PayloadError), &[9]),
    ];
    for (payload, want, held) in cases {
        let mut pcm = vec![9];
        assert_eq!(decode_payload_into(payload, &mut pcm), want, "{payload}");
        assert_eq!(pcm, held, "{payload}");
    }
}

#[test]
fn base64_variants_decode_the_same_bytes() {
    let bytes: Vec<u8> = (0..=255u8).collect();
    let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
    let variants = [
        standard.clone(),
        standard.trim_end_matches('=').to_owned(),
        base64::engine::general_purpose::URL_SAFE.encode(&bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes),
        format!("  {standard}\n"),
        standard
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n"),
    ];
    for v in &variants {
        let mut pcm = Vec::new();
        decode_payload(v, &mut pcm).unwrap_or_else(|_| panic!("{v:?}"));
        assert_eq!(pcm, bytes, "{v:?}");
    }
    let mut pcm = vec![9u8];
    assert_eq!(decode_payload_into("AQI", &mut pcm), Ok(true));
    assert_eq!(pcm, [9, 1, 2], "appended after what the buffer held");
    for bad in ["A", "AQ==AQ", "AQ*=", "ü"] {
        assert_eq!(decode_payload(bad, &mut pcm), Err(PayloadError), "{bad:?}");
    }
}

#[test]
fn optional_fields_in_other_shapes_are_set_aside_not_fatal() {
    let start = r#"{"event":"start","sequence_number":{"n":1},"stream_sid":12345,
        "start":{"call_sid":98765,"account_sid":["x"],"from":919876543210,"to":null,
        "custom_parameters":"a=1&b=two","media_format":{"encoding":"mulaw","sample_rate":"fast"}}}"#;
    let frame = Frame::read(start, 16000).unwrap();
    let Inbound::Start(s) = frame.event else {
        panic!()
    };
    assert_eq!(s.stream_sid, "12345");
    assert_eq!(s.call_sid, "98765");
    assert_eq!(s.from, "919876543210");
    assert_eq!(
        s.sample_rate, 16000,
        "the URL's rate when the frame's is unusable"
    );
    assert_eq!(s.custom_parameters["b"], "two");
    assert_eq!(
        frame.odd.names(),
        "start.account_sid,media_format.sample_rate,media_format.encoding"
    );
    let as_json_string = r#"{"event":"start","start":{"custom_parameters":"{\"k\":7}"}}"#;
    let Inbound::Start(s) = Inbound::parse(as_json_string).unwrap() else {
        panic!()
    };
    assert_eq!(s.custom_parameters["k"], "7");
    let odd_params = r#"{"event":"start","start":{"custom_parameters":[1,2]}}"#;
    let frame = Frame::read(odd_params, 8000).unwrap();
    assert!(matches!(frame.event, Inbound::Start(_)));
    assert_eq!(frame.odd, Oddities::CUSTOM_PARAMETERS);
    let start_as_string = r#"{"event":"start","start":"{\"stream_sid\":\"S9\"}"}"#;
    let Inbound::Start(s) = Inbound::parse(start_as_string).unwrap() else {
        panic!()
    };
    assert_eq!(s.stream_sid, "S9");

    let media = r#"{"event":"media","sequence_number":[],"stream_sid":{"x":1},
        "media":{"chunk":"one","timestamp":-5,"track":7,"payload":"AAA="}}"#;
    let frame = Frame::read(media, 8000).unwrap();
    assert_eq!(
        frame.event,
        Inbound::Media {
            payload: "AAA=".into(),
            timestamp: None,
            chunk: None,
            inbound_track: true
        }
    );
    assert_eq!(frame.odd.names(), "stream_sid,media.chunk,media.timestamp");
    assert_eq!(
        Inbound::parse(r#"{"event":"dtmf","dtmf":{"digit":5,"duration":{}}}"#),
        Ok(Inbound::Dtmf {
            digit: '5',
            duration_ms: None
        })
    );
    assert_eq!(
        Inbound::parse(r#"{"event":"stop","stop":"callended"}"#),
        Ok(Inbound::Stop {
            reason: "unspecified".into()
        })
    );
    assert!(matches!(
        Inbound::parse(r#"{"event":"media","media":"AAA="}"#),
        Err(DecodeError::BadField("media", _))
    ));
}
