//! The caller's side of a session: each frame Exotel sends (media, start, DTMF, marks, stop),
//! read leniently, the audio handed to the bot, and a caller faster than real time held back.

use super::*;

impl<'a, S: MediaIo> Session<'a, S> {
    /// A text message from Exotel: a media frame for a bot here by the direct path, anything
    /// else checked as UTF-8, handed to a relayed bot as it came, and read leniently.
    pub(super) fn handle_message(&mut self, bytes: &[u8], now: Instant) -> Option<EndReason> {
        if let Some(ended) = self.media_by_scan(bytes, now) {
            return ended;
        }
        let Ok(text) = crate::websocket::text(bytes) else {
            return Some(EndReason::InvalidUtf8);
        };
        if let Err(reason) = self.forward_to_relay(text) {
            return Some(reason);
        }
        self.handle_text(text, now)
    }

    /// A `media` frame in Exotel's shape for a live call whose bot is here, read by the direct
    /// scan and its payload by the strict decoder: what the lenient path would do with it, in a
    /// fraction of the instructions (docs/PERFORMANCE.md). The decoder accepts only base64's
    /// alphabet, so the frame is UTF-8 and the frame serde reads (`exotel::stream::scan`).
    /// `None` leaves the frame to the lenient path, as it was.
    fn media_by_scan(&mut self, bytes: &[u8], now: Instant) -> Option<Option<EndReason>> {
        if !matches!(self.phase.live().map(|l| &l.handler), Some(Handler::Bot(_))) {
            return None;
        }
        let media = crate::exotel::stream::scan::media(bytes)?;
        if !media.inbound_track {
            return Some(None);
        }
        // An odd byte left from the last payload is this one's first; it stays the carry
        // until the payload has decoded.
        self.scratch.pcm_in.clear();
        self.scratch.pcm_in.extend(self.carry);
        crate::exotel::stream::audio64::decode_append(media.payload(), &mut self.scratch.pcm_in)
            .ok()?;
        self.carry = None;
        Some(self.on_pcm(now))
    }

    /// One of Exotel's frames as text, read leniently.
    pub(super) fn handle_text(&mut self, text: &str, now: Instant) -> Option<EndReason> {
        let frame = match Frame::read_scanned(text, self.url_sample_rate) {
            Ok(frame) => frame,
            Err(e) => {
                self.bad_frame(now, &e.to_string());
                return None;
            }
        };
        self.note_oddities(frame.odd);
        if !self.phase.is_live() && self.early_stream_sid.is_none() {
            self.early_stream_sid = frame.stream_sid.as_deref().map(str::to_owned);
        }
        match frame.event {
            Inbound::Connected => {
                if self.relay_config.is_some() && !self.phase.is_live() {
                    self.connected_text = Some(text.to_owned());
                }
                None
            }
            Inbound::Start(start) => self.on_start(*start, text),
            Inbound::Media {
                payload,
                inbound_track,
                ..
            } => self.on_media(&payload, inbound_track, now),
            Inbound::Dtmf { digit, .. } => {
                self.stats.dtmf.push(digit);
                if self.settings.handoff_dtmf == Some(digit) && self.phase.is_live() {
                    // At once, whatever the bot was saying.
                    self.outbox.clear();
                    self.outbox.hand_off("dtmf");
                    return None;
                }
                match self.phase.live_mut().map(|l| &mut l.handler) {
                    Some(Handler::Bot(bot)) => bot.on_dtmf(digit, &mut self.outbox),
                    Some(Handler::Relay(_) | Handler::Dialing(_)) => {}
                    None => self.bad_frame(now, "dtmf before start"),
                }
                None
            }
            Inbound::Mark { name } => {
                self.stats.marks_in += 1;
                if let Some(Handler::Bot(bot)) = self.phase.live_mut().map(|l| &mut l.handler) {
                    bot.on_mark(&name, &mut self.outbox);
                }
                None
            }
            Inbound::Stop { reason } => Some(EndReason::Stopped(reason.into_owned())),
        }
    }

