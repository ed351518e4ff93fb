use super::*;
use std::collections::VecDeque;

/// A socket in memory: reads take what `inbound` holds (at most `chunk` bytes at a time) and
/// would block when it is empty; writes take at most `room` bytes, then would block.
#[derive(Default)]
struct Wire {
    inbound: VecDeque<u8>,
    chunk: usize,
    eof: bool,
    written: Vec<u8>,
    room: usize,
}

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.inbound.is_empty() {
            return if self.eof {
                Ok(0)
            } else {
                Err(ErrorKind::WouldBlock.into())
            };
        }
        let n = buf.len().min(self.inbound.len()).min(self.chunk.max(1));
        for (slot, byte) in buf.iter_mut().zip(self.inbound.drain(..n)) {
            *slot = byte;
        }
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.room);
        self.room -= n;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn wire(chunk: usize) -> Wire {
    Wire {
        chunk,
        room: usize::MAX,
        ..Wire::default()
    }
}

/// A client's frame: `first` byte (FIN and opcode), masked `payload`.
fn client(first: u8, payload: &[u8]) -> Vec<u8> {
    frame::client(first, payload, [0xa1, 0x02, 0xf3, 0x44])
}

fn socket(bytes: &[u8], chunk: usize, max: usize) -> ServerSocket<Wire> {
    let mut w = wire(chunk);
    w.inbound.extend(bytes);
    ServerSocket::new(w, Vec::new(), max)
}

