//! No heap allocation per media frame once a call is running (docs/ARCHITECTURE.md §6): the whole
//! path (WebSocket frame in, JSON, base64, the echo bot, chunking, pacing, JSON and base64 out,
//! WebSocket frame out) is driven through the real `Session` over an in-memory socket while a
//! counting allocator watches this thread.
//!
//! The relay is counted on real sockets, on a media loop of a server started in this process
//! (the loop thread's allocations are counted), while the caller and the test bot stream audio
//! both ways. A relayed call on a coroutine is counted in `tests/alloc_relay.rs`, a process of
//! its own: a coroutine can run on any of may's threads, so its count is of every coroutine in
//! the process, and no other test may run one beside it.

use exotel_voicebot::bot::echo::EchoBot;
use exotel_voicebot::bot::{Bot, CallStart};
use exotel_voicebot::calls::CallLogId;
use exotel_voicebot::media::session::{
    media_socket, Held, Session, SessionContext, SessionSettings,
};
use exotel_voicebot::sim::wire::{media_frame, start_frame, Pipe, Wire};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[path = "support/counting.rs"]
mod counting;
use counting::{Counting, RELAY_MEASURED, RELAY_MIN_OUT_IN_WINDOW, RELAY_WARM_UP};

// Per thread, so the tests of this file can run at once: each counts its own thread.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
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
    ALLOCATIONS.with(|a| a.set(a.get() + 1));
}

/// Starts counting this thread's allocations from zero.
fn count_from_here() {
    ALLOCATIONS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
}

/// Stops counting; the allocations since `count_from_here`.
fn counted_so_far() -> u64 {
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.with(Cell::get)
}

#[global_allocator]
static GLOBAL: Counting = Counting { on_allocation };

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
    let ws = media_socket(Pipe(wire.clone()), Vec::new());
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
        "recorded {} samples, dropped {dropped} pushes",
        reader.duration()
    );
    assert_eq!(reader.spec().channels, 2);
    // The session runs faster than real time here, and the writer may get no CPU for a while
    // (the other tests): the audio it could not take in time is dropped and counted, never
    // waited for. Only a dropped push of the caller's (800 samples) can shorten the caller's
    // track, so the recording is the caller's whole stream less, at most, what was counted.
    assert!(
        reader.duration() as usize + dropped as usize * 800 >= caller_samples,
        "{} of {caller_samples} samples recorded, {dropped} pushes dropped",
        reader.duration()
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
        let page = app.metrics.render(0, 0, 0);
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
