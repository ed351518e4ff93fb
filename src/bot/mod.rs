//! The bot API: what a call's audio is handed to. A [`Bot`] is called by the call's media session
//! on the session's own coroutine, with the caller's audio, DTMF keys, marks and the end of the
//! call, and answers through an [`Outbox`]: audio to play, marks, `clear` (barge-in), hang-up.
//!
//! A bot must not block: it runs on a coroutine that also paces the call's audio. Work that
//! blocks belongs on a thread the bot hands it to.
//!
//! ```
//! use exotel_voicebot::bot::{Bot, CallStart, Outbox};
//!
//! /// Answers every key press with a short beep.
//! struct Beeper { beep: Vec<i16> }
//!
//! impl Bot for Beeper {
//!     fn on_start(&mut self, call: &CallStart<'_>, _out: &mut Outbox) {
//!         self.beep = exotel_voicebot::media::audio::tone(call.start.sample_rate, 880.0, 200, 8000);
//!     }
//!     fn on_audio(&mut self, _samples: &[i16], _out: &mut Outbox) {}
//!     fn on_dtmf(&mut self, _digit: char, out: &mut Outbox) {
//!         out.play(&self.beep);
//!     }
//! }
//! ```

pub mod echo;
pub mod hangup;
pub mod realtime;
pub mod relay;
pub mod twilio;

use crate::calls::CallLogId;
use crate::exotel::stream::StartEvent;
use std::collections::VecDeque;

/// What a bot is told when the stream starts.
#[derive(Debug)]
pub struct CallStart<'a> {
    pub call_log_id: &'a CallLogId,
    /// Exotel's `start` event: stream and call sids, numbers, custom parameters, sample rate.
    pub start: &'a StartEvent,
    /// Query parameters of the media URL other than our token and secret (Exotel's custom
    /// parameters may arrive only here; docs/exotel.md §6).
    pub url_parameters: &'a [(String, String)],
}

/// One call's bot. Every method runs on the call's coroutine and must return quickly.
pub trait Bot: Send {
    /// The stream started; `out` may already be given the first audio (a greeting).
    fn on_start(&mut self, call: &CallStart<'_>, out: &mut Outbox);
    /// A chunk of the caller's audio: 16-bit mono samples at the call's sample rate.
    fn on_audio(&mut self, samples: &[i16], out: &mut Outbox);
    /// The caller pressed a key (`0-9`, `*`, `#`, `A-D`).
    fn on_dtmf(&mut self, _digit: char, _out: &mut Outbox) {}
    /// Exotel has played everything queued before the mark of this name.
    fn on_mark(&mut self, _name: &str, _out: &mut Outbox) {}
    /// The call ended (`reason`: Exotel's stop reason, `socket-closed`, `bot-hung-up`, …).
    fn on_stop(&mut self, _reason: &str) {}
}

/// Makes a bot for each call.
pub trait BotFactory: Send + Sync + 'static {
    fn create(&self, call: &CallStart<'_>) -> Box<dyn Bot>;
}

impl<F> BotFactory for F
where
    F: Fn(&CallStart<'_>) -> Box<dyn Bot> + Send + Sync + 'static,
{
    fn create(&self, call: &CallStart<'_>) -> Box<dyn Bot> {
        self(call)
    }
}

/// Who said a transcript's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaker {
    Bot,
    Caller,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Speaker::Bot => "bot",
            Speaker::Caller => "caller",
        }
    }

    /// `bot` or `caller`; also the `assistant` and `user` of AI services' transcripts.
    pub fn parse(role: &str) -> Option<Speaker> {
        match role {
            "bot" | "assistant" => Some(Speaker::Bot),
            "caller" | "user" => Some(Speaker::Caller),
            _ => None,
        }
    }
}

/// The longest transcript turn kept, in bytes; a longer one is cut at a character boundary.
pub const MAX_TRANSCRIPT_TURN_BYTES: usize = 8 * 1024;

/// Bot audio queued for the caller beyond this many seconds is dropped and counted: a relayed
/// or translated bot cannot make the server hold unbounded audio.
pub const MAX_QUEUED_BOT_SECONDS: usize = 120;

