//! No heap allocation per media frame once a call is running (docs/ARCHITECTURE.md §6): the whole
//! path (WebSocket frame in, JSON, base64, the echo bot, chunking, pacing, JSON and base64 out,
//! WebSocket frame out) is driven through the real `Session` over an in-memory socket while a
//! counting allocator watches this thread.
//!
//! The relay is counted on real sockets, where it runs: on a coroutine (the session, its two
//! pumps and the relay on may's only worker thread, whose allocations are counted), and on a
//! media loop of a server started in this process (the loop thread's allocations are counted),
//! while the caller and the test bot stream audio both ways.

use exotel_voicebot::bot::echo::EchoBot;
use exotel_voicebot::bot::{Bot, CallStart};
use exotel_voicebot::calls::CallLogId;
use exotel_voicebot::media::session::{
    websocket_config, Held, Session, SessionContext, SessionSettings,
};
use exotel_voicebot::sim::wire::{client_frame, media_frame, start_frame, Pipe, Wire};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tungstenite::protocol::Role;
use tungstenite::WebSocket;

struct Counting;

// Per thread, so the tests of this file can run at once: each counts its own thread.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    /// Set: each counted allocation's stack is kept (unresolved: resolving needs more stack
    /// than a pump coroutine has), to tell may's own allocations from ours afterwards.
    static SORTING: Cell<bool> = const { Cell::new(false) };
    static STACKS: RefCell<Vec<std::backtrace::Backtrace>> = const { RefCell::new(Vec::new()) };
    /// Inside the stack capture, whose own allocations are not counted.
    static CAPTURING: Cell<bool> = const { Cell::new(false) };
}

/// Set: allocations on the media loop threads (`media-loop-*`) are counted, in
/// `LOOP_ALLOCATIONS`, and the first few stacks kept in `LOOP_STACKS`.
static LOOPS_COUNTING: AtomicBool = AtomicBool::new(false);
static LOOP_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static LOOP_STACKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

thread_local! {
    /// Whether this thread is a media loop: 0 not yet known, 1 yes, 2 no.
    static ON_A_LOOP: Cell<u8> = const { Cell::new(0) };
}

fn on_a_loop() -> bool {
    if ON_A_LOOP.with(Cell::get) == 0 {
        // The thread's handle is set before a spawned thread runs; reading it here allocates
        // nothing, and the guard keeps anything it does allocate uncounted.
        CAPTURING.with(|c| c.set(true));
        let is_loop = std::thread::current()
            .name()
            .is_some_and(|n| n.starts_with("media-loop-"));
        CAPTURING.with(|c| c.set(false));
        ON_A_LOOP.with(|l| l.set(if is_loop { 1 } else { 2 }));
    }
    ON_A_LOOP.with(Cell::get) == 1
}

fn on_loop_allocation() {
    LOOP_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    CAPTURING.with(|c| c.set(true));
    if let Ok(mut stacks) = LOOP_STACKS.try_lock() {
        if stacks.len() < 64 {
            stacks.push(std::backtrace::Backtrace::force_capture().to_string());
        }
    }
    CAPTURING.with(|c| c.set(false));
}

/// Called for every allocation and reallocation.
fn on_allocation() {
    if CAPTURING.with(Cell::get) {
        return;
    }
    if LOOPS_COUNTING.load(Ordering::Relaxed) && on_a_loop() {
        on_loop_allocation();
    }
    if !COUNTING.with(Cell::get) {
        return;
    }
    if SORTING.with(Cell::get) {
        CAPTURING.with(|c| c.set(true));
        let stack = std::backtrace::Backtrace::force_capture();
        STACKS.with(|s| s.borrow_mut().push(stack));
        CAPTURING.with(|c| c.set(false));
    }
    ALLOCATIONS.with(|a| a.set(a.get() + 1));
}

/// Frames that mark an allocation as one of may's nodes.
const MAY_NODES: [&str; 3] = ["may::timeout_list::", "may::park::", "may_queue::"];

