//! One call's media session: one coroutine, one loop, for the whole call (docs/ARCHITECTURE.md §2). Each turn
//! sends what pacing allows, then reads the socket with a timeout that ends when the next thing
//! is due; a message is handed to the bot, a timeout just starts the next turn.
//!
//! Every buffer is allocated when the stream starts and reused: no allocation per media frame
//! (`tests/alloc.rs` counts). Nothing here logs per frame; bad frames are logged at most once a
//! second and counted.

use super::audio::{pcm_to_samples, ChunkRules};
use super::looped::LoopSocket;
use super::recorder::{CallRecording, Recorder, Track};
use crate::bot::hangup::ToneThenHangUp;
use crate::bot::relay::{ConnectError, Dial, Lost, Relay, RelayCounts, WaitsIn};
use crate::bot::{Bot, BotFactory, CallStart, Outbox};
use crate::calls::registry::{REPLACED, SHUTDOWN};
use crate::calls::CallLogId;
use crate::config::{Fallback, RelayConfig};
use crate::exotel::stream::{decode_payload_into, Encoder, Frame, Inbound, Oddities, StartEvent};
use crate::metrics::{MediaDelta, Metrics, RelayEvent};
use crate::websocket::{Error as WsError, Incoming, ServerSocket};
use std::io::ErrorKind;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub use crate::exotel::stream::MAX_FRAME_BYTES;
/// The longest a turn waits, so a replaced session notices within this.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// Bad frames are logged at most this often per call.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// A session adds its media counts to the metrics this often.
pub(super) const METRICS_EVERY: Duration = Duration::from_secs(1);
pub use crate::config::{MAX_FRAMES_PER_SECOND, MAX_INBOUND_LEAD};

mod end;
mod frames;
mod outbound;
mod relay;
mod waiting;

pub use super::socket::*;

/// Inbound frame length the per-call buffers are sized for, in ms (Exotel sends 20 to 100).
const INBOUND_FRAME_ROOM_MS: usize = 200;

/// A bot chunk whose pacing time is at most this far off is sent now, not after a wait. Waits
/// are whole milliseconds (crate::timer) and end on a timer's or a media loop's next wake-up
/// (`MEDIA_LOOP_REST_MS`), so waiting made a chunk up to 2 ms late, and did so whenever the
/// bot's audio arrived a moment before its time: `bench/relay-latency` showed each relayed
/// call's turnarounds alternating between ~0.3 ms and 1.2-1.8 ms. Sent early instead, Exotel
/// holds at most this much more than `MEDIA_LEAD_MS` for a moment.
pub const PACING_SLACK: Duration = Duration::from_millis(2);

/// The session's settings: `Config`'s media settings, as they are.
pub use crate::config::MediaSettings as SessionSettings;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Exotel's `stop`, with its reason.
    Stopped(String),
    BotHungUp,
    /// The caller was handed to a person (the bot asked, or `HANDOFF_DTMF`): the stream ends
    /// once the bot's last audio has played, and Exotel's flow goes on to its Passthru applet.
    HandedOff,
    /// The relayed bot could not be reached (`BOT_FALLBACK=hangup`): a tone, then the hang-up.
    BotUnavailable,
    ClosedByPeer,
    /// A newer connection for the same call took over.
    Replaced,
    /// The stream's `start` named another CallSid than the call's: not this call's audio.
    CallSidMismatch(String),
    /// The server is shutting down and the grace period is over.
    Shutdown,
    IdleTimeout,
    /// No usable `start` and no media within `MEDIA_START_TIMEOUT_MS`.
    NoStart,
    FrameTooLarge,
    /// The peer broke the WebSocket protocol (an unmasked frame, a reserved opcode, …): 1002.
    ProtocolError(String),
    /// A text frame that is not UTF-8: 1007.
    InvalidUtf8,
    SocketError(String),
}

