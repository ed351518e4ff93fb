//! A simulated call's plan (whom it reaches, its audio, keys and pace) and its report (what
//! came back, when, and what was wrong with it).

use super::*;

/// How the simulated call gets its media URL.
#[derive(Clone)]
pub enum Connect {
    /// As Exotel's Voicebot applet does for an inbound call: `GET {path}?CallSid=…`.
    Webhook {
        path: String,
        secret: Option<String>,
    },
    /// `POST /call` with this body (`{"to": …}`, and `agent`, `variables`, … as the call
    /// needs), answered by this fake Exotel; then the connect webhook with `CustomField`
    /// (applet flow) or the `StreamUrl` it was sent (stream flow).
    Outbound {
        call: serde_json::Value,
        fake: Arc<FakeExotel>,
    },
    /// A media URL as it is (a static applet URL with `MEDIA_SECRET`, or `MEDIA_PORT`).
    Url(String),
}

/// What to play and how.
#[derive(Clone)]
pub struct CallPlan {
    /// The server's HTTP address (webhook, `/call`, and `/media` unless the URL names a port).
    pub server: SocketAddr,
    pub connect: Connect,
    /// The caller's audio, at `sample_rate`; shared by a load's calls.
    pub audio: Arc<[i16]>,
    pub sample_rate: u32,
    /// Inbound chunk length (Exotel sends 20 to 100 ms).
    pub chunk_ms: u32,
    /// Keys pressed after the audio, 300 ms apart.
    pub dtmf: String,
    /// Keys pressed during the audio: (ms after the first chunk, key).
    pub dtmf_during: Vec<(u32, char)>,
    /// The echo bot's delay, for checking that the audio came back.
    pub echo_delay_ms: u32,
    /// How long after the last audio (and keys) to wait for the bot before `stop`.
    pub tail_ms: u32,
    pub call_sid: String,
    pub stream_sid: String,
    /// Speak HTTPS and `wss://` to the server, trusting these roots (`TLS_CERT` on the server).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Compare what comes back with the caller's audio (the echo bot); off for a bot that says
    /// something else, when only the protocol is checked.
    pub check_echo: bool,
    /// Keep everything the bot sent in [`CallReport::bot_audio`] (for `--record` and the
    /// tests). A load keeps it for its first call only: the echo is checked as it arrives,
    /// and ten seconds of it are 160 KB per call.
    pub keep_bot_audio: bool,
    /// The caller's chunks already in base64, shared by every call of a load (see
    /// [`CallPlan::encoded`]); made per call when `None`.
    pub payloads: Option<Arc<Vec<String>>>,
}

impl CallPlan {
    pub fn new(server: SocketAddr, audio: impl Into<Arc<[i16]>>) -> CallPlan {
        let n = crate::calls::CallLogId::generate();
        CallPlan {
            server,
            connect: Connect::Webhook {
                path: "/voicebot/connect".into(),
                secret: None,
            },
            audio: audio.into(),
            sample_rate: 8000,
            chunk_ms: 100,
            dtmf: String::new(),
            dtmf_during: Vec::new(),
            echo_delay_ms: 400,
            tail_ms: 1000,
            call_sid: format!("CA{n}"),
            stream_sid: format!("MZ{n}"),
            tls: None,
            check_echo: true,
            keep_bot_audio: true,
            payloads: None,
        }
    }

    /// The same plan with its chunks encoded once, for many calls: a load's callers then only
    /// frame them (the load generator must not be what runs out of CPU first).
    pub fn encoded(mut self) -> CallPlan {
        self.payloads = Some(Arc::new(self.encode_chunks()));
        self
    }

    /// Samples per caller chunk.
    pub(super) fn chunk_samples(&self) -> usize {
        ((self.sample_rate * self.chunk_ms / 1000) as usize).max(1)
    }

    pub(super) fn encode_chunks(&self) -> Vec<String> {
        let mut pcm = Vec::new();
        self.audio
            .chunks(self.chunk_samples())
            .map(|chunk| {
                pcm.clear();
                samples_to_pcm(chunk, &mut pcm);
                base64::engine::general_purpose::STANDARD.encode(&pcm)
            })
            .collect()
    }

    /// The server as the simulator reaches it.
    pub fn target(&self) -> crate::sim::client::Server {
        crate::sim::client::Server {
            addr: self.server,
            tls: self.tls.clone(),
        }
    }
}

/// Who ended the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndedBy {
    /// We sent `stop`; the server closed after it.
    Caller,
    /// The server closed first (the bot hung up), with this close code.
    Server(u16),
    /// The connection broke.
    Error(String),
}

impl Default for EndedBy {
    fn default() -> Self {
        EndedBy::Error("not started".into())
    }
}

/// Something that happened, for tests that check order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A caller chunk, by its index.
    SentMedia(usize),
    SentDtmf(char),
    /// A bot chunk: where it starts in the received audio, and its length in samples.
    ReceivedMedia {
        at: usize,
        samples: usize,
    },
    ReceivedMark(String),
    ReceivedClear,
}

/// What one simulated call saw.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub call_log_id: String,
    /// The CallSid the call's `start` named.
    pub call_sid: String,
    pub media_url: String,
    pub chunks_sent: u64,
    pub bytes_sent: u64,
    pub chunks_received: u64,
    pub bytes_received: u64,
    /// Bot chunk sizes in bytes, with counts.
    pub chunk_sizes: BTreeMap<usize, u64>,
    /// Bot chunks that break Exotel's chunk rules.
    pub invalid_chunks: u64,
    /// Events whose `stream_sid` was not ours.
    pub wrong_stream_sid: u64,
    pub marks_received: Vec<String>,
    pub marks_echoed: u64,
    pub clears: u64,
    /// From the first caller chunk to the first bot chunk (negative: the bot spoke first).
    pub first_bot_chunk_ms: Option<f64>,
    /// Per bot chunk: from the caller chunk that completed its echo to its arrival.
    pub turnaround_us: Vec<u64>,
    /// Samples of the caller's audio that came back unchanged after the echo delay (up to the
    /// first `clear`), that came back different, and that never came back.
    pub echoed: usize,
    pub echo_mismatched: usize,
    pub echo_missing: usize,
    pub ended_by: EndedBy,
    /// Samples the bot sent, and of them those before the first `clear` (what the echo is
    /// checked over).
    pub bot_samples: usize,
    pub echo_heard: usize,
    /// Everything the bot sent, in order, when the plan keeps it ([`CallPlan::keep_bot_audio`]).
    pub bot_audio: Vec<i16>,
    /// What happened, as times since `started_at`.
    pub events: Vec<(Duration, Event)>,
    /// When the stream started (its `start` sent): the events' clock, to compare them with
    /// another clock of this process (a fake AI service's).
    pub started_at: Option<std::time::Instant>,
}

impl CallReport {
    /// The call ran to its end with everything echoed, every chunk valid, every sid right.
    pub fn is_clean(&self) -> bool {
        !matches!(self.ended_by, EndedBy::Error(_))
            && self.invalid_chunks == 0
            && self.wrong_stream_sid == 0
            && self.echo_mismatched == 0
            && self.echo_missing == 0
    }
}
