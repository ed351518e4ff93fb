//! No heap allocation per media frame once a call is running (design §6, issue 3): the whole
//! path (WebSocket frame in, JSON, base64, the echo bot, chunking, pacing, JSON and base64 out,
//! WebSocket frame out) is driven through the real `Session` over an in-memory socket while a
//! counting allocator watches this thread.

use exotel_voicebot::bot::echo::EchoBot;
use exotel_voicebot::bot::{Bot, CallStart};
use exotel_voicebot::calls::CallLogId;
use exotel_voicebot::media::session::{
    websocket_config, MediaIo, Session, SessionContext, SessionSettings,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::{self, ErrorKind, Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The socket: what the caller has sent and not yet been read, and what the server wrote.
#[derive(Default)]
struct Wire {
    inbound: Vec<u8>,
    read_pos: usize,
    outbound: Vec<u8>,
}

#[derive(Clone)]
struct Pipe(Rc<RefCell<Wire>>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        let left = w.inbound.len() - w.read_pos;
        if left == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = left.min(buf.len());
        let at = w.read_pos;
        buf[..n].copy_from_slice(&w.inbound[at..at + n]);
        w.read_pos += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().outbound.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MediaIo for Pipe {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

/// A text frame as a client sends it (masked).
fn client_frame(text: String) -> Vec<u8> {
    let mut frame = Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some([7, 1, 9, 3]);
    let mut out = Vec::new();
    frame.format(&mut out).unwrap();
    out
}

fn media_frame(k: usize) -> Vec<u8> {
    use base64::Engine as _;
    let samples = exotel_voicebot::media::audio::speech_like(8000, 100, k as u64);
    let mut pcm = Vec::new();
    exotel_voicebot::media::audio::samples_to_pcm(&samples, &mut pcm);
    let payload = base64::engine::general_purpose::STANDARD.encode(&pcm);
    client_frame(format!(
        r#"{{"event":"media","sequence_number":"{}","stream_sid":"MZ1","media":{{"chunk":"{k}","timestamp":"{}","payload":"{payload}"}}}}"#,
        k + 2,
        k * 100
    ))
}

#[test]
fn a_running_call_allocates_nothing_per_media_frame() {
    const WARM_UP: usize = 50;
    const MEASURED: usize = 200;
    let frames: Vec<Vec<u8>> = (0..WARM_UP + MEASURED).map(media_frame).collect();
    let wire = Rc::new(RefCell::new(Wire::default()));
    {
        let mut w = wire.borrow_mut();
        w.inbound
            .reserve(frames.iter().map(Vec::len).sum::<usize>() + 4096);
        w.outbound.reserve(1 << 20);
    }
    let start = client_frame(
        r#"{"event":"start","sequence_number":"1","stream_sid":"MZ1","start":{"stream_sid":"MZ1","call_sid":"CA1","account_sid":"AC1","from":"+919876543210","to":"08047112233","custom_parameters":{},"media_format":{"encoding":"base64","sample_rate":"8000","bit_rate":"128kbps"}}}"#
            .to_string(),
    );
    wire.borrow_mut().inbound.extend_from_slice(&start);

    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(EchoBot::new(400)) };
    let settings = SessionSettings::default();
    let metrics = Arc::new(exotel_voicebot::metrics::Metrics::new());
    // Recording on: the session hands audio to the recorder's thread for every frame.
    let dir = std::env::temp_dir().join(format!("exotel-voicebot-alloc-{}", std::process::id()));
    let (recorder, _) =
        exotel_voicebot::media::recorder::Recorder::start(&dir, metrics.clone()).unwrap();
    let ws = WebSocket::from_raw_socket(Pipe(wire.clone()), Role::Server, Some(websocket_config()));
    let t0 = Instant::now();
    let mut session = Session::new(
        ws,
        CallLogId::parse("alloc-test").unwrap(),
        SessionContext {
            bots: &bots,
            on_start: &|_, _| {},
            settings: &settings,
            metrics: &metrics,
            recorder: Some(&recorder),
            relay: None,
        },
        Vec::new(),
        Arc::new(AtomicU8::new(0)),
        t0,
    );
    let mut sent_out = 0usize;
    let mut counted = 0u64;
    for (k, frame) in frames.iter().enumerate() {
        if k == WARM_UP {
            ALLOCATIONS.store(0, Ordering::Relaxed);
            COUNTING.with(|c| c.set(true));
        }
        wire.borrow_mut().inbound.extend_from_slice(frame);
        // Real time, simulated: each caller chunk is 100 ms after the last.
        let now = t0 + Duration::from_millis(100 * (k as u64 + 1));
        for _ in 0..4 {
            assert_eq!(session.turn(now), None, "the call ended at frame {k}");
        }
        let mut w = wire.borrow_mut();
        sent_out += w.outbound.len();
        w.outbound.clear();
        if k + 1 == WARM_UP + MEASURED {
            COUNTING.with(|c| c.set(false));
            counted = ALLOCATIONS.load(Ordering::Relaxed);
        }
    }
    assert_eq!(session.stats.frames_in as usize, WARM_UP + MEASURED);
    // The echo went out: 25 s of audio in 200 ms chunks, less what pacing still holds.
    assert!(
        session.stats.frames_out >= 120,
        "frames out: {}",
        session.stats.frames_out
    );
    assert!(sent_out > 0);
    assert_eq!(counted, 0, "allocations during {MEASURED} media frames");

    // And the recording really got the audio: the session's end closes the WAV.
    drop(session);
    let wav = dir.join("alloc-test.wav");
    let deadline = Instant::now() + Duration::from_secs(5);
    let reader = loop {
        if let Ok(r) = hound::WavReader::open(&wav) {
            if r.duration() > 0 {
                break r;
            }
        }
        assert!(Instant::now() < deadline, "no recording written");
        std::thread::sleep(Duration::from_millis(20));
    };
    let dropped = metrics.recording_frames_dropped.load(Ordering::Relaxed);
    let caller_samples = (WARM_UP + MEASURED) * 800;
    eprintln!(
        "recorded {} frames, dropped {dropped} pushes",
        reader.duration()
    );
    assert_eq!(reader.spec().channels, 2);
    assert!(
        reader.duration() as usize >= caller_samples * 9 / 10,
        "{} of {caller_samples}",
        reader.duration()
    );
}