impl EndReason {
    pub fn as_str(&self) -> &str {
        match self {
            EndReason::Stopped(r) => r,
            EndReason::BotHungUp => "bot-hung-up",
            EndReason::HandedOff => "handed-off",
            EndReason::BotUnavailable => "bot-unavailable",
            EndReason::ClosedByPeer => "socket-closed",
            EndReason::Replaced => "replaced",
            EndReason::CallSidMismatch(_) => "call-sid-mismatch",
            EndReason::Shutdown => "server-shutdown",
            EndReason::IdleTimeout => "idle-timeout",
            EndReason::NoStart => "no-start",
            EndReason::FrameTooLarge => "frame-too-large",
            EndReason::ProtocolError(_) => "protocol-error",
            EndReason::InvalidUtf8 => "invalid-utf8",
            EndReason::SocketError(_) => "socket-error",
        }
    }
}

/// Counts, reported when the call ends (and by the call log later).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SessionStats {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    pub marks_out: u64,
    pub marks_in: u64,
    pub dtmf: String,
    pub bad_frames: u64,
    /// The stream started: Exotel's `start`, or one made up from the URL (see `start_timeout`).
    pub started: bool,
    /// Its `start` was made up because media came without one.
    pub start_synthesized: bool,
    /// Reading waited at least once for a caller faster than real time.
    pub held_back: bool,
    /// The relay's own counts (`BOT=relay`).
    pub relay: RelayCounts,
    /// Why the caller was handed to a person, when they were.
    pub handoff: Option<String>,
    /// The relayed bot could not be reached and the hang-up fallback answered the call: an
    /// outage on the call's row however the call then ended (the caller may hang up first).
    pub bot_unavailable: bool,
    /// Why the call's bot failed, last: unreachable, dropped, or its service's error.
    pub bot_error: Option<String>,
}

/// The longest story of a bot's failures kept for a row's `lastError`, in bytes.
const MAX_BOT_ERROR_BYTES: usize = 1024;

impl SessionStats {
    /// Adds why the bot failed to what the row keeps: the first failure, then what followed
    /// ("…; then …"), cut at [`MAX_BOT_ERROR_BYTES`].
    pub(crate) fn note_bot_error(&mut self, error: String) {
        let story = match self.bot_error.take() {
            None => error,
            Some(before) if before.len() >= MAX_BOT_ERROR_BYTES => before,
            Some(before) => format!("{before}; then {error}"),
        };
        let mut cut = story.len().min(MAX_BOT_ERROR_BYTES);
        while !story.is_char_boundary(cut) {
            cut -= 1;
        }
        self.bot_error = Some(story[..cut].to_owned());
    }
}

/// When Exotel's playout queue runs dry, measured against a clock taken when the first chunk of
/// a burst was sent: chunk k is due at start + k·duration, never a fixed sleep (no drift).
#[derive(Debug, Default)]
struct Pacer {
    started: Option<Instant>,
    sent: Duration,
}

impl Pacer {
    /// Audio sent and not yet played at `now`; zero (and a fresh clock) after an underrun.
    fn ahead(&mut self, now: Instant) -> Duration {
        match self.started {
            Some(t0) if t0 + self.sent > now => t0 + self.sent - now,
            _ => {
                self.started = None;
                self.sent = Duration::ZERO;
                Duration::ZERO
            }
        }
    }

    fn sent(&mut self, now: Instant, played: Duration) {
        self.started.get_or_insert(now);
        self.sent += played;
    }

    /// Whether a chunk may go with `ahead` already sent and not yet played: less than `lead`
    /// is, give or take [`PACING_SLACK`].
    fn allows(ahead: Duration, lead: Duration) -> bool {
        ahead < lead + PACING_SLACK
    }

    /// When the next chunk may go, for audio that runs dry at `dry` (`None`: earlier than any
    /// instant the clock can name, so now).
    fn next_send(dry: Instant, lead: Duration) -> Option<Instant> {
        dry.checked_sub(lead + PACING_SLACK)
    }

