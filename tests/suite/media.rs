//! The media WebSocket end to end: the real binary, the simulated Exotel caller from the library
//! (`exotel_voicebot::sim`), and raw WebSocket clients for what a well-behaved caller never sends.

use crate::support;

use exotel_voicebot::media::audio::{speech_like, ChunkRules};
use exotel_voicebot::sim::caller::Event;
use exotel_voicebot::sim::{run_call, run_load, CallPlan, Connect, EndedBy};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};
use support::{chunks_between_key_and_clear, ws_connect, Server};
use tungstenite::{Message, WebSocket};

fn plan(server: &Server, ms: u32) -> CallPlan {
    let mut plan = CallPlan::new(server.addr, speech_like(8000, ms, 3));
    plan.tail_ms = 800;
    plan
}

fn refused_status(result: Result<WebSocket<TcpStream>, tungstenite::Error>) -> u16 {
    match result {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("the socket was let in"),
    }
}

fn start_event(sid: &str, rate: u32) -> String {
    format!(
        r#"{{"event":"start","sequence_number":1,"stream_sid":"{sid}","start":{{"stream_sid":"{sid}","call_sid":"CA-{sid}","account_sid":"A","from":"+919876543210","to":"0801","custom_parameters":{{}},"media_format":{{"encoding":"base64","sample_rate":"{rate}","bit_rate":"128kbps"}}}}}}"#
    )
}

fn media_event(sid: &str, samples: &[i16]) -> String {
    use base64::Engine as _;
    let mut pcm = Vec::new();
    exotel_voicebot::media::audio::samples_to_pcm(samples, &mut pcm);
    format!(
        r#"{{"event":"media","stream_sid":"{sid}","media":{{"payload":"{}"}}}}"#,
        base64::engine::general_purpose::STANDARD.encode(pcm)
    )
}

/// Reads until a media event arrives (or `wait` passes); returns its decoded byte count.
fn next_media(ws: &mut WebSocket<TcpStream>, wait: Duration) -> Option<usize> {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        match ws.read() {
            Ok(Message::Text(t)) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if v["event"] == "media" {
                    use base64::Engine as _;
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(v["media"]["payload"].as_str().unwrap())
                        .unwrap();
                    return Some(b.len());
                }
            }
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[test]
fn an_echo_call_comes_back_sample_for_sample() {
    let server = Server::start(&[]);
    let plan = plan(&server, 3000);
    let report = run_call(&plan);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(
        report.echoed,
        plan.audio.len(),
        "every caller sample came back"
    );
    assert_eq!(report.echo_mismatched, 0);
    assert_eq!(
        report.wrong_stream_sid, 0,
        "every event carries the stream_sid of start"
    );
    assert_eq!(
        report.chunk_sizes.keys().copied().collect::<Vec<_>>(),
        [3200],
        "200 ms chunks at 8 kHz"
    );
    assert_eq!(report.ended_by, EndedBy::Caller);
    // The bot's audio starts with the echo delay of silence, then the caller.
    assert!(report.bot_audio[..3200].iter().all(|&s| s == 0));
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "reason=callended",
        "framesIn=30",
        "badFrames=0",
    ]);
}

#[test]
fn chunks_follow_exotels_rules_at_16_and_24_khz() {
    let server = Server::start(&[]);
    for (rate, chunk_bytes) in [(16000u32, 3200usize), (24000, 4800)] {
        let mut p = plan(&server, 1500);
        p.sample_rate = rate;
        p.audio = speech_like(rate, 1500, 5).into();
        p.chunk_ms = 20;
        let report = run_call(&p);
        assert!(report.is_clean(), "{rate} Hz: {report:#?}");
        assert!(
            report
                .chunk_sizes
                .keys()
                .all(|&s| s % chunk_bytes == 0 && ChunkRules::for_rate(rate).is_valid_chunk(s)),
            "{:?}",
            report.chunk_sizes
        );
    }
}

#[test]
fn marks_round_trip_and_hash_hangs_up() {
    let server = Server::start(&[]);
    let mut p = plan(&server, 1000);
    p.dtmf = "1#".into();
    let report = run_call(&p);
    assert_eq!(report.marks_received, ["goodbye"]);
    assert_eq!(
        report.marks_echoed, 1,
        "the caller played the goodbye and echoed its mark"
    );
    assert_eq!(
        report.ended_by,
        EndedBy::Server(1000),
        "the bot hung up by closing the socket"
    );
    // The goodbye was sent after a clear (echo dropped) and padded to whole chunks.
    assert_eq!(report.clears, 1);
    assert_eq!(report.invalid_chunks, 0);
    server.wait_for_log(&[
        "media.ended",
        &format!("callLogId={}", report.call_log_id),
        "reason=bot-hung-up",
        "dtmf=1#",
        "marksOut=1",
        "marksIn=1",
    ]);
}

