//! RFC 6455 frames as plain values: a client's frame head read from bytes, a server's frame
//! written around a payload already in a buffer, and the unmasking. Knows no sockets.

/// What a frame carries (RFC 6455 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Opcode> {
        Some(match bits {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xa,
        }
    }

    pub fn is_control(self) -> bool {
        matches!(self, Opcode::Close | Opcode::Ping | Opcode::Pong)
    }
}

/// A client's frame head: the frame's payload follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub fin: bool,
    pub opcode: Opcode,
    pub mask: [u8; 4],
    /// Bytes of the head itself (2 to 14).
    pub head_len: usize,
    pub payload_len: u64,
}

/// A client broke the protocol: the socket closes with 1002. The text is for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtocolError(pub &'static str);

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// The largest control frame's payload (RFC 6455 §5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// Reads a client's frame head from the start of `bytes`: `Ok(None)` until all of it is there.
/// Refuses what a server must (§5.1–5.5): reserved bits (no extension is negotiated), a
/// reserved opcode, an unmasked frame, a control frame that is fragmented or too long.
pub fn read_head(bytes: &[u8]) -> Result<Option<Head>, ProtocolError> {
    let [first, second, ..] = *bytes else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(ProtocolError("reserved bits are set"));
    }
    let opcode = Opcode::from_bits(first & 0x0f).ok_or(ProtocolError("reserved opcode"))?;
    if second & 0x80 == 0 {
        return Err(ProtocolError("unmasked frame from a client"));
    }
    let (payload_len, len_bytes) = match second & 0x7f {
        126 => match bytes.get(2..4) {
            Some(b) => (u16::from_be_bytes([b[0], b[1]]) as u64, 2),
            None => return Ok(None),
        },
        127 => match bytes.get(2..10) {
            Some(b) => (u64::from_be_bytes(b.try_into().expect("8 bytes")), 8),
            None => return Ok(None),
        },
        n => (n as u64, 0),
    };
    let fin = first & 0x80 != 0;
    if opcode.is_control() && (!fin || payload_len > MAX_CONTROL_PAYLOAD) {
        return Err(ProtocolError(
            "a control frame fragmented or over 125 bytes",
        ));
    }
    let mask_at = 2 + len_bytes;
    let Some(mask) = bytes.get(mask_at..mask_at + 4) else {
        return Ok(None);
    };
    Ok(Some(Head {
        fin,
        opcode,
        mask: mask.try_into().expect("4 bytes"),
        head_len: mask_at + 4,
        payload_len,
    }))
}

/// Bytes unmasked per step of [`unmask_into`]: a multiple of 4, so that each step starts the
/// mask over; wide enough for the compiler to vectorize the step.
const UNMASK_STEP: usize = 64;

/// Unmasks (or masks) `payload`, which starts at the frame's first payload byte, into `out`
/// (as long as `payload`): one pass, a step the compiler vectorizes, no copy before or after.
/// Where the CPU has AVX2 the same code is compiled for it: 32 bytes an instruction, not 16.
pub fn unmask_into(payload: &[u8], mask: [u8; 4], out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, just checked.
        return unsafe { unmask_avx2(payload, mask, out) };
    }
    unmask_steps(payload, mask, out);
}

/// [`unmask_steps`] compiled for AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn unmask_avx2(payload: &[u8], mask: [u8; 4], out: &mut [u8]) {
    unmask_steps(payload, mask, out);
}

#[inline(always)]
fn unmask_steps(payload: &[u8], mask: [u8; 4], out: &mut [u8]) {
    let mut wide = [0u8; UNMASK_STEP];
    for w in wide.chunks_exact_mut(4) {
        w.copy_from_slice(&mask);
    }
    let mut steps = out.chunks_exact_mut(UNMASK_STEP);
    let mut from = payload.chunks_exact(UNMASK_STEP);
    for (o, p) in (&mut steps).zip(&mut from) {
        let o: &mut [u8; UNMASK_STEP] = o.try_into().expect("a whole step");
        let p: &[u8; UNMASK_STEP] = p.try_into().expect("a whole step");
        for i in 0..UNMASK_STEP {
            o[i] = p[i] ^ wide[i];
        }
    }
    // The rest starts at a multiple of 4, so the mask starts over.
    let rest = steps.into_remainder().iter_mut().zip(from.remainder());
    for (i, (o, p)) in rest.enumerate() {
        *o = p ^ wide[i];
    }
}

