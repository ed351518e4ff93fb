//! Exotel's frames in every shape Exotel might send them, on the real binary: a field in an
//! unexpected shape, base64 in another variant, an odd-length payload or a lost `start` must
//! never leave the caller in silence, and a broken WebSocket gets the close code RFC 6455 asks
//! for. Each case checks what the caller hears back (the echo bot) and what the call log keeps.

use crate::support;

use base64::Engine as _;
use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use support::{ws_connect, Server};
use tungstenite::{Message, WebSocket};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The media path of a fresh call whose callLogId is `id`, as the webhook answers it.
fn media_path(server: &Server, id: &str) -> String {
    let r = server.get(&format!(
        "/voicebot/connect?CallSid=CA-{id}&CustomField={id}"
    ));
    assert_eq!(r.status, 200, "{r:?}");
    let url = r.json()["url"].as_str().unwrap().to_owned();
    url[url.find("/media").unwrap()..].to_owned()
}

/// Little-endian PCM of samples `from..from+n` of a ramp: every sample tells its position.
fn ramp_pcm(from: i16, n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| (from + i as i16).to_le_bytes())
        .collect()
}

/// Listens to the call until `n` samples after the echo's leading silence have come back (or
/// 6 s pass), then hangs up as Exotel does (`stop`) and returns what was heard.
fn hear(ws: &mut WebSocket<TcpStream>, n: usize) -> Vec<i16> {
    let deadline = Instant::now() + Duration::from_secs(6);
    let mut audio = Vec::new();
    while Instant::now() < deadline && echoed_samples(&audio).len() < n {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "media" {
                    let payload = v["media"]["payload"].as_str().unwrap();
                    audio.extend(B64.decode(payload).unwrap());
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let _ = ws.send(Message::text(
        r#"{"event":"stop","stop":{"reason":"callended"}}"#,
    ));
    let _ = ws.close(None);
    while ws.read().is_ok() {}
    echoed_samples(&audio)
}

/// The samples after the echo's leading silence.
fn echoed_samples(audio: &[u8]) -> Vec<i16> {
    let samples: Vec<i16> = audio
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let first = samples
        .iter()
        .position(|s| *s != 0)
        .unwrap_or(samples.len());
    samples[first..].to_vec()
}

/// Asserts the caller heard the ramp 1..=n back whole and in order.
fn assert_ramp(id: &str, heard: &[i16], n: i16) {
    let expected: Vec<i16> = (1..=n).collect();
    assert!(
        heard.len() >= expected.len() && heard[..expected.len()] == expected[..],
        "{id}: the caller heard {} samples, starting {:?}",
        heard.len(),
        &heard[..heard.len().min(8)]
    );
}

/// The call's row once the call has ended completed or failed.
fn call_row(server: &Server, id: &str) -> serde_json::Value {
    server.row_when(id, &[], |row| {
        ["completed", "failed"].contains(&row["status"].as_str().unwrap_or(""))
    })
}

/// A call whose `start` is `start` and whose audio is a ramp sent as `payload_of(pcm)`: the
/// caller must hear the ramp back, whole and in order.
fn echo_call(server: &Server, id: &str, start: &str, payload_of: &dyn Fn(&[u8]) -> String) {
    let mut ws = ws_connect(server.addr, &media_path(server, id)).unwrap();
    ws.send(Message::text(r#"{"event":"connected"}"#)).unwrap();
    ws.send(Message::text(start)).unwrap();
    send_ramp(&mut ws, &format!("S-{id}"), payload_of);
    assert_ramp(id, &hear(&mut ws, 9600), 9600);
    let row = call_row(server, id);
    assert_eq!(row["status"], "completed", "{id}: {row}");
}

/// 1.2 s of the ramp in 100 ms media frames, the first sample 1 (0 would read as the echo's
/// silence), each payload written by `payload_of`.
fn send_ramp(
    ws: &mut WebSocket<TcpStream>,
    stream_sid: &str,
    payload_of: &dyn Fn(&[u8]) -> String,
) {
    for k in 0..12 {
        let pcm = ramp_pcm(1 + k * 800, 800);
        let frame = format!(
            r#"{{"event":"media","stream_sid":"{stream_sid}","media":{{"payload":"{}"}}}}"#,
            payload_of(&pcm)
        );
        ws.send(Message::text(frame)).unwrap();
    }
}

fn start_frame(id: &str, start_fields: &str) -> String {
    format!(
        r#"{{"event":"start","sequence_number":"1","stream_sid":"S-{id}","start":{{{start_fields}}}}}"#
    )
}

#[test]
fn starts_with_fields_in_other_shapes_still_carry_the_call() {
    let server = Server::start(&[]);
    let standard = |pcm: &[u8]| B64.encode(pcm);
    let variants = [
        (
            "ids-as-numbers",
            r#""stream_sid":12345,"call_sid":987654321,"account_sid":42,"from":919876543210,"to":8047112233"#,
        ),
        (
            "params-as-query",
            r#""call_sid":"C1","custom_parameters":"lang=hi&name=Asha","media_format":{"encoding":"base64","sample_rate":8000}"#,
        ),
        (
            "params-as-json-string",
            r#""call_sid":"C1","custom_parameters":"{\"lang\":\"hi\"}""#,
        ),
        (
            "params-as-list",
            r#""call_sid":"C1","custom_parameters":["lang","hi"],"media_format":{"bit_rate":{"v":128}}"#,
        ),
        (
            "odd-format",
            r#""call_sid":"C1","media_format":{"encoding":7,"sample_rate":"8 kHz"},"chunk":{"x":1}"#,
        ),
        ("format-as-text", r#""call_sid":"C1","media_format":"8000""#),
    ];
    for (id, fields) in variants {
        echo_call(&server, id, &start_frame(id, fields), &standard);
    }
    server.wait_for_log(&[
        "media.odd_fields",
        "callLogId=params-as-list",
        "start.custom_parameters",
    ]);
    server.assert_healthy();
}

#[test]
fn media_in_every_base64_variant_and_unused_fields_in_any_shape_is_heard() {
    let server = Server::start(&[]);
    let start = |id: &str| start_frame(id, r#""call_sid":"C1""#);
    let unpadded = |pcm: &[u8]| base64::engine::general_purpose::STANDARD_NO_PAD.encode(pcm);
    // 800 samples are 1,600 bytes, whose standard base64 ends in "==": unpadded is really unpadded.
    echo_call(&server, "no-padding", &start("no-padding"), &unpadded);
    let url_safe = |pcm: &[u8]| base64::engine::general_purpose::URL_SAFE.encode(pcm);
    echo_call(&server, "url-safe", &start("url-safe"), &url_safe);
    let wrapped = |pcm: &[u8]| {
        let text = B64.encode(pcm);
        let lines: Vec<&str> = text
            .as_bytes()
            .chunks(76)
            .map(|l| std::str::from_utf8(l).unwrap())
            .collect();
        format!("  {}\\n", lines.join("\\r\\n"))
    };
    echo_call(&server, "line-breaks", &start("line-breaks"), &wrapped);

    // Unused fields in odd shapes beside a good payload.
    let id = "odd-media-fields";
    let mut ws = ws_connect(server.addr, &media_path(&server, id)).unwrap();
    ws.send(Message::text(start(id))).unwrap();
    for k in 0..12 {
        let frame = format!(
            r#"{{"event":"media","sequence_number":{{"n":{k}}},"stream_sid":["S"],"media":{{"chunk":"first","timestamp":-1,"track":{{}},"payload":"{}"}}}}"#,
            B64.encode(ramp_pcm(1 + k as i16 * 800, 800))
        );
        ws.send(Message::text(frame)).unwrap();
    }
    assert_ramp(id, &hear(&mut ws, 9600), 9600);
    server.wait_for_log(&[
        "media.odd_fields",
        "callLogId=odd-media-fields",
        "media.chunk",
    ]);
    server.assert_healthy();
}

#[test]
fn an_odd_length_payload_keeps_its_last_byte_for_the_next_frame() {
    let server = Server::start(&[]);
    let id = "odd-length";
    let mut ws = ws_connect(server.addr, &media_path(&server, id)).unwrap();
    ws.send(Message::text(start_frame(id, r#""call_sid":"C1""#)))
        .unwrap();
    // The ramp's bytes cut at odd places: 1601, 1599, 1601, … bytes.
    let pcm = ramp_pcm(1, 9600);
    let mut at = 0;
    let mut k = 0;
    while at < pcm.len() {
        let len = if k % 2 == 0 { 1601 } else { 1599 };
        let end = (at + len).min(pcm.len());
        let frame = format!(
            r#"{{"event":"media","stream_sid":"S","media":{{"payload":"{}"}}}}"#,
            B64.encode(&pcm[at..end])
        );
        ws.send(Message::text(frame)).unwrap();
        at = end;
        k += 1;
    }
    assert_ramp(id, &hear(&mut ws, 9600), 9600);
    server.wait_for_log(&["media.odd_fields", "callLogId=odd-length", "odd length"]);
    server.wait_for_log(&["media.ended", "callLogId=odd-length", "bytesIn=19200"]);
}

#[test]
fn a_lost_start_is_made_up_from_the_url_and_no_start_at_all_fails_the_call() {
    let server = Server::start(&[("MEDIA_START_TIMEOUT_MS", "700")]);
    // `start` unusable (not an object): the media that follows must still be answered.
    let id = "start-lost";
    let mut ws = ws_connect(server.addr, &media_path(&server, id)).unwrap();
    ws.send(Message::text(
        r#"{"event":"start","stream_sid":"S-lost","start":5}"#,
    ))
    .unwrap();
    send_ramp(&mut ws, "S-lost", &|pcm| B64.encode(pcm));
    assert_ramp(id, &hear(&mut ws, 9600), 9600);
    server.wait_for_log(&[
        "media.start_synthesized",
        "callLogId=start-lost",
        "streamSid=S-lost",
    ]);
    assert_eq!(call_row(&server, id)["status"], "completed");

    // Nothing but `connected`: ended with a reason, logged as failed, never as completed.
    let id = "no-start";
    let mut ws = ws_connect(server.addr, &media_path(&server, id)).unwrap();
    ws.send(Message::text(r#"{"event":"connected"}"#)).unwrap();
    let opened = Instant::now();
    let code = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => {
                break frame.map(|f| (u16::from(f.code), f.reason.to_string()))
            }
            Ok(_) => {}
            Err(e) => panic!("no close frame: {e}"),
        }
    };
    assert_eq!(code, Some((1000, "no-start".to_owned())));
    assert!(opened.elapsed() < Duration::from_secs(4));
    let row = call_row(&server, id);
    assert_eq!(row["status"], "failed", "{row}");
    assert_eq!(row["endReason"], "no-start", "{row}");
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
}

/// One WebSocket frame as a client writes it, or (`masked: false`) as a client must not.
fn raw_frame(first_byte: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut frame = vec![first_byte];
    let mask_bit = if masked { 0x80 } else { 0 };
    assert!(payload.len() < 126);
    frame.push(mask_bit | payload.len() as u8);
    if masked {
        let key = [0x12, 0x34, 0x56, 0x78];
        frame.extend(key);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        frame.extend(payload);
    }
    frame
}

/// Sends `bytes` raw after a proper `start`, and returns the close code the server answers.
fn close_code_after(server: &Server, id: &str, bytes: &[u8]) -> Option<u16> {
    let mut ws = ws_connect(server.addr, &media_path(server, id)).unwrap();
    ws.send(Message::text(start_frame(id, r#""call_sid":"C1""#)))
        .unwrap();
    ws.flush().unwrap();
    ws.get_mut().write_all(bytes).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn broken_websocket_frames_get_the_close_codes_of_rfc_6455() {
    let server = Server::start(&[]);
    let bad_utf8 = raw_frame(0x81, &[0xff, 0xfe, 0x41], true);
    assert_eq!(close_code_after(&server, "bad-utf8", &bad_utf8), Some(1007));
    let unmasked = raw_frame(0x81, br#"{"event":"connected"}"#, false);
    assert_eq!(close_code_after(&server, "unmasked", &unmasked), Some(1002));
    let reserved_opcode = raw_frame(0x83, b"x", true);
    assert_eq!(
        close_code_after(&server, "opcode-3", &reserved_opcode),
        Some(1002)
    );
    let reserved_bits = raw_frame(0xc1, b"x", true);
    assert_eq!(
        close_code_after(&server, "rsv1", &reserved_bits),
        Some(1002)
    );
    for id in ["bad-utf8", "unmasked", "opcode-3", "rsv1"] {
        server.wait_for_log(&["media.ended", &format!("callLogId={id} ")]);
    }
    server.assert_healthy();
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
}

#[test]
fn a_caller_faster_than_real_time_is_read_at_real_time_and_loses_nothing() {
    let server = Server::start(&[("MEDIA_MAX_AHEAD_S", "1")]);
    let id = "too-fast";
    let mut ws = ws_connect(server.addr, &media_path(&server, id)).unwrap();
    ws.send(Message::text(start_frame(
        id,
        r#""call_sid":"CA-too-fast""#,
    )))
    .unwrap();
    // 3.2 s of audio at once: 2.2 s more than the server reads ahead of real time.
    let sent_at = Instant::now();
    for k in 0..32 {
        let frame = format!(
            r#"{{"event":"media","media":{{"payload":"{}"}}}}"#,
            B64.encode(ramp_pcm(1 + k * 800, 800))
        );
        ws.send(Message::text(frame)).unwrap();
    }
    server.wait_for_log(&["media.caller_held_back", "callLogId=too-fast"]);
    // Read at real time: the last frame, 3.2 s of audio in, is read no sooner than 2.2 s after
    // the first (1 s ahead allowed). The server reports its reads about once a second, so a
    // server that read everything at once would show all 32 within about a second.
    let frames_in = || {
        let text = String::from_utf8(server.get("/metrics").body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("exotel_voicebot_media_frames_total{direction=\"in\"} "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("the frames-in counter")
    };
    let deadline = sent_at + Duration::from_secs(15);
    while frames_in() < 32 {
        assert!(
            Instant::now() < deadline,
            "the 32 frames were never all read"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let read_within = sent_at.elapsed();
    assert!(
        read_within >= Duration::from_secs(2),
        "all 32 frames were read {read_within:?} after they were sent: not at real time"
    );
    // Held, not dropped: every sample comes back, in order.
    assert_ramp(id, &hear(&mut ws, 25_600), 25_600);
    server.wait_for_log(&[
        "media.ended",
        "callLogId=too-fast",
        "framesIn=32",
        "badFrames=0",
    ]);
}
