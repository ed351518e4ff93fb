//! A call's per-chunk work end to end, in memory: one caller `media` frame into the real
//! `Session` (WebSocket framing, JSON, base64, the echo bot, chunking, pacing, base64 and JSON
//! out, WebSocket framing out) over `sim::wire`'s in-memory socket, the clock advanced 100 ms a
//! frame. With and without the recorder (`RECORD=1`), whose hand-off is part of the frame.
//! Criterion reports time per caller frame.
//!
//! `cargo bench --bench session`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exotel_voicebot::bot::echo::EchoBot;
use exotel_voicebot::bot::{Bot, CallStart};
use exotel_voicebot::calls::CallLogId;
use exotel_voicebot::media::recorder::Recorder;
use exotel_voicebot::media::session::{
    media_socket, Held, Session, SessionContext, SessionSettings,
};
use exotel_voicebot::metrics::Metrics;
use exotel_voicebot::sim::wire::{media_frame, start_frame, Pipe};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Distinct caller frames cycled through (100 ms each).
const FRAMES: usize = 50;

fn per_frame(c: &mut Criterion, name: &str, recorder: Option<&Recorder>) {
    let frames: Vec<Vec<u8>> = (0..FRAMES).map(|k| media_frame("MZ1", k, 100)).collect();
    let pipe = Pipe::default();
    pipe.0
        .borrow_mut()
        .inbound
        .extend_from_slice(&start_frame("MZ1", 8000));
    let bots = |_: &CallStart<'_>| -> Box<dyn Bot> { Box::new(EchoBot::new(400)) };
    let settings = SessionSettings::default();
    let metrics = Metrics::new();
    let ws = media_socket(pipe.clone(), Vec::new());
    let t0 = Instant::now();
    let mut session = Session::new(
        ws,
        CallLogId::parse("bench-session").unwrap(),
        SessionContext {
            bots: Held::Lent(&bots),
            on_start: Held::Lent(&|_, _| Ok(())),
            settings: &settings,
            metrics: &metrics,
            recorder,
            relay: None,
        },
        Vec::new(),
        Arc::new(AtomicU8::new(0)),
        t0,
    );
    let mut k = 0u64;
    let mut group = c.benchmark_group("session_per_caller_frame");
    group.throughput(Throughput::Elements(1));
    group.bench_function(name, |b| {
        b.iter(|| {
            {
                let mut wire = pipe.0.borrow_mut();
                // Keep the buffers from growing: drop what was read and what was sent.
                let read = wire.read_pos;
                wire.inbound.drain(..read);
                wire.read_pos = 0;
                wire.outbound.clear();
                wire.inbound.extend_from_slice(&frames[k as usize % FRAMES]);
            }
            k += 1;
            let now = t0 + Duration::from_millis(100 * k);
            // As the call's coroutine does: turn until the frame is read and what is due is sent.
            for _ in 0..3 {
                assert_eq!(session.turn(now), None);
            }
        })
    });
    group.finish();
    assert!(session.stats.frames_out > 0);
}

fn session(c: &mut Criterion) {
    per_frame(c, "echo", None);
    let dir = std::env::temp_dir().join(format!("exotel-voicebot-bench-{}", std::process::id()));
    let (recorder, _) = Recorder::start(&dir, Arc::new(Metrics::new())).unwrap();
    per_frame(c, "echo_recorded", Some(&recorder));
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, session);
criterion_main!(benches);