/// Reads until something other than `WouldBlock`, as a loop woken by readiness would.
fn next(s: &mut ServerSocket<Wire>, message: &mut Vec<u8>) -> Result<String, Error> {
    loop {
        match s.read(message) {
            Err(Error::WouldBlock) if !s.get_ref().inbound.is_empty() => continue,
            Ok(Incoming::Text(t)) => return Ok(format!("text {}", text(t)?)),
            Ok(other) => return Ok(format!("{other:?}")),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn a_message_that_arrives_a_byte_at_a_time_is_read_whole_and_unmasked() {
    let text = "x".repeat(3000);
    let mut s = socket(&client(0x81, text.as_bytes()), 1, 1 << 20);
    let mut message = Vec::new();
    assert_eq!(next(&mut s, &mut message).unwrap(), format!("text {text}"));
    assert!(matches!(s.read(&mut message), Err(Error::WouldBlock)));
}

#[test]
fn the_read_buffer_grows_once_for_a_larger_frame_and_not_per_frame() {
    let big = "y".repeat(3 * READ_BUFFER_BYTES);
    let mut bytes = Vec::new();
    for _ in 0..5 {
        bytes.extend(client(0x81, big.as_bytes()));
    }
    let mut s = socket(&bytes, 1500, 1 << 20);
    let mut message = Vec::new();
    let mut sizes = Vec::new();
    for _ in 0..5 {
        assert_eq!(next(&mut s, &mut message).unwrap(), format!("text {big}"));
        sizes.push(s.input.len());
    }
    assert!(sizes.iter().all(|n| *n == sizes[0]), "{sizes:?}");
    assert!(sizes[0] < 4 * READ_BUFFER_BYTES, "{sizes:?}");
}

#[test]
fn fragments_make_one_message_and_a_ping_between_them_is_answered() {
    let mut bytes = client(0x01, b"hel");
    bytes.extend(client(0x89, b"are you there"));
    bytes.extend(client(0x00, b"lo, "));
    bytes.extend(client(0x80, b"world"));
    let mut s = socket(&bytes, 7, 1 << 20);
    let mut message = Vec::new();
    assert_eq!(next(&mut s, &mut message).unwrap(), "Ping");
    assert_eq!(
        s.get_ref().written,
        [&[0x8a, 13][..], b"are you there"].concat()
    );
    assert_eq!(next(&mut s, &mut message).unwrap(), "text hello, world");
}

#[test]
fn a_close_is_answered_with_its_code_and_nothing_more_is_read_or_sent() {
    let mut bytes = client(0x88, &[0x03, 0xe8, b'b', b'y', b'e']);
    bytes.extend(client(0x81, b"after the close"));
    let mut s = socket(&bytes, 64, 1 << 20);
    let mut message = Vec::new();
    assert_eq!(next(&mut s, &mut message).unwrap(), "Close");
    assert_eq!(s.get_ref().written, [0x88, 2, 0x03, 0xe8]);
    assert!(matches!(s.read(&mut message), Err(Error::Closed)));
    assert!(matches!(s.send_text(|o| o.push(b'x')), Err(Error::Closed)));
}

#[test]
fn our_close_first_then_the_peers_ends_the_handshake_without_a_second_close() {
    let mut s = socket(&client(0x81, b"late"), 64, 1 << 20);
    s.close(1000, "bot-hung-up").unwrap();
    assert_eq!(
        s.get_ref().written,
        [&[0x88, 13, 0x03, 0xe8][..], b"bot-hung-up"].concat()
    );
    let mut message = Vec::new();
    assert_eq!(next(&mut s, &mut message).unwrap(), "text late");
    s.get_mut().inbound.extend(client(0x88, &[]));
    assert_eq!(next(&mut s, &mut message).unwrap(), "Close");
    assert_eq!(s.get_ref().written.len(), 15, "no second close");
    assert!(matches!(s.read(&mut message), Err(Error::Closed)));
}

#[test]
fn each_broken_frame_is_named() {
    let mut message = Vec::new();
    let mut read = |bytes: Vec<u8>, max: usize| {
        let mut s = socket(&bytes, 64, max);
        next(&mut s, &mut message).unwrap_err().to_string()
    };
    assert_eq!(
        read(client(0x81, &[0xff, 0xfe]), 100),
        "a text message that is not UTF-8"
    );
    assert_eq!(
        read(client(0x81, &[b'a'; 101]), 100),
        "a message over the size limit"
    );
    let mut fragments = client(0x01, &[b'a'; 60]);
    fragments.extend(client(0x80, &[b'a'; 60]));
    assert_eq!(read(fragments, 100), "a message over the size limit");
    assert_eq!(
        read(client(0x80, b"x"), 100),
        "WebSocket protocol error: a continuation frame with no message to continue"
    );
    let mut two_starts = client(0x01, b"x");
    two_starts.extend(client(0x81, b"y"));
    assert_eq!(
        read(two_starts, 100),
        "WebSocket protocol error: a new message before the last one's final fragment"
    );
    assert_eq!(
        read(client(0x88, &[3]), 100),
        "WebSocket protocol error: a close frame of one byte"
    );
    let mut gone = socket(&[], 64, 100);
    gone.get_mut().eof = true;
    assert!(matches!(gone.read(&mut message), Err(Error::Closed)));
}

#[test]
fn output_a_full_socket_refused_is_kept_in_order_and_written_by_flush() {
    let mut s = socket(&[], 64, 1 << 20);
    s.get_mut().room = 3;
    s.send_text(|o| o.extend_from_slice(b"first")).unwrap();
    s.send_text(|o| o.extend_from_slice(b"second")).unwrap();
    assert!(s.has_output());
    s.get_mut().room = usize::MAX;
    s.flush().unwrap();
    assert!(!s.has_output());
    let expected = [&[0x81, 5][..], b"first", &[0x81, 6], b"second"].concat();
    assert_eq!(s.get_ref().written, expected);
}

#[test]
fn a_peer_that_never_reads_fills_the_output_to_its_limit_and_no_further() {
    let mut s = socket(&[], 64, 1000);
    s.get_mut().room = 0;
    let mut sent = 0;
    while s.send_text(|o| o.extend_from_slice(&[b'z'; 200])).is_ok() {
        sent += 1;
    }
    assert_eq!(sent, 5, "1,000 bytes of output waiting, then refused");
    assert!(matches!(s.ping(), Err(Error::WriteBufferFull)));
}

#[test]
fn bytes_read_past_the_handshake_are_the_first_frames() {
    let early = client(0x81, b"early");
    let mut s = ServerSocket::new(wire(64), early, 1 << 20);
    let mut message = Vec::new();
    assert_eq!(next(&mut s, &mut message).unwrap(), "text early");
}

#[test]
fn a_peer_that_keeps_one_frame_behind_never_makes_the_output_grow() {
    let mut s = socket(&[], 64, 1 << 20);
    s.get_mut().room = 0;
    for _ in 0..100 {
        s.send_text(|o| o.extend_from_slice(&[b'a'; 200])).unwrap();
        // The socket takes one frame's worth: the one before this.
        s.get_mut().room = 202;
    }
    assert!(s.output.len() <= 2 * 202, "{} bytes held", s.output.len());
    assert_eq!(s.get_ref().written.len(), 99 * 202);
}