    /// When Exotel will have played everything sent.
    fn runs_dry_at(&self) -> Option<Instant> {
        self.started.map(|t0| t0 + self.sent)
    }

    fn reset(&mut self) {
        *self = Pacer::default();
    }
}

/// Buffers a turn fills and leaves behind: the message as read, the caller's audio as bytes
/// and samples, the bot's next chunk, a relayed bot's `stop`. Nothing in them outlives the
/// turn, so the calls of one event loop share one set (a call's own would be 17 KiB of
/// resident memory per call at 8 kHz) and a coroutine's session keeps its own.
#[derive(Default)]
pub struct Scratch {
    pcm_in: Vec<u8>,
    samples_in: Vec<i16>,
    chunk: Vec<i16>,
    /// A message as read from the caller's socket, unmasked.
    message: Vec<u8>,
    /// Exotel's `stop` made for a relayed bot.
    frame: Vec<u8>,
}

impl Scratch {
    /// Room for inbound frames of `frame_samples`, chunks of `chunk_samples` and frames of
    /// `frame_bytes`; what is already there stays (a shared set keeps its high-water mark).
    fn reserve(&mut self, frame_samples: usize, chunk_samples: usize, frame_bytes: usize) {
        fn room<T>(v: &mut Vec<T>, n: usize) {
            v.clear();
            v.reserve(n);
        }
        room(&mut self.pcm_in, 2 * frame_samples + 4);
        room(&mut self.samples_in, frame_samples);
        room(&mut self.chunk, chunk_samples);
        room(&mut self.message, frame_bytes);
    }
}

/// Where a call is: waiting for Exotel's `start`, then live with whoever answers it.
// The phase sits inside the session, which is one allocation per call already; a boxed `Live`
// would be a second for nothing.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// The socket is open and `start` has not come (frames before it are held or dropped).
    AwaitingStart,
    Live(Live),
}

impl Phase {
    fn live(&self) -> Option<&Live> {
        match self {
            Phase::Live(live) => Some(live),
            Phase::AwaitingStart => None,
        }
    }

    fn live_mut(&mut self) -> Option<&mut Live> {
        match self {
            Phase::Live(live) => Some(live),
            Phase::AwaitingStart => None,
        }
    }

    fn is_live(&self) -> bool {
        matches!(self, Phase::Live(_))
    }

    /// A relay's dial waits for the event loop to take it: the session rests until then.
    fn dial_waits(&self) -> bool {
        matches!(
            self,
            Phase::Live(Live {
                handler: Handler::Dialing(Some(_)),
                ..
            })
        )
    }
}

/// Who answers a live call: a bot in this process, the relay to an upstream one, or nobody yet
/// while that relay is dialed.
enum Handler {
    Bot(Box<dyn Bot>),
    Relay(Box<Relay>),
    /// The relay is being dialed by the event loop that drives this session: the dial waits
    /// here until the loop takes it ([`Session::take_dial`]), and the session is not turned
    /// until the loop hands back what came of it ([`Session::dialed`]). On a socket that
    /// waits (a coroutine's) the dial is made at once and this phase is never seen.
    Dialing(Option<Dial>),
}

/// The stream's state once `start` has arrived.
struct Live {
    handler: Handler,
    encoder: Encoder,
    rules: ChunkRules,
    pacer: Pacer,
    /// Exotel's `start`, kept for a relay's reconnect, its fallback and its `stop`.
    start: StartEvent,
    /// The `start` frame as Exotel sent it (relay only), re-sent on a reconnect.
    start_text: String,
}

/// Told when a call's stream starts (the call log's `in-progress`); an `Err` refuses the stream
/// (its CallSid is not the call's) and ends the session with [`EndReason::CallSidMismatch`].
pub type StartHook<'a> = dyn Fn(&CallLogId, &StartEvent) -> Result<(), String> + Sync + 'a;

