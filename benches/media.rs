//! The per-chunk protocol work of a call, in memory: decoding one inbound `media` frame (JSON,
//! base64, PCM to samples) and encoding one outbound frame (samples to PCM, base64, JSON), for
//! the chunk sizes of docs/exotel.md §3, and reading a frame's event with and without its
//! payload in serde's way. Criterion reports time per chunk and bytes per second.
//!
//! `cargo bench --bench media`

use base64::Engine as _;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use exotel_voicebot::exotel::stream::{decode_payload, Encoder, Frame, Inbound};
use exotel_voicebot::media::audio::{pcm_to_samples, samples_to_pcm, speech_like};
use std::hint::black_box;

/// Inbound chunks Exotel has been seen to send: 20 and 100 ms at 8, 16 and 24 kHz.
const INBOUND: [(&str, usize); 4] = [
    ("8k_20ms", 320),
    ("8k_100ms", 1600),
    ("16k_100ms", 3200),
    ("24k_100ms", 4800),
];
/// Outbound chunks we send: the minimum at each rate, and Exotel's 100 KB maximum.
const OUTBOUND: [(&str, usize); 4] = [
    ("8k_200ms", 3200),
    ("16k_100ms", 3200),
    ("24k_100ms", 4800),
    ("max_99840B", 99_840),
];

fn pcm(bytes: usize) -> Vec<u8> {
    let mut out = Vec::new();
    samples_to_pcm(
        &speech_like(8000, (bytes / 16) as u32 + 1, 1)[..bytes / 2],
        &mut out,
    );
    out
}

/// A `media` frame as Exotel sends it, with `bytes` of PCM.
fn inbound_frame(bytes: usize) -> String {
    let payload = base64::engine::general_purpose::STANDARD.encode(pcm(bytes));
    format!(
        r#"{{"event":"media","sequence_number":"42","stream_sid":"MZ0123456789abcdef","media":{{"chunk":"41","timestamp":"4100","payload":"{payload}"}}}}"#
    )
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_inbound_media");
    for (name, bytes) in INBOUND {
        let frame = inbound_frame(bytes);
        let mut pcm_buf = Vec::with_capacity(bytes + 4);
        let mut samples = Vec::with_capacity(bytes / 2);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &frame, |b, frame| {
            b.iter(|| {
                let Ok(Inbound::Media { payload, .. }) = Inbound::parse(black_box(frame)) else {
                    unreachable!()
                };
                decode_payload(&payload, &mut pcm_buf).unwrap();
                samples.clear();
                pcm_to_samples(&pcm_buf, &mut samples);
                black_box(samples.len())
            })
        });
    }
    group.finish();
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_outbound_media");
    let encoder = Encoder::new("MZ0123456789abcdef");
    for (name, bytes) in OUTBOUND {
        let mut samples = Vec::new();
        pcm_to_samples(&pcm(bytes), &mut samples);
        let mut frame = Vec::with_capacity(encoder.media_len(bytes) + 64);
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_with_input(BenchmarkId::from_parameter(name), &samples, |b, samples| {
            b.iter(|| {
                frame.clear();
                encoder.media(&mut frame, black_box(samples));
                black_box(frame.len())
            })
        });
    }
    group.finish();
}

/// Reading an inbound `media` frame's event two ways, in the same run: serde over the whole
/// text (`Frame::read`), and the direct scan of Exotel's shape (`Frame::read_scanned`, what a
/// session's lenient path does; a live call's own path leaves the payload to the decoder). The
/// ratio of the two is the figure to quote.
fn read_frame(c: &mut Criterion) {
    let mut group = c.benchmark_group("read_inbound_frame");
    for (name, bytes) in INBOUND {
        let frame = inbound_frame(bytes);
        group.throughput(Throughput::Bytes(frame.len() as u64));
        group.bench_with_input(BenchmarkId::new("whole", name), &frame, |b, frame| {
            b.iter(|| match Frame::read(black_box(frame), 8000) {
                Ok(Frame {
                    event: Inbound::Media { payload, .. },
                    ..
                }) => black_box(payload.len()),
                _ => unreachable!(),
            })
        });
        group.bench_with_input(BenchmarkId::new("scanned", name), &frame, |b, frame| {
            b.iter(|| match Frame::read_scanned(black_box(frame), 8000) {
                Ok(Frame {
                    event: Inbound::Media { payload, .. },
                    ..
                }) => black_box(payload.len()),
                _ => unreachable!(),
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, encode, read_frame);
criterion_main!(benches);
