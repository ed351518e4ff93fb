//! Entry points for the fuzzers in `fuzz/` and for `tests/suite/fuzz_regressions.rs`, which runs
//! every saved crash and seed input through the same functions on the stable toolchain. Each
//! takes arbitrary bytes, drives one piece of the real code with them, and panics only when an
//! invariant breaks (a panic inside the code under test is what the fuzzer is looking for).
//!
//! - [`http_request`]: bytes as a client's connection, through framing, limits and the dispatcher;
//! - [`bodies`]: bytes as a query, a form, JSON or multipart body, read as `/call`'s and the
//!   webhook's parameters;
//! - [`chunked`]: bytes as a chunked body, decoded whole and in two pieces (the same either way);
//! - [`stream_frame`]: bytes as one of Exotel's frames, and as base64 (the lenient reader agrees
//!   with the strict one wherever the strict one succeeds);
//! - [`session`]: bytes as what Exotel sends on a media socket, through a real session.

use crate::http::{BodyFraming, Params, Request};
use std::net::SocketAddr;
use std::sync::OnceLock;

/// One server's state for every input: building it opens a call log in a temporary directory.
fn app() -> &'static crate::app::App {
    static APP: OnceLock<crate::app::App> = OnceLock::new();
    APP.get_or_init(|| {
        crate::log::set_quiet(true);
        let dir = std::env::temp_dir().join(format!("exotel-voicebot-fuzz-{}", std::process::id()));
        let data_dir = dir.display().to_string();
        let config = crate::config::Config::from_lookup(|name| match name {
            "DATA_DIR" => Some(data_dir.clone()),
            _ => None,
        })
        .expect("fuzz config");
        crate::app::App::new(config, 3000).expect("fuzz app")
    })
}

/// Bytes as one client connection from loopback: every answer must be an HTTP/1.1 response.
pub fn http_request(data: &[u8]) {
    let app = app();
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let mut out = Vec::new();
    crate::http::answer_in_memory(app, data, peer, &app.config.http, &mut out);
    assert!(
        out.is_empty() || out.starts_with(b"HTTP/1.1 "),
        "an answer that is not HTTP/1.1: {:?}",
        String::from_utf8_lossy(&out[..out.len().min(80)])
    );
}

/// Bytes as request parameters: the first byte picks the encoding, the rest is the body (or
/// query). Whatever parses is read as `/call`'s and the webhook's parameters; errors must say
/// something.
pub fn bodies(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = match kind % 5 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        2 => "multipart/form-data; boundary=xyz",
        3 => "text/plain",
        _ => "",
    };
    let mut params = Params::from_query(&String::from_utf8_lossy(body));
    let mut headers = Vec::new();
    if !content_type.is_empty() {
        headers.push(("content-type".to_owned(), content_type.to_owned()));
    }
    let request = Request {
        method: "POST".into(),
        path: "/call".into(),
        query: String::new(),
        headers,
        body: body.to_vec(),
        framing: BodyFraming::Length(body.len()),
        peer: ([127, 0, 0, 1], 1).into(),
    };
    if let Err(refused) = params.add_body(&request) {
        assert!((400..500).contains(&refused.status));
    }
    if let Err(why) = crate::calls::place::PlaceCall::from_params(&params) {
        assert!(!why.is_empty());
    }
    if let Err(why) = crate::exotel::webhook::ConnectWebhook::from_params(&params) {
        assert!(!why.is_empty());
    }
    let _ = crate::http::form::parse_multipart(content_type, body);
}

/// Bytes as a chunked body (the first byte: where to cut it): decoding it in two pieces must
/// give what decoding it whole gives.
pub fn chunked(data: &[u8]) {
    let Some((&cut, input)) = data.split_first() else {
        return;
    };
    const LIMIT: usize = 4096;
    let whole = {
        let mut d = crate::http::chunked::Decoder::new(LIMIT);
        let mut body = Vec::new();
        d.feed(input, &mut body)
            .map(|used| (used, body, d.is_done()))
    };
    let cut = (cut as usize).min(input.len());
    let pieces = {
        let mut d = crate::http::chunked::Decoder::new(LIMIT);
        let mut body = Vec::new();
        d.feed(&input[..cut], &mut body).and_then(|first| {
            if first < cut || d.is_done() {
                Ok((first, body, d.is_done()))
            } else {
                d.feed(&input[cut..], &mut body)
                    .map(|rest| (first + rest, body, d.is_done()))
            }
        })
    };
    match (whole, pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "whole and in two pieces differ"),
        (Err(_), Err(_)) => {}
        (a, b) => assert_eq!(a.is_ok(), b.is_ok(), "whole {a:?}, in pieces {b:?}"),
    }
}

/// Bytes as one of Exotel's frames and as a media payload.
pub fn stream_frame(data: &[u8]) {
    crate::log::set_quiet(true);
    let text = String::from_utf8_lossy(data);
    let _ = crate::exotel::stream::Frame::read(&text, 8000);
    scan_agrees_with_serde(data);
    audio64_agrees_with_base64_simd(data);
    let _ = crate::exotel::stream::BotCommand::parse(&text);
    use base64::Engine as _;
    let strict = base64::engine::general_purpose::STANDARD.decode(text.as_bytes());
    let mut lenient = Vec::new();
    let read = crate::exotel::stream::decode_payload(&text, &mut lenient);
    if let Ok(bytes) = strict {
        assert_eq!(read, Ok(()), "standard base64 the lenient reader refused");
        assert_eq!(
            lenient, bytes,
            "the lenient reader decoded standard base64 differently"
        );
    }
}

