//! One call's media session: one coroutine, one loop, for the whole call (docs/ARCHITECTURE.md §2). Each turn
//! sends what pacing allows, then reads the socket with a timeout that ends when the next thing
//! is due; a message is handed to the bot, a timeout just starts the next turn.
//!
//! Every buffer is allocated when the stream starts and reused: no allocation per media frame
//! (`tests/alloc.rs` counts). Nothing here logs per frame; bad frames are logged at most once a
//! second and counted.

use super::audio::{pcm_to_samples, samples_to_pcm, ChunkRules};
use super::looped::LoopSocket;
use super::pump::{Pumped, Writes};
use super::recorder::{CallRecording, Recorder, Track};
use crate::bot::hangup::ToneThenHangUp;
use crate::bot::relay::{ConnectError, Dial, Lost, Relay, RelayCounts, WaitsIn};
use crate::bot::{Bot, BotFactory, CallStart, Outbox};
use crate::calls::registry::{REPLACED, SHUTDOWN};
use crate::calls::CallLogId;
use crate::config::{Fallback, RelayConfig};
use crate::exotel::stream::{decode_payload_into, Encoder, Frame, Inbound, Oddities, StartEvent};
use crate::http::Conn;
use crate::metrics::{MediaDelta, Metrics, RelayEvent};
use crate::tls::TlsStream;
use bytes::BytesMut;
use std::io::{self, ErrorKind, Read, Write};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};

pub use crate::exotel::stream::MAX_FRAME_BYTES;
/// The longest a turn waits, so a replaced session notices within this.
const MAX_WAIT: Duration = Duration::from_millis(200);
/// Bad frames are logged at most this often per call.
const WARN_EVERY: Duration = Duration::from_secs(1);
/// A session adds its media counts to the metrics this often.
const METRICS_EVERY: Duration = Duration::from_secs(1);
pub use crate::config::{MAX_FRAMES_PER_SECOND, MAX_INBOUND_LEAD};

/// The socket the session owns: reads and writes that can time out without losing state.
pub trait MediaIo: Read + Write {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Waits `d` without reading (a caller too far ahead of real time; see
    /// [`MAX_INBOUND_LEAD`]).
    fn pause(&mut self, d: Duration) {
        std::thread::sleep(d);
    }

    /// Whether reads wait (`false` on an event loop: the loop waits, see `media::engine`).
    fn waits(&self) -> bool {
        true
    }

    /// Whether a read now would certainly find nothing (nothing arrived since the last read
    /// found nothing): the turn then skips it.
    fn starved(&self) -> bool {
        false
    }
}

/// Exotel's socket: a `may` TCP stream (plain or TLS) whose timeouts read as `WouldBlock`, the error
/// tungstenite is built to resume after with its partial frame kept (docs/ARCHITECTURE.md §2). With a relayed
/// bot it is pumped (see `media::pump`), so that the bot's frames can wake the session too.
pub enum MediaStream {
    Direct(Conn),
    Pumped(Pumped),
    PumpedTls(Box<TlsStream<rustls::ServerConnection, Pumped>>),
    /// On an event loop (`media::engine`): never waits.
    Looped(LoopSocket),
    /// Only while the stream changes form in [`MediaStream::start_pump`].
    Moving,
}

impl MediaStream {
    /// No Nagle delay (each chunk is due when it is sent), and a write that waits 5 s for a
    /// caller who stopped reading fails. A looped socket never waits: `media::engine` times
    /// its stalls.
    pub fn set_options(&self) {
        let socket = match self {
            MediaStream::Direct(c) => c.socket(),
            MediaStream::Pumped(p) => p.socket(),
            MediaStream::PumpedTls(t) => t.get_ref().socket(),
            MediaStream::Looped(_) | MediaStream::Moving => return,
        };
        let _ = socket.set_nodelay(true);
        let _ = socket.set_write_timeout(Some(Duration::from_secs(5)));
    }

    /// Moves a plain socket from may's poller to an event loop's. A TLS socket stays (its
    /// records are read through rustls on the coroutine); `Ok(false)` then.
    /// On `Err` (no descriptor left to duplicate) the stream stays `Moving`: the may socket is
    /// gone and the call cannot go on.
    pub fn to_loop(&mut self) -> io::Result<bool> {
        if !matches!(self, MediaStream::Direct(Conn::Plain(_))) {
            return Ok(false);
        }
        let MediaStream::Direct(Conn::Plain(s)) = std::mem::replace(self, MediaStream::Moving)
        else {
            unreachable!("matched just above");
        };
        *self = MediaStream::Looped(LoopSocket::from_may(s)?);
        Ok(true)
    }

    /// The loop's view of the socket, when it is on one.
    pub fn looped(&mut self) -> Option<&mut LoopSocket> {
        match self {
            MediaStream::Looped(l) => Some(l),
            _ => None,
        }
    }

    /// From now on the socket is read by a pump that wakes the current coroutine. Bytes
    /// tungstenite has already read stay where they are, and so do TLS records rustls holds.
    /// Any other form (already pumped, or on an event loop) stays as it is.
    pub fn start_pump(&mut self) -> io::Result<()> {
        if !matches!(self, MediaStream::Direct(_)) {
            return Ok(());
        }
        let MediaStream::Direct(conn) = std::mem::replace(self, MediaStream::Moving) else {
            unreachable!("matched just above");
        };
        let pumped = |s: &may::net::TcpStream| Pumped::start(s.try_clone()?, Writes::Blocking);
        *self = match conn {
            Conn::Plain(s) => match pumped(&s) {
                Ok(p) => MediaStream::Pumped(p),
                Err(e) => {
                    *self = MediaStream::Direct(Conn::Plain(s));
                    return Err(e);
                }
            },
            Conn::Tls(tls) => match pumped(tls.get_ref()) {
                Ok(p) => {
                    let (session, _socket) = tls.into_parts();
                    MediaStream::PumpedTls(Box::new(TlsStream::resume(session, p)))
                }
                Err(e) => {
                    *self = MediaStream::Direct(Conn::Tls(tls));
                    return Err(e);
                }
            },
        };
        Ok(())
    }
}

/// A socket's timeout is tungstenite's `WouldBlock`, and so is part of a TLS record: the
/// session's next turn reads again.
fn timeout_as_would_block<T>(r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| match e.kind() {
        ErrorKind::TimedOut | ErrorKind::Interrupted => io::Error::from(ErrorKind::WouldBlock),
        _ => e,
    })
}

