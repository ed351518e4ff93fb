//! The server's end of one WebSocket, at the edge between [`frame`](super::frame) and a socket:
//! frames read from a buffer allocated once (never zero-filled again, however many reads),
//! messages unmasked into the caller's buffer, pings answered, the closing handshake, and
//! frames written straight into the socket's output buffer.

use super::frame::{self, Opcode, ProtocolError};
use std::io::{self, ErrorKind, Read, Write};

/// The read buffer's first size: a 100 ms frame at 8 kHz (about 2.3 KB) in one read. A larger
/// frame grows it once, to that frame's size.
pub const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What one read gave. A message's bytes are in the buffer the caller lent.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'m> {
    /// A text message's bytes, not yet checked for UTF-8: RFC 6455 asks the receiver to fail a
    /// text message that is not (1007), and the reader of the text knows when its own reading
    /// has checked enough (see `media::session`'s media frames). [`text`] checks it all.
    Text(&'m [u8]),
    Binary,
    /// Answered with a pong already.
    Ping,
    Pong,
    /// The peer's close; ours went back (or had gone before it).
    Close,
}

/// Why a read or a write did not happen.
#[derive(Debug)]
pub enum Error {
    /// Nothing more until the socket is readable (or writable) again.
    WouldBlock,
    /// The closing handshake is over, or the peer went away without one (end of stream).
    Closed,
    /// A message over the limit: the socket closes with 1009.
    TooLarge,
    /// The peer broke RFC 6455: 1002.
    Protocol(ProtocolError),
    /// A text message that is not UTF-8 (see [`text`]): 1007.
    InvalidUtf8,
    /// More unwritten output than the limit: the peer stopped reading.
    WriteBufferFull,
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::WouldBlock => f.write_str("the socket would block"),
            Error::Closed => f.write_str("the WebSocket is closed"),
            Error::TooLarge => f.write_str("a message over the size limit"),
            Error::Protocol(e) => write!(f, "WebSocket protocol error: {e}"),
            Error::InvalidUtf8 => f.write_str("a text message that is not UTF-8"),
            Error::WriteBufferFull => f.write_str("the peer is not reading what we send"),
            Error::Io(e) => e.fmt(f),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        match e.kind() {
            ErrorKind::WouldBlock => Error::WouldBlock,
            _ => Error::Io(e),
        }
    }
}

/// Where the closing handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    Open,
    /// Ours went; the peer's has not come.
    Sent,
    /// Both ways (or the peer's, answered): nothing more is read or sent.
    Done,
}

/// A message that came in fragments: which kind, while its fragments gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Assembly {
    None,
    Text,
    Binary,
}

/// The server's end of one WebSocket over `S`.
pub struct ServerSocket<S> {
    io: S,
    /// Zero-filled once; the unread bytes are `input[read_at..filled]`.
    input: Vec<u8>,
    read_at: usize,
    filled: usize,
    assembly: Assembly,
    /// A fragmented message so far (empty, and never allocated, for a peer that does not
    /// fragment).
    fragments: Vec<u8>,
    /// Frames not yet taken by the socket, in order.
    output: Vec<u8>,
    closing: Closing,
    /// The largest message read, and the most output held for a peer that does not read.
    max_message: usize,
}

/// What a buffered frame turned out to be.
enum Kind {
    Text,
    Binary,
    Ping,
    Pong,
    Close,
}

impl<S: Read + Write> ServerSocket<S> {
    /// The server's end over `io`, after the handshake; `already_read` is what was read past
    /// the handshake's request (the first frames, when the client did not wait).
    pub fn new(io: S, already_read: Vec<u8>, max_message: usize) -> ServerSocket<S> {
        let mut input = already_read;
        let filled = input.len();
        input.resize(filled.max(READ_BUFFER_BYTES), 0);
        ServerSocket {
            io,
            input,
            read_at: 0,
            filled,
            assembly: Assembly::None,
            fragments: Vec::new(),
            output: Vec::new(),
            closing: Closing::Open,
            max_message,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.io
    }

    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }

    /// The next message, or a control frame, into `message` (cleared first). Reads the socket
    /// only when no whole frame is buffered.
    pub fn read<'m>(&mut self, message: &'m mut Vec<u8>) -> Result<Incoming<'m>, Error> {
        if self.closing == Closing::Done {
            return Err(Error::Closed);
        }
        let kind = loop {
            if let Some(kind) = self.next_buffered(message)? {
                break kind;
            }
            self.fill()?;
        };
        Ok(match kind {
            Kind::Text => Incoming::Text(message),
            Kind::Binary => Incoming::Binary,
            Kind::Ping => Incoming::Ping,
            Kind::Pong => Incoming::Pong,
            Kind::Close => Incoming::Close,
        })
    }

    /// One read from the socket into the buffer's free end: the unread bytes moved to the
    /// front first when the end is reached, the buffer grown only when they fill it.
    fn fill(&mut self) -> Result<(), Error> {
        if self.filled == self.input.len() {
            let grow = self.read_at == 0;
            self.make_room(self.input.len() + if grow { READ_BUFFER_BYTES } else { 0 });
        }
        match self.io.read(&mut self.input[self.filled..]) {
            Ok(0) => Err(Error::Closed),
            Ok(n) => {
                self.filled += n;
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Room for `frame_len` bytes from the first unread one: the unread bytes moved to the
    /// front, and the buffer grown (once per larger frame) if that is not enough.
    fn make_room(&mut self, frame_len: usize) {
        if self.read_at > 0 {
            self.input.copy_within(self.read_at..self.filled, 0);
            self.filled -= self.read_at;
            self.read_at = 0;
        }
        if frame_len > self.input.len() {
            self.input.resize(frame_len, 0);
        }
    }

    /// Whether the buffer holds a whole frame (or bytes that are no frame, for the next read to
    /// refuse): a read now has something to give without the socket.
    pub fn holds_a_frame(&self) -> bool {
        let unread = &self.input[self.read_at..self.filled];
        match frame::read_head(unread) {
            Ok(Some(head)) => unread.len() as u64 >= head.head_len as u64 + head.payload_len,
            Ok(None) => false,
            Err(_) => true,
        }
    }

    /// The next whole frame in the buffer, if there is one: a message (whole, or the last of
    /// its fragments) lands in `message`; a control frame is answered here.
    fn next_buffered(&mut self, message: &mut Vec<u8>) -> Result<Option<Kind>, Error> {
        loop {
            if self.read_at == self.filled {
                (self.read_at, self.filled) = (0, 0);
            }
            let unread = &self.input[self.read_at..self.filled];
            let Some(head) = frame::read_head(unread).map_err(Error::Protocol)? else {
                return Ok(None);
            };
            if head.payload_len > self.max_message as u64 {
                return Err(Error::TooLarge);
            }
            let frame_len = head.head_len + head.payload_len as usize;
            if unread.len() < frame_len {
                if self.input.len() - self.read_at < frame_len {
                    self.make_room(frame_len);
                }
                return Ok(None);
            }
            let at = self.read_at + head.head_len;
            self.read_at += frame_len;
            let kind = match head.opcode {
                Opcode::Ping => {
                    let mut pong = [0u8; frame::MAX_CONTROL_PAYLOAD as usize];
                    let masked = &self.input[at..self.read_at];
                    let n = masked.len();
                    frame::unmask_into(masked, head.mask, &mut pong[..n]);
                    self.answer(Opcode::Pong, &pong[..n])?;
                    Kind::Ping
                }
                Opcode::Pong => Kind::Pong,
                Opcode::Close => {
                    self.on_close(frame_len - head.head_len, head.mask)?;
                    Kind::Close
                }
                _ => match self.data_frame(&head, at, message)? {
                    Some(kind) => kind,
                    None => continue,
                },
            };
            return Ok(Some(kind));
        }
    }

    /// A data frame whose payload is `input[at..read_at]`: a whole message into `message`,
    /// or a fragment kept (`None`) until the last one, which makes the message.
    fn data_frame(
        &mut self,
        head: &frame::Head,
        at: usize,
        message: &mut Vec<u8>,
    ) -> Result<Option<Kind>, Error> {
        let masked = &self.input[at..self.read_at];
        let kind_of = |assembly| match assembly {
            Assembly::Text => Kind::Text,
            _ => Kind::Binary,
        };
        match (head.opcode, self.assembly) {
            (Opcode::Continuation, Assembly::None) => Err(Error::Protocol(ProtocolError(
                "a continuation frame with no message to continue",
            ))),
            (Opcode::Continuation, assembly) => {
                if self.fragments.len() + masked.len() > self.max_message {
                    return Err(Error::TooLarge);
                }
                let had = self.fragments.len();
                self.fragments.resize(had + masked.len(), 0);
                frame::unmask_into(masked, head.mask, &mut self.fragments[had..]);
                if !head.fin {
                    return Ok(None);
                }
                self.assembly = Assembly::None;
                message.clear();
                message.extend_from_slice(&self.fragments);
                Ok(Some(kind_of(assembly)))
            }
            (_, Assembly::None) => {
                let assembly = match head.opcode {
                    Opcode::Text => Assembly::Text,
                    _ => Assembly::Binary,
                };
                if head.fin {
                    unmasked_into(masked, head.mask, message);
                    return Ok(Some(kind_of(assembly)));
                }
                self.assembly = assembly;
                unmasked_into(masked, head.mask, &mut self.fragments);
                Ok(None)
            }
            _ => Err(Error::Protocol(ProtocolError(
                "a new message before the last one's final fragment",
            ))),
        }
    }

    /// The peer's close, whose payload (`len` bytes, masked with `mask`) ends where the
    /// buffer's unread part starts: answered with its code (§5.5.1) unless ours went first.
    fn on_close(&mut self, len: usize, mask: [u8; 4]) -> Result<(), Error> {
        if len == 1 {
            return Err(Error::Protocol(ProtocolError("a close frame of one byte")));
        }
        let code = match len {
            0 => None,
            _ => {
                let at = self.read_at - len;
                Some([self.input[at] ^ mask[0], self.input[at + 1] ^ mask[1]])
            }
        };
        if self.closing == Closing::Open {
            self.answer(Opcode::Close, code.as_ref().map_or(&[][..], |c| &c[..]))?;
        }
        self.closing = Closing::Done;
        Ok(())
    }

    /// A pong or the close's answer, sent whatever else waits to be (a peer that does not
    /// read gets it after the rest).
    fn answer(&mut self, opcode: Opcode, payload: &[u8]) -> Result<(), Error> {
        if self.closing != Closing::Open {
            return Ok(());
        }
        let start = frame::begin_frame(&mut self.output);
        self.output.extend_from_slice(payload);
        frame::end_frame(&mut self.output, start, opcode);
        self.write_out()
    }

    /// A text message whose payload `encode` appends straight to the output buffer (it must
    /// append UTF-8: what we send is ours to keep strict). Written at once, as far as the socket
    /// takes it.
    pub fn send_text(&mut self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        self.send(Opcode::Text, encode)
    }

    pub fn ping(&mut self) -> Result<(), Error> {
        self.send(Opcode::Ping, |_| {})
    }

    /// Starts the closing handshake with `code` and `reason` (cut to fit a control frame).
    /// Reading goes on until the peer's close comes.
    pub fn close(&mut self, code: u16, reason: &str) -> Result<(), Error> {
        let mut cut = reason.len().min(frame::MAX_CONTROL_PAYLOAD as usize - 2);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        self.send(Opcode::Close, |out| {
            out.extend_from_slice(&code.to_be_bytes());
            out.extend_from_slice(&reason.as_bytes()[..cut]);
        })?;
        self.closing = Closing::Sent;
        Ok(())
    }

    fn send(&mut self, opcode: Opcode, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(), Error> {
        if self.closing != Closing::Open {
            return Err(Error::Closed);
        }
        if self.output.len() > self.max_message {
            return Err(Error::WriteBufferFull);
        }
        let start = frame::begin_frame(&mut self.output);
        encode(&mut self.output);
        frame::end_frame(&mut self.output, start, opcode);
        self.write_out()
    }

    /// Writes what waits, until the socket would block; what it took leaves the buffer, so a
    /// peer that keeps a little behind never makes it grow.
    fn write_out(&mut self) -> Result<(), Error> {
        let mut written = 0;
        let outcome = loop {
            if written == self.output.len() {
                break Ok(());
            }
            match self.io.write(&self.output[written..]) {
                Ok(0) => break Err(Error::Io(ErrorKind::WriteZero.into())),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(Error::Io(e)),
            }
        };
        self.output.drain(..written);
        outcome
    }

    /// Writes what waits and flushes the socket; a socket that would block keeps the rest.
    pub fn flush(&mut self) -> Result<(), Error> {
        self.write_out()?;
        match self.io.flush() {
            Err(e) if e.kind() != ErrorKind::WouldBlock => Err(Error::Io(e)),
            _ => Ok(()),
        }
    }

    /// Whether output waits for the socket.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }
}

/// Replaces what `into` holds with `masked`, unmasked. `into` keeps the length it had as far
/// as it can (a buffer lent for one message after another): no zero-fill of room it already
/// had.
fn unmasked_into(masked: &[u8], mask: [u8; 4], into: &mut Vec<u8>) {
    into.resize(masked.len(), 0);
    frame::unmask_into(masked, mask, into);
}

/// A text message as `str`, or [`Error::InvalidUtf8`].
pub fn text(message: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(message).map_err(|_| Error::InvalidUtf8)
}

#[cfg(test)]
mod tests;
