//! Exotel's side of a media socket in memory: a [`Wire`] that a [`Session`] reads Exotel's
//! frames from and writes its own to, and the masked client frames Exotel would send. For the
//! allocation test and the per-chunk bench, which drive the real session without a network.
//! Owns no timing: the caller advances the session's clock itself.
//!
//! [`Session`]: crate::media::session::Session

use crate::media::session::MediaIo;
use base64::Engine as _;
use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::rc::Rc;
use std::time::Duration;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;

/// The bytes in flight both ways.
#[derive(Default)]
pub struct Wire {
    /// What Exotel sent and the session has not read past `read_pos`.
    pub inbound: Vec<u8>,
    pub read_pos: usize,
    /// What the session wrote.
    pub outbound: Vec<u8>,
}

/// The session's end of the wire: reads `inbound` (`WouldBlock` when it is all read), appends
/// to `outbound`.
#[derive(Clone, Default)]
pub struct Pipe(pub Rc<RefCell<Wire>>);

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut w = self.0.borrow_mut();
        let left = w.inbound.len() - w.read_pos;
        if left == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        let n = left.min(buf.len());
        let at = w.read_pos;
        buf[..n].copy_from_slice(&w.inbound[at..at + n]);
        w.read_pos += n;
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().outbound.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl MediaIo for Pipe {
    fn set_read_timeout(&mut self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    /// The caller of the session owns the clock here: nothing to wait for.
    fn pause(&mut self, _: Duration) {}
}

/// A text frame as a WebSocket client (Exotel) sends it: masked.
pub fn client_frame(text: String) -> Vec<u8> {
    let mut frame = Frame::message(text.into_bytes(), OpCode::Data(Data::Text), true);
    frame.header_mut().mask = Some([7, 1, 9, 3]);
    let mut out = Vec::new();
    let _ = frame.format(&mut out);
    out
}

/// Exotel's `start` for `stream_sid` at `sample_rate`.
pub fn start_frame(stream_sid: &str, sample_rate: u32) -> Vec<u8> {
    client_frame(format!(
        r#"{{"event":"start","sequence_number":"1","stream_sid":"{stream_sid}","start":{{"stream_sid":"{stream_sid}","call_sid":"CA1","account_sid":"AC1","from":"+919876543210","to":"08047112233","custom_parameters":{{}},"media_format":{{"encoding":"base64","sample_rate":"{sample_rate}","bit_rate":"128kbps"}}}}}}"#
    ))
}

/// Exotel's `media` number `k` of `stream_sid`: `ms` of a voice-like signal at 8 kHz.
pub fn media_frame(stream_sid: &str, k: usize, ms: u32) -> Vec<u8> {
    let samples = crate::media::audio::speech_like(8000, ms, k as u64);
    let mut pcm = Vec::new();
    crate::media::audio::samples_to_pcm(&samples, &mut pcm);
    let payload = base64::engine::general_purpose::STANDARD.encode(&pcm);
    client_frame(format!(
        r#"{{"event":"media","sequence_number":"{}","stream_sid":"{stream_sid}","media":{{"chunk":"{k}","timestamp":"{}","payload":"{payload}"}}}}"#,
        k + 2,
        k * ms as usize
    ))
}