fn moving() -> io::Error {
    io::Error::new(ErrorKind::NotConnected, "the media stream is changing form")
}

impl Read for MediaStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            MediaStream::Direct(s) => timeout_as_would_block(s.read(buf)),
            MediaStream::Pumped(p) => p.read(buf),
            MediaStream::PumpedTls(t) => timeout_as_would_block(t.read(buf)),
            MediaStream::Looped(l) => l.read(buf),
            MediaStream::Moving => Err(moving()),
        }
    }
}

impl Write for MediaStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            MediaStream::Direct(s) => timeout_as_would_block(s.write(buf)),
            MediaStream::Pumped(p) => timeout_as_would_block(p.write(buf)),
            MediaStream::PumpedTls(t) => timeout_as_would_block(t.write(buf)),
            MediaStream::Looped(l) => l.write(buf),
            MediaStream::Moving => Err(moving()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            MediaStream::Direct(s) => timeout_as_would_block(s.flush()),
            MediaStream::Pumped(p) => timeout_as_would_block(p.flush()),
            MediaStream::PumpedTls(t) => timeout_as_would_block(t.flush()),
            MediaStream::Looped(_) => Ok(()),
            MediaStream::Moving => Err(moving()),
        }
    }
}

impl MediaIo for MediaStream {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            MediaStream::Direct(s) => s.set_read_timeout(timeout),
            MediaStream::Pumped(p) => {
                p.set_wait(timeout);
                Ok(())
            }
            MediaStream::PumpedTls(t) => {
                t.get_mut().set_wait(timeout);
                Ok(())
            }
            MediaStream::Looped(l) => {
                l.wait = timeout;
                Ok(())
            }
            MediaStream::Moving => Err(moving()),
        }
    }

    fn waits(&self) -> bool {
        !matches!(self, MediaStream::Looped(_))
    }

    fn starved(&self) -> bool {
        matches!(self, MediaStream::Looped(l) if l.starved && !l.readable)
    }

    /// Parks the coroutine (a thread sleeps, outside one); on a loop, asks the loop to hold.
    fn pause(&mut self, d: Duration) {
        match self {
            MediaStream::Looped(l) => l.hold = Some(d),
            _ => may::coroutine::sleep(d),
        }
    }
}

/// tungstenite's buffers sized for Exotel's frames, not its 128 KiB defaults (docs/ARCHITECTURE.md §2).
/// The read buffer holds a 100 ms frame at 8 kHz (about 2.3 KB) in one read; tungstenite
/// zero-fills its spare room before every read, so each KiB of it is a KiB of `memset` per
/// frame (larger frames take more reads).
pub fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_FRAME_BYTES)
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
}

/// Inbound frame length the per-call buffers are sized for, in ms (Exotel sends 20 to 100).
const INBOUND_FRAME_ROOM_MS: usize = 200;

/// A bot chunk whose pacing time is at most this far off is sent now, not after a wait. Waits
/// are whole milliseconds (crate::timer) and end on a timer's or a media loop's next wake-up
/// (`MEDIA_LOOP_REST_MS`), so waiting made a chunk up to 2 ms late, and did so whenever the
/// bot's audio arrived a moment before its time: `bench/relay-latency` showed each relayed
/// call's turnarounds alternating between ~0.3 ms and 1.2-1.8 ms. Sent early instead, Exotel
/// holds at most this much more than `MEDIA_LEAD_MS` for a moment.
pub const PACING_SLACK: Duration = Duration::from_millis(2);

/// The session's settings (from `Config`).
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// How far ahead of real time outbound audio may be sent (`MEDIA_LEAD_MS`).
    pub lead: Duration,
    /// A ping goes out after this long without sending anything.
    pub ping_interval: Duration,
    /// Nothing received for this long ends the call (`MEDIA_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// A stream with no usable `start` and no media this long after the socket opened is ended
    /// (`no-start`); one whose media arrives without a `start` gets one made up at once
    /// (`MEDIA_START_TIMEOUT_MS`).
    pub start_timeout: Duration,
    /// How far ahead of real time a caller's audio may run before reading waits
    /// (`MEDIA_MAX_AHEAD_S`, default [`MAX_INBOUND_LEAD`]).
    pub max_inbound_lead: Duration,
    /// Frames read from one socket per second at most (`MEDIA_MAX_FRAMES_PER_S`, default
    /// [`MAX_FRAMES_PER_SECOND`]).
    pub max_frames_per_second: u32,
    /// `HANDOFF_DTMF`: the key that hands the caller to a person at any time, whatever the bot.
    pub handoff_dtmf: Option<char>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            lead: Duration::from_millis(200),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(5),
            max_inbound_lead: MAX_INBOUND_LEAD,
            max_frames_per_second: MAX_FRAMES_PER_SECOND,
            handoff_dtmf: None,
        }
    }
}

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

/// Room for a text frame without its media payload (Exotel's are about 150 bytes); a longer
/// one grows the buffer once.
const FRAME_REST_BYTES: usize = 512;

/// Buffers a turn fills and leaves behind: a frame's text without its payload, the caller's
/// audio as bytes and samples, the bot's next chunk as samples and bytes, the frame being
/// encoded. Nothing in them outlives the turn, so the calls of one event loop share one set (a
/// call's own would be 17 KiB of resident memory per call at 8 kHz) and a coroutine's session
/// keeps its own.
#[derive(Default)]
pub struct Scratch {
    /// A text frame without its media payload, for serde ([`Frame::read_in`]).
    frame_rest: String,
    pcm_in: Vec<u8>,
    samples_in: Vec<i16>,
    chunk: Vec<i16>,
    chunk_pcm: Vec<u8>,
    frame: BytesMut,
}

