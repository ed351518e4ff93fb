//! `GET /metrics` in Prometheus' text exposition format (version 0.0.4): counters, gauges and
//! fixed-bucket histograms on atomics, so recording never takes a lock or allocates.
//!
//! Owns the metric names and their meaning; the rest of the code only bumps them. Media counts
//! are added by each session about once a second, not per frame.

use crate::calls::handoffs::HandoffSource;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::calls::status::Status;

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

/// What came of one attempt to deliver an event to the user's backend (`EVENTS_URL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventOutcome {
    Delivered,
    /// Not taken; tried again later.
    Retried,
    /// Not taken, and its retry window has passed.
    Failed,
}

impl EventOutcome {
    pub const ALL: [EventOutcome; 3] = [
        EventOutcome::Delivered,
        EventOutcome::Retried,
        EventOutcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Delivered => "delivered",
            EventOutcome::Retried => "retried",
            EventOutcome::Failed => "failed",
        }
    }
}

/// What an AI service said about itself (`BOT=realtime`, realtime agents).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceEvent {
    /// An `error` event (but the harmless cancel with nothing to cancel).
    Error,
    /// A `rate_limits.updated` event.
    RateLimits,
}

impl ServiceEvent {
    pub const ALL: [ServiceEvent; 2] = [ServiceEvent::Error, ServiceEvent::RateLimits];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceEvent::Error => "error",
            ServiceEvent::RateLimits => "rate_limits",
        }
    }
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
    /// Recordings given up on a disk error.
    pub recordings_failed: AtomicU64,
    /// Calls not recorded because the writer was too far behind.
    pub recordings_skipped: AtomicU64,
    /// Call-log events waiting for a retry (a gauge the writer sets).
    pub call_log_pending: AtomicU64,
    /// Call-log transactions that failed.
    pub call_log_failures: AtomicU64,
    /// 1 while the data directory or the database file is gone.
    pub data_dir_missing: AtomicU64,
    /// Requests refused by a guard.
    pub requests_refused: AtomicU64,
    relay_events: [AtomicU64; RelayEvent::ALL.len()],
    events: [AtomicU64; EventOutcome::ALL.len()],
    /// The oldest undelivered event's age in ms, or -1 when none waits.
    events_oldest_pending_ms: std::sync::atomic::AtomicI64,
    service_events: [AtomicU64; ServiceEvent::ALL.len()],
    relay_dropped_to_bot: AtomicU64,
    relay_dropped_to_caller: AtomicU64,
    relay_bad_frames: AtomicU64,
    handoffs: [AtomicU64; HandoffSource::ALL.len()],
    /// Passthru requests answered: [hand off, no handoff, stream start].
    passthru_answers: [AtomicU64; 3],
    started_at: AtomicU64,
}

