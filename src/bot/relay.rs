//! The relay (`BOT=relay`): each call handed to an upstream voice bot that speaks Exotel's own
//! stream protocol, over a WebSocket client connection to `BOT_URL` (`ws://`, or `wss://` with
//! rustls). A bot written for Exotel works unchanged behind it.
//!
//! Caller → bot: every frame Exotel sends (`connected`, `start`, `media`, `dtmf`, `mark`,
//! `stop`) is forwarded as it arrived, byte for byte, the moment it arrives. Bot → caller: the
//! bot's `media`, `mark` and `clear` go into the session's [`Outbox`], so its audio is chunked
//! and paced to Exotel's rules like any bot's.
//!
//! The bot's socket waits where the caller's does ([`WaitsIn`]): in the caller's event loop
//! (`media::engine`), which polls both and dials the relay on a coroutine of its own from a
//! [`Dial`]; or, for a call on a coroutine (a TLS caller, `MEDIA_LOOPS=0`), in a pump that wakes
//! that coroutine (`media::pump`).
//!
//! Owns: connecting (the call's ids as query parameters, `BOT_HEADERS`), forwarding, reading
//! the bot's frames, closing. Must not pace, chunk, or choose what happens when the bot is
//! gone: the session does, and is the only writer on both sockets. Nothing here blocks the
//! caller's side: writes to the bot never wait (a slow bot's frames queue in tungstenite up to
//! `BOT_SEND_BUFFER_BYTES`, then are dropped and counted), and reads only take what arrived.

use super::realtime::RealtimeSide;
use super::twilio::TwilioSide;
use super::{CallStart, Outbox};
use crate::config::{BotProtocol, RelayConfig};
use crate::exotel::stream::{decode_payload, BotCommand, Inbound};
use crate::media::audio::pcm_to_samples;
use crate::media::looped::LoopSocket;
use crate::media::pump::{Pumped, Writes};
use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tungstenite::{Message, Utf8Bytes, WebSocket};

/// Bot frames handled per session turn at most, so a chatty bot cannot starve the caller.
const FRAMES_PER_POLL: usize = 64;
pub use super::MAX_QUEUED_BOT_SECONDS;
/// The bot's audio frame the decoding buffers are sized for, in ms (bots send 20 to 100; a
/// longer frame grows them once). They were a second's room, which the whole call then kept.
const BOT_FRAME_ROOM_MS: usize = 200;
/// Bytes read from the bot's socket at a time (see `handshake`).
const BOT_READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long closing waits for the bot's answering close.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

/// Why the relay could not be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// No address, no TCP connection, or TLS failed.
    Unreachable(String),
    /// The bot answered the handshake with this HTTP status instead of 101.
    Refused(u16),
    /// The handshake broke or timed out.
    Handshake(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(e) => write!(f, "unreachable: {e}"),
            ConnectError::Refused(status) => write!(f, "refused the handshake with {status}"),
            ConnectError::Handshake(e) => write!(f, "handshake failed: {e}"),
        }
    }
}

/// The bot is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lost {
    /// The bot closed its WebSocket: in Exotel's protocol that is how a bot hangs up.
    HungUp,
    /// The connection broke without a close (the bot crashed, the network failed).
    Dropped(String),
}

/// Counts the session reports for the relay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RelayCounts {
    /// Caller frames not sent because the bot's send buffer was full.
    pub dropped_to_bot: u64,
    /// Bot audio frames not queued because `MAX_QUEUED_BOT_SECONDS` were already waiting.
    pub dropped_to_caller: u64,
    /// Bot frames that were not an event we know (logged and skipped).
    pub bad_frames: u64,
}

/// Where the bot's socket waits once the relay is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitsIn {
    /// A pump that wakes the session's coroutine (`media::pump`): opened on that coroutine.
    Pump,
    /// The caller's event loop (`media::engine`), which polls it beside the caller's socket.
    Loop,
}

