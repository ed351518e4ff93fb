//! No heap allocation per media frame in a relayed call on a coroutine (docs/ARCHITECTURE.md
//! §6), on real sockets: the session, its two pumps and the relay's socket run on may's
//! coroutines while a caller and the test bot stream audio both ways.
//!
//! A coroutine runs on whichever of may's threads resumes it: a worker, and may's timer thread
//! when a timed wait expires (may 0.3 `scheduler.rs`, the timer thread's handler calls
//! `run_coroutine`). So the window counts allocations made inside any coroutine, on any thread,
//! and this file is a process of its own, where every coroutine is this call's. The stack of
//! each counted allocation is kept, to tell may's own nodes from the server's code afterwards.

#[path = "support/counting.rs"]
mod counting;

use counting::{Counting, RELAY_MEASURED, RELAY_MIN_OUT_IN_WINDOW, RELAY_WARM_UP};
use exotel_voicebot::bot::echo::EchoBot;
use exotel_voicebot::bot::{Bot, CallStart};
use exotel_voicebot::calls::CallLogId;
use exotel_voicebot::config::{Fallback, RelayConfig};
use exotel_voicebot::media::session::{
    media_socket, EndReason, Held, MediaStream, Session, SessionContext, SessionSettings,
};
use exotel_voicebot::sim::bot::TestBot;
use exotel_voicebot::sim::wire::{client_frame, media_frame, start_frame};
use std::backtrace::Backtrace;
use std::cell::Cell;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Set while the window is open.
static WINDOW: AtomicBool = AtomicBool::new(false);
/// The stack of every allocation made inside a coroutine while the window is open, unresolved
/// (resolving needs more stack than a pump coroutine has). Room is made before the window opens.
static STACKS: Mutex<Vec<Backtrace>> = Mutex::new(Vec::new());

thread_local! {
    /// Inside the hook: what it allocates itself (a stack, the first `is_coroutine` of a
    /// thread, which makes generator's root context) is not counted.
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

fn on_allocation() {
    if !WINDOW.load(Ordering::Relaxed) || INSIDE.with(Cell::get) {
        return;
    }
    INSIDE.with(|i| i.set(true));
    if may::coroutine::is_coroutine() {
        let stack = Backtrace::force_capture();
        STACKS.lock().unwrap_or_else(|e| e.into_inner()).push(stack);
    }
    INSIDE.with(|i| i.set(false));
}

#[global_allocator]
static GLOBAL: Counting = Counting { on_allocation };

/// Opens the window with room for `room` stacks.
fn open_window(room: usize) {
    let mut stacks = STACKS.lock().unwrap();
    stacks.clear();
    stacks.reserve(room);
    drop(stacks);
    WINDOW.store(true, Ordering::SeqCst);
}

/// A frame that marks an allocation as a thread-local's first use on a thread (tungstenite masks
/// the frames it sends to the bot with `rand`'s thread RNG, made on each thread that first
/// needs it): once per thread of may's, never per frame.
const FIRST_USE_ON_A_THREAD: &str = "thread_local::native::lazy::Storage<T,D>::get_or_init_slow";

/// Frames that mark an allocation as one of may's nodes.
const MAY_NODES: [&str; 3] = ["may::timeout_list::", "may::park::", "may_queue::"];

/// The allocations counted in a window, by whose they are.
struct Counted {
    /// By the server's code: the stacks, resolved.
    ours: Vec<String>,
    /// Of those, a thread-local made on its first use on a thread.
    first_use_on_a_thread: usize,
    /// By may itself.
    by_may: usize,
}

/// Closes the window and sorts the allocations counted in it. may allocates a node for every timed wait (timeout_list.rs, `add_timer`) and a
/// block of its run queue now and then (may_queue's spmc `BlockNode`). An allocation is the
/// server's when a frame of its stack is this crate's and none is one of may's nodes: in a
/// release build the worker's own loop is inlined into the thread's start, so its allocations
/// name no may frame, and a timer node's `add_timer` is inlined into `park_timeout`.
fn close_window() -> Counted {
    WINDOW.store(false, Ordering::SeqCst);
    let stacks = std::mem::take(&mut *STACKS.lock().unwrap());
    let by_may = |s: &str| MAY_NODES.iter().any(|frame| s.contains(frame));
    let all = stacks.len();
    let ours: Vec<String> = stacks
        .iter()
        .map(|s| s.to_string())
        .filter(|s| s.contains("exotel_voicebot::") && !by_may(s))
        .collect();
    Counted {
        first_use_on_a_thread: ours
            .iter()
            .filter(|s| s.contains(FIRST_USE_ON_A_THREAD))
            .count(),
        by_may: all - ours.len(),
        ours,
    }
}

#[test]
fn a_relayed_call_allocates_nothing_per_media_frame() {
    // Quiet unless the test fails: the server runs in this process.
    let _logs = exotel_voicebot::log::Captured::start();

    const FRAMES: usize = 250;
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
        protocol: exotel_voicebot::config::BotProtocol::Exotel,
        connect_timeout: Duration::from_secs(3),
        reconnect: Duration::from_secs(1),
        send_buffer_bytes: 256 * 1024,
        extra_roots: Vec::new(),
    };
    let (done, outcome) = std::sync::mpsc::channel();
    // Reading a stack with symbols (`close_window`) needs far more than the 128 KiB a
    // connection's coroutine gets in the server.
    let builder = may::coroutine::Builder::new().stack_size(4 * 1024 * 1024 / size_of::<usize>());
    let server = may::go!(builder, move || {
        let (stream, _) = listener.accept().unwrap();
        let ws = tungstenite::accept(MediaStream::Direct(exotel_voicebot::http::Conn::Plain(
            stream,
        )))
        .unwrap();
        let mut ws = media_socket(ws.into_inner(), Vec::new());
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
        let reason = loop {
            let frames_in = session.stats.frames_in;
            if frames_in == RELAY_WARM_UP && counted.is_none() && !WINDOW.load(Ordering::SeqCst) {
                out_at_start = session.stats.frames_out;
                open_window(16 * 1024);
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
                && WINDOW.load(Ordering::SeqCst)
            {
                counted = Some(close_window());
                out_in_window = session.stats.frames_out - out_at_start;
            }
            if let Some(reason) = session.turn(Instant::now()) {
                break reason;
            }
        };
        WINDOW.store(false, Ordering::SeqCst);
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
    let counted = counted.expect("the window was counted");
    let per_frame: Vec<&String> = counted
        .ours
        .iter()
        .filter(|s| !s.contains(FIRST_USE_ON_A_THREAD))
        .collect();
    eprintln!(
        "{RELAY_MEASURED} relayed frames: {} allocations by the server's code ({} a thread-local's \
         first use on a thread), {} by may (timer nodes, one per timed wait; run-queue blocks)",
        counted.ours.len(),
        counted.first_use_on_a_thread,
        counted.by_may
    );
    assert!(
        per_frame.is_empty(),
        "{} allocations inside coroutines during {RELAY_MEASURED} or more relayed frames, besides \
         may's own nodes; the first: {:#?}",
        per_frame.len(),
        &per_frame[..per_frame.len().min(3)]
    );
    // A thread-local is made once on each thread: may's workers and its timer thread.
    let may_threads = may::config().get_workers() + 1;
    assert!(
        counted.first_use_on_a_thread <= may_threads,
        "{} thread-locals made in the window, more than may's {may_threads} threads",
        counted.first_use_on_a_thread
    );
}