/// Hears how the session ended, and whether the caller is handed off, before the socket
/// closes: Exotel's Passthru can follow the close within milliseconds.
pub type EndHook<'a> = dyn Fn(&EndReason, Option<&str>) + Sync + 'a;

/// Hears a call's transcript turns, in order, as its bot gives them.
pub type TranscriptHook<'a> = dyn Fn(crate::bot::Speaker, String) + Sync + 'a;

/// Transcript turns kept for one call at most; later ones are dropped (logged once).
pub const MAX_TRANSCRIPT_TURNS: usize = 2_000;

/// Something a session uses, lent by its caller (a test, a coroutine's frame) or given to it
/// (a call on an event loop, whose session outlives the function that made it).
pub enum Held<'a, T: ?Sized> {
    Lent(&'a T),
    Given(Box<T>),
}

impl<T: ?Sized> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            Held::Lent(t) => t,
            Held::Given(t) => t,
        }
    }
}

/// What a session is given by the server: who makes its bot, who hears of its start, and its
/// settings.
pub struct SessionContext<'a> {
    pub bots: Held<'a, dyn BotFactory>,
    pub on_start: Held<'a, StartHook<'a>>,
    pub settings: &'a SessionSettings,
    pub metrics: &'a Metrics,
    /// Set when calls are recorded (`RECORD`).
    pub recorder: Option<&'a Recorder>,
    /// Set with `BOT=relay`: each call goes to this upstream bot, and `bots` makes only the
    /// fallback (`BOT_FALLBACK=echo`).
    pub relay: Option<Arc<RelayConfig>>,
}

/// One call.
pub struct Session<'a, S: MediaIo> {
    ws: ServerSocket<S>,
    pub call_log_id: CallLogId,
    bots: Held<'a, dyn BotFactory>,
    on_start: Held<'a, StartHook<'a>>,
    metrics: &'a Metrics,
    recorder: Option<&'a Recorder>,
    relay_config: Option<Arc<RelayConfig>>,
    /// Exotel's `connected` frame, kept for the relay (it connects at `start`).
    connected_text: Option<String>,
    /// This call's recording, once the stream started, with the stream's start time and the
    /// caller's sample count (the recording's clock).
    recording: Option<(CallRecording, Instant, u64)>,
    /// The counts already added to the metrics, and when they are added next (a comparison
    /// per turn, not a subtraction).
    reported: (SessionStats, Instant),
    settings: &'a SessionSettings,
    url_parameters: Vec<(String, String)>,
    /// Parameters the call was dialed with (a campaign contact's columns): the bot gets them
    /// with the URL's, and a relayed bot in its `start`'s `custom_parameters`.
    contact_parameters: Vec<(String, String)>,
    on_end: Option<Held<'a, EndHook<'a>>>,
    on_transcript: Option<Held<'a, TranscriptHook<'a>>>,
    /// Transcript turns handed to `on_transcript` so far.
    transcript_turns: usize,
    /// The sample rate the media URL asked Exotel for (a `start` without one gets it).
    url_sample_rate: u32,
    /// The call's CallSid as the webhook told it, for a `start` made up without Exotel's.
    known_call_sid: String,
    /// The first `stream_sid` a frame carried before `start`, for the same.
    early_stream_sid: Option<String>,
    /// Optional fields already named in the log for this call.
    odd_seen: Oddities,
    /// The last byte of an odd-length payload, waiting for the next frame's first.
    carry: Option<u8>,
    /// When the socket opened (the `no-start` clock).
    opened: Instant,
    /// When the caller's first audio arrived, and the samples it has sent since (the
    /// real-time check, see [`MAX_INBOUND_LEAD`]).
    inbound_clock: Option<(Instant, u64)>,
    /// The current one-second window of reads and how many frames it has had
    /// ([`MAX_FRAMES_PER_SECOND`]).
    read_window: (Instant, u32),
    /// The last turn read a message and settled ([`Session::settle`]) with nothing due before
    /// this time: a turn before it woken by bytes reads first, and its own settle does the
    /// checks a read waits behind, which would find nothing to do before the read.
    settled_until: Option<Instant>,
    /// The registry's stop flag for this session (see `calls::registry`).
    stop: Arc<AtomicU8>,
    phase: Phase,
    outbox: Outbox,
    /// The buffers a turn works in: this session's own, or for the length of a turn its event
    /// loop's ([`Session::turn_in`]).
    scratch: Box<Scratch>,
    pub stats: SessionStats,
    last_received: Instant,
    last_sent: Instant,
    last_warning: Option<Instant>,
    /// The time of the current turn: one clock for every decision in it.
    clock: Instant,
}