impl Scratch {
    /// Room for inbound frames of `frame_samples`, chunks of `chunk_samples` and frames of
    /// `frame_bytes`; what is already there stays (a shared set keeps its high-water mark).
    fn reserve(&mut self, frame_samples: usize, chunk_samples: usize, frame_bytes: usize) {
        fn room<T>(v: &mut Vec<T>, n: usize) {
            v.clear();
            v.reserve(n);
        }
        self.frame_rest.clear();
        self.frame_rest.reserve(FRAME_REST_BYTES);
        room(&mut self.pcm_in, 2 * frame_samples + 4);
        room(&mut self.samples_in, frame_samples);
        room(&mut self.chunk, chunk_samples);
        room(&mut self.chunk_pcm, chunk_samples * 2);
        self.frame.clear();
        self.frame.reserve(frame_bytes);
    }
}

/// Who answers the call: a bot in this process, or the relay to an upstream one.
enum Handler {
    Bot(Box<dyn Bot>),
    Relay(Box<Relay>),
    /// The relay is being dialed by the event loop that drives this session
    /// ([`Session::take_dial`]); the session is not turned until it is open or has failed.
    Dialing,
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
    ws: WebSocket<S>,
    pub call_log_id: CallLogId,
    bots: Held<'a, dyn BotFactory>,
    on_start: Held<'a, StartHook<'a>>,
    metrics: &'a Metrics,
    recorder: Option<&'a Recorder>,
    relay_config: Option<Arc<RelayConfig>>,
    /// Exotel's `connected` frame, kept for the relay (it connects at `start`).
    connected_text: Option<String>,
    /// A relay to open, for the event loop that drives this session to take.
    dial: Option<Dial>,
    /// This call's recording, once the stream started, with the stream's start time and the
    /// caller's sample count (the recording's clock).
    recording: Option<(CallRecording, Instant, u64)>,
    /// The counts already added to the metrics, and when.
    reported: (SessionStats, Instant),
    settings: &'a SessionSettings,
    url_parameters: Vec<(String, String)>,
    /// Parameters the call was dialed with (a campaign contact's columns): the bot gets them
    /// with the URL's, and a relayed bot in its `start`'s `custom_parameters`.
    contact_parameters: Vec<(String, String)>,
    on_end: Option<Held<'a, EndHook<'a>>>,
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
    /// The registry's stop flag for this session (see `calls::registry`).
    stop: Arc<AtomicU8>,
    live: Option<Live>,
    outbox: Outbox,
    /// The buffers a turn works in: this session's own, or for the length of a turn its event
    /// loop's ([`Session::turn_in`]).
    scratch: Scratch,
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

    /// Hands the bot these parameters too (see `contact_parameters`).
    pub fn with_contact_parameters(mut self, params: Vec<(String, String)>) -> Self {
        self.url_parameters.extend(params.iter().cloned());
        self.contact_parameters = params;
        self
    }