/// How long one read of the handshake waits before the deadline is looked at again.
const HANDSHAKE_POLL: Duration = Duration::from_millis(20);

/// The bot's TCP socket, in the form its waiting takes.
enum BotSocket {
    /// During the handshake, on the coroutine that dials: reads wait up to `HANDSHAKE_POLL`.
    Dialing(may::net::TcpStream),
    Pumped(Pumped),
    /// On an event loop: never waits.
    Looped(LoopSocket),
    /// Only while it changes form in [`BotSocket::settle`].
    Moving,
}

impl BotSocket {
    /// From the handshake's socket to the one the call waits in. Bytes tungstenite or rustls
    /// already read stay where they are.
    fn settle(&mut self, waits: WaitsIn) -> io::Result<()> {
        let BotSocket::Dialing(socket) = std::mem::replace(self, BotSocket::Moving) else {
            return Ok(());
        };
        *self = match waits {
            WaitsIn::Pump => {
                let mut pumped = Pumped::start(socket, Writes::NonBlocking)?;
                // Reads never wait: the session waits on Exotel's socket, which either pump
                // wakes.
                pumped.set_wait(Some(Duration::ZERO));
                BotSocket::Pumped(pumped)
            }
            WaitsIn::Loop => BotSocket::Looped(LoopSocket::from_may(socket)?),
        };
        Ok(())
    }
}

fn moving() -> io::Error {
    io::Error::new(ErrorKind::NotConnected, "the bot's socket is changing form")
}

impl Read for BotSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            // A handshake read that timed out is one to try again.
            BotSocket::Dialing(s) => s.read(buf).map_err(|e| match e.kind() {
                ErrorKind::TimedOut => ErrorKind::WouldBlock.into(),
                _ => e,
            }),
            BotSocket::Pumped(p) => p.read(buf),
            BotSocket::Looped(l) => l.read(buf),
            BotSocket::Moving => Err(moving()),
        }
    }
}

impl Write for BotSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BotSocket::Dialing(s) => s.write(buf),
            BotSocket::Pumped(p) => p.write(buf),
            BotSocket::Looped(l) => l.write(buf),
            BotSocket::Moving => Err(moving()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The bot's socket: plain, or TLS on top of it (rustls only turns bytes into bytes; the
/// socket still does the waiting).
enum BotStream {
    Plain(BotSocket),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, BotSocket>>),
}

impl BotStream {
    fn socket(&mut self) -> &mut BotSocket {
        match self {
            BotStream::Plain(s) => s,
            BotStream::Tls(t) => &mut t.sock,
        }
    }
}

impl Read for BotStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            BotStream::Plain(s) => s.read(buf),
            BotStream::Tls(t) => t.read(buf),
        }
    }
}

impl Write for BotStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            BotStream::Plain(s) => s.write(buf),
            BotStream::Tls(t) => t.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            BotStream::Plain(s) => s.flush(),
            BotStream::Tls(t) => t.flush(),
        }
    }
}

/// What opening a relay takes, owned: a call on an event loop is dialed on a coroutine of its
/// own while the loop goes on with the other calls.
#[derive(Clone)]
pub struct Dial {
    config: Arc<RelayConfig>,
    url: String,
    /// Exotel's `connected` as it came (or a plain one) and the call's `start`, sent first.
    connected: String,
    start: String,
    began: Instant,
    deadline: Instant,
    sample_rate: u32,
    /// The bot dropped and this is the call's one reconnect (else its first connection).
    pub reconnect: bool,
}