impl<'a, S: MediaIo> Session<'a, S> {
    /// Tells `on_end` how the session ended, before its socket closes.
    pub fn with_on_end(mut self, on_end: Held<'a, EndHook<'a>>) -> Self {
        self.on_end = Some(on_end);
        self
    }

    /// Hands `on_transcript` the transcript turns the bot gives.
    pub fn with_on_transcript(mut self, on_transcript: Held<'a, TranscriptHook<'a>>) -> Self {
        self.on_transcript = Some(on_transcript);
        self
    }

    /// Hands the bot these parameters too (see `contact_parameters`).
    pub fn with_contact_parameters(mut self, params: Vec<(String, String)>) -> Self {
        self.url_parameters.extend(params.iter().cloned());
        self.contact_parameters = params;
        self
    }

    pub fn new(
        ws: ServerSocket<S>,
        call_log_id: CallLogId,
        context: SessionContext<'a>,
        url_parameters: Vec<(String, String)>,
        stop: Arc<AtomicU8>,
        now: Instant,
    ) -> Self {
        let url_sample_rate = url_parameters
            .iter()
            .find(|(k, _)| k == "sample-rate")
            .and_then(|(_, v)| v.parse().ok())
            .filter(|r| crate::exotel::stream::SAMPLE_RATES.contains(r))
            .unwrap_or(8000);
        Session {
            ws,
            call_log_id,
            bots: context.bots,
            on_start: context.on_start,
            metrics: context.metrics,
            recorder: context.recorder,
            relay_config: context.relay,
            connected_text: None,
            recording: None,
            reported: (SessionStats::default(), now + METRICS_EVERY),
            settings: context.settings,
            url_parameters,
            contact_parameters: Vec::new(),
            on_end: None,
            on_transcript: None,
            transcript_turns: 0,
            url_sample_rate,
            known_call_sid: String::new(),
            early_stream_sid: None,
            odd_seen: Oddities::default(),
            carry: None,
            opened: now,
            inbound_clock: None,
            read_window: (now, 0),
            settled_until: None,
            stop,
            phase: Phase::AwaitingStart,
            outbox: Outbox::new(8000, 0),
            scratch: Box::default(),
            stats: SessionStats::default(),
            last_received: now,
            last_sent: now,
            last_warning: None,
            clock: now,
        }
    }

    /// The call's CallSid as the webhook was told it (used only if Exotel's `start` never
    /// comes).
    pub fn with_call_sid(mut self, call_sid: Option<String>) -> Self {
        self.known_call_sid = call_sid.unwrap_or_default();
        self
    }

    /// Runs turns on the real clock until the call ends, then closes the socket and tells the
    /// bot.
    pub fn run(mut self) -> (EndReason, SessionStats) {
        let reason = loop {
            if let Some(reason) = self.turn(Instant::now()) {
                break reason;
            }
        };
        self.finish(&reason);
        (reason, self.stats)
    }

