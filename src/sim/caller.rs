//! One simulated call: Exotel's side of the stream protocol over a real WebSocket.

use super::client::Socket;
use super::fake_exotel::FakeExotel;
use crate::exotel::stream::decode_payload;
use crate::media::audio::{pcm_to_samples, samples_to_pcm, ChunkRules};
use base64::Engine as _;
use bytes::BytesMut;
use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::{Message, Utf8Bytes, WebSocket};

mod plan;
pub use plan::*;

fn get_json(
    plan: &CallPlan,
    target: &str,
    body: Option<String>,
) -> Result<serde_json::Value, String> {
    let method = if body.is_some() { "POST" } else { "GET" };
    let (status, answer) = plan.target().fetch(method, target, body.as_deref())?;
    let json: serde_json::Value = serde_json::from_slice(&answer)
        .map_err(|e| format!("{target} answered {status} with non-JSON: {e}"))?;
    if status != 200 {
        return Err(format!("{target} answered {status}: {json}"));
    }
    Ok(json)
}

fn webhook_target(call_sid: &str, path: &str, extra: &str) -> String {
    format!("{path}?CallSid={call_sid}&CallFrom=%2B919876543210&CallTo=08047112233{extra}")
}

/// Gets the media URL the way Exotel would, with the CallSid Exotel uses for the call: the
/// plan's, or for a call placed through `/call` the one the fake Exotel gave it.
fn media_url(plan: &CallPlan) -> Result<(String, String), String> {
    let url_of = |json: serde_json::Value| {
        json["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no url in {json}"))
    };
    match &plan.connect {
        Connect::Url(url) => Ok((url.clone(), plan.call_sid.clone())),
        Connect::Webhook { path, secret } => {
            let extra = match secret {
                Some(s) => format!("&Direction=incoming&secret={s}"),
                None => "&Direction=incoming".into(),
            };
            let url = url_of(get_json(
                plan,
                &webhook_target(&plan.call_sid, path, &extra),
                None,
            )?)?;
            Ok((url, plan.call_sid.clone()))
        }
        Connect::Outbound { call, fake } => {
            let body = call.to_string();
            let placed = get_json(plan, "/call", Some(body))?;
            let id = placed["callLogId"].as_str().unwrap_or("").to_owned();
            let call_sid = placed["callSid"].as_str().unwrap_or("").to_owned();
            let fields = fake
                .call_for(&id)
                .ok_or_else(|| format!("the fake Exotel got no Calls/connect for {id}"))?;
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            match field("StreamUrl") {
                Some(url) => Ok((url, call_sid)),
                None => {
                    let extra = format!("&Direction=outbound-api&CustomField={id}");
                    let url = url_of(get_json(
                        plan,
                        &webhook_target(&call_sid, "/voicebot/connect", &extra),
                        None,
                    )?)?;
                    Ok((url, call_sid))
                }
            }
        }
    }
}

/// Where to open the socket: the URL's port on the server's host (public host names in the URL
/// are not reachable from here; only the port, path and query matter).
fn socket_target(plan: &CallPlan, url: &str) -> Result<(SocketAddr, String), String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("wss://"))
        .ok_or_else(|| format!("not a ws:// URL: {url}"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let port = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok());
    // A wss:// URL names the server's own port only when the server speaks TLS itself; else
    // it is a proxy's public address.
    let direct = url.starts_with("ws://") || plan.tls.is_some();
    let addr = match port {
        Some(p) if direct => SocketAddr::new(plan.server.ip(), p),
        _ => plan.server,
    };
    let path = if path.is_empty() { "/" } else { path };
    Ok((addr, format!("ws://{}{path}", plan.target().host(addr))))
}

/// Runs one call to its end.
pub fn run_call(plan: &CallPlan) -> CallReport {
    let mut report = new_report(plan);
    if let Err(e) = stream_call(plan, &mut report) {
        report.ended_by = EndedBy::Error(e);
    }
    finish_report(plan, report)
}

/// A report before the call: all of the caller's audio still to come back. Its buffers are
/// sized for an echo of the whole call (the audio and a second more), so that under load they
/// are not copied as they grow.
pub(super) fn new_report(plan: &CallPlan) -> CallReport {
    let chunks = plan.audio.len().div_ceil(plan.chunk_samples());
    CallReport {
        echo_missing: plan.audio.len(),
        bot_audio: if plan.keep_bot_audio {
            Vec::with_capacity(plan.audio.len() + plan.sample_rate as usize)
        } else {
            Vec::new()
        },
        events: Vec::with_capacity(2 * chunks + 16),
        turnaround_us: Vec::with_capacity(chunks),
        ..Default::default()
    }
}

