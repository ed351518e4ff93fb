//! The socket a media session owns: plain, TLS, pumped (a coroutine's, when a relayed bot's
//! socket must wake it too) or looped (an event loop's), with reads and writes that can time
//! out without losing state. Knows no protocol.

use super::looped::LoopSocket;
use super::pump::{Pumped, Writes};
use crate::exotel::stream::MAX_FRAME_BYTES;
use crate::http::Conn;
use crate::tls::TlsStream;
use crate::websocket::ServerSocket;
use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

/// The socket the session owns: reads and writes that can time out without losing state.
pub trait MediaIo: Read + Write {
    fn set_read_timeout(&mut self, timeout: Option<Duration>) -> io::Result<()>;

    /// Waits `d` without reading (a caller too far ahead of real time; see
    /// [`MAX_INBOUND_LEAD`](crate::config::MAX_INBOUND_LEAD)).
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

    /// Whether the last read took everything the socket had, so that a further read would find
    /// nothing until the socket says otherwise (an event loop's, after a short read).
    fn drained(&self) -> bool {
        false
    }

    /// The session waits without a read that would find nothing: [`MediaIo::starved`] from now
    /// until bytes arrive. Only for a [`MediaIo::drained`] socket.
    fn starve(&mut self) {}
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

    fn drained(&self) -> bool {
        matches!(self, MediaStream::Looped(l) if !l.readable)
    }

    fn starve(&mut self) {
        if let MediaStream::Looped(l) = self {
            l.starve();
        }
    }

    /// Parks the coroutine (a thread sleeps, outside one); on a loop, asks the loop to hold.
    fn pause(&mut self, d: Duration) {
        match self {
            MediaStream::Looped(l) => l.hold = Some(d),
            _ => may::coroutine::sleep(d),
        }
    }
}

/// The caller's WebSocket over `io` after the handshake (`already_read`: what was read past its
/// request), with Exotel's frame limit for messages in and output held back.
pub fn media_socket<S: Read + Write>(io: S, already_read: Vec<u8>) -> ServerSocket<S> {
    ServerSocket::new(io, already_read, MAX_FRAME_BYTES)
}