    /// A `media` frame: its payload decoded to samples, counted, recorded and given to the bot.
    pub(super) fn on_media(
        &mut self,
        payload: &str,
        inbound_track: bool,
        now: Instant,
    ) -> Option<EndReason> {
        if !self.phase.is_live() {
            if let Some(end) = self.synthesize_start() {
                return Some(end);
            }
        }
        if !self.phase.is_live() || !inbound_track {
            return None;
        }
        // An odd byte left from the last payload is this one's first.
        self.scratch.pcm_in.clear();
        self.scratch.pcm_in.extend(self.carry.take());
        match decode_payload_into(payload, &mut self.scratch.pcm_in) {
            Ok(false) => {}
            Ok(true) => self.note_oddities(Oddities::BASE64_VARIANT),
            Err(e) => {
                self.scratch.pcm_in.clear();
                self.bad_frame(now, &e.to_string());
                return None;
            }
        }
        self.on_pcm(now)
    }

    /// The caller's audio decoded in `pcm_in`: an odd last byte kept for the next frame, the
    /// rest counted, recorded and given to the bot.
    fn on_pcm(&mut self, now: Instant) -> Option<EndReason> {
        if self.scratch.pcm_in.len() % 2 == 1 {
            self.carry = self.scratch.pcm_in.pop();
            self.note_oddities(Oddities::ODD_LENGTH);
        }
        let live = self.phase.live_mut()?;
        self.stats.frames_in += 1;
        self.stats.bytes_in += self.scratch.pcm_in.len() as u64;
        let (_, samples) = self.inbound_clock.get_or_insert((now, 0));
        *samples += self.scratch.pcm_in.len() as u64 / 2;
        self.scratch.samples_in.clear();
        pcm_to_samples(&self.scratch.pcm_in, &mut self.scratch.samples_in);
        if let Some((recording, _, position)) = self.recording.as_mut() {
            recording.push(Track::Caller, *position, &self.scratch.samples_in);
            *position += self.scratch.samples_in.len() as u64;
        }
        // A relayed bot already has the frame as Exotel sent it.
        if let Handler::Bot(bot) = &mut live.handler {
            bot.on_audio(&self.scratch.samples_in, &mut self.outbox);
        }
        None
    }

    /// Until when reading must wait, if this second's reads have reached
    /// [`MAX_FRAMES_PER_SECOND`]; starts a new window once the second is over.
    pub(super) fn reading_too_fast(&mut self, now: Instant) -> Option<Duration> {
        let (start, reads) = self.read_window;
        let ends = start + Duration::from_secs(1);
        if now >= ends {
            self.read_window = (now, 0);
            return None;
        }
        (reads >= self.settings.max_frames_per_second).then(|| ends - now)
    }

    /// How far past [`MAX_INBOUND_LEAD`] ahead of real time the caller's audio is, if it is.
    pub(super) fn caller_ahead(&self, now: Instant) -> Option<Duration> {
        let (first, sent) = self.inbound_clock?;
        let rate = self.phase.live()?.rules.sample_rate as u64;
        let sent = Duration::from_micros(sent * 1_000_000 / rate);
        let allowed = now.duration_since(first) + self.settings.max_inbound_lead;
        sent.checked_sub(allowed).filter(|d| !d.is_zero())
    }

    /// Names, once per call, the optional fields that came in a shape we do not read.
    pub(super) fn note_oddities(&mut self, odd: Oddities) {
        let new = odd.new_since(self.odd_seen);
        if !new.is_empty() {
            self.odd_seen.add(new);
            crate::warn!(
                "media.odd_fields",
                callLogId = self.call_log_id,
                fields = new.names(),
                detail = "set aside; the frame was used without them"
            );
        }
    }