#[test]
fn clear_empties_the_queue_within_one_chunk() {
    let server = Server::start(&[]);
    let mut p = plan(&server, 3000);
    p.dtmf_during = vec![(1500, '*')];
    let report = run_call(&p);
    let media_between = chunks_between_key_and_clear(&report, '*');
    assert!(
        media_between <= 1,
        "{media_between} chunks arrived between * and clear"
    );
    // After the clear, what comes back is the caller's audio from about the time of the key,
    // not the older audio that was queued: find the first chunk after it in the caller's audio.
    let clear_at = report
        .events
        .iter()
        .position(|(_, e)| *e == Event::ReceivedClear)
        .expect("clear received");
    let Some(Event::ReceivedMedia { at, .. }) = report.events[clear_at..]
        .iter()
        .map(|(_, e)| e.clone())
        .find(|e| matches!(e, Event::ReceivedMedia { .. }))
    else {
        panic!("no audio after the clear: {:?}", report.events)
    };
    let probe = &report.bot_audio[at..at + 160];
    let offset = p
        .audio
        .windows(160)
        .position(|w| w == probe)
        .expect("post-clear audio is the caller's");
    let key_sample = 1500 * 8;
    assert!(
        offset + 8 * 200 >= key_sample,
        "post-clear audio starts at {} ms, the key was at 1500 ms",
        offset / 8
    );
    assert!(
        report.echo_mismatched == 0,
        "audio before the clear was an exact echo"
    );
}

/// The two drivers of a session (docs/ARCHITECTURE.md §2): the media event loops (the default)
/// and a coroutine per call (`MEDIA_LOOPS=0`) carry the same calls the same way.
#[test]
fn echo_calls_run_on_the_event_loops_by_default_and_on_coroutines_with_media_loops_0() {
    for (loops, runs_on) in [
        (None, "loop"),
        (Some("0"), "coroutine"),
        (Some("3"), "loop"),
    ] {
        let env: Vec<(&str, &str)> = loops.map(|l| ("MEDIA_LOOPS", l)).into_iter().collect();
        let server = Server::start(&env);
        let p = plan(&server, 1500);
        let report = run_load(&p, 20, Duration::from_millis(500));
        assert_eq!(
            report.clean_calls(),
            20,
            "MEDIA_LOOPS={loops:?}: {}",
            exotel_voicebot::sim::report::summary(&report.calls, report.wall)
        );
        let connected: Vec<String> = server
            .log()
            .into_iter()
            .filter(|l| l.contains("media.connected"))
            .collect();
        assert_eq!(connected.len(), 20);
        assert!(
            connected
                .iter()
                .all(|l| l.contains(&format!("runsOn={runs_on}"))),
            "MEDIA_LOOPS={loops:?}: {connected:#?}"
        );
        let threads = std::fs::read_dir(format!("/proc/{}/task", server.pid()))
            .unwrap()
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("media-loop-"))
            .count();
        let expected = match loops {
            Some(n) => n.parse::<usize>().unwrap(),
            None => std::thread::available_parallelism().unwrap().get(),
        };
        assert_eq!(
            threads, expected,
            "media-loop threads with MEDIA_LOOPS={loops:?}"
        );
    }
}

/// `MEDIA_LOOP_REST_MS` at both edges: no rest at all, and the longest (every frame may wait
/// 20 ms for its round). Calls stay whole either way; only their latency and the CPU differ.
#[test]
fn echo_calls_are_whole_at_both_edges_of_the_loops_rest() {
    for rest in ["0", "20"] {
        let server = Server::start(&[("MEDIA_LOOP_REST_MS", rest)]);
        let p = plan(&server, 1500);
        let report = run_load(&p, 20, Duration::from_millis(500));
        let summary = exotel_voicebot::sim::report::summary(&report.calls, report.wall);
        assert_eq!(
            report.clean_calls(),
            20,
            "MEDIA_LOOP_REST_MS={rest}: {summary}"
        );
        for call in &report.calls {
            assert_eq!(call.echoed, p.audio.len(), "MEDIA_LOOP_REST_MS={rest}");
        }
        server.wait_for_log(&["media.connected", "runsOn=loop"]);
    }
}