impl Dial {
    /// Dials `config`'s bot for this call, within `config`'s connect timeout (or, for a
    /// `reconnect`, its reconnect window) from now.
    pub fn new(
        config: Arc<RelayConfig>,
        call: &CallStart<'_>,
        connected: Option<&str>,
        start: &str,
        reconnect: bool,
    ) -> Dial {
        let window = match reconnect {
            true => config.reconnect,
            false => config.connect_timeout,
        };
        Dial {
            url: url_for(&config, call),
            connected: connected.unwrap_or(r#"{"event":"connected"}"#).to_owned(),
            start: start.to_owned(),
            began: Instant::now(),
            deadline: Instant::now() + window,
            sample_rate: call.start.sample_rate,
            reconnect,
            config,
        }
    }

    pub fn config(&self) -> &Arc<RelayConfig> {
        &self.config
    }

    /// Since the dial was asked for.
    pub fn elapsed(&self) -> Duration {
        self.began.elapsed()
    }
}

/// One call's connection to the bot.
pub struct Relay {
    ws: WebSocket<BotStream>,
    /// The bot's audio, decoded: allocated once, reused for every frame.
    pcm: Vec<u8>,
    samples: Vec<i16>,
    /// Bytes tungstenite holds because the bot's socket was full.
    unflushed: bool,
    /// The last poll stopped at `FRAMES_PER_POLL` with frames left to read.
    more: bool,
    /// How Exotel's frames and the bot's become each other's, for a bot that does not speak
    /// Exotel's protocol.
    translation: Translation,
    /// Frames made for the bot from one of Exotel's (or in answer to the bot), to be sent.
    translated: Vec<String>,
    /// Exotel's frame on its way to the bot as it came: the buffer is the relay's, reclaimed
    /// once tungstenite has written each frame (no allocation per frame).
    forwarding: bytes::BytesMut,
}

/// What a relayed bot speaks, past Exotel's own protocol.
enum Translation {
    None,
    Twilio(Box<TwilioSide>),
    Realtime(Box<RealtimeSide>),
}

/// The bot's URL for this call: `BOT_URL` plus `callLogId`, `CallSid`, `from` and `to` (a
/// realtime service's URL as it is).
pub fn url_for(config: &RelayConfig, call: &CallStart<'_>) -> String {
    // An AI service is told nothing of the call in its URL (the numbers are the caller's).
    if matches!(config.protocol, BotProtocol::Realtime(_)) {
        return config.url.clone();
    }
    let mut query = String::new();
    crate::http::form::append_pair(&mut query, "callLogId", call.call_log_id.as_str());
    crate::http::form::append_pair(&mut query, "CallSid", &call.start.call_sid);
    crate::http::form::append_pair(&mut query, "from", &call.start.from);
    crate::http::form::append_pair(&mut query, "to", &call.start.to);
    let joiner = match config.url.find('?') {
        None => "?",
        Some(i) if i + 1 == config.url.len() || config.url.ends_with('&') => "",
        Some(_) => "&",
    };
    format!("{}{joiner}{query}", config.url)
}

/// The bot's addresses. A name is resolved on a thread of its own: `getaddrinfo` blocks in
/// libc and must not run on a coroutine (docs/ARCHITECTURE.md §2).
fn resolve(host: &str, port: u16, deadline: Instant) -> Result<Vec<SocketAddr>, ConnectError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (tx, rx) = may::sync::mpsc::channel();
    let name = (host.to_owned(), port);
    std::thread::Builder::new()
        .name("bot-dns".into())
        .spawn(move || {
            let _ = tx.send(name.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
        })
        .map_err(|e| ConnectError::Unreachable(format!("cannot start a resolver: {e}")))?;
    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(Ok(addrs)) if !addrs.is_empty() => Ok(addrs),
        Ok(Ok(_)) => Err(ConnectError::Unreachable(format!("{host} has no address"))),
        Ok(Err(e)) => Err(ConnectError::Unreachable(format!("{host}: {e}"))),
        Err(_) => Err(ConnectError::Unreachable(format!(
            "{host} did not resolve in time"
        ))),
    }
}