    /// One turn at time `now`: send what is due, then wait for one message (or the next due
    /// time) and handle it. On an event loop, a message that leaves the socket drained is
    /// followed in the same turn by what the next turn would do before finding nothing to read
    /// ([`Session::settle`]), and a turn woken by bytes after such a settle reads first.
    /// `Some` when the call is over.
    pub fn turn(&mut self, now: Instant) -> Option<EndReason> {
        self.clock = now;
        if now >= self.reported.1 {
            self.report_metrics(now);
        }
        let settled = self.settled_until.take().is_some_and(|until| now < until)
            && !self.ws.get_ref().starved();
        if !settled {
            if let ControlFlow::Break(ended) = self.before_waiting(now) {
                return ended;
            }
            if self.ws.get_ref().starved() {
                return self.on_quiet(now);
            }
        }
        // The message is read into the scratch buffer, lent out for the turn and put back.
        let mut message = std::mem::take(&mut self.scratch.message);
        let read = self.ws.read(&mut message);
        let got_message = read.is_ok();
        if got_message {
            self.read_window.1 += 1;
        }
        if settled && matches!(read, Err(WsError::WouldBlock)) {
            // Bytes, but no whole frame yet: the turn's checks after all, then the wait.
            self.scratch.message = message;
            return match self.before_waiting(now) {
                ControlFlow::Break(ended) => ended,
                ControlFlow::Continue(_) => self.on_quiet(now),
            };
        }
        let ended = self.on_read(read, now);
        self.scratch.message = message;
        if ended.is_none() && got_message && self.drained() {
            return self.settle(now);
        }
        ended
    }

    /// What a turn does before it reads: the stop asked from outside, the relay's bot, the
    /// audio due, and the ends that need no message (no `start` in time, the bot hung up or
    /// handed off). `Break(None)` rests this turn (the bot is being dialed again; the
    /// caller's frames wait in the socket), `Break(Some)` ends the call.
    fn before_reading(&mut self, now: Instant) -> ControlFlow<Option<EndReason>> {
        match self.stop.load(Ordering::Acquire) {
            REPLACED => return ControlFlow::Break(Some(EndReason::Replaced)),
            SHUTDOWN => return ControlFlow::Break(Some(EndReason::Shutdown)),
            _ => {}
        }
        if let Err(reason) = self.poll_relay(now) {
            return ControlFlow::Break(Some(reason));
        }
        if self.phase.dial_waits() {
            return ControlFlow::Break(None);
        }
        if let Err(reason) = self.send_due(now) {
            return ControlFlow::Break(Some(reason));
        }
        if !self.phase.is_live() && now.duration_since(self.opened) >= self.settings.start_timeout {
            return ControlFlow::Break(Some(EndReason::NoStart));
        }
        let bot_ended = if self.outbox.wants_hang_up() {
            Some(EndReason::BotHungUp)
        } else if self.handoff_due(now) {
            Some(EndReason::HandedOff)
        } else if self.outbox.ends_after_audio() && self.audio_played_out(now) {
            Some(EndReason::BotHungUp)
        } else {
            None
        };
        match bot_ended {
            Some(_) if self.stats.bot_unavailable => {
                ControlFlow::Break(Some(EndReason::BotUnavailable))
            }
            Some(reason) => ControlFlow::Break(Some(reason)),
            None => ControlFlow::Continue(()),
        }
    }

    /// Handles what one read gave: a message, nothing yet, or how the socket ended.
    fn on_read(&mut self, read: Result<Incoming<'_>, WsError>, now: Instant) -> Option<EndReason> {
        match read {
            Ok(Incoming::Text(bytes)) => {
                self.last_received = now;
                self.handle_message(bytes, now)
            }
            Ok(Incoming::Binary) => {
                self.last_received = now;
                self.bad_frame(now, "a binary frame (Exotel sends JSON text)");
                None
            }
            Ok(Incoming::Close) => Some(EndReason::ClosedByPeer),
            Ok(Incoming::Ping | Incoming::Pong) => {
                // A ping is answered already.
                self.last_received = now;
                None
            }
            Err(WsError::WouldBlock) => self.on_quiet(now),
            // `finish` sends the 1009 close; nothing more is read from this socket (the rest of
            // the oversized frame would be read as frames).
            Err(WsError::TooLarge) => Some(EndReason::FrameTooLarge),
            Err(e) => Some(end_of_socket(e)),
        }
    }
}