    pub fn new(
        ws: WebSocket<S>,
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
            dial: None,
            recording: None,
            reported: (SessionStats::default(), now),
            settings: context.settings,
            url_parameters,
            contact_parameters: Vec::new(),
            on_end: None,
            url_sample_rate,
            known_call_sid: String::new(),
            early_stream_sid: None,
            odd_seen: Oddities::default(),
            carry: None,
            opened: now,
            inbound_clock: None,
            read_window: (now, 0),
            stop,
            live: None,
            outbox: Outbox::new(8000, 0),
            scratch: Scratch::default(),
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
    /// time) and handle it. `Some` when the call is over.
    pub fn turn(&mut self, now: Instant) -> Option<EndReason> {
        self.clock = now;
        if now.duration_since(self.reported.1) >= METRICS_EVERY {
            self.report_metrics(now);
        }
        if let ControlFlow::Break(ended) = self.before_reading(now) {
            return ended;
        }
        let wait = self.next_wake(now).saturating_duration_since(now);
        // Whole milliseconds (crate::timer): 1 ms late at most; a chunk due within PACING_SLACK
        // does not wait at all.
        let wait = crate::timer::whole_millis(wait).clamp(Duration::from_millis(1), MAX_WAIT);
        if self.hold_back_caller(now, wait) {
            return None;
        }
        if let Err(e) = self.ws.get_mut().set_read_timeout(Some(wait)) {
            return Some(EndReason::SocketError(e.to_string()));
        }
        if self.ws.get_ref().starved() {
            return self.on_quiet(now);
        }
        let read = self.ws.read();
        if read.is_ok() {
            self.read_window.1 += 1;
        }
        self.on_read(read, now)
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
        if self.dial.is_some() {
            return ControlFlow::Break(None);
        }
        if let Err(reason) = self.send_due(now) {
            return ControlFlow::Break(Some(reason));
        }
        if self.live.is_none() && now.duration_since(self.opened) >= self.settings.start_timeout {
            return ControlFlow::Break(Some(EndReason::NoStart));
        }
        let bot_ended = if self.outbox.wants_hang_up() {
            Some(EndReason::BotHungUp)
        } else if self.handoff_due(now) {
            Some(EndReason::HandedOff)
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

    /// A caller that sends faster than real time is read at real time: the socket is paused
    /// (at most until `wait` ends) instead of read. Answers whether it was.
    fn hold_back_caller(&mut self, now: Instant, wait: Duration) -> bool {
        let Some(ahead) = self
            .caller_ahead(now)
            .or_else(|| self.reading_too_fast(now))
        else {
            return false;
        };
        if !self.stats.held_back {
            self.stats.held_back = true;
            crate::warn!(
                "media.caller_held_back",
                callLogId = self.call_log_id,
                detail = "the caller sends faster than real time (MEDIA_MAX_AHEAD_S, MEDIA_MAX_FRAMES_PER_S): read at real time from now on"
            );
        }
        let hold = crate::timer::whole_millis(ahead).clamp(Duration::from_millis(1), wait);
        self.ws.get_mut().pause(hold);
        // Not hearing from a caller we chose not to read is not the caller's silence.
        self.last_received = now;
        true
    }

    /// Handles what one read gave: a message, nothing yet, or how the socket ended.
    fn on_read(
        &mut self,
        read: Result<Message, tungstenite::Error>,
        now: Instant,
    ) -> Option<EndReason> {
        match read {
            Ok(Message::Text(text)) => {
                self.last_received = now;
                if let Err(reason) = self.forward_to_relay(&text) {
                    return Some(reason);
                }
                self.handle_text(&text, now)
            }
            Ok(Message::Binary(_)) => {
                self.last_received = now;
                self.bad_frame(now, "a binary frame (Exotel sends JSON text)");
                None
            }
            Ok(Message::Close(_)) => Some(EndReason::ClosedByPeer),
            Ok(_) => {
                // Ping (tungstenite queues the pong), pong, raw frame.
                self.last_received = now;
                None
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.on_quiet(now)
            }
            // `finish` sends the 1009 close. tungstenite keeps the oversized frame's header after
            // this error, and reading again trips its internal assertion (frame/mod.rs, read_in),
            // so nothing more is read from this socket.
            Err(tungstenite::Error::Capacity(_)) => Some(EndReason::FrameTooLarge),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                Some(EndReason::ClosedByPeer)
            }
            // A peer that vanishes without a close (reset, broken pipe, EOF) hung up all the same.
            Err(tungstenite::Error::Io(e))
                if matches!(
                    e.kind(),
                    ErrorKind::UnexpectedEof
                        | ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                Some(EndReason::ClosedByPeer)
            }
            Err(tungstenite::Error::Protocol(
                tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
            )) => Some(EndReason::ClosedByPeer),
            Err(tungstenite::Error::Protocol(e)) => Some(EndReason::ProtocolError(e.to_string())),
            Err(tungstenite::Error::Utf8(_)) => Some(EndReason::InvalidUtf8),
            Err(e) => Some(EndReason::SocketError(e.to_string())),
        }
    }

    /// Nothing arrived before the wait ended: ping if we have been silent, end if the peer has.
    fn on_quiet(&mut self, now: Instant) -> Option<EndReason> {
        if now.duration_since(self.last_received) >= self.settings.idle_timeout {
            return Some(EndReason::IdleTimeout);
        }
        if now.duration_since(self.last_sent) >= self.settings.ping_interval {
            if let Err(reason) = self.send(Message::Ping(Default::default())) {
                return Some(reason);
            }
        }
        None
    }

    /// The earliest of: the next chunk allowed by pacing, Exotel running dry (to flush a short
    /// last piece), the next ping, the idle limit.
    fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = (self.last_sent + self.settings.ping_interval)
            .min(self.last_received + self.settings.idle_timeout);
        if self.live.is_none() {
            wake = wake.min(self.opened + self.settings.start_timeout);
        }
        if let Some(live) = &self.live {
            if self.outbox.queued_samples() > 0 {
                let due = match live.pacer.runs_dry_at() {
                    Some(dry)
                        if self.outbox.queued_samples() >= live.rules.min_samples
                            || self.outbox.samples_until_mark().is_some() =>
                    {
                        Pacer::next_send(dry, self.settings.lead).unwrap_or(now)
                    }
                    Some(dry) => dry,
                    None => now,
                };
                wake = wake.min(due);
            }
        }
        wake
    }

    fn handle_text(&mut self, text: &str, now: Instant) -> Option<EndReason> {
        // The frame without its payload is read in the scratch's text buffer, lent out for the
        // read and put back after: its capacity stays, nothing is allocated per frame.
        let mut rest = std::mem::take(&mut self.scratch.frame_rest);
        let ended = self.handle_frame(text, &mut rest, now);
        self.scratch.frame_rest = rest;
        ended
    }

    fn handle_frame(&mut self, text: &str, rest: &mut String, now: Instant) -> Option<EndReason> {
        let frame = match Frame::read_in(text, self.url_sample_rate, rest) {
            Ok(frame) => frame,
            Err(e) => {
                self.bad_frame(now, &e.to_string());
                return None;
            }
        };
        self.note_oddities(frame.odd);
        if self.live.is_none() && self.early_stream_sid.is_none() {
            self.early_stream_sid = frame.stream_sid.as_deref().map(str::to_owned);
        }
        match frame.event {
            Inbound::Connected => {
                if self.relay_config.is_some() && self.live.is_none() {
                    self.connected_text = Some(text.to_owned());
                }
                None
            }
            Inbound::Start(start) => self.on_start(*start, text),
            Inbound::Media {
                payload,
                inbound_track,
                ..
            } => self.on_media(&payload, inbound_track, now),
            Inbound::Dtmf { digit, .. } => {
                self.stats.dtmf.push(digit);
                if self.settings.handoff_dtmf == Some(digit) && self.live.is_some() {
                    // At once, whatever the bot was saying.
                    self.outbox.clear();
                    self.outbox.hand_off("dtmf");
                    return None;
                }
                match self.live.as_mut().map(|l| &mut l.handler) {
                    Some(Handler::Bot(bot)) => bot.on_dtmf(digit, &mut self.outbox),
                    Some(Handler::Relay(_) | Handler::Dialing) => {}
                    None => self.bad_frame(now, "dtmf before start"),
                }
                None
            }
            Inbound::Mark { name } => {
                self.stats.marks_in += 1;
                if let Some(Handler::Bot(bot)) = self.live.as_mut().map(|l| &mut l.handler) {
                    bot.on_mark(&name, &mut self.outbox);
                }
                None
            }
            Inbound::Stop { reason } => Some(EndReason::Stopped(reason.into_owned())),
        }
    }

    /// A `media` frame: its payload decoded to samples, counted, recorded and given to the bot.
    fn on_media(&mut self, payload: &str, inbound_track: bool, now: Instant) -> Option<EndReason> {
        if self.live.is_none() {
            if let Some(end) = self.synthesize_start() {
                return Some(end);
            }
        }
        if self.live.is_none() || !inbound_track {
            return None;
        }
        // An odd byte left from the last payload is this one's first.
        self.scratch.pcm_in.clear();
        self.scratch.pcm_in.extend(self.carry.take());
        match decode_payload_into(payload, &mut self.scratch.pcm_in) {
            Ok(false) => {}
            Ok(true) => self.note_oddities(Oddities::BASE64_VARIANT),
            Err(e) => {
                self.scratch.pcm_in.clear();
                self.bad_frame(now, &e.to_string());
                return None;
            }
        }
        if self.scratch.pcm_in.len() % 2 == 1 {
            self.carry = self.scratch.pcm_in.pop();
            self.note_oddities(Oddities::ODD_LENGTH);
        }
        let live = self.live.as_mut()?;
        self.stats.frames_in += 1;
        self.stats.bytes_in += self.scratch.pcm_in.len() as u64;
        let (_, samples) = self.inbound_clock.get_or_insert((now, 0));
        *samples += self.scratch.pcm_in.len() as u64 / 2;
        self.scratch.samples_in.clear();
        pcm_to_samples(&self.scratch.pcm_in, &mut self.scratch.samples_in);
        if let Some((recording, _, position)) = self.recording.as_mut() {
            recording.push(Track::Caller, *position, &self.scratch.samples_in);
            *position += self.scratch.samples_in.len() as u64;
        }
        // A relayed bot already has the frame as Exotel sent it.
        if let Handler::Bot(bot) = &mut live.handler {
            bot.on_audio(&self.scratch.samples_in, &mut self.outbox);
        }
        None
    }

    /// Until when reading must wait, if this second's reads have reached
    /// [`MAX_FRAMES_PER_SECOND`]; starts a new window once the second is over.
    fn reading_too_fast(&mut self, now: Instant) -> Option<Duration> {
        let (start, reads) = self.read_window;
        let ends = start + Duration::from_secs(1);
        if now >= ends {
            self.read_window = (now, 0);
            return None;
        }
        (reads >= self.settings.max_frames_per_second).then(|| ends - now)
    }

    /// How far past [`MAX_INBOUND_LEAD`] ahead of real time the caller's audio is, if it is.
    fn caller_ahead(&self, now: Instant) -> Option<Duration> {
        let (first, sent) = self.inbound_clock?;
        let rate = self.live.as_ref()?.rules.sample_rate as u64;
        let sent = Duration::from_micros(sent * 1_000_000 / rate);
        let allowed = now.duration_since(first) + self.settings.max_inbound_lead;
        sent.checked_sub(allowed).filter(|d| !d.is_zero())
    }

    /// Names, once per call, the optional fields that came in a shape we do not read.
    fn note_oddities(&mut self, odd: Oddities) {
        let new = odd.new_since(self.odd_seen);
        if !new.is_empty() {
            self.odd_seen.add(new);
            crate::warn!(
                "media.odd_fields",
                callLogId = self.call_log_id,
                fields = new.names(),
                detail = "set aside; the frame was used without them"
            );
        }
    }

    /// Media came before any usable `start`: the stream starts now from what the media URL and
    /// the webhook told us (its sample rate, the CallSid, the frames' `stream_sid`), so that the
    /// caller is heard and answered rather than left in silence.
    fn synthesize_start(&mut self) -> Option<EndReason> {
        let start = StartEvent {
            stream_sid: self.early_stream_sid.clone().unwrap_or_default(),
            call_sid: self.known_call_sid.clone(),
            account_sid: String::new(),
            from: String::new(),
            to: String::new(),
            custom_parameters: Default::default(),
            sample_rate: self.url_sample_rate,
        };
        crate::warn!(
            "media.start_synthesized",
            callLogId = self.call_log_id,
            streamSid = start.stream_sid,
            sampleRate = start.sample_rate,
            detail = "media arrived without a usable start"
        );
        let text = serde_json::json!({
            "event": "start",
            "stream_sid": start.stream_sid,
            "start": {
                "stream_sid": start.stream_sid,
                "call_sid": start.call_sid,
                "account_sid": "",
                "from": "",
                "to": "",
                "custom_parameters": {},
                "media_format": {"encoding": "base64", "sample_rate": start.sample_rate.to_string()},
            },
        })
        .to_string();
        self.stats.start_synthesized = true;
        self.on_start(start, &text)
    }

    fn on_start(&mut self, start: StartEvent, text: &str) -> Option<EndReason> {
        if self.live.is_some() {
            crate::warn!(
                "media.second_start",
                callLogId = self.call_log_id,
                streamSid = start.stream_sid
            );
            return None;
        }
        if let Err(why) = (self.on_start)(&self.call_log_id, &start) {
            crate::warn!(
                "media.refused_start",
                callLogId = self.call_log_id,
                callSid = start.call_sid,
                detail = why
            );
            return Some(EndReason::CallSidMismatch(why));
        }
        self.stats.started = true;
        let rules = ChunkRules::for_rate(start.sample_rate);
        // Room for one second of the bot's audio before the outbox grows (the echo bot keeps its
        // delay plus the lead queued, 0.6 s by default; a bot that queues more grows it once, not
        // per frame). A ring is touched end to end as it turns, so every second here is resident
        // memory per call: 16 KiB at 8 kHz. Inbound frames: room for INBOUND_FRAME_ROOM_MS
        // (Exotel sends 20 to 100 ms); a longer frame grows the buffers once.
        let rate = start.sample_rate as usize;
        self.outbox = Outbox::new(start.sample_rate, rate);
        let frame_room = rate * INBOUND_FRAME_ROOM_MS / 1000;
        let encoder = Encoder::new(&start.stream_sid);
        self.scratch.reserve(
            frame_room,
            rules.min_samples,
            encoder.media_len(rules.min_samples * 2) + 256,
        );
        let call = CallStart {
            call_log_id: &self.call_log_id,
            start: &start,
            url_parameters: &self.url_parameters,
        };
        if let Some(recorder) = self.recorder {
            let recording = recorder.open(&self.call_log_id, start.sample_rate);
            self.recording = Some((recording, self.clock, 0));
        }
        // What a relayed bot gets as the call's `start`, with the contact's parameters.
        let (handler, start_text) = match &self.relay_config {
            None => {
                let mut bot = self.bots.create(&call);
                bot.on_start(&call, &mut self.outbox);
                (Handler::Bot(bot), String::new())
            }
            Some(_) if self.contact_parameters.is_empty() => (Handler::Dialing, text.to_owned()),
            Some(_) => (
                Handler::Dialing,
                with_custom_parameters(text, &self.contact_parameters),
            ),
        };
        crate::info!(
            "media.start",
            callLogId = self.call_log_id,
            streamSid = start.stream_sid,
            callSid = start.call_sid,
            sampleRate = start.sample_rate,
            from = start.from,
            to = start.to
        );
        self.live = Some(Live {
            handler,
            encoder,
            rules,
            pacer: Pacer::default(),
            start,
            start_text,
        });
        self.dial_relay(false);
        None
    }

    /// Dials the relayed bot, if the call has one, with Exotel's `connected` and the call's
    /// `start`: at the stream's start, or as the one `reconnect` after the bot dropped.
    fn dial_relay(&mut self, reconnect: bool) {
        let (Some(config), Some(live)) = (self.relay_config.clone(), self.live.as_ref()) else {
            return;
        };
        let call = CallStart {
            call_log_id: &self.call_log_id,
            start: &live.start,
            url_parameters: &self.url_parameters,
        };
        let connected = self.connected_text.as_deref();
        let dial = Dial::new(config, &call, connected, &live.start_text, reconnect);
        self.open_relay(dial);
    }

    /// Opens the relay: here, on a socket that waits (a coroutine, whose pump the bot's socket
    /// gets); on an event loop, by the loop, which takes the dial ([`Session::take_dial`]) and
    /// hands back what came of it ([`Session::dialed`]).
    fn open_relay(&mut self, dial: Dial) {
        if self.ws.get_ref().waits() {
            let opened = Relay::open(&dial, WaitsIn::Pump);
            self.dialed(&dial, opened);
            return;
        }
        // A relay being replaced is dropped here: its socket leaves the loop's poller as it
        // closes.
        if let Some(live) = self.live.as_mut() {
            live.handler = Handler::Dialing;
        }
        self.dial = Some(dial);
    }

    /// The relay this session's event loop is to open. Until the loop hands back what came of
    /// it, the session must not be turned.
    pub fn take_dial(&mut self) -> Option<Dial> {
        self.dial.take()
    }

    /// What came of a dial: the relay answers the call from now on, or the fallback does.
    pub fn dialed(&mut self, dial: &Dial, opened: Result<Relay, ConnectError>) {
        let Some(live) = self.live.as_mut() else {
            return;
        };
        match opened {
            Ok(relay) => {
                if dial.reconnect {
                    self.metrics.relay_event(RelayEvent::Reconnected);
                    crate::info!(
                        "relay.reconnected",
                        callLogId = self.call_log_id,
                        tookMs = dial.elapsed().as_millis()
                    );
                } else {
                    self.metrics.relay_event(RelayEvent::Connected);
                    crate::info!(
                        "relay.connected",
                        callLogId = self.call_log_id,
                        bot = dial.config().url
                    );
                }
                live.handler = Handler::Relay(Box::new(relay));
            }
            Err(e) => {
                let call = CallStart {
                    call_log_id: &self.call_log_id,
                    start: &live.start,
                    url_parameters: &self.url_parameters,
                };
                let (handler, unavailable) = fallback(
                    dial.config(),
                    &e,
                    &*self.bots,
                    &call,
                    &mut self.outbox,
                    self.metrics,
                );
                live.handler = handler;
                self.stats.bot_unavailable = unavailable;
            }
        }
    }

    /// The relayed bot's socket, when it waits in this session's event loop.
    pub fn relay_socket(&mut self) -> Option<&mut LoopSocket> {
        match self.live.as_mut().map(|l| &mut l.handler) {
            Some(Handler::Relay(relay)) => relay.looped(),
            _ => None,
        }
    }

    /// The relayed bot sent more than one turn takes: the session wants another turn now.
    pub fn relay_has_more(&self) -> bool {
        matches!(self.live.as_ref().map(|l| &l.handler), Some(Handler::Relay(r)) if r.has_more())
    }

    /// Hands one of Exotel's frames to the relayed bot, if there is one.
    fn forward_to_relay(&mut self, text: &Utf8Bytes) -> Result<(), EndReason> {
        let Some(Live {
            handler: Handler::Relay(relay),
            ..
        }) = self.live.as_mut()
        else {
            return Ok(());
        };
        let forwarded = relay.forward(text, &mut self.stats.relay);
        self.on_relay_result(forwarded)
    }

    /// Moves what the relayed bot sent into the outbox, if there is a relayed bot.
    fn poll_relay(&mut self, now: Instant) -> Result<(), EndReason> {
        let Some(Live {
            handler: Handler::Relay(relay),
            ..
        }) = self.live.as_mut()
        else {
            return Ok(());
        };
        // Only a bad frame allocates here (its description, for the log).
        let mut bad: Option<String> = None;
        let polled = relay.poll(&mut self.outbox, &mut self.stats.relay, &mut |what| {
            bad = Some(what.to_owned())
        });
        if let Some(what) = bad {
            self.warn_limited(now, "relay.bad_frame", &what);
        }
        self.on_relay_result(polled)
    }

    /// A bot that closed hung up; a bot that dropped gets one reconnect within
    /// `BOT_RECONNECT_MS` with a fresh `start`, then the fallback.
    fn on_relay_result(&mut self, result: Result<(), Lost>) -> Result<(), EndReason> {
        let why = match result {
            Ok(()) => return Ok(()),
            Err(Lost::HungUp) => return Err(EndReason::BotHungUp),
            Err(Lost::Dropped(why)) => why,
        };
        if self.relay_config.is_none() || self.live.is_none() {
            return Ok(());
        }
        self.metrics.relay_event(RelayEvent::Dropped);
        crate::warn!("relay.dropped", callLogId = self.call_log_id, error = why);
        // The new bot (or the fallback) starts the conversation afresh: what the old bot had
        // queued is dropped here and at Exotel.
        self.outbox.clear();
        self.dial_relay(true);
        Ok(())
    }

    /// Sends the clear, chunks and marks that are due at `now`.
    fn send_due(&mut self, now: Instant) -> Result<(), EndReason> {
        let Some(live) = self.live.as_mut() else {
            return Ok(());
        };
        if self.outbox.take_clear() {
            self.scratch.frame.clear();
            live.encoder.clear(&mut self.scratch.frame);
            live.pacer.reset();
            self.send_frame()?;
        }
        loop {
            let Some(live) = self.live.as_mut() else {
                return Ok(());
            };
            if let Some(name) = self.outbox.pop_due_mark() {
                self.scratch.frame.clear();
                live.encoder.mark(&mut self.scratch.frame, &name);
                self.stats.marks_out += 1;
                self.send_frame()?;
                continue;
            }
            let queued = self.outbox.queued_samples();
            if queued == 0 {
                return Ok(());
            }
            let allowed_at = live
                .pacer
                .runs_dry_at()
                .and_then(|dry| Pacer::next_send(dry, self.settings.lead));
            let ahead = live.pacer.ahead(now);
            if !Pacer::allows(ahead, self.settings.lead) {
                return Ok(());
            }
            let until_mark = self.outbox.samples_until_mark();
            let take = queued
                .min(live.rules.min_samples)
                .min(until_mark.unwrap_or(usize::MAX));
            let full = take == live.rules.min_samples;
            // A short piece goes out padded only when nothing more can join it: a mark follows
            // it, the bot hangs up, or Exotel has played everything and would go silent anyway.
            let flush = until_mark == Some(take) || self.outbox.wants_hang_up() || ahead.is_zero();
            if !full && !flush {
                return Ok(());
            }
            self.scratch.chunk.clear();
            self.outbox.drain_into(take, &mut self.scratch.chunk);
            let padded = live.rules.padded(self.scratch.chunk.len());
            self.scratch.chunk.resize(padded, 0);
            self.scratch.chunk_pcm.clear();
            samples_to_pcm(&self.scratch.chunk, &mut self.scratch.chunk_pcm);
            self.scratch.frame.clear();
            live.encoder
                .media(&mut self.scratch.frame, &self.scratch.chunk_pcm);
            if let Some(at) = allowed_at {
                self.metrics
                    .chunk_send_delay
                    .observe(now.saturating_duration_since(at));
            }
            if let Some((recording, started, _)) = self.recording.as_mut() {
                // The bot's audio is heard when Exotel has played what was sent before it.
                let plays_at = live.pacer.runs_dry_at().map_or(now, |dry| dry.max(now));
                let at = plays_at.saturating_duration_since(*started).as_micros() as u64
                    * live.rules.sample_rate as u64
                    / 1_000_000;
                recording.push(Track::Bot, at, &self.scratch.chunk);
            }
            live.pacer
                .sent(now, Duration::from_micros(live.rules.micros(padded)));
            self.stats.frames_out += 1;
            self.stats.bytes_out += self.scratch.chunk_pcm.len() as u64;
            self.send_frame()?;
        }
    }

    /// Sends the encoded `frame` as a text message without copying it: the frozen bytes share
    /// the buffer, which is reclaimed on the next `reserve` once tungstenite has written them.
    fn send_frame(&mut self) -> Result<(), EndReason> {
        let bytes = self.scratch.frame.split().freeze();
        let text = Utf8Bytes::try_from(bytes)
            .map_err(|_| EndReason::SocketError("encoded frame is not UTF-8".into()))?;
        self.send(Message::Text(text))
    }

    fn send(&mut self, message: Message) -> Result<(), EndReason> {
        match self.ws.send(message) {
            Ok(()) => {}
            // Buffered by tungstenite; written on a later flush.
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(EndReason::SocketError(e.to_string())),
        }
        self.last_sent = self.clock;
        Ok(())
    }

    /// Adds what happened since the last report to the metrics (about once a second).
    fn report_metrics(&mut self, now: Instant) {
        let (before, s) = (&self.reported.0, &self.stats);
        self.metrics.add_media(MediaDelta {
            frames_in: s.frames_in - before.frames_in,
            bytes_in: s.bytes_in - before.bytes_in,
            frames_out: s.frames_out - before.frames_out,
            bytes_out: s.bytes_out - before.bytes_out,
            bad_frames: s.bad_frames - before.bad_frames,
            relay_dropped_to_bot: s.relay.dropped_to_bot - before.relay.dropped_to_bot,
            relay_dropped_to_caller: s.relay.dropped_to_caller - before.relay.dropped_to_caller,
            relay_bad_frames: s.relay.bad_frames - before.relay.bad_frames,
        });
        self.reported.0.clone_from(&self.stats);
        self.reported.1 = now;
    }

    fn bad_frame(&mut self, now: Instant, what: &str) {
        self.stats.bad_frames += 1;
        self.warn_limited(now, "media.bad_frame", what);
    }

    /// Logs a bad frame at most once a `WARN_EVERY`, with the counts so far.
    fn warn_limited(&mut self, now: Instant, event: &str, what: &str) {
        let due = self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            self.last_warning = Some(now);
            crate::warn!(
                event,
                callLogId = self.call_log_id,
                detail = what,
                badFrames = self.stats.bad_frames,
                relayBadFrames = self.stats.relay.bad_frames
            );
        }
    }