/// The handshake's request: the call's URL with `BOT_HEADERS`.
fn request_for(dial: &Dial) -> Result<tungstenite::handshake::client::Request, ConnectError> {
    let mut request = dial
        .url
        .as_str()
        .into_client_request()
        .map_err(|e| ConnectError::Handshake(e.to_string()))?;
    for (name, value) in &dial.config.headers {
        // Both were checked when the configuration was read.
        if let (Ok(name), Ok(value)) = (
            tungstenite::http::HeaderName::from_bytes(name.as_bytes()),
            tungstenite::http::HeaderValue::from_str(value),
        ) {
            request.headers_mut().insert(name, value);
        }
    }
    Ok(request)
}

/// A TCP connection to the first of the bot's addresses that answers before `deadline`.
fn connect_tcp(
    config: &RelayConfig,
    deadline: Instant,
) -> Result<may::net::TcpStream, ConnectError> {
    let mut last_error = None;
    for addr in resolve(&config.host, config.port, deadline)? {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match may::net::TcpStream::connect_timeout(&addr, left) {
            Ok(socket) => {
                let _ = socket.set_nodelay(true);
                let _ = socket.set_read_timeout(Some(HANDSHAKE_POLL));
                let _ = socket.set_write_timeout(Some(left));
                return Ok(socket);
            }
            Err(e) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    Err(ConnectError::Unreachable(
        last_error.unwrap_or_else(|| "timed out".into()),
    ))
}

/// The socket as the handshake speaks through it: plain, or inside a TLS client for `wss://`.
fn stream_for(config: &RelayConfig, socket: BotSocket) -> Result<BotStream, ConnectError> {
    if !config.tls {
        return Ok(BotStream::Plain(socket));
    }
    let name = rustls::pki_types::ServerName::try_from(config.host.clone())
        .map_err(|e| ConnectError::Unreachable(format!("TLS name: {e}")))?;
    let roots = crate::tls::client_config(&config.extra_roots);
    let tls = rustls::ClientConnection::new(roots, name)
        .map_err(|e| ConnectError::Unreachable(format!("TLS: {e}")))?;
    Ok(BotStream::Tls(Box::new(rustls::StreamOwned::new(
        tls, socket,
    ))))
}

/// The WebSocket handshake, retried as its reads time out until `deadline`.
fn handshake(
    request: tungstenite::handshake::client::Request,
    stream: BotStream,
    config: &RelayConfig,
    deadline: Instant,
) -> Result<WebSocket<BotStream>, ConnectError> {
    // tungstenite zero-fills up to this much before every read: at 8 KiB, `memset` was 6% of
    // a relaying server's profile, and 4 KiB took 0.93x its CPU (400 relayed calls, paired
    // runs). 4 KiB holds a 100 ms frame at 8 kHz in one read, as the caller's side does
    // (`media::session::websocket_config`); a larger frame takes two.
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(BOT_READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(config.send_buffer_bytes)
        .max_message_size(Some(crate::exotel::stream::MAX_FRAME_BYTES))
        .max_frame_size(Some(crate::exotel::stream::MAX_FRAME_BYTES));
    let mut attempt = tungstenite::client::client_with_config(request, stream, Some(ws_config));
    loop {
        match attempt {
            Ok((ws, _response)) => return Ok(ws),
            Err(HandshakeError::Interrupted(mid)) => {
                if Instant::now() >= deadline {
                    return Err(ConnectError::Handshake("timed out".into()));
                }
                attempt = mid.handshake();
            }
            Err(HandshakeError::Failure(tungstenite::Error::Http(response))) => {
                return Err(ConnectError::Refused(response.status().as_u16()))
            }
            Err(HandshakeError::Failure(tungstenite::Error::Io(e)))
                if e.kind() == ErrorKind::InvalidData =>
            {
                // rustls reports certificate and protocol failures as InvalidData.
                return Err(ConnectError::Unreachable(format!("TLS: {e}")));
            }
            Err(HandshakeError::Failure(e)) => return Err(ConnectError::Handshake(e.to_string())),
        }
    }
}

impl Relay {
    /// Connects to the bot before the dial's deadline, with the socket then waiting in
    /// `waits`, and sends it Exotel's `connected` and `start` frames. Runs on a coroutine: the
    /// session's own for [`WaitsIn::Pump`] (that is the coroutine its pump wakes).
    pub fn open(dial: &Dial, waits: WaitsIn) -> Result<Relay, ConnectError> {
        let request = request_for(dial)?;
        let socket = connect_tcp(&dial.config, dial.deadline)?;
        let stream = stream_for(&dial.config, BotSocket::Dialing(socket))?;
        let mut ws = handshake(request, stream, &dial.config, dial.deadline)?;
        ws.get_mut()
            .socket()
            .settle(waits)
            .map_err(|e| ConnectError::Unreachable(e.to_string()))?;
        // Room for a BOT_FRAME_ROOM_MS frame of the bot's audio; a longer one grows them once.
        let samples = dial.sample_rate as usize * BOT_FRAME_ROOM_MS / 1000;
        let mut relay = Relay {
            ws,
            pcm: Vec::with_capacity(2 * samples + 4),
            samples: Vec::with_capacity(samples),
            unflushed: false,
            more: false,
            translation: Translation::None,
            translated: Vec::new(),
            forwarding: bytes::BytesMut::new(),
        };
        let start = || match Inbound::parse(&dial.start) {
            Ok(Inbound::Start(start)) => Ok(start),
            _ => Err(ConnectError::Handshake(
                "the call's start does not read".into(),
            )),
        };
        let first = match &dial.config.protocol {
            BotProtocol::Exotel => vec![dial.connected.clone(), dial.start.clone()],
            BotProtocol::Twilio => {
                let start = start()?;
                let mut side = Box::new(TwilioSide::new(&start));
                let first = vec![side.connected(), side.start(&start)];
                relay.translation = Translation::Twilio(side);
                first
            }
            BotProtocol::Realtime(settings) => {
                let start = start()?;
                let side = Box::new(RealtimeSide::new(&start));
                let first =
                    side.first_messages(settings, &start.custom_parameters, !dial.reconnect);
                relay.translation = Translation::Realtime(side);
                first
            }
        };
        let mut counts = RelayCounts::default();
        for text in first {
            relay
                .send(Utf8Bytes::from(text), &mut counts)
                .map_err(|e| ConnectError::Handshake(format!("{e:?}")))?;
        }
        Ok(relay)
    }

    /// The bot's socket, when it waits in an event loop.
    pub fn looped(&mut self) -> Option<&mut LoopSocket> {
        match self.ws.get_mut().socket() {
            BotSocket::Looped(l) => Some(l),
            _ => None,
        }
    }

    /// On an event loop, whether a read would certainly find nothing: the last one found
    /// nothing and nothing has arrived since, so tungstenite holds no whole frame (see
    /// [`LoopSocket`]). A turn then skips the read, which would only zero-fill tungstenite's
    /// read buffer to be told `WouldBlock`: the session polls the relay at every turn.
    fn starved(&mut self) -> bool {
        matches!(self.ws.get_mut().socket(), BotSocket::Looped(l) if l.starved && !l.readable)
    }

    /// The last poll left frames to read (it stopped at its share of the turn).
    pub fn has_more(&self) -> bool {
        self.more
    }

    /// Sends one of Exotel's frames to the bot: as it is, or in Twilio's words for a bot that
    /// speaks them (a frame that does not translate is counted and skipped).
    pub fn forward(&mut self, text: &str, counts: &mut RelayCounts) -> Result<(), Lost> {
        let translated = &mut self.translated;
        let made = match &mut self.translation {
            Translation::None => {
                self.forwarding.extend_from_slice(text.as_bytes());
                let frame = Utf8Bytes::try_from(self.forwarding.split().freeze())
                    .expect("the bytes of a str are UTF-8");
                return self.send(frame, counts);
            }
            Translation::Twilio(side) => side.from_exotel(text, translated),
            Translation::Realtime(side) => side.from_exotel(text, translated),
        };
        let translated = std::mem::take(&mut self.translated);
        if made.is_err() {
            counts.bad_frames += 1;
        }
        self.send_translated(translated, counts)
    }

    /// Sends the frames made for the bot, and keeps the room for the next.
    fn send_translated(
        &mut self,
        mut translated: Vec<String>,
        counts: &mut RelayCounts,
    ) -> Result<(), Lost> {
        let mut sent = Ok(());
        for frame in translated.drain(..) {
            if sent.is_ok() {
                sent = self.send(Utf8Bytes::from(frame), counts);
            }
        }
        self.translated = translated;
        sent
    }

    /// Sends one text frame to the bot. A full send buffer drops the frame (counted); a socket
    /// that is merely full keeps it for the next flush.
    fn send(&mut self, text: Utf8Bytes, counts: &mut RelayCounts) -> Result<(), Lost> {
        match self.ws.send(Message::Text(text)) {
            Ok(()) => {
                self.unflushed = false;
                Ok(())
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                self.unflushed = true;
                Ok(())
            }
            Err(tungstenite::Error::WriteBufferFull(_)) => {
                counts.dropped_to_bot += 1;
                self.unflushed = true;
                Ok(())
            }
            Err(e) => Err(lost(e)),
        }
    }

    /// Writes what a full socket held back, if anything.
    pub fn flush(&mut self) -> Result<(), Lost> {
        if !self.unflushed {
            return Ok(());
        }
        match self.ws.flush() {
            Ok(()) => {
                self.unflushed = false;
                Ok(())
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(lost(e)),
        }
    }

    /// Moves what the bot has sent into `out`: audio to play, marks, `clear`. Bad frames are
    /// counted and handed to `bad` (to log), then skipped.
    pub fn poll(
        &mut self,
        out: &mut Outbox,
        counts: &mut RelayCounts,
        bad: &mut dyn FnMut(&str),
    ) -> Result<(), Lost> {
        self.flush()?;
        self.more = false;
        if self.starved() {
            return Ok(());
        }
        for _ in 0..FRAMES_PER_POLL {
            match self.ws.read() {
                Ok(Message::Text(text)) => self.handle(&text, out, counts, bad),
                Ok(Message::Binary(_)) => {
                    counts.bad_frames += 1;
                    bad("a binary frame (a bot sends JSON text)");
                }
                Ok(Message::Close(_)) => return Err(self.closed()),
                // Ping (tungstenite queues the pong and sends it with the next write), pong.
                Ok(_) => self.unflushed = true,
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return Ok(())
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Err(self.closed())
                }
                Err(e) => return Err(lost(e)),
            }
        }
        self.more = true;
        Ok(())
    }

    /// The bot closed its socket: a bot hanging up, but an AI service's session ending (it
    /// ends calls through its `end_call` tool), which is a drop.
    fn closed(&self) -> Lost {
        match self.translation {
            Translation::Realtime(_) => Lost::Dropped("the service closed the session".into()),
            _ => Lost::HungUp,
        }
    }

    fn handle(
        &mut self,
        text: &str,
        out: &mut Outbox,
        counts: &mut RelayCounts,
        bad: &mut dyn FnMut(&str),
    ) {
        let translated = match &mut self.translation {
            Translation::None => None,
            Translation::Twilio(side) => Some(side.to_outbox(text, out)),
            Translation::Realtime(side) => Some(side.to_outbox(text, out, &mut self.translated)),
        };
        if let Some(made) = translated {
            counts.dropped_to_caller += out.take_dropped();
            if let Err(why) = made {
                counts.bad_frames += 1;
                bad(&why);
            }
            let replies = std::mem::take(&mut self.translated);
            // An answer the service does not get is lost with its socket, found at the next
            // send or poll.
            let _ = self.send_translated(replies, counts);
            return;
        }
        match BotCommand::parse(text) {
            Ok(BotCommand::Media { payload }) => {
                if decode_payload(&payload, &mut self.pcm).is_err() || self.pcm.len() % 2 != 0 {
                    counts.bad_frames += 1;
                    bad("media payload is not base64 of 16-bit samples");
                    return;
                }
                self.samples.clear();
                pcm_to_samples(&self.pcm, &mut self.samples);
                if !out.play_within(&self.samples) {
                    counts.dropped_to_caller += out.take_dropped();
                }
            }
            Ok(BotCommand::Mark { name }) => out.mark(name.into_owned()),
            Ok(BotCommand::Clear) => out.clear(),
            Ok(BotCommand::Handoff { reason }) => out.hand_off(reason.into_owned()),
            Ok(BotCommand::Transcript { role, text }) => match crate::bot::Speaker::parse(&role) {
                Some(speaker) => out.transcript(speaker, text.into_owned()),
                None => {
                    counts.bad_frames += 1;
                    bad("transcript.role is neither bot nor caller");
                }
            },
            Err(e) => {
                counts.bad_frames += 1;
                bad(&e.to_string());
            }
        }
    }

    /// Ends the bot's side of the call: `stop` (when Exotel's own did not reach it) and a close
    /// frame. On a pump it then waits briefly for the bot's answering close; on an event loop
    /// the loop reads toward it ([`Relay::read_toward_close`]).
    pub fn close(&mut self, stop: Option<&str>) {
        if let Some(stop) = stop {
            let mut counts = RelayCounts::default();
            let _ = self.forward(stop, &mut counts);
        }
        let _ = self.ws.close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: Utf8Bytes::from_static("call ended"),
        }));
        let BotSocket::Pumped(pumped) = self.ws.get_mut().socket() else {
            let _ = self.ws.flush();
            return;
        };
        pumped.set_wait(Some(Duration::from_millis(20)));
        let deadline = Instant::now() + CLOSE_WAIT;
        while Instant::now() < deadline && !self.read_toward_close() {}
        let _ = self.ws.flush();
    }

    /// After [`Relay::close`]: reads what has come toward the bot's close frame. `true` once
    /// both closes have crossed (at once when the bot closed first) or the socket is gone.
    pub fn read_toward_close(&mut self) -> bool {
        while self.ws.can_read() {
            match self.ws.read() {
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                    return false
                }
                Err(_) => return true,
            }
        }
        true
    }
}