/// How a read or a write that failed ends the call (a full frame aside: `on_read`).
pub(crate) fn end_of_socket(e: WsError) -> EndReason {
    match e {
        WsError::Closed => EndReason::ClosedByPeer,
        // A peer that vanishes without a close (reset, broken pipe) hung up all the same.
        WsError::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::UnexpectedEof
                    | ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
            ) =>
        {
            EndReason::ClosedByPeer
        }
        WsError::Protocol(e) => EndReason::ProtocolError(e.to_string()),
        WsError::InvalidUtf8 => EndReason::InvalidUtf8,
        WsError::TooLarge => EndReason::FrameTooLarge,
        e => EndReason::SocketError(e.to_string()),
    }
}

/// Whether a session that ended this way waits for the peer's close frame after its own. Not
/// after the peer closed or vanished, and not after a too-large or broken frame: the socket is
/// not read again then (see `on_read`).
pub fn waits_for_close(reason: &EndReason) -> bool {
    !matches!(
        reason,
        EndReason::ClosedByPeer
            | EndReason::SocketError(_)
            | EndReason::FrameTooLarge
            | EndReason::ProtocolError(_)
            | EndReason::InvalidUtf8
    )
}

/// The relayed bot cannot be reached: the call gets `BOT_FALLBACK`'s bot, started now. The
/// flag is true when that bot is the tone and hang-up (`bot-unavailable`).
fn fallback(
    config: &RelayConfig,
    error: &ConnectError,
    bots: &dyn BotFactory,
    call: &CallStart<'_>,
    out: &mut Outbox,
    metrics: &Metrics,
) -> (Handler, bool) {
    metrics.relay_event(RelayEvent::Unavailable);
    let (mut bot, unavailable): (Box<dyn Bot>, bool) = match config.fallback {
        Fallback::Echo => (bots.create(call), false),
        Fallback::Hangup => (Box::new(ToneThenHangUp::bot_unavailable()), true),
        Fallback::Handoff => (Box::new(HandOffAtOnce), true),
    };
    crate::warn!(
        "relay.unavailable",
        callLogId = call.call_log_id,
        bot = config.url,
        error = error,
        fallback = match config.fallback {
            Fallback::Echo => "echo",
            Fallback::Hangup => "hangup",
            Fallback::Handoff => "handoff",
        }
    );
    bot.on_start(call, out);
    (Handler::Bot(bot), unavailable)
}

/// `BOT_FALLBACK=handoff`: the caller goes to a person at once.
struct HandOffAtOnce;

impl Bot for HandOffAtOnce {
    fn on_start(&mut self, _call: &CallStart<'_>, out: &mut Outbox) {
        out.hand_off("bot-unavailable");
    }
    fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
}

/// Exotel's `start` frame with `extra` added to its `custom_parameters` (an object made if it
/// had none, or had them in another shape); the frame as it was if it does not read as JSON.
fn with_custom_parameters(text: &str, extra: &[(String, String)]) -> String {
    let Ok(mut frame) = serde_json::from_str::<serde_json::Value>(text) else {
        return text.to_owned();
    };
    if let Some(start) = frame.get_mut("start").and_then(|s| s.as_object_mut()) {
        let params = start
            .entry("custom_parameters")
            .or_insert_with(|| serde_json::json!({}));
        if !params.is_object() {
            *params = serde_json::json!({});
        }
        if let Some(params) = params.as_object_mut() {
            for (k, v) in extra {
                params.insert(k.clone(), serde_json::Value::String(v.clone()));
            }
        }
    }
    frame.to_string()
}

#[cfg(test)]
mod tests;
