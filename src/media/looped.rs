//! A media socket on an event loop (`media::engine`): reads and writes that never wait, and
//! the session's requests to wait (its read timeout, a hold on a caller ahead of real time)
//! written down for the loop instead of slept.
//!
//! The loop is edge-triggered, so the socket remembers whether it may have bytes: readiness
//! sets `readable`, and a read that comes back short or with `WouldBlock` clears it. While it
//! is clear a read answers `WouldBlock` without a system call: one `recv` per caller frame,
//! not a `recv` and an `EAGAIN` one (a short read drains an edge-triggered socket: bytes that
//! arrive after it raise a new edge).
//!
//! Owns: the socket and those flags. Must not parse anything.

use std::io::{self, ErrorKind, Read, Write};
use std::time::Duration;

pub struct LoopSocket {
    stream: mio::net::TcpStream,
    /// The socket may have bytes to read.
    pub readable: bool,
    /// A read this turn found nothing: the session is waiting.
    pub waited: bool,
    /// The last read found nothing and nothing has arrived since, so the WebSocket holds no
    /// whole frame (it reads only when it has none): asking it again would only be told
    /// `WouldBlock` by the kernel.
    pub starved: bool,
    /// How long the session asked to wait for bytes before its next turn.
    pub wait: Option<Duration>,
    /// How long the session asked not to be read (a caller ahead of real time).
    pub hold: Option<Duration>,
    /// A write found the socket full: the rest waits in the WebSocket's output until the socket
    /// drains.
    pub write_blocked: bool,
}

impl LoopSocket {
    /// Takes a may socket off may's poller (its drop deregisters it) and keeps a duplicate of
    /// its descriptor, non-blocking, for a loop's poller.
    pub fn from_may(socket: may::net::TcpStream) -> io::Result<LoopSocket> {
        let std = socket.inner().try_clone()?;
        drop(socket);
        LoopSocket::from_std(std)
    }

    /// A connected socket, made non-blocking.
    pub fn from_std(std: std::net::TcpStream) -> io::Result<LoopSocket> {
        std.set_nonblocking(true)?;
        std.set_nodelay(true)?;
        Ok(LoopSocket {
            stream: mio::net::TcpStream::from_std(std),
            readable: true,
            waited: false,
            starved: false,
            wait: None,
            hold: None,
            write_blocked: false,
        })
    }

    /// The session's turn ended waiting for bytes (its read found none, or it skipped a read
    /// that could find none).
    pub fn waiting(&self) -> bool {
        self.waited || (self.starved && !self.readable)
    }

    /// The session settled after a short read ([`MediaIo::drained`](super::socket::MediaIo)):
    /// it waits, and reads nothing until readiness.
    pub fn starve(&mut self) {
        self.waited = true;
        self.starved = !self.readable;
    }

    /// Readiness said the socket has bytes.
    pub fn became_readable(&mut self) {
        self.readable = true;
        self.starved = false;
    }

    pub fn stream_mut(&mut self) -> &mut mio::net::TcpStream {
        &mut self.stream
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

impl Read for LoopSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable {
            self.waited = true;
            self.starved = true;
            return Err(ErrorKind::WouldBlock.into());
        }
        loop {
            return match self.stream.read(buf) {
                Ok(n) => {
                    if n < buf.len() {
                        self.readable = false;
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == ErrorKind::WouldBlock {
                        self.readable = false;
                        self.waited = true;
                        self.starved = true;
                    }
                    Err(e)
                }
            };
        }
    }
}

impl Write for LoopSocket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            return match self.stream.write(buf) {
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == ErrorKind::WouldBlock {
                        self.write_blocked = true;
                    }
                    Err(e)
                }
                ok => ok,
            };
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