fn lost(e: tungstenite::Error) -> Lost {
    match e {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => Lost::HungUp,
        other => Lost::Dropped(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::CallLogId;
    use crate::config::Fallback;
    use crate::exotel::stream::StartEvent;

    fn config(url: &str) -> RelayConfig {
        RelayConfig {
            url: url.into(),
            tls: false,
            host: "h".into(),
            port: 80,
            headers: Vec::new(),
            fallback: Fallback::Hangup,
            protocol: BotProtocol::Exotel,
            connect_timeout: Duration::from_secs(1),
            reconnect: Duration::from_secs(1),
            send_buffer_bytes: 1 << 16,
            extra_roots: Vec::new(),
        }
    }

    #[test]
    fn the_call_ids_are_added_to_the_bot_url() {
        let id = CallLogId::parse("order-42").unwrap();
        let start = StartEvent {
            stream_sid: "S".into(),
            call_sid: "CA1".into(),
            account_sid: "A".into(),
            from: "+91 98".into(),
            to: "080".into(),
            custom_parameters: Default::default(),
            sample_rate: 8000,
        };
        let call = CallStart {
            call_log_id: &id,
            start: &start,
            url_parameters: &[],
        };
        let tail = "callLogId=order-42&CallSid=CA1&from=%2B91%2098&to=080";
        for (base, joined) in [
            ("ws://h/bot", format!("ws://h/bot?{tail}")),
            ("ws://h/bot?team=a", format!("ws://h/bot?team=a&{tail}")),
            ("ws://h/bot?", format!("ws://h/bot?{tail}")),
        ] {
            assert_eq!(url_for(&config(base), &call), joined);
        }
    }
}