/// The kept stacks, resolved: (allocations by the server's code, allocations by may itself).
/// may allocates a node for every timed wait (timeout_list.rs, `add_timer`) and a block of its
/// run queue now and then (may_queue's spmc `BlockNode`). An allocation is the server's when a
/// frame of its stack is this crate's and none is one of may's nodes: in a release build the
/// worker's own loop is inlined into the thread's start, so its allocations name no may frame,
/// and a timer node's `add_timer` is inlined into `park_timeout`.
fn sort_kept_stacks() -> (u64, u64) {
    SORTING.with(|s| s.set(false));
    let stacks = STACKS.with(|s| std::mem::take(&mut *s.borrow_mut()));
    let by_may = |s: &str| MAY_NODES.iter().any(|frame| s.contains(frame));
    let ours = stacks
        .iter()
        .map(|s| s.to_string())
        .filter(|s| s.contains("exotel_voicebot::") && !by_may(s))
        .count() as u64;
    (ours, stacks.len() as u64 - ours)
}

/// Starts counting this thread's allocations from zero.
fn count_from_here() {
    ALLOCATIONS.with(|a| a.set(0));
    STACKS.with(|s| s.borrow_mut().clear());
    COUNTING.with(|c| c.set(true));
}

/// Stops counting; the allocations since `count_from_here`.
fn counted_so_far() -> u64 {
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_running_call_allocates_nothing_per_media_frame() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();
    const WARM_UP: usize = 50;
    const MEASURED: usize = 200;
    let frames: Vec<Vec<u8>> = (0..WARM_UP + MEASURED)
        .map(|k| media_frame("MZ1", k, 100))
        .collect();
    let wire = Rc::new(RefCell::new(Wire::default()));
    {
        let mut w = wire.borrow_mut();
        w.inbound
            .reserve(frames.iter().map(Vec::len).sum::<usize>() + 4096);
        w.outbound.reserve(1 << 20);
    }
    let start = start_frame("MZ1", 8000);
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
            bots: Held::Lent(&bots),
            on_start: Held::Lent(&|_, _| Ok(())),
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
            count_from_here();
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
            counted = counted_so_far();
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

/// The relay's window, on a coroutine and on a loop alike (20 ms frames): frames before it
/// opens, frames it holds at least, and chunks of the bot's echo (200 ms each) that must go out
/// to the caller inside it.
const RELAY_WARM_UP: u64 = 50;
const RELAY_MEASURED: u64 = 150;
const RELAY_MIN_OUT_IN_WINDOW: u64 = 10;

#[test]
fn a_relayed_call_allocates_nothing_per_media_frame() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();
    use exotel_voicebot::config::{Fallback, RelayConfig};
    use exotel_voicebot::media::session::{EndReason, MediaStream};
    use exotel_voicebot::sim::bot::TestBot;
    use std::net::TcpStream;

    const FRAMES: usize = 250;
    // One worker: everything of the call on the server side runs on the thread that counts.
    may::config().set_workers(1);
    // Stacks need symbols: the test profile has them.
    let bot = TestBot::start(400);
    let listener = may::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let relay = RelayConfig {
        url: bot.url(),
        tls: false,
        host: "127.0.0.1".into(),
        port: bot.addr.port(),
        headers: Vec::new(),
        fallback: Fallback::Hangup,
        connect_timeout: Duration::from_secs(3),
        reconnect: Duration::from_secs(1),
        send_buffer_bytes: 256 * 1024,
        extra_roots: Vec::new(),
    };
    let (done, outcome) = std::sync::mpsc::channel();
    // Reading a stack with symbols (the sorting above) needs far more than the 128 KiB a
    // connection's coroutine gets in the server.
    let builder = may::coroutine::Builder::new().stack_size(4 * 1024 * 1024 / size_of::<usize>());
    let server = may::go!(builder, move || {
        let (stream, _) = listener.accept().unwrap();
        let mut ws = tungstenite::accept_with_config(
            MediaStream::Direct(exotel_voicebot::http::Conn::Plain(stream)),
            Some(websocket_config()),
        )
        .unwrap();
        ws.get_mut().start_pump().unwrap();
        let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(EchoBot::new(400)) };
        let settings = SessionSettings::default();
        let metrics = exotel_voicebot::metrics::Metrics::new();
        let mut session = Session::new(
            ws,
            CallLogId::parse("relay-alloc-test").unwrap(),
            SessionContext {
                bots: Held::Lent(&bots),
                on_start: Held::Lent(&|_, _| Ok(())),
                settings: &settings,
                metrics: &metrics,
                recorder: None,
                relay: Some(Arc::new(relay.clone())),
            },
            Vec::new(),
            Arc::new(AtomicU8::new(0)),
            Instant::now(),
        );
        let (mut counted, mut out_at_start, mut out_in_window) = (None, 0, 0);
        STACKS.with(|s| s.borrow_mut().reserve(4096));
        SORTING.with(|s| s.set(true));
        let reason = loop {
            let frames_in = session.stats.frames_in;
            if frames_in == RELAY_WARM_UP && counted.is_none() && !COUNTING.with(Cell::get) {
                out_at_start = session.stats.frames_out;
                count_from_here();
            }
            // The window closes after RELAY_MEASURED frames once the bot's echo has gone out in it
            // (or at the last frame): on a loaded machine the worker may get no CPU for a while
            // and then read the frames that queued meanwhile in a burst, before any echo of them
            // can come back (seen once in CI: 0 chunks out during 150 frames read).
            let echoed = session.stats.frames_out - out_at_start >= RELAY_MIN_OUT_IN_WINDOW;
            let last = frames_in == FRAMES as u64;
            if frames_in >= RELAY_WARM_UP + RELAY_MEASURED
                && (echoed || last)
                && counted.is_none()
                && COUNTING.with(Cell::get)
            {
                let all = counted_so_far();
                let (ours, by_may) = sort_kept_stacks();
                assert_eq!(
                    ours + by_may,
                    all,
                    "every counted allocation's stack was kept"
                );
                counted = Some((ours, by_may));
                out_in_window = session.stats.frames_out - out_at_start;
            }
            if let Some(reason) = session.turn(Instant::now()) {
                break reason;
            }
        };
        COUNTING.with(|c| c.set(false));
        session.finish(&reason);
        let _ = done.send((reason, counted, out_in_window, session.stats.relay.clone()));
        exotel_voicebot::media::pump::leave_parking();
    })
    .unwrap();

    // The caller, on a plain thread: Exotel's frames at real time, and whatever comes back read
    // and dropped (its allocations are its own thread's, not counted).
    let stream = TcpStream::connect(addr).unwrap();
    let (mut ws, _) = tungstenite::client(format!("ws://{addr}/media"), stream).unwrap();
    let mut reader = ws.get_ref().try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let start = start_frame("MZ2", 8000);
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|k| media_frame("MZ2", k, 20)).collect();
    let socket = ws.get_mut();
    socket.write_all(&start).unwrap();
    let t0 = Instant::now();
    for (k, frame) in frames.iter().enumerate() {
        let due = t0 + Duration::from_millis(20 * (k as u64 + 1));
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        socket.write_all(frame).unwrap();
    }
    socket
        .write_all(&client_frame(
            r#"{"event":"stop","stream_sid":"MZ2","stop":{"reason":"callended"}}"#.to_string(),
        ))
        .unwrap();
    let (reason, counted, out_in_window, relay_counts) = outcome
        .recv_timeout(Duration::from_secs(20))
        .expect("the relayed call ended");
    let _ = server.join();
    drop(ws);
    let received = drain.join().unwrap();

    assert_eq!(reason, EndReason::Stopped("callended".into()));
    assert_eq!(relay_counts.dropped_to_bot, 0);
    let heard = &bot.wait_ended(1, Duration::from_secs(5))[0];
    assert_eq!(
        heard.caller_audio.len(),
        FRAMES * 160,
        "the bot heard every caller frame"
    );
    assert!(
        out_in_window >= RELAY_MIN_OUT_IN_WINDOW,
        "the bot's echo went out to the caller during the window: {out_in_window} chunks"
    );
    assert!(received > 0);
    let (ours, may_nodes) = counted.expect("the window was counted");
    eprintln!(
        "{RELAY_MEASURED} relayed frames: {ours} allocations by the server's code, {may_nodes} by may \
         (timer nodes, one per timed wait; run-queue blocks)"
    );
    assert_eq!(
        ours, 0,
        "allocations on the worker during {RELAY_MEASURED} or more relayed frames, besides may's own nodes"
    );
}

