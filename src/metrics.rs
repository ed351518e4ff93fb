//! `GET /metrics` in Prometheus' text exposition format (version 0.0.4): counters, gauges and
//! fixed-bucket histograms on atomics, so recording never takes a lock or allocates.
//!
//! Owns the metric names and their meaning; the rest of the code only bumps them. Media counts
//! are added by each session about once a second, not per frame.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calls::log::Status;

/// Upper bounds, in seconds, shared by every histogram: 100 µs to 10 s.
const BUCKETS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.5, 2.5, 10.0,
];

/// A histogram of durations.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn write(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// How a `Calls/connect` request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExotelOutcome {
    Placed,
    Refused,
    BadAnswer,
    Unreachable,
    Timeout,
    NotSent,
}

impl ExotelOutcome {
    const ALL: [ExotelOutcome; 6] = [
        ExotelOutcome::Placed,
        ExotelOutcome::Refused,
        ExotelOutcome::BadAnswer,
        ExotelOutcome::Unreachable,
        ExotelOutcome::Timeout,
        ExotelOutcome::NotSent,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ExotelOutcome::Placed => "placed",
            ExotelOutcome::Refused => "refused",
            ExotelOutcome::BadAnswer => "bad_answer",
            ExotelOutcome::Unreachable => "unreachable",
            ExotelOutcome::Timeout => "timeout",
            ExotelOutcome::NotSent => "not_sent",
        }
    }
}

/// Media counts a session adds in batches.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MediaDelta {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub bad_frames: u64,
    /// The relay's drops and bad frames (`BOT=relay`).
    pub relay_dropped_to_bot: u64,
    pub relay_dropped_to_caller: u64,
    pub relay_bad_frames: u64,
}

/// What happened to a relayed call's connection to its bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelayEvent {
    Connected,
    /// Unreachable or refused, at the start or after a drop: the fallback took over.
    Unavailable,
    /// The connection broke mid-call without a close.
    Dropped,
    Reconnected,
}

impl RelayEvent {
    pub const ALL: [RelayEvent; 4] = [
        RelayEvent::Connected,
        RelayEvent::Unavailable,
        RelayEvent::Dropped,
        RelayEvent::Reconnected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RelayEvent::Connected => "connected",
            RelayEvent::Unavailable => "unavailable",
            RelayEvent::Dropped => "dropped",
            RelayEvent::Reconnected => "reconnected",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    calls_ended: [AtomicU64; Status::ALL.len()],
    exotel_requests: [AtomicU64; ExotelOutcome::ALL.len()],
    pub exotel_latency: Histogram,
    pub webhook_latency: Histogram,
    /// How late each outbound chunk left after pacing allowed it.
    pub chunk_send_delay: Histogram,
    frames_in: AtomicU64,
    bytes_in: AtomicU64,
    frames_out: AtomicU64,
    bytes_out: AtomicU64,
    bad_frames: AtomicU64,
    /// Recording frames dropped because the disk was slower than the calls.
    pub recording_frames_dropped: AtomicU64,
    relay_events: [AtomicU64; RelayEvent::ALL.len()],
    relay_dropped_to_bot: AtomicU64,
    relay_dropped_to_caller: AtomicU64,
    relay_bad_frames: AtomicU64,
    started_at: AtomicU64,
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics::default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        m.started_at.store(now.as_secs(), Ordering::Relaxed);
        m
    }

