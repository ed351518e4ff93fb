//! The outbound side: the bot's audio paced into Exotel-sized chunks when due, marks and clears,
//! the metrics added once a second, and bad frames logged at most once a second.

use super::*;

impl<'a, S: MediaIo> Session<'a, S> {
    /// Sends the clear, chunks and marks that are due at `now`.
    pub(super) fn send_due(&mut self, now: Instant) -> Result<(), EndReason> {
        self.pass_transcript();
        let Some(live) = self.phase.live_mut() else {
            return Ok(());
        };
        if self.outbox.take_clear() {
            live.pacer.reset();
            let sent = self.ws.send_text(|out| live.encoder.clear(out));
            self.sent(sent)?;
        }
        loop {
            let Some(live) = self.phase.live_mut() else {
                return Ok(());
            };
            if let Some(name) = self.outbox.pop_due_mark() {
                let sent = self.ws.send_text(|out| live.encoder.mark(out, &name));
                self.stats.marks_out += 1;
                self.sent(sent)?;
                continue;
            }
            let queued = self.outbox.queued_samples();
            if queued == 0 {
                return Ok(());
            }
            let allowed_at = live
                .pacer
                .runs_dry_at()
                .and_then(|dry| Pacer::next_send(dry, self.settings.lead));
            let ahead = live.pacer.ahead(now);
            if !Pacer::allows(ahead, self.settings.lead) {
                return Ok(());
            }
            let until_mark = self.outbox.samples_until_mark();
            let take = queued
                .min(live.rules.min_samples)
                .min(until_mark.unwrap_or(usize::MAX));
            let full = take == live.rules.min_samples;
            // A short piece goes out padded only when nothing more can join it: a mark follows
            // it, the bot hangs up, or Exotel has played everything and would go silent anyway.
            let flush = until_mark == Some(take) || self.outbox.wants_hang_up() || ahead.is_zero();
            if !full && !flush {
                return Ok(());
            }
            self.scratch.chunk.clear();
            self.outbox.drain_into(take, &mut self.scratch.chunk);
            let padded = live.rules.padded(self.scratch.chunk.len());
            self.scratch.chunk.resize(padded, 0);
            let chunk = &self.scratch.chunk;
            let sent = self.ws.send_text(|out| live.encoder.media(out, chunk));
            if let Some(at) = allowed_at {
                self.metrics
                    .chunk_send_delay
                    .observe(now.saturating_duration_since(at));
            }
            if let Some((recording, started, _)) = self.recording.as_mut() {
                // The bot's audio is heard when Exotel has played what was sent before it.
                let plays_at = live.pacer.runs_dry_at().map_or(now, |dry| dry.max(now));
                let at = plays_at.saturating_duration_since(*started).as_micros() as u64
                    * live.rules.sample_rate as u64
                    / 1_000_000;
                recording.push(Track::Bot, at, &self.scratch.chunk);
            }
            live.pacer
                .sent(now, Duration::from_micros(live.rules.micros(padded)));
            self.stats.frames_out += 1;
            self.stats.bytes_out += 2 * self.scratch.chunk.len() as u64;
            self.sent(sent)?;
        }
    }

    /// What a frame's send came to: sent, or kept for the socket's next flush (the encoder
    /// wrote it straight into the socket's output), or the call's end.
    pub(super) fn sent(&mut self, sent: Result<(), WsError>) -> Result<(), EndReason> {
        match sent {
            Ok(()) | Err(WsError::WouldBlock) => {
                self.last_sent = self.clock;
                Ok(())
            }
            Err(e) => Err(EndReason::SocketError(e.to_string())),
        }
    }

    /// Adds what happened since the last report to the metrics (about once a second).
    pub(super) fn report_metrics(&mut self, now: Instant) {
        let (before, s) = (&self.reported.0, &self.stats);
        self.metrics.add_media(MediaDelta {
            frames_in: s.frames_in - before.frames_in,
            bytes_in: s.bytes_in - before.bytes_in,
            frames_out: s.frames_out - before.frames_out,
            bytes_out: s.bytes_out - before.bytes_out,
            bad_frames: s.bad_frames - before.bad_frames,
            relay_dropped_to_bot: s.relay.dropped_to_bot - before.relay.dropped_to_bot,
            relay_dropped_to_caller: s.relay.dropped_to_caller - before.relay.dropped_to_caller,
            relay_bad_frames: s.relay.bad_frames - before.relay.bad_frames,
        });
        self.reported.0.clone_from(&self.stats);
        self.reported.1 = now + METRICS_EVERY;
    }

    pub(super) fn bad_frame(&mut self, now: Instant, what: &str) {
        self.stats.bad_frames += 1;
        self.warn_limited(now, "media.bad_frame", what);
    }

    /// Logs a bad frame at most once a `WARN_EVERY`, with the counts so far.
    pub(super) fn warn_limited(&mut self, now: Instant, event: &str, what: &str) {
        let due = self
            .last_warning
            .is_none_or(|t| now.duration_since(t) >= WARN_EVERY);
        if due {
            self.last_warning = Some(now);
            crate::warn!(
                event,
                callLogId = self.call_log_id,
                detail = what,
                badFrames = self.stats.bad_frames,
                relayBadFrames = self.stats.relay.bad_frames
            );
        }
    }

    /// Hands the transcript turns the bot gave since the last turn to `on_transcript`, up to
    /// [`MAX_TRANSCRIPT_TURNS`] for the call.
    pub(super) fn pass_transcript(&mut self) {
        let Some(turns) = self.outbox.take_transcript() else {
            return;
        };
        let Some(hook) = &self.on_transcript else {
            return;
        };
        for (speaker, text) in turns {
            if self.transcript_turns == MAX_TRANSCRIPT_TURNS {
                crate::warn!(
                    "media.transcript_full",
                    callLogId = self.call_log_id,
                    max = MAX_TRANSCRIPT_TURNS
                );
            }
            self.transcript_turns += 1;
            if self.transcript_turns <= MAX_TRANSCRIPT_TURNS {
                hook(speaker, text);
            }
        }
    }

    /// A handoff asked for, with every queued sample sent and played (Exotel's queue empty by
    /// the pacer's clock): the caller has heard the bot's last words.
    pub(super) fn handoff_due(&mut self, now: Instant) -> bool {
        self.outbox.handoff().is_some() && self.audio_played_out(now)
    }

    /// Every queued sample sent and played (Exotel's queue empty by the pacer's clock).
    pub(super) fn audio_played_out(&mut self, now: Instant) -> bool {
        self.outbox.queued_samples() == 0
            && self
                .phase
                .live_mut()
                .is_none_or(|live| live.pacer.ahead(now).is_zero())
    }
}