    /// A handoff asked for, with every queued sample sent and played (Exotel's queue empty by
    /// the pacer's clock): the caller has heard the bot's last words.
    fn handoff_due(&mut self, now: Instant) -> bool {
        if self.outbox.handoff().is_none() || self.outbox.queued_samples() > 0 {
            return false;
        }
        self.live
            .as_mut()
            .is_none_or(|live| live.pacer.ahead(now).is_zero())
    }

    /// [`Session::turn`] working in `scratch` (an event loop's, shared by its calls) instead of
    /// buffers of its own.
    pub fn turn_in(&mut self, now: Instant, scratch: &mut Scratch) -> Option<EndReason> {
        std::mem::swap(&mut self.scratch, scratch);
        let ended = self.turn(now);
        std::mem::swap(&mut self.scratch, scratch);
        ended
    }

    /// [`Session::finish`] working in `scratch`, as [`Session::turn_in`].
    pub fn finish_in(&mut self, reason: &EndReason, scratch: &mut Scratch) {
        std::mem::swap(&mut self.scratch, scratch);
        self.finish(reason);
        std::mem::swap(&mut self.scratch, scratch);
    }

    /// The socket, for the event loop that drives this session.
    pub fn io_mut(&mut self) -> &mut S {
        self.ws.get_mut()
    }