/// Room a server frame's head takes before its payload while the payload is written: the head
/// of any payload up to 64 KiB. [`end_frame`] closes the room up for a shorter head and widens
/// it for a longer one.
pub const HEAD_ROOM: usize = 4;

/// Starts a server frame at the end of `out`: the head's room, then the payload is appended by
/// the caller. Answers where the frame starts, for [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0; HEAD_ROOM]);
    start
}

/// Writes the head of the final, unmasked frame that starts at `start` (see [`begin_frame`]),
/// whose payload is everything after its head room. Heads are as short as the length allows
/// (§5.2: the minimal number of bytes).
pub fn end_frame(out: &mut Vec<u8>, start: usize, opcode: Opcode) {
    let payload_len = out.len() - start - HEAD_ROOM;
    let first = 0x80 | opcode.bits();
    if payload_len < 126 {
        out.drain(start + 2..start + HEAD_ROOM);
        out[start] = first;
        out[start + 1] = payload_len as u8;
    } else if payload_len <= u16::MAX as usize {
        out[start] = first;
        out[start + 1] = 126;
        out[start + 2..start + 4].copy_from_slice(&(payload_len as u16).to_be_bytes());
    } else {
        out.splice(start + HEAD_ROOM..start + HEAD_ROOM, [0; 6]);
        out[start] = first;
        out[start + 1] = 127;
        out[start + 2..start + 10].copy_from_slice(&(payload_len as u64).to_be_bytes());
    }
}

/// A client's frame as RFC 6455 writes it, masked with `mask` (for the tests).
#[cfg(test)]
pub(crate) fn client(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend((n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend((n as u64).to_be_bytes());
        }
    }
    out.extend(mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_only_once_all_of_it_is_there_in_each_length_form() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = client(0x81, &vec![b'a'; len], [1, 2, 3, 4]);
            let head_len = frame.len() - len;
            for cut in 0..head_len {
                assert_eq!(
                    read_head(&frame[..cut]),
                    Ok(None),
                    "{len} bytes cut at {cut}"
                );
            }
            let head = read_head(&frame).unwrap().unwrap();
            assert_eq!((head.head_len, head.payload_len), (head_len, len as u64));
            assert!(head.fin);
            assert_eq!((head.opcode, head.mask), (Opcode::Text, [1, 2, 3, 4]));
        }
    }

    #[test]
    fn what_a_server_must_refuse_is_refused() {
        let refused = |first: u8, second: u8| read_head(&[first, second, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(refused(0xc1, 0x80).0, "reserved bits are set");
        assert_eq!(refused(0x83, 0x80).0, "reserved opcode");
        assert_eq!(refused(0x81, 0x00).0, "unmasked frame from a client");
        assert_eq!(
            refused(0x09, 0x80).0,
            "a control frame fragmented or over 125 bytes"
        );
        let long_ping = read_head(&[0x89, 0x80 | 126, 0, 126, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(long_ping.0, "a control frame fragmented or over 125 bytes");
        assert!(read_head(&[0x89, 0x80 | 125, 0, 0, 0, 0])
            .unwrap()
            .is_some());
    }

    #[test]
    fn unmasking_gives_the_payload_back_at_every_length() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in (0..200).chain([2136, 4268]) {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let frame = client(0x82, &payload, mask);
            let mut body = vec![0; len];
            unmask_into(&frame[frame.len() - len..], mask, &mut body);
            assert_eq!(body, payload);
        }
    }

    #[test]
    fn a_server_frame_has_the_shortest_head_its_length_allows() {
        for (len, head) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = b"before".to_vec();
            let start = begin_frame(&mut out);
            out.extend(std::iter::repeat_n(b'x', len));
            end_frame(&mut out, start, Opcode::Text);
            assert_eq!(out.len(), 6 + head + len, "{len}");
            assert_eq!(&out[..6], b"before");
            assert_eq!(out[6], 0x81);
            let read_back = match out[7] {
                126 => u16::from_be_bytes([out[8], out[9]]) as usize,
                127 => u64::from_be_bytes(out[8..16].try_into().unwrap()) as usize,
                n => n as usize,
            };
            assert_eq!(read_back, len);
            assert!(out[6 + head..].iter().all(|b| *b == b'x'));
        }
    }
}
