//! The WAV writer's work per 200 ms of a call: the caller's and the bot's chunk placed on one
//! sample clock and written out interleaved (`media::recorder::StereoWindow`), into a sink so
//! that the disk's speed is not what is measured. The recorder thread does this for every
//! recorded call; criterion reports time and bytes of WAV per second.
//!
//! `cargo bench --bench recording`

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use exotel_voicebot::media::audio::speech_like;
use exotel_voicebot::media::recorder::{StereoWindow, Track};
use std::hint::black_box;

fn stereo_window(c: &mut Criterion) {
    let chunk = speech_like(8000, 200, 3);
    let samples = chunk.len() as u64;
    let mut window = StereoWindow::default();
    let mut sink = std::io::sink();
    let mut at = 0u64;
    let mut group = c.benchmark_group("wav_writer");
    group.throughput(Throughput::Bytes(samples * 4));
    group.bench_function("8k_200ms_both_tracks", |b| {
        b.iter(|| {
            window.place(Track::Caller, at, black_box(&chunk));
            window.place(Track::Bot, at, black_box(&chunk));
            at += samples;
            // As the writer does: keep 2 s open for late audio, write out the rest.
            let until = window.caller_end().saturating_sub(16_000);
            black_box(window.write_until(until, &mut sink).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, stereo_window);
criterion_main!(benches);