/// What the bot wants sent. Audio is queued and paced out by the session in Exotel-sized
/// chunks; a mark goes out after the audio queued before it.
#[derive(Debug)]
pub struct Outbox {
    audio: VecDeque<i16>,
    /// Samples ever queued; a mark's position is this count when it was queued.
    queued_total: u64,
    marks: VecDeque<(u64, String)>,
    clear: bool,
    hang_up: bool,
    /// Hang up once the audio queued so far has played.
    end_after_audio: bool,
    /// Why the bot hands the caller to a person, once it has said so.
    handoff: Option<String>,
    /// Transcript turns not yet handed to the call log.
    transcript: Vec<(Speaker, String)>,
    /// What an AI service reported since the session last looked: its last error, and how
    /// many errors and rate-limit updates.
    service: ServiceNotes,
    /// Bot audio frames not queued because the queue was full ([`Outbox::play_within`]).
    dropped: u64,
    sample_rate: u32,
}

/// What an AI service reported about itself, for the call's row and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct ServiceNotes {
    pub last_error: Option<String>,
    pub errors: u64,
    pub rate_limits: u64,
}

impl Outbox {
    /// An outbox with room for `capacity_samples` before it grows.
    pub fn new(sample_rate: u32, capacity_samples: usize) -> Outbox {
        Outbox {
            audio: VecDeque::with_capacity(capacity_samples),
            queued_total: 0,
            marks: VecDeque::new(),
            clear: false,
            hang_up: false,
            end_after_audio: false,
            handoff: None,
            transcript: Vec::new(),
            service: ServiceNotes::default(),
            dropped: 0,
            sample_rate,
        }
    }

    /// The AI service reported an error (its code and message; never a key): kept as the
    /// call's `lastError` and counted.
    pub(crate) fn service_error(&mut self, error: String) {
        self.service.errors += 1;
        self.service.last_error = Some(error);
    }

    /// The AI service told the call its rate limits: counted.
    pub(crate) fn service_rate_limits(&mut self) {
        self.service.rate_limits += 1;
    }

    /// What the service reported since the last call.
    pub(crate) fn take_service_notes(&mut self) -> Option<ServiceNotes> {
        if self.service.errors == 0 && self.service.rate_limits == 0 {
            return None;
        }
        Some(std::mem::take(&mut self.service))
    }