/// What a Passthru request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassthruAnswer {
    Handoff,
    NoHandoff,
    /// The Passthru before the stream (`stream-start`): always "continue".
    StreamStart,
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

    pub fn handoff(&self, source: HandoffSource) {
        if let Some(i) = HandoffSource::ALL.iter().position(|s| *s == source) {
            self.handoffs[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn passthru(&self, answer: PassthruAnswer) {
        let i = match answer {
            PassthruAnswer::Handoff => 0,
            PassthruAnswer::NoHandoff => 1,
            PassthruAnswer::StreamStart => 2,
        };
        self.passthru_answers[i].fetch_add(1, Ordering::Relaxed);
    }

    /// `n` events of this kind from an AI service.
    /// One delivery attempt's outcome.
    pub fn event(&self, outcome: EventOutcome) {
        if let Some(i) = EventOutcome::ALL.iter().position(|o| *o == outcome) {
            self.events[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How old the oldest undelivered event is, in ms (`None`: none waits).
    pub fn events_oldest_pending(&self, age_ms: Option<i64>) {
        self.events_oldest_pending_ms
            .store(age_ms.unwrap_or(-1), Ordering::Relaxed);
    }

    pub fn service_events(&self, event: ServiceEvent, n: u64) {
        if let Some(i) = ServiceEvent::ALL.iter().position(|e| *e == event) {
            self.service_events[i].fetch_add(n, Ordering::Relaxed);
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

    /// The exposition text; `live_calls`, `media_sessions` and `uploads_held` (bytes the HTTP
    /// server holds of uploads) are read by the caller.
    pub fn render(&self, live_calls: usize, media_sessions: usize, uploads_held: usize) -> String {
        let mut out = Exposition(String::with_capacity(6144));
        out.gauge(
            "exotel_voicebot_calls_live",
            "Calls holding a concurrency slot.",
            live_calls as u64,
        );
        out.gauge(
            "exotel_voicebot_media_sessions",
            "Media WebSockets open.",
            media_sessions as u64,
        );
        out.gauge(
            "exotel_voicebot_http_uploads_held_bytes",
            "Upload bytes held now (HTTP_MAX_UPLOADS_HELD_BYTES).",
            uploads_held as u64,
        );
        self.render_calls(&mut out);
        self.render_media(&mut out);
        self.render_relay(&mut out);
        self.render_events(&mut out);
        self.render_faults(&mut out);
        self.render_handoffs(&mut out);
        out.gauge(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch.",
            load(&self.started_at),
        );
        out.0
    }

    /// Final statuses, Exotel's API and the webhook.
    fn render_calls(&self, out: &mut Exposition) {
        out.family(
            "exotel_voicebot_calls_ended_total",
            "counter",
            "Calls that reached a final status, by status.",
        );
        for (i, s) in Status::ALL.iter().enumerate().filter(|(_, s)| s.is_final()) {
            out.sample(
                "exotel_voicebot_calls_ended_total",
                ("status", s.as_str()),
                load(&self.calls_ended[i]),
            );
        }
        out.family(
            "exotel_voicebot_exotel_requests_total",
            "counter",
            "Calls/connect requests, by outcome.",
        );
        for (i, o) in ExotelOutcome::ALL.iter().enumerate() {
            out.sample(
                "exotel_voicebot_exotel_requests_total",
                ("outcome", o.as_str()),
                load(&self.exotel_requests[i]),
            );
        }
        out.histogram(
            "exotel_voicebot_exotel_request_seconds",
            "Time Exotel took to answer Calls/connect.",
            &self.exotel_latency,
        );
        out.histogram(
            "exotel_voicebot_webhook_seconds",
            "Time to answer the connect webhook.",
            &self.webhook_latency,
        );
    }

    /// Audio through the media sockets.
    fn render_media(&self, out: &mut Exposition) {
        out.histogram(
            "exotel_voicebot_media_chunk_send_delay_seconds",
            "How late each outbound chunk left after pacing allowed it.",
            &self.chunk_send_delay,
        );
        out.family(
            "exotel_voicebot_media_frames_total",
            "counter",
            "Media frames, by direction (in: from Exotel).",
        );
        out.sample(
            "exotel_voicebot_media_frames_total",
            ("direction", "in"),
            load(&self.frames_in),
        );
        out.sample(
            "exotel_voicebot_media_frames_total",
            ("direction", "out"),
            load(&self.frames_out),
        );
        out.family(
            "exotel_voicebot_media_bytes_total",
            "counter",
            "PCM bytes of media, by direction.",
        );
        out.sample(
            "exotel_voicebot_media_bytes_total",
            ("direction", "in"),
            load(&self.bytes_in),
        );
        out.sample(
            "exotel_voicebot_media_bytes_total",
            ("direction", "out"),
            load(&self.bytes_out),
        );
        out.counter(
            "exotel_voicebot_media_bad_frames_total",
            "Inbound frames skipped as unusable.",
            load(&self.bad_frames),
        );
    }

    /// Events to the user's backend (`EVENTS_URL`).
    fn render_events(&self, out: &mut Exposition) {
        out.family(
            "exotel_voicebot_events_total",
            "counter",
            "Attempts to deliver an event to EVENTS_URL, by what came of them.",
        );
        for (i, o) in EventOutcome::ALL.iter().enumerate() {
            out.sample(
                "exotel_voicebot_events_total",
                ("outcome", o.as_str()),
                load(&self.events[i]),
            );
        }
        let age = self.events_oldest_pending_ms.load(Ordering::Relaxed);
        out.gauge(
            "exotel_voicebot_events_oldest_pending_seconds",
            "How long the oldest undelivered event has waited (0: none waits).",
            (age.max(0) / 1000) as u64,
        );
    }

    /// The relay to upstream bots (`BOT=relay`).
    fn render_relay(&self, out: &mut Exposition) {
        out.family(
            "exotel_voicebot_relay_connections_total",
            "counter",
            "Relayed calls' connections to their bot, by what happened (BOT=relay).",
        );
        for (i, e) in RelayEvent::ALL.iter().enumerate() {
            out.sample(
                "exotel_voicebot_relay_connections_total",
                ("event", e.as_str()),
                load(&self.relay_events[i]),
            );
        }
        out.family(
            "exotel_voicebot_realtime_service_events_total",
            "counter",
            "What AI services said about themselves: error events and rate-limit updates.",
        );
        for (i, e) in ServiceEvent::ALL.iter().enumerate() {
            out.sample(
                "exotel_voicebot_realtime_service_events_total",
                ("event", e.as_str()),
                load(&self.service_events[i]),
            );
        }
        out.family(
            "exotel_voicebot_relay_frames_dropped_total",
            "counter",
            "Frames the relay dropped: to a bot whose send buffer was full, or bot audio beyond the queue limit.",
        );
        out.sample(
            "exotel_voicebot_relay_frames_dropped_total",
            ("direction", "to_bot"),
            load(&self.relay_dropped_to_bot),
        );
        out.sample(
            "exotel_voicebot_relay_frames_dropped_total",
            ("direction", "to_caller"),
            load(&self.relay_dropped_to_caller),
        );
        out.counter(
            "exotel_voicebot_relay_bad_frames_total",
            "Frames from relayed bots skipped as unusable.",
            load(&self.relay_bad_frames),
        );
    }

    /// What a slow, full or vanished disk has cost: never calls, only recordings and delay.
    /// Handoffs to a person and the Passthru answers.
    fn render_handoffs(&self, out: &mut Exposition) {
        out.family(
            "exotel_voicebot_handoffs_total",
            "counter",
            "Callers handed to a person when the stream ended, by what asked for it.",
        );
        for (i, s) in HandoffSource::ALL.iter().enumerate() {
            out.sample(
                "exotel_voicebot_handoffs_total",
                ("source", s.as_str()),
                load(&self.handoffs[i]),
            );
        }
        out.family(
            "exotel_voicebot_passthru_answers_total",
            "counter",
            "Exotel Passthru requests, by what they were answered.",
        );
        for (i, a) in ["handoff", "no-handoff", "stream-start"].iter().enumerate() {
            out.sample(
                "exotel_voicebot_passthru_answers_total",
                ("answer", a),
                load(&self.passthru_answers[i]),
            );
        }
    }

    fn render_faults(&self, out: &mut Exposition) {
        out.counter(
            "exotel_voicebot_recording_frames_dropped_total",
            "Audio dropped from recordings (never from calls).",
            load(&self.recording_frames_dropped),
        );
        out.counter(
            "exotel_voicebot_recordings_failed_total",
            "Recordings given up on a disk error (each logged once, with its call).",
            load(&self.recordings_failed),
        );
        out.counter(
            "exotel_voicebot_recordings_skipped_total",
            "Calls not recorded because the recording writer was too far behind (a hung disk).",
            load(&self.recordings_skipped),
        );
        out.gauge(
            "exotel_voicebot_call_log_writes_pending",
            "Call-log events kept in memory after a failed write, retried until the disk takes them.",
            load(&self.call_log_pending),
        );
        out.counter(
            "exotel_voicebot_call_log_write_failures_total",
            "Call-log transactions that failed and were kept for a retry.",
            load(&self.call_log_failures),
        );
        out.gauge(
            "exotel_voicebot_data_dir_missing",
            "1 while DATA_DIR or calls.db has vanished from under the running server.",
            load(&self.data_dir_missing),
        );
        out.counter(
            "exotel_voicebot_requests_refused_total",
            "Webhooks and status callbacks refused because their CallSid is not the live call's.",
            load(&self.requests_refused),
        );
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// The text being written, one family at a time.
struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, (label, value): (&str, &str), v: u64) {
        let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} {v}");
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, "counter", help);
        let _ = writeln!(self.0, "{name} {v}");
    }

    fn gauge(&mut self, name: &str, help: &str, v: u64) {
        self.family(name, "gauge", help);
        let _ = writeln!(self.0, "{name} {v}");
    }

    fn histogram(&mut self, name: &str, help: &str, h: &Histogram) {
        self.family(name, "histogram", help);
        h.write(&mut self.0, name, "");
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