    /// Media came before any usable `start`: the stream starts now from what the media URL and
    /// the webhook told us (its sample rate, the CallSid, the frames' `stream_sid`), so that the
    /// caller is heard and answered rather than left in silence.
    pub(super) fn synthesize_start(&mut self) -> Option<EndReason> {
        let start = StartEvent {
            stream_sid: self.early_stream_sid.clone().unwrap_or_default(),
            call_sid: self.known_call_sid.clone(),
            account_sid: String::new(),
            from: String::new(),
            to: String::new(),
            custom_parameters: Default::default(),
            sample_rate: self.url_sample_rate,
        };
        crate::warn!(
            "media.start_synthesized",
            callLogId = self.call_log_id,
            streamSid = start.stream_sid,
            sampleRate = start.sample_rate,
            detail = "media arrived without a usable start"
        );
        let text = serde_json::json!({
            "event": "start",
            "stream_sid": start.stream_sid,
            "start": {
                "stream_sid": start.stream_sid,
                "call_sid": start.call_sid,
                "account_sid": "",
                "from": "",
                "to": "",
                "custom_parameters": {},
                "media_format": {"encoding": "base64", "sample_rate": start.sample_rate.to_string()},
            },
        })
        .to_string();
        self.stats.start_synthesized = true;
        self.on_start(start, &text)
    }

    pub(super) fn on_start(&mut self, start: StartEvent, text: &str) -> Option<EndReason> {
        if self.phase.is_live() {
            crate::warn!(
                "media.second_start",
                callLogId = self.call_log_id,
                streamSid = start.stream_sid
            );
            return None;
        }
        if let Err(why) = (self.on_start)(&self.call_log_id, &start) {
            crate::warn!(
                "media.refused_start",
                callLogId = self.call_log_id,
                callSid = start.call_sid,
                detail = why
            );
            return Some(EndReason::CallSidMismatch(why));
        }
        self.stats.started = true;
        let rules = ChunkRules::for_rate(start.sample_rate);
        // Room for one second of the bot's audio before the outbox grows (the echo bot keeps its
        // delay plus the lead queued, 0.6 s by default; a bot that queues more grows it once, not
        // per frame). A ring is touched end to end as it turns, so every second here is resident
        // memory per call: 16 KiB at 8 kHz. Inbound frames: room for INBOUND_FRAME_ROOM_MS
        // (Exotel sends 20 to 100 ms); a longer frame grows the buffers once.
        let rate = start.sample_rate as usize;
        self.outbox = Outbox::new(start.sample_rate, rate);
        let frame_room = rate * INBOUND_FRAME_ROOM_MS / 1000;
        let encoder = Encoder::new(&start.stream_sid);
        self.scratch.reserve(
            frame_room,
            rules.min_samples,
            encoder.media_len(rules.min_samples * 2) + 256,
        );
        let call = CallStart {
            call_log_id: &self.call_log_id,
            start: &start,
            url_parameters: &self.url_parameters,
        };
        if let Some(recorder) = self.recorder {
            let recording = recorder.open(&self.call_log_id, start.sample_rate);
            self.recording = Some((recording, self.clock, 0));
        }
        // What a relayed bot gets as the call's `start`, with the contact's parameters.
        let (handler, start_text) = match &self.relay_config {
            None => {
                let mut bot = self.bots.create(&call);
                bot.on_start(&call, &mut self.outbox);
                (Handler::Bot(bot), String::new())
            }
            Some(_) if self.contact_parameters.is_empty() => {
                (Handler::Dialing(None), text.to_owned())
            }
            Some(_) => (
                Handler::Dialing(None),
                with_custom_parameters(text, &self.contact_parameters),
            ),
        };
        crate::info!(
            "media.start",
            callLogId = self.call_log_id,
            streamSid = start.stream_sid,
            callSid = start.call_sid,
            sampleRate = start.sample_rate,
            from = start.from,
            to = start.to
        );
        self.phase = Phase::Live(Live {
            handler,
            encoder,
            rules,
            pacer: Pacer::default(),
            start,
            start_text,
        });
        self.dial_relay(false);
        None
    }
}
