//! Incremental decoder for `Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1).
//! Bytes are fed as they arrive, so a body sent one byte at a time costs linear work.

/// Where the decoder is inside the chunked stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading hex digits of a chunk size.
    Size {
        digits: usize,
    },
    /// After the size: extensions until CR LF.
    Extension,
    SizeLf,
    Data {
        left: u64,
    },
    DataCr,
    DataLf,
    /// After the last (zero) chunk: trailer lines until an empty one. `empty` is true while the
    /// current line has no characters yet.
    Trailer {
        empty: bool,
    },
    TrailerLf {
        empty: bool,
    },
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The framing is malformed; the text says where.
    Malformed(&'static str),
    /// The decoded body would exceed the limit.
    TooLarge,
}

#[derive(Debug)]
pub struct Decoder {
    state: State,
    size: u64,
    max_body: usize,
}

impl Decoder {
    pub fn new(max_body: usize) -> Decoder {
        Decoder {
            state: State::Size { digits: 0 },
            size: 0,
            max_body,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes from `input` into `body`; returns how many input bytes were used (all of them,
    /// unless the body ended before the input did).
    pub fn feed(&mut self, input: &[u8], body: &mut Vec<u8>) -> Result<usize, Error> {
        let mut i = 0;
        while i < input.len() && self.state != State::Done {
            let b = input[i];
            self.state = match self.state {
                State::Size { digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        if digits >= 16 {
                            return Err(Error::Malformed("chunk size has too many digits"));
                        }
                        let v = (b as char).to_digit(16).unwrap_or(0) as u64;
                        self.size = self.size * 16 + v;
                        State::Size { digits: digits + 1 }
                    }
                    b';' | b' ' | b'\t' if digits > 0 => State::Extension,
                    b'\r' if digits > 0 => State::SizeLf,
                    _ => return Err(Error::Malformed("chunk size is not hexadecimal")),
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(Error::Malformed("bare LF after chunk size")),
                    _ => State::Extension,
                },
                State::SizeLf => {
                    if b != b'\n' {
                        return Err(Error::Malformed("chunk size line not ended by CRLF"));
                    }
                    let size = std::mem::take(&mut self.size);
                    if size == 0 {
                        State::Trailer { empty: true }
                    } else if body.len() as u64 + size > self.max_body as u64 {
                        return Err(Error::TooLarge);
                    } else {
                        State::Data { left: size }
                    }
                }
                State::Data { left } => {
                    let take = (left as usize).min(input.len() - i);
                    body.extend_from_slice(&input[i..i + take]);
                    i += take;
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataCr
                    } else {
                        State::Data { left }
                    };
                    continue;
                }
                State::DataCr if b == b'\r' => State::DataLf,
                State::DataLf if b == b'\n' => State::Size { digits: 0 },
                State::DataCr | State::DataLf => {
                    return Err(Error::Malformed("chunk data not followed by CRLF"))
                }
                State::Trailer { empty } => match b {
                    b'\r' => State::TrailerLf { empty },
                    _ => State::Trailer { empty: false },
                },
                State::TrailerLf { empty } => match (b, empty) {
                    (b'\n', true) => State::Done,
                    (b'\n', false) => State::Trailer { empty: true },
                    _ => return Err(Error::Malformed("trailer line not ended by CRLF")),
                },
                State::Done => State::Done,
            };
            i += 1;
        }
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8], max: usize) -> Result<(Vec<u8>, usize), Error> {
        let mut d = Decoder::new(max);
        let mut body = Vec::new();
        let used = d.feed(input, &mut body)?;
        assert!(d.is_done(), "not done");
        Ok((body, used))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let (body, used) = decode_all(
            b"4\r\nWiki\r\n5;x=y\r\npedia\r\n0\r\nX-T: 1\r\n\r\nNEXT",
            100,
        )
        .unwrap();
        assert_eq!(body, b"Wikipedia");
        assert_eq!(used, 36, "stops right after the empty trailer line");
    }

    #[test]
    fn byte_at_a_time_gives_the_same_body() {
        let input = b"a\r\n0123456789\r\n1\r\nZ\r\n0\r\n\r\n";
        let mut d = Decoder::new(100);
        let mut body = Vec::new();
        for b in input.iter() {
            assert_eq!(d.feed(std::slice::from_ref(b), &mut body).unwrap(), 1);
        }
        assert!(d.is_done());
        assert_eq!(body, b"0123456789Z");
    }

    #[test]
    fn rejects_bad_framing_and_oversize() {
        assert!(matches!(
            decode_all(b"zz\r\n", 10),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(decode_all(b"\r\n", 10), Err(Error::Malformed(_))));
        assert!(matches!(
            decode_all(b"2\r\nabX", 10),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            decode_all(b"11111111111111111\r\n", 10),
            Err(Error::Malformed(_))
        ));
        assert_eq!(decode_all(b"b\r\n", 10).unwrap_err(), Error::TooLarge);
        assert!(decode_all(b"a\r\n0123456789\r\n0\r\n\r\n", 10).is_ok());
    }
}