    /// Writes what tungstenite holds back from a socket that was full. `Err` when the socket
    /// has failed.
    pub fn flush(&mut self) -> Result<(), EndReason> {
        match self.ws.flush() {
            Ok(()) => Ok(()),
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(()),
            Err(e) => Err(EndReason::SocketError(e.to_string())),
        }
    }

    /// After [`Session::finish`] on a socket that does not wait: reads what has come toward
    /// the closes still due, the relayed bot's and, when `caller`, the caller's (not after a
    /// broken frame: see [`waits_for_close`]). `true` once each is over or its socket gone.
    pub fn read_toward_close(&mut self, caller: bool) -> bool {
        let bot_done = match self.live.as_mut().map(|l| &mut l.handler) {
            Some(Handler::Relay(relay)) => relay.read_toward_close(),
            _ => true,
        };
        let caller_done = !caller || self.read_caller_toward_close();
        bot_done && caller_done
    }

    fn read_caller_toward_close(&mut self) -> bool {
        loop {
            match self.ws.read() {
                Ok(_) => continue,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return false
                }
                Err(_) => return true,
            }
        }
    }

    /// Closes the socket (unless the peer did), tells the bot, logs the call's counts.
    pub fn finish(&mut self, reason: &EndReason) {
        self.stats.handoff = self.outbox.handoff().map(str::to_owned);
        if let Some(on_end) = &self.on_end {
            on_end(reason, self.stats.handoff.as_deref());
        }
        // The bot first: it hears of the end even when Exotel's socket takes its time to close.
        if let Some(live) = self.live.as_mut() {
            match &mut live.handler {
                Handler::Bot(bot) => bot.on_stop(reason.as_str()),
                Handler::Dialing => {}
                Handler::Relay(relay) => {
                    // Exotel's own `stop` was forwarded; a bot that hung up needs none.
                    let stop = match reason {
                        EndReason::Stopped(_) | EndReason::BotHungUp => None,
                        _ => {
                            self.scratch.frame.clear();
                            live.encoder.stop(
                                &mut self.scratch.frame,
                                &live.start,
                                reason.as_str(),
                            );
                            std::str::from_utf8(&self.scratch.frame).ok()
                        }
                    };
                    relay.close(stop);
                }
            }
        }
        if !matches!(reason, EndReason::ClosedByPeer | EndReason::SocketError(_)) {
            let code = match reason {
                EndReason::FrameTooLarge => CloseCode::Size,
                EndReason::ProtocolError(_) => CloseCode::Protocol,
                EndReason::InvalidUtf8 => CloseCode::Invalid,
                EndReason::IdleTimeout | EndReason::Shutdown => CloseCode::Away,
                _ => CloseCode::Normal,
            };
            let _ = self.ws.close(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason.as_str().to_owned()),
            }));
            let _ = self.ws.flush();
            if waits_for_close(reason) && self.ws.get_ref().waits() {
                // Let the close handshake finish, briefly.
                let _ = self
                    .ws
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(500)));
                let deadline = Instant::now() + Duration::from_secs(1);
                while Instant::now() < deadline && self.ws.read().is_ok() {}
            }
        }
        self.report_metrics(self.clock);
        let s = &self.stats;
        let error = match reason {
            EndReason::SocketError(e) | EndReason::ProtocolError(e) => e.as_str(),
            _ => "",
        };
        crate::info!(
            "media.ended",
            callLogId = self.call_log_id,
            reason = reason.as_str(),
            error = error,
            framesIn = s.frames_in,
            bytesIn = s.bytes_in,
            framesOut = s.frames_out,
            bytesOut = s.bytes_out,
            marksOut = s.marks_out,
            marksIn = s.marks_in,
            dtmf = s.dtmf,
            badFrames = s.bad_frames,
            relayDroppedToBot = s.relay.dropped_to_bot,
            relayDroppedToCaller = s.relay.dropped_to_caller,
            relayBadFrames = s.relay.bad_frames
        );
    }
}

/// Whether a session that ended this way waits for the peer's close frame after its own. Not
/// after the peer closed or vanished, and not after a too-large or broken frame: tungstenite
/// must not be read again then (see `turn`).
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