/// What the report says once the call is over: the echo compared, the bot's first chunk timed.
pub(super) fn finish_report(plan: &CallPlan, mut report: CallReport) -> CallReport {
    if plan.check_echo {
        check_echo(plan, &mut report);
    } else {
        report.echo_missing = 0;
    }
    report.first_bot_chunk_ms = first_bot_chunk_ms(&report.events);
    report
}

/// From the first caller chunk to the first bot chunk; negative when the bot spoke first.
fn first_bot_chunk_ms(events: &[(Duration, Event)]) -> Option<f64> {
    let first = |want: fn(&Event) -> bool| {
        events
            .iter()
            .find(|(_, e)| want(e))
            .map(|(t, _)| t.as_secs_f64())
    };
    let caller = first(|e| matches!(e, Event::SentMedia(_)))?;
    let bot = first(|e| matches!(e, Event::ReceivedMedia { .. }))?;
    Some((bot - caller) * 1e3)
}

/// One call on its own coroutine (or thread): waits for the server with a read timeout until
/// the next thing is due.
fn stream_call(plan: &CallPlan, report: &mut CallReport) -> Result<(), String> {
    let (mut ws, mut caller) = begin_stream(plan, report)?;
    loop {
        let now = Instant::now();
        caller.send_due(&mut ws, report, now)?;
        caller.check_close_deadline(now)?;
        let wait = caller
            .next_wake(now)
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        ws.get_mut()
            .set_read_timeout(Some(wait))
            .map_err(|e| e.to_string())?;
        let message = match ws.read() {
            Ok(m) => m,
            Err(tungstenite::Error::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                continue
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                report.ended_by = caller.ended_by(1000);
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        if caller.on_message(&mut ws, report, message, Instant::now())? == Flow::Ended {
            return Ok(());
        }
    }
}

/// Opens the call's stream and sends `connected` and `start`: the stream is then the caller's
/// to drive, on its own ([`stream_call`]) or on a load's loop ([`super::streams`]).
pub(super) fn begin_stream(
    plan: &CallPlan,
    report: &mut CallReport,
) -> Result<(WebSocket<Socket>, Caller), String> {
    let (mut ws, call_sid) = open_stream(plan, report)?;
    send_text(
        &mut ws,
        r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#.into(),
    )?;
    let start = serde_json::json!({
        "event": "start", "sequence_number": 1, "stream_sid": plan.stream_sid,
        "start": {
            "stream_sid": plan.stream_sid, "call_sid": call_sid, "account_sid": "sim",
            "from": "+919876543210", "to": "08047112233", "custom_parameters": {},
            "media_format": {"encoding": "base64", "sample_rate": plan.sample_rate.to_string(), "bit_rate": "128kbps"}
        }
    });
    send_text(&mut ws, start.to_string())?;
    let caller = Caller::new(plan, call_sid);
    report.started_at = Some(caller.t0);
    Ok((ws, caller))
}

/// Gets the media URL as Exotel would and opens the WebSocket; notes the call's ids in
/// `report`. Returns the socket and the CallSid the stream is for.
fn open_stream(
    plan: &CallPlan,
    report: &mut CallReport,
) -> Result<(WebSocket<Socket>, String), String> {
    let (url, call_sid) = media_url(plan)?;
    report.media_url = url.clone();
    report.call_sid = call_sid.clone();
    report.call_log_id = url
        .split("callLogId=")
        .nth(1)
        .map(|s| s.split('&').next().unwrap_or("").to_owned())
        .unwrap_or_default();
    let (addr, ws_url) = socket_target(plan, &url)?;
    let stream = plan.target().connect(addr).map_err(|e| e.to_string())?;
    // The server's own frame limits; not tungstenite's default read buffer (128 KiB,
    // zero-filled on every read, which made memset the load generator's top cost), nor the
    // server's 4 KiB, in which every chunk took two `recv`s.
    let limit = crate::exotel::stream::MAX_FRAME_BYTES;
    let config = tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(SIM_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(limit)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    let (ws, _) = tungstenite::client::client_with_config(ws_url.as_str(), stream, Some(config))
        .map_err(|e| format!("handshake: {e}"))?;
    Ok((ws, call_sid))
}

/// The simulator's WebSocket read buffer: this server's chunk (200 ms at 8 kHz or 100 ms at
/// 16 kHz: 4,268 bytes of base64 in about 4.4 KB of frame) in one `recv`. No larger:
/// tungstenite zero-fills the whole of it before every read.
const SIM_READ_BUFFER_BYTES: usize = 5 * 1024;

/// Sends one frame. On a loop's socket a full socket is not an error: the frame waits in
/// tungstenite's buffer for the next turn's flush.
fn send_text(ws: &mut WebSocket<Socket>, text: String) -> Result<(), String> {
    send_message(ws, Message::text(text))
}

fn send_message(ws: &mut WebSocket<Socket>, message: Message) -> Result<(), String> {
    match ws.send(message) {
        Err(tungstenite::Error::Io(e))
            if e.kind() == ErrorKind::WouldBlock && ws.get_ref().is_looped() =>
        {
            Ok(())
        }
        sent => sent.map_err(|e| e.to_string()),
    }
}

/// What a frame from the server left the call in.
#[derive(PartialEq, Eq)]
pub(super) enum Flow {
    Going,
    Ended,
}

/// Exotel's side of one stream once it has started: what is due to be sent and when (the
/// caller's chunks at real-time pace, keys, marks whose audio has played, `stop`), and what the
/// bot's answers mean for the report.
pub(super) struct Caller {
    stream_sid: String,
    call_sid: String,
    rules: ChunkRules,
    chunk_ms: u32,
    /// In how many chunks the caller's audio goes.
    chunk_count: usize,
    /// The chunks in base64, shared by a load's calls.
    payloads: Arc<Vec<String>>,
    chunk_samples: usize,
    chunk_period: Duration,
    t0: Instant,
    /// Keys to press, in order of time.
    dtmf: VecDeque<(Instant, char)>,
    stop_at: Instant,
    /// When the `stop` was sent: the server's close is timed from then, not from `stop_at`,
    /// which a caller on a busy machine may pass late.
    stop_sent: Option<Instant>,
    sent_at: Vec<Instant>,
    next_chunk: usize,
    seq: u64,
    /// When Exotel will have played what the bot sent so far.
    playout_end: Instant,
    /// Marks to echo when their audio has played.
    pending_marks: VecDeque<(Instant, String)>,
    cleared: bool,
    delay_samples: usize,
    /// The caller's audio: its length bounds the chunks, and the echo is checked against it as
    /// it arrives.
    audio: Arc<[i16]>,
    check_echo: bool,
    keep_bot_audio: bool,
}

thread_local! {
    /// Where a thread writes each media frame's text: split off as the frame's payload and
    /// given back once tungstenite has copied it out, so a frame allocates nothing. One per
    /// thread, not per call: a load's loop writes every call's frames through the same few
    /// cache lines (a buffer per call was a cache miss per frame).
    static FRAME_TEXT: std::cell::RefCell<BytesMut> = std::cell::RefCell::new(BytesMut::new());
    /// Where a thread decodes each bot chunk's PCM, for the same reason.
    static BOT_PCM: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Caller {
    pub(super) fn new(plan: &CallPlan, call_sid: String) -> Caller {
        let chunk_samples = plan.chunk_samples();
        let chunk_count = plan.audio.len().div_ceil(chunk_samples);
        let payloads = match &plan.payloads {
            Some(shared) => shared.clone(),
            None => Arc::new(plan.encode_chunks()),
        };
        let chunk_period = Duration::from_millis(plan.chunk_ms as u64);
        let t0 = Instant::now();
        let audio_end = t0 + chunk_period * chunk_count.max(1) as u32;
        let mut dtmf: VecDeque<(Instant, char)> = plan
            .dtmf_during
            .iter()
            .map(|(ms, c)| (t0 + Duration::from_millis(*ms as u64), *c))
            .collect();
        for (i, c) in plan.dtmf.chars().enumerate() {
            dtmf.push_back((audio_end + Duration::from_millis(300 * (i as u64 + 1)), c));
        }
        let stop_at = dtmf.back().map_or(audio_end, |(t, _)| (*t).max(audio_end))
            + Duration::from_millis(plan.tail_ms as u64);
        Caller {
            stream_sid: plan.stream_sid.clone(),
            call_sid,
            rules: ChunkRules::for_rate(plan.sample_rate),
            chunk_ms: plan.chunk_ms,
            sent_at: Vec::with_capacity(chunk_count),
            chunk_count,
            payloads,
            chunk_samples,
            chunk_period,
            t0,
            dtmf,
            stop_at,
            stop_sent: None,
            next_chunk: 0,
            seq: 2,
            playout_end: Instant::now(),
            pending_marks: VecDeque::new(),
            cleared: false,
            delay_samples: (plan.sample_rate as u64 * plan.echo_delay_ms as u64 / 1000) as usize,
            audio: plan.audio.clone(),
            check_echo: plan.check_echo,
            keep_bot_audio: plan.keep_bot_audio,
        }
    }

    /// Like Exotel, a chunk goes out once its audio has been captured: chunk k at
    /// t0 + (k+1)·period.
    fn due(&self, k: usize) -> Instant {
        self.t0 + self.chunk_period * (k as u32 + 1)
    }

    /// Sends what is due at `now`: the caller's audio, keys, the marks whose audio has played,
    /// and `stop` once everything has.
    fn send_due(
        &mut self,
        ws: &mut WebSocket<Socket>,
        report: &mut CallReport,
        now: Instant,
    ) -> Result<(), String> {
        let sid = &self.stream_sid;
        while self.next_chunk < self.chunk_count && self.due(self.next_chunk) <= now {
            let k = self.next_chunk;
            let ts = self.chunk_ms as usize * k;
            let text = FRAME_TEXT.with_borrow_mut(|frame| {
                frame.clear();
                let _ = write!(
                    frame,
                    r#"{{"event":"media","sequence_number":{},"stream_sid":"{sid}","media":{{"chunk":{},"timestamp":"{ts}","payload":"{}"}}}}"#,
                    self.seq,
                    k + 1,
                    self.payloads[k]
                );
                Utf8Bytes::try_from(frame.split().freeze())
            })
            .map_err(|e| format!("a media frame's text: {e}"))?;
            self.seq += 1;
            send_message(ws, Message::Text(text))?;
            self.sent_at.push(Instant::now());
            report.events.push((now - self.t0, Event::SentMedia(k)));
            report.chunks_sent += 1;
            let samples = self
                .chunk_samples
                .min(self.audio.len() - k * self.chunk_samples);
            report.bytes_sent += samples as u64 * 2;
            self.next_chunk += 1;
        }
        while self.dtmf.front().is_some_and(|(t, _)| *t <= now) {
            let Some((_, digit)) = self.dtmf.pop_front() else {
                break;
            };
            let text = format!(
                r#"{{"event":"dtmf","sequence_number":{},"stream_sid":"{sid}","dtmf":{{"digit":"{digit}","duration":"200"}}}}"#,
                self.seq
            );
            self.seq += 1;
            send_text(ws, text)?;
            report.events.push((now - self.t0, Event::SentDtmf(digit)));
        }
        while self.pending_marks.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, name)) = self.pending_marks.pop_front() {
                echo_mark(ws, &self.stream_sid, &mut self.seq, &name)?;
                report.marks_echoed += 1;
            }
        }
        if self.stop_sent.is_none() && now >= self.stop_at {
            let text = format!(
                r#"{{"event":"stop","sequence_number":{},"stream_sid":"{sid}","stop":{{"call_sid":"{}","account_sid":"sim","reason":"callended"}}}}"#,
                self.seq, self.call_sid
            );
            send_text(ws, text)?;
            self.stop_sent = Some(Instant::now());
        }
        Ok(())
    }

    /// The next time something is due (after `stop`, every 100 ms until the server closes).
    fn next_wake(&self, now: Instant) -> Instant {
        if self.stop_sent.is_some() {
            return now + Duration::from_millis(100);
        }
        let mut wake = self.stop_at;
        if self.next_chunk < self.chunk_count {
            wake = wake.min(self.due(self.next_chunk));
        }
        if let Some((t, _)) = self.dtmf.front() {
            wake = wake.min(*t);
        }
        if let Some((t, _)) = self.pending_marks.front() {
            wake = wake.min(*t);
        }
        wake
    }

    /// A server that has not closed 3 s after `stop` has hung.
    fn check_close_deadline(&self, now: Instant) -> Result<(), String> {
        if self
            .stop_sent
            .is_some_and(|sent| now >= sent + Duration::from_secs(3))
        {
            return Err("the server did not close the socket after stop".into());
        }
        Ok(())
    }

    /// One message from the server.
    fn on_message(
        &mut self,
        ws: &mut WebSocket<Socket>,
        report: &mut CallReport,
        message: Message,
        received_at: Instant,
    ) -> Result<Flow, String> {
        match message {
            Message::Text(text) => self.on_text(ws, report, &text, received_at)?,
            Message::Close(frame) => {
                report.ended_by = self.ended_by(frame.map(|f| u16::from(f.code)).unwrap_or(1005));
                // Finish the closing handshake.
                let _ = ws.flush();
                return Ok(Flow::Ended);
            }
            _ => {}
        }
        Ok(Flow::Going)
    }

    /// A turn on a load's loop, whose socket never waits: sends what is due, reads what the
    /// server sent until the socket has no more, and says when the next turn is due (`None`:
    /// the call is over).
    pub(super) fn turn(
        &mut self,
        ws: &mut WebSocket<Socket>,
        report: &mut CallReport,
        now: Instant,
    ) -> Result<Option<Instant>, String> {
        if ws.get_mut().take_write_blocked() {
            match ws.flush() {
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                flushed => flushed.map_err(|e| e.to_string())?,
            }
        }
        self.send_due(ws, report, now)?;
        self.check_close_deadline(now)?;
        loop {
            let message = match ws.read() {
                Ok(m) => m,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    report.ended_by = self.ended_by(1000);
                    return Ok(None);
                }
                Err(e) => return Err(e.to_string()),
            };
            if self.on_message(ws, report, message, Instant::now())? == Flow::Ended {
                return Ok(None);
            }
        }
        Ok(Some(self.next_wake(now)))
    }

    /// Who ended the call when the socket closed with `code`.
    fn ended_by(&self, code: u16) -> EndedBy {
        if self.stop_sent.is_some() {
            EndedBy::Caller
        } else {
            EndedBy::Server(code)
        }
    }

    /// One text frame from the server.
    fn on_text(
        &mut self,
        ws: &mut WebSocket<Socket>,
        report: &mut CallReport,
        text: &str,
        received_at: Instant,
    ) -> Result<(), String> {
        let event = match media_fast(text) {
            Some(media) => media,
            None => serde_json::from_str(text).map_err(|e| format!("server sent non-JSON: {e}"))?,
        };
        if event.stream_sid.as_deref() != Some(self.stream_sid.as_str()) {
            report.wrong_stream_sid += 1;
        }
        match event.event.as_ref() {
            "media" => {
                let payload = event.media.map(|m| m.payload).unwrap_or_default();
                self.on_media(report, &payload, received_at)?;
            }
            "mark" => {
                let name = event.mark.map(|m| m.name.into_owned()).unwrap_or_default();
                report.marks_received.push(name.clone());
                report
                    .events
                    .push((received_at - self.t0, Event::ReceivedMark(name.clone())));
                self.pending_marks
                    .push_back((self.playout_end.max(received_at), name));
            }
            "clear" => {
                report.clears += 1;
                self.cleared = true;
                report
                    .events
                    .push((received_at - self.t0, Event::ReceivedClear));
                self.playout_end = received_at;
                // What was queued is dropped; its marks count as played now (as Twilio-style
                // servers do; Exotel's documentation does not say).
                while let Some((_, name)) = self.pending_marks.pop_front() {
                    echo_mark(ws, &self.stream_sid, &mut self.seq, &name)?;
                    report.marks_echoed += 1;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A bot chunk's PCM: counted, checked against Exotel's chunk rules and against the
    /// caller's audio, kept if the plan keeps it. Returns the bot sample it starts at, and its
    /// samples.
    fn count_chunk(&self, report: &mut CallReport, pcm: &[u8]) -> (usize, usize) {
        let len = pcm.len();
        report.chunks_received += 1;
        report.bytes_received += len as u64;
        *report.chunk_sizes.entry(len).or_default() += 1;
        if !self.rules.is_valid_chunk(len) {
            report.invalid_chunks += 1;
        }
        let at = report.bot_samples;
        if self.keep_bot_audio {
            pcm_to_samples(pcm, &mut report.bot_audio);
        }
        report.bot_samples += len / 2;
        if !self.cleared {
            if self.check_echo {
                report.echo_mismatched += echo_mismatches(pcm, at, self.delay_samples, &self.audio);
            }
            report.echo_heard = report.bot_samples;
        }
        (at, len / 2)
    }

    /// A bot chunk: decoded, counted ([`Caller::count_chunk`]), and timed against the caller
    /// chunk that completed its echo.
    fn on_media(
        &mut self,
        report: &mut CallReport,
        payload: &str,
        received_at: Instant,
    ) -> Result<(), String> {
        let (at, samples) = BOT_PCM.with_borrow_mut(|pcm| {
            decode_payload(payload, pcm).map_err(|e| format!("server sent bad base64: {e}"))?;
            Ok::<_, String>(self.count_chunk(report, pcm))
        })?;
        report
            .events
            .push((received_at - self.t0, Event::ReceivedMedia { at, samples }));
        // Exotel plays chunks back to back in real time.
        self.playout_end =
            self.playout_end.max(received_at) + Duration::from_micros(self.rules.micros(samples));
        if !self.cleared {
            // The echo of this chunk's last sample needed caller sample `end - delay`.
            let needed = (at + samples)
                .saturating_sub(self.delay_samples)
                .min(self.audio.len());
            if needed > 0 {
                let k = (needed - 1) / self.chunk_samples;
                if let Some(sent) = self.sent_at.get(k) {
                    report
                        .turnaround_us
                        .push(received_at.saturating_duration_since(*sent).as_micros() as u64);
                }
            }
        }
        Ok(())
    }
}

/// A media frame in the exact shape this server's encoder writes it
/// (`{"event":"media","stream_sid":"…","media":{"payload":"…"}}`), read without a JSON parser:
/// under load that parse was the simulator's largest cost. Anything else (another server's
/// layout, an escape, another event) goes to serde_json.
fn media_fast(text: &str) -> Option<ServerEvent<'_>> {
    let rest = text.strip_prefix(r#"{"event":"media","stream_sid":""#)?;
    let (sid, rest) = rest.split_once('"')?;
    let payload = rest
        .strip_prefix(r#","media":{"payload":""#)?
        .strip_suffix(r#""}}"#)?;
    if sid.contains('\\') || payload.contains('"') {
        return None;
    }
    Some(ServerEvent {
        event: Cow::Borrowed("media"),
        stream_sid: Some(Cow::Borrowed(sid)),
        media: Some(MediaPayload {
            payload: Cow::Borrowed(payload),
        }),
        mark: None,
    })
}

/// What the simulator reads of the server's events; strings borrow from the frame unless
/// escaped.
#[derive(serde::Deserialize)]
struct ServerEvent<'a> {
    #[serde(borrow)]
    event: Cow<'a, str>,
    #[serde(borrow, default)]
    stream_sid: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<MediaPayload<'a>>,
    #[serde(borrow, default)]
    mark: Option<MarkName<'a>>,
}

#[derive(serde::Deserialize)]
struct MediaPayload<'a> {
    #[serde(borrow, default)]
    payload: Cow<'a, str>,
}

#[derive(serde::Deserialize)]
struct MarkName<'a> {
    #[serde(borrow, default)]
    name: Cow<'a, str>,
}

fn echo_mark(
    ws: &mut WebSocket<Socket>,
    stream_sid: &str,
    seq: &mut u64,
    name: &str,
) -> Result<(), String> {
    let text = serde_json::json!({
        "event": "mark", "sequence_number": *seq, "stream_sid": stream_sid, "mark": {"name": name}
    });
    *seq += 1;
    send_text(ws, text.to_string())
}

/// How many of a bot chunk's samples (`pcm`, starting at bot sample `at`) differ from the
/// caller's audio `delay` samples earlier; samples before the delay or past the audio's end
/// are not the echo's.
fn echo_mismatches(pcm: &[u8], at: usize, delay: usize, audio: &[i16]) -> usize {
    // The chunk's samples that fall on the caller's audio: from bot sample `delay` on, for
    // as long as the audio lasts.
    let first = delay.saturating_sub(at);
    let from = at + first - delay;
    let wanted = audio.get(from..).unwrap_or_default();
    pcm.chunks_exact(2)
        .skip(first)
        .zip(wanted)
        .filter(|(b, &want)| i16::from_le_bytes([b[0], b[1]]) != want)
        .count()
}

/// What the echo came to: the caller's audio shifted by the echo delay against what came back
/// up to the first clear (after which the bot's queue was dropped on purpose), compared chunk
/// by chunk as it arrived (`echo_mismatches`).
fn check_echo(plan: &CallPlan, report: &mut CallReport) {
    let delay = (plan.sample_rate as u64 * plan.echo_delay_ms as u64 / 1000) as usize;
    let back = report
        .echo_heard
        .saturating_sub(delay)
        .min(plan.audio.len());
    report.echoed = back - report.echo_mismatched;
    report.echo_missing = if report.clears == 0 {
        plan.audio.len() - back
    } else {
        0
    };
}

#[cfg(test)]
mod tests;