#[test]
fn a_hundred_concurrent_calls_all_complete() {
    let server = Server::start(&[("MAX_CONCURRENT_CALLS", "100")]);
    let p = plan(&server, 2000);
    let load = std::thread::spawn(move || run_load(&p, 100, Duration::from_secs(1)));
    // Mid-load, at least half of them are live at once.
    let mut most = 0;
    while most < 50 && !load.is_finished() {
        let active = server.get("/health").json()["activeCalls"]
            .as_u64()
            .unwrap();
        most = most.max(active);
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most >= 50, "at most {most} calls live at once");
    let report = load.join().unwrap();
    assert_eq!(
        report.clean_calls(),
        100,
        "{}",
        exotel_voicebot::sim::report::summary(&report.calls, report.wall)
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while server.get("/health").json()["activeCalls"] != 0 {
        assert!(Instant::now() < deadline, "calls still counted as active");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_frames_are_skipped_and_leave_other_calls_untouched() {
    let server = Server::start(&[]);
    let clean = {
        let p = plan(&server, 4000);
        std::thread::spawn(move || run_call(&p))
    };

    // A caller that sends everything wrong, and then a proper call on the same socket.
    let mut ws = ws_connect(server.addr, &server.media_path("bad-1")).unwrap();
    ws.send(Message::text(media_event("S-bad", &[1; 800])))
        .unwrap(); // media before start: the stream starts from what the URL knows
    ws.send(Message::text("this is not JSON")).unwrap();
    ws.send(Message::text(r#"{"event":"dance","stream_sid":"S-bad"}"#))
        .unwrap();
    ws.send(Message::text(start_event("S-bad", 8000))).unwrap();
    ws.send(Message::text(
        r#"{"event":"media","stream_sid":"S-bad","media":{"payload":"%%%not base64%%%"}}"#,
    ))
    .unwrap();
    ws.send(Message::binary(vec![1u8, 2, 3])).unwrap();
    for _ in 0..4 {
        ws.send(Message::text(media_event("S-bad", &[100; 800])))
            .unwrap();
    }
    assert_eq!(
        next_media(&mut ws, Duration::from_secs(3)),
        Some(3200),
        "the call goes on after bad frames"
    );

    // A frame over 1 MiB closes that socket with 1009.
    ws.send(Message::text("x".repeat(2 << 20))).unwrap_or(());
    let deadline = Instant::now() + Duration::from_secs(5);
    let code = loop {
        match ws.read() {
            Ok(Message::Close(Some(frame))) => break u16::from(frame.code),
            Ok(_) => assert!(Instant::now() < deadline, "no close after a 2 MiB frame"),
            Err(e) => panic!("socket dropped without a close: {e}"),
        }
    };
    assert_eq!(code, 1009);

    // A caller whose connection drops mid-call, without a close.
    let mut dropped = ws_connect(server.addr, &server.media_path("drop-1")).unwrap();
    dropped
        .send(Message::text(start_event("S-drop", 8000)))
        .unwrap();
    dropped
        .send(Message::text(media_event("S-drop", &[5; 800])))
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(dropped);

    let report = clean.join().unwrap();
    assert!(
        report.is_clean(),
        "the well-behaved call next to them: {report:#?}"
    );
    server.wait_for_log(&["media.start_synthesized", "streamSid=S-bad"]);
    server.wait_for_log(&["media.ended", "reason=frame-too-large", "badFrames=4"]);
    server.wait_for_log(&["media.ended", "reason=socket-closed", "framesIn=1"]);
    server.assert_healthy();
    assert_eq!(server.get("/health").json()["activeCalls"], 0);
}

#[test]
fn sockets_without_a_valid_token_are_refused_at_the_handshake() {
    let server = Server::start(&[("MEDIA_SECRET", "static-pass")]);
    assert_eq!(refused_status(ws_connect(server.addr, "/media")), 401);
    assert_eq!(
        refused_status(ws_connect(
            server.addr,
            "/media?token=AAAAAAAAAAAAAAAAAAAAAA&callLogId=x"
        )),
        401
    );
    assert_eq!(
        refused_status(ws_connect(server.addr, "/media?secret=wrong")),
        401
    );
    server.wait_for_log(&["media.refused", "unknown, expired or used up"]);
    // A plain GET is not an upgrade.
    server.get("/media").assert_error(400, "bad_request");
    // MEDIA_SECRET, as a query parameter and as Basic auth (wss://user:pass@host/… in Exotel).
    let mut p = plan(&server, 600);
    p.connect = Connect::Url(format!(
        "ws://{}/media?secret=static-pass&callLogId=static-1",
        server.addr
    ));
    let report = run_call(&p);
    assert!(report.is_clean(), "{report:#?}");
    server.wait_for_log(&["media.ended", "callLogId=static-1"]);
    use base64::Engine as _;
    let stream = TcpStream::connect(server.addr).unwrap();
    let request = tungstenite::http::Request::builder()
        .uri(format!("ws://{}/media", server.addr))
        .header("Host", server.addr.to_string())
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header(
            "Sec-WebSocket-Key",
            tungstenite::handshake::client::generate_key(),
        )
        .header(
            "Authorization",
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("exotel:static-pass")
            ),
        )
        .body(())
        .unwrap();
    assert!(
        tungstenite::client(request, stream).is_ok(),
        "Basic auth with MEDIA_SECRET is let in"
    );
}

#[test]
fn a_token_is_void_after_its_call_and_a_second_socket_replaces_the_first() {
    let server = Server::start(&[]);
    let path = server.media_path("replace-1");
    let mut first = ws_connect(server.addr, &path).unwrap();
    first
        .send(Message::text(start_event("S-r1", 8000)))
        .unwrap();
    assert!(
        next_media(&mut first, Duration::from_secs(2)).is_some(),
        "the echo bot's first audio"
    );
    // Exotel reconnects with the same URL: the new socket takes the call over.
    let mut second = ws_connect(server.addr, &path).unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    let code = loop {
        match first.read() {
            Ok(Message::Close(Some(frame))) => break u16::from(frame.code),
            Ok(_) => assert!(Instant::now() < deadline, "the first socket was not closed"),
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(code, 1000);
    // Exotel reconnecting is the same call: a new stream, the same CallSid.
    let restart = start_event("S-r2", 8000).replace("CA-S-r2", "CA-S-r1");
    second.send(Message::text(restart)).unwrap();
    assert!(next_media(&mut second, Duration::from_secs(2)).is_some());
    assert_eq!(
        server.get("/health").json()["activeCalls"],
        1,
        "one call, not two"
    );
    second
        .send(Message::text(
            r#"{"event":"stop","stream_sid":"S-r2","stop":{"reason":"callended"}}"#,
        ))
        .unwrap();
    while second.read().is_ok() {}
    server.wait_for_log(&["media.ended", "reason=replaced"]);
    server.wait_for_log(&["media.ended", "reason=callended"]);
    // The call is over: its token opens nothing now.
    assert_eq!(refused_status(ws_connect(server.addr, &path)), 401);
}

#[test]
fn the_media_port_takes_any_path_and_checks_tokens_too() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Server::start(&[("MEDIA_PORT", &free.to_string())]);
    let media_addr: SocketAddr = format!("127.0.0.1:{free}").parse().unwrap();
    let path = server.media_path("port-1");
    let query = &path[path.find('?').unwrap()..];
    let mut p = plan(&server, 1000);
    p.connect = Connect::Url(format!("ws://{media_addr}/any/path{query}"));
    let report = run_call(&p);
    assert!(report.is_clean(), "{report:#?}");
    assert_eq!(refused_status(ws_connect(media_addr, "/any/path")), 401);
    server.wait_for_log(&["media.refused"]);
}

#[test]
fn an_idle_socket_is_pinged_and_a_silent_peer_is_closed() {
    let server = Server::start(&[
        ("MEDIA_PING_INTERVAL_MS", "300"),
        ("MEDIA_IDLE_TIMEOUT_MS", "1500"),
    ]);
    let mut ws = ws_connect(server.addr, &server.media_path("ping-1")).unwrap();
    ws.send(Message::text(start_event("S-p", 8000))).unwrap();
    // Stay silent and answer nothing (a client's read would send pongs): read the server's
    // frames straight off the socket instead.
    let mut tcp = ws.into_inner();
    std::thread::sleep(Duration::from_millis(2500));
    tcp.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut bytes = Vec::new();
    let _ = std::io::Read::read_to_end(&mut tcp, &mut bytes);
    let (mut pings, mut close_code, mut at) = (0, None, 0);
    while at + 2 <= bytes.len() {
        // Server frames are unmasked: opcode, 7-bit length or 126 + 16-bit or 127 + 64-bit.
        let opcode = bytes[at] & 0x0f;
        let (len, head) = match bytes[at + 1] & 0x7f {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        let payload = &bytes[(at + head).min(bytes.len())..(at + head + len).min(bytes.len())];
        match opcode {
            0x9 => pings += 1,
            0x8 if payload.len() >= 2 => {
                close_code = Some(u16::from_be_bytes([payload[0], payload[1]]))
            }
            _ => {}
        }
        at += head + len;
    }
    assert!(pings >= 2, "{pings} pings in {} bytes", bytes.len());
    assert_eq!(close_code, Some(1001), "closed as going away");
    server.wait_for_log(&["media.ended", "reason=idle-timeout"]);
}