    /// Words of the call for its transcript (`GET /calls/{callLogId}/transcript`), as the bot
    /// heard or said them; kept in order with the call.
    pub fn transcript(&mut self, speaker: Speaker, text: impl Into<String>) {
        let mut text = text.into();
        if text.len() > MAX_TRANSCRIPT_TURN_BYTES {
            let mut cut = MAX_TRANSCRIPT_TURN_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        self.transcript.push((speaker, text));
    }

    /// The transcript turns given since the last call, in order.
    pub(crate) fn take_transcript(&mut self) -> Option<Vec<(Speaker, String)>> {
        if self.transcript.is_empty() {
            None
        } else {
            Some(std::mem::take(&mut self.transcript))
        }
    }

    /// Queues audio: 16-bit mono samples at [`Outbox::sample_rate`].
    pub fn play(&mut self, samples: &[i16]) {
        self.audio.extend(samples);
        self.queued_total += samples.len() as u64;
    }

    /// Queues `samples` of silence.
    pub fn play_silence(&mut self, samples: usize) {
        self.audio.extend(std::iter::repeat_n(0, samples));
        self.queued_total += samples as u64;
    }

    /// Sends a mark once everything queued so far has been sent; Exotel echoes it when that
    /// audio has been played, and the bot's `on_mark` is called.
    pub fn mark(&mut self, name: impl Into<String>) {
        self.marks.push_back((self.queued_total, name.into()));
    }

    /// Barge-in: drops every queued sample and mark now, and tells Exotel to drop what it has
    /// queued (`clear`).
    pub fn clear(&mut self) {
        self.audio.clear();
        self.marks.clear();
        self.clear = true;
    }

    /// Ends the call: the session closes the socket, which is how a call is hung up from our
    /// side. Queued audio is not waited for: to let a goodbye play, mark it and hang up in
    /// `on_mark`.
    pub fn hang_up(&mut self) {
        self.hang_up = true;
    }

    /// Ends the call once the audio queued so far has played (a goodbye is heard whole).
    pub fn hang_up_after_audio(&mut self) {
        self.end_after_audio = true;
    }

    pub(crate) fn ends_after_audio(&self) -> bool {
        self.end_after_audio
    }

    /// Hands the caller to a person: the audio queued so far plays out, then the stream ends
    /// and the call is marked for handoff, so Exotel's flow goes on to its Passthru applet,
    /// which this server answers "hand off" (README: Hand off to a person). `reason` is kept in
    /// the call log.
    pub fn hand_off(&mut self, reason: impl Into<String>) {
        if self.handoff.is_none() {
            self.handoff = Some(reason.into());
        }
    }

    /// Why the bot handed the caller off, if it did.
    pub fn handoff(&self) -> Option<&str> {
        self.handoff.as_deref()
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Samples queued and not yet sent.
    pub fn queued_samples(&self) -> usize {
        self.audio.len()
    }

    /// Queues audio from a bot that may send faster than real time (a relayed or translated
    /// one) unless more than [`MAX_QUEUED_BOT_SECONDS`] would then wait: such audio is not
    /// queued but counted ([`Outbox::take_dropped`]), and the answer is false. A flooding bot costs its own call's
    /// audio, never the server's memory.
    pub(crate) fn play_within(&mut self, samples: &[i16]) -> bool {
        if self.audio.len() + samples.len() > MAX_QUEUED_BOT_SECONDS * self.sample_rate as usize {
            self.dropped += 1;
            return false;
        }
        self.play(samples);
        true
    }

    /// Bot audio frames [`Outbox::play_within`] did not queue since the last call.
    pub(crate) fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }

    pub(crate) fn wants_hang_up(&self) -> bool {
        self.hang_up
    }

    pub(crate) fn take_clear(&mut self) -> bool {
        std::mem::take(&mut self.clear)
    }

    /// Samples already taken out for sending.
    fn consumed(&self) -> u64 {
        self.queued_total - self.audio.len() as u64
    }

    /// The next mark whose audio has all been sent.
    pub(crate) fn pop_due_mark(&mut self) -> Option<String> {
        match self.marks.front() {
            Some((at, _)) if *at <= self.consumed() => self.marks.pop_front().map(|(_, n)| n),
            _ => None,
        }
    }

    /// Samples to send before the next mark is due, if one is queued.
    pub(crate) fn samples_until_mark(&self) -> Option<usize> {
        self.marks
            .front()
            .map(|(at, _)| at.saturating_sub(self.consumed()) as usize)
    }

    /// Moves up to `n` queued samples to the end of `into`.
    pub(crate) fn drain_into(&mut self, n: usize, into: &mut Vec<i16>) {
        let n = n.min(self.audio.len());
        // The ring's two halves copied as slices, not sample by sample through `Drain`.
        let (front, back) = self.audio.as_slices();
        let first = n.min(front.len());
        into.extend_from_slice(&front[..first]);
        into.extend_from_slice(&back[..n - first]);
        self.audio.drain(..n);
    }
}

/// A call's `start` for the translation layers' tests: stream S1 of call C1 at `rate`, one
/// custom parameter (`name`).
#[cfg(test)]
pub(crate) fn test_start(rate: u32) -> crate::exotel::stream::StartEvent {
    crate::exotel::stream::StartEvent {
        stream_sid: "S1".into(),
        call_sid: "C1".into(),
        account_sid: "A1".into(),
        from: "+91".into(),
        to: "0".into(),
        custom_parameters: [("name".to_owned(), "Asha".to_owned())].into(),
        sample_rate: rate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_fall_due_when_the_audio_before_them_is_taken() {
        let mut out = Outbox::new(8000, 16);
        out.play(&[1, 2, 3]);
        out.mark("a");
        out.play(&[4]);
        assert_eq!(out.samples_until_mark(), Some(3));
        assert_eq!(out.pop_due_mark(), None);
        let mut taken = Vec::new();
        out.drain_into(2, &mut taken);
        assert_eq!(out.samples_until_mark(), Some(1));
        out.drain_into(1, &mut taken);
        assert_eq!(out.pop_due_mark().as_deref(), Some("a"));
        assert_eq!(taken, [1, 2, 3]);
        assert_eq!(out.queued_samples(), 1);
    }

    #[test]
    fn clear_drops_audio_and_marks_and_is_reported_once() {
        let mut out = Outbox::new(8000, 16);
        out.play(&[1, 2]);
        out.mark("m");
        out.clear();
        assert_eq!(out.queued_samples(), 0);
        assert_eq!(out.samples_until_mark(), None);
        assert!(out.take_clear());
        assert!(!out.take_clear());
        out.play(&[5]);
        let mut v = Vec::new();
        out.drain_into(9, &mut v);
        assert_eq!(v, [5]);
    }
}