    pub fn call_ended(&self, status: Status) {
        if let Some(i) = Status::ALL.iter().position(|s| *s == status) {
            self.calls_ended[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn exotel_request(&self, outcome: ExotelOutcome, took: Duration) {
        if let Some(i) = ExotelOutcome::ALL.iter().position(|o| *o == outcome) {
            self.exotel_requests[i].fetch_add(1, Ordering::Relaxed);
        }
        if outcome != ExotelOutcome::NotSent {
            self.exotel_latency.observe(took);
        }
    }

    pub fn relay_event(&self, event: RelayEvent) {
        if let Some(i) = RelayEvent::ALL.iter().position(|e| *e == event) {
            self.relay_events[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn add_media(&self, d: MediaDelta) {
        self.relay_dropped_to_bot
            .fetch_add(d.relay_dropped_to_bot, Ordering::Relaxed);
        self.relay_dropped_to_caller
            .fetch_add(d.relay_dropped_to_caller, Ordering::Relaxed);
        self.relay_bad_frames
            .fetch_add(d.relay_bad_frames, Ordering::Relaxed);
        self.frames_in.fetch_add(d.frames_in, Ordering::Relaxed);
        self.bytes_in.fetch_add(d.bytes_in, Ordering::Relaxed);
        self.frames_out.fetch_add(d.frames_out, Ordering::Relaxed);
        self.bytes_out.fetch_add(d.bytes_out, Ordering::Relaxed);
        self.bad_frames.fetch_add(d.bad_frames, Ordering::Relaxed);
    }

    /// The exposition text; `live_calls` and `media_sessions` are read by the caller.
    pub fn render(&self, live_calls: usize, media_sessions: usize) -> String {
        let mut out = String::with_capacity(4096);
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        family(
            &mut out,
            "exotel_voicebot_calls_live",
            "gauge",
            "Calls holding a concurrency slot.",
        );
        let _ = writeln!(out, "exotel_voicebot_calls_live {live_calls}");
        family(
            &mut out,
            "exotel_voicebot_media_sessions",
            "gauge",
            "Media WebSockets open.",
        );
        let _ = writeln!(out, "exotel_voicebot_media_sessions {media_sessions}");
        family(
            &mut out,
            "exotel_voicebot_calls_ended_total",
            "counter",
            "Calls that reached a final status, by status.",
        );
        for (i, s) in Status::ALL.iter().enumerate().filter(|(_, s)| s.is_final()) {
            let _ = writeln!(
                out,
                "exotel_voicebot_calls_ended_total{{status=\"{}\"}} {}",
                s.as_str(),
                load(&self.calls_ended[i])
            );
        }
        family(
            &mut out,
            "exotel_voicebot_exotel_requests_total",
            "counter",
            "Calls/connect requests, by outcome.",
        );
        for (i, o) in ExotelOutcome::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "exotel_voicebot_exotel_requests_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                load(&self.exotel_requests[i])
            );
        }
        family(
            &mut out,
            "exotel_voicebot_exotel_request_seconds",
            "histogram",
            "Time Exotel took to answer Calls/connect.",
        );
        self.exotel_latency
            .write(&mut out, "exotel_voicebot_exotel_request_seconds", "");
        family(
            &mut out,
            "exotel_voicebot_webhook_seconds",
            "histogram",
            "Time to answer the connect webhook.",
        );
        self.webhook_latency
            .write(&mut out, "exotel_voicebot_webhook_seconds", "");
        family(
            &mut out,
            "exotel_voicebot_media_chunk_send_delay_seconds",
            "histogram",
            "How late each outbound chunk left after pacing allowed it.",
        );
        self.chunk_send_delay.write(
            &mut out,
            "exotel_voicebot_media_chunk_send_delay_seconds",
            "",
        );
        family(
            &mut out,
            "exotel_voicebot_media_frames_total",
            "counter",
            "Media frames, by direction (in: from Exotel).",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_media_frames_total{{direction=\"in\"}} {}",
            load(&self.frames_in)
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_media_frames_total{{direction=\"out\"}} {}",
            load(&self.frames_out)
        );
        family(
            &mut out,
            "exotel_voicebot_media_bytes_total",
            "counter",
            "PCM bytes of media, by direction.",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_media_bytes_total{{direction=\"in\"}} {}",
            load(&self.bytes_in)
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_media_bytes_total{{direction=\"out\"}} {}",
            load(&self.bytes_out)
        );
        family(
            &mut out,
            "exotel_voicebot_media_bad_frames_total",
            "counter",
            "Inbound frames skipped as unusable.",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_media_bad_frames_total {}",
            load(&self.bad_frames)
        );
        family(
            &mut out,
            "exotel_voicebot_recording_frames_dropped_total",
            "counter",
            "Audio dropped from recordings (never from calls).",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_recording_frames_dropped_total {}",
            load(&self.recording_frames_dropped)
        );
        family(
            &mut out,
            "exotel_voicebot_relay_connections_total",
            "counter",
            "Relayed calls' connections to their bot, by what happened (BOT=relay).",
        );
        for (i, e) in RelayEvent::ALL.iter().enumerate() {
            let _ = writeln!(
                out,
                "exotel_voicebot_relay_connections_total{{event=\"{}\"}} {}",
                e.as_str(),
                load(&self.relay_events[i])
            );
        }
        family(
            &mut out,
            "exotel_voicebot_relay_frames_dropped_total",
            "counter",
            "Frames the relay dropped: to a bot whose send buffer was full, or bot audio beyond the queue limit.",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_relay_frames_dropped_total{{direction=\"to_bot\"}} {}",
            load(&self.relay_dropped_to_bot)
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_relay_frames_dropped_total{{direction=\"to_caller\"}} {}",
            load(&self.relay_dropped_to_caller)
        );
        family(
            &mut out,
            "exotel_voicebot_relay_bad_frames_total",
            "counter",
            "Frames from relayed bots skipped as unusable.",
        );
        let _ = writeln!(
            out,
            "exotel_voicebot_relay_bad_frames_total {}",
            load(&self.relay_bad_frames)
        );
        family(
            &mut out,
            "process_start_time_seconds",
            "gauge",
            "Start time of the process since the Unix epoch.",
        );
        let _ = writeln!(out, "process_start_time_seconds {}", load(&self.started_at));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_and_end_at_the_count() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.write(&mut out, "x", "");
        assert!(out.contains("x_bucket{le=\"0.0001\"} 1\n"));
        assert!(out.contains("x_bucket{le=\"0.005\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"10\"} 2\n"));
        assert!(out.contains("x_bucket{le=\"+Inf\"} 3\n"));
        assert!(out.contains("x_count 3\n"));
    }
}