/// Our base64 of media payloads (its vector code for whole blocks, `base64-simd` for the rest)
/// gives what `base64-simd` gives for the whole, decoding any bytes and encoding them.
fn audio64_agrees_with_base64_simd(data: &[u8]) {
    use crate::exotel::stream::audio64;
    let mut ours = b"kept".to_vec();
    let read = audio64::decode_append(data, &mut ours);
    let mut theirs = b"kept".to_vec();
    let simd = base64_simd::STANDARD.decode_append(data, &mut theirs);
    assert_eq!(
        read.is_ok(),
        simd.is_ok(),
        "one decoder refused what the other took"
    );
    assert_eq!(ours, theirs, "the decoders' bytes differ");
    let mut ours = b"kept".to_vec();
    audio64::encode_append(data, &mut ours);
    let mut theirs = b"kept".to_vec();
    base64_simd::STANDARD.encode_append(data, &mut theirs);
    assert_eq!(ours, theirs, "the encoders' text differs");
    // Random bytes are seldom base64: the encoded text, read back and with one byte changed,
    // reaches the vector code's blocks.
    let mut text = ours.split_off(4);
    let mut back = Vec::new();
    assert_eq!(audio64::decode_append(&text, &mut back), Ok(()));
    assert_eq!(back, data, "the text does not decode to the bytes encoded");
    if let [first, second, ..] = *data {
        let at = (usize::from(first) * 31) % text.len();
        text[at] = second;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        let read = audio64::decode_append(&text, &mut ours);
        let simd = base64_simd::STANDARD.decode_append(&text, &mut theirs);
        assert_eq!(
            read.is_ok(),
            simd.is_ok(),
            "changed at {at}: one refused, one took"
        );
        assert_eq!(ours, theirs, "changed at {at}: the bytes differ");
    }
}

/// The direct scan of a media frame's bytes reads what serde reads, or leaves the frame to it:
/// with a payload the strict decoder takes, the bytes are UTF-8 and serde reads the same frame;
/// with a plain payload, likewise for text.
fn scan_agrees_with_serde(data: &[u8]) {
    use crate::exotel::stream::{scan, Frame};
    let Some(scanned) = scan::media(data) else {
        return;
    };
    let mut pcm = Vec::new();
    let decoded =
        crate::exotel::stream::audio64::decode_append(scanned.payload(), &mut pcm).is_ok();
    let text = std::str::from_utf8(data);
    if decoded {
        let text = text.expect("a frame whose payload decodes is UTF-8");
        assert!(scanned.payload_is_plain(), "a decoded payload is plain");
        assert_eq!(Ok(scanned.frame(text)), Frame::read(text, 8000));
    }
    let Ok(text) = text else {
        return;
    };
    if scanned.payload_is_plain() {
        assert_eq!(Ok(scanned.frame(text)), Frame::read(text, 8000));
    }
    // The text path, which tries the other order when Exotel's layout read no plain payload.
    if let Some(frame) = scan::media_frame(text) {
        assert_eq!(Ok(frame), Frame::read(text, 8000));
    }
}

/// Bytes as what Exotel sends on a media socket, after a proper `start`: the first byte picks
/// whether they are raw WebSocket bytes or text frames (split at `\n`).
pub fn session(data: &[u8]) {
    crate::log::set_quiet(true);
    use crate::media::session::{media_socket, Held, Session, SessionContext, SessionSettings};
    use crate::sim::wire::{client_frame, start_frame, Pipe, Wire};
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::{Duration, Instant};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let wire = Rc::new(RefCell::new(Wire::default()));
    wire.borrow_mut().inbound.extend(start_frame("MZ1", 8000));
    if mode % 2 == 0 {
        wire.borrow_mut().inbound.extend_from_slice(rest);
    } else {
        for line in rest.split(|b| *b == b'\n') {
            let frame = client_frame(String::from_utf8_lossy(line).into_owned());
            wire.borrow_mut().inbound.extend(frame);
        }
    }
    let bots = |_: &crate::bot::CallStart<'_>| -> Box<dyn crate::bot::Bot> {
        Box::new(crate::bot::echo::EchoBot::new(400))
    };
    let settings = SessionSettings::default();
    let metrics = crate::metrics::Metrics::new();
    let ws = media_socket(Pipe(wire.clone()), Vec::new());
    let t0 = Instant::now();
    let mut session = Session::new(
        ws,
        crate::calls::CallLogId::parse("fuzz").expect("id"),
        SessionContext {
            bots: Held::Lent(&bots),
            on_start: Held::Lent(&|_, _| Ok(())),
            settings: &settings,
            metrics: &metrics,
            recorder: None,
            relay: None,
        },
        vec![("sample-rate".into(), "8000".into())],
        std::sync::Arc::new(std::sync::atomic::AtomicU8::new(0)),
        t0,
    );
    for k in 0..64u64 {
        let now = t0 + Duration::from_millis(50 * k);
        if let Some(reason) = session.turn(now) {
            session.finish(&reason);
            return;
        }
    }
}