/// A server's counter from its metrics page.
fn counter(page: &str, sample: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_relayed_call_on_a_media_loop_allocates_nothing_per_media_frame() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();
    use exotel_voicebot::sim::bot::TestBot;
    use exotel_voicebot::sim::{run_call, CallPlan, EndedBy};

    const MAX_READ_BUFFER_GROWTHS: usize = 4;
    let bot = TestBot::start(400);
    let data_dir =
        std::env::temp_dir().join(format!("exotel-voicebot-alloc-{}", std::process::id()));
    let bot_url = bot.url();
    let config = exotel_voicebot::config::Config::from_lookup(|var| {
        let value = match var {
            "PORT" => "0",
            "BIND" => "127.0.0.1",
            "BOT" => "relay",
            "BOT_URL" => &bot_url,
            "MEDIA_LOOPS" => "1",
            "DATA_DIR" => return Some(data_dir.display().to_string()),
            _ => return None,
        };
        Some(value.to_owned())
    })
    .unwrap();
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(EchoBot::new(400)) };
    let running = exotel_voicebot::start(config, Box::new(bots)).unwrap();
    let app = running.app.clone();
    let frames = |direction: &str| {
        let page = app.metrics.render(0, 0);
        counter(
            &page,
            &format!("exotel_voicebot_media_frames_total{{direction=\"{direction}\"}}"),
        )
    };

    let mut plan = CallPlan::new(
        running.addr,
        exotel_voicebot::media::audio::speech_like(8000, 8000, 11),
    );
    plan.chunk_ms = 20;
    plan.echo_delay_ms = 400;
    let call = std::thread::spawn(move || run_call(&plan));
    // The metrics are added once a second per call: the window opens once RELAY_WARM_UP frames are
    // counted (the relay dialed and the echo flowing) and closes RELAY_MEASURED frames later with
    // the echo gone out in it.
    let wait_until = |done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        done()
    };
    assert!(
        wait_until(&|| frames("in") >= RELAY_WARM_UP),
        "the call streamed"
    );
    let (in_at_start, out_at_start) = (frames("in"), frames("out"));
    LOOP_ALLOCATIONS.store(0, Ordering::Relaxed);
    LOOPS_COUNTING.store(true, Ordering::Relaxed);
    let window = wait_until(&|| {
        frames("in") >= in_at_start + RELAY_MEASURED
            && frames("out") >= out_at_start + RELAY_MIN_OUT_IN_WINDOW
    });
    LOOPS_COUNTING.store(false, Ordering::Relaxed);
    let counted = LOOP_ALLOCATIONS.load(Ordering::Relaxed);
    let (frames_in, frames_out) = (frames("in") - in_at_start, frames("out") - out_at_start);
    let report = call.join().unwrap();

    assert!(
        window,
        "{frames_in} frames in and {frames_out} chunks out in the window"
    );
    assert_eq!(report.ended_by, EndedBy::Caller, "{report:#?}");
    assert!(
        report.bot_audio.len() > 8000,
        "the bot's echo reached the caller"
    );
    let heard = &bot.wait_ended(1, Duration::from_secs(5))[0];
    assert_eq!(
        heard.caller_audio.len(),
        8000 * 8,
        "the bot heard every caller frame"
    );
    eprintln!("{frames_in} relayed frames in and {frames_out} chunks out on a loop: {counted} allocations on the loop thread");
    // tungstenite's read buffer grows when frames arrive together (the loop got no CPU for a
    // moment, as on a machine running the other tests): once per doubling, then it keeps its
    // size, so a handful at most. Anything else is an allocation per frame.
    let stacks = LOOP_STACKS.lock().unwrap().clone();
    let (growth, other): (Vec<_>, Vec<_>) = stacks.iter().partition(|s| {
        s.contains("BytesMut::reserve")
            && s.contains("tungstenite::protocol::frame::FrameCodec::read_frame")
    });
    assert_eq!(
        stacks.len() as u64,
        counted.min(64),
        "every allocation's stack was kept"
    );
    assert!(
        other.is_empty() && growth.len() <= MAX_READ_BUFFER_GROWTHS,
        "allocations on the media loop during {frames_in} relayed frames: {} growths of a read buffer, others: {other:#?}",
        growth.len()
    );
}
