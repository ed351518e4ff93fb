//! What a turn does around its wait: the checks before a read, the wait and the hold on a
//! caller ahead of real time, the settle after a read from a drained socket, and what a quiet
//! socket means (a ping, the idle limit).

use super::*;

impl<S: MediaIo> Session<'_, S> {
    /// What a turn does before it waits for a message: [`Session::before_reading`], then how
    /// long to wait (set as the socket's read timeout; answered as when it ends), or a hold on
    /// a caller ahead of real time (`Break(None)`).
    pub(super) fn before_waiting(
        &mut self,
        now: Instant,
    ) -> ControlFlow<Option<EndReason>, Instant> {
        if let ControlFlow::Break(ended) = self.before_reading(now) {
            return ControlFlow::Break(ended);
        }
        let wait = self.next_wake(now).saturating_duration_since(now);
        // Whole milliseconds (crate::timer): 1 ms late at most; a chunk due within PACING_SLACK
        // does not wait at all.
        let wait = crate::timer::whole_millis(wait).clamp(Duration::from_millis(1), MAX_WAIT);
        if self.hold_back_caller(now, wait) {
            return ControlFlow::Break(None);
        }
        if let Err(e) = self.ws.get_mut().set_read_timeout(Some(wait)) {
            return ControlFlow::Break(Some(EndReason::SocketError(e.to_string())));
        }
        ControlFlow::Continue(now + wait)
    }

    /// Whether a read now would certainly find nothing: an event loop's socket that came back
    /// short (bytes after it raise readiness again), with no whole frame left in the WebSocket.
    pub(super) fn drained(&self) -> bool {
        self.ws.get_ref().drained() && !self.ws.holds_a_frame()
    }

    /// After a message from a [`Session::drained`] socket: the turn the loop would give next
    /// only to find nothing to read (sending what became due, ending the call if the bot asked,
    /// learning the wait), given now, and the socket marked starved, so that the loop waits.
    /// One turn per caller frame instead of two.
    pub(super) fn settle(&mut self, now: Instant) -> Option<EndReason> {
        let wait_ends = match self.before_waiting(now) {
            ControlFlow::Break(ended) => return ended,
            ControlFlow::Continue(wait_ends) => wait_ends,
        };
        self.ws.get_mut().starve();
        let quiet = self.on_quiet(now);
        if quiet.is_none() {
            self.settled_until = Some(wait_ends);
        }
        quiet
    }

    /// A caller that sends faster than real time is read at real time: the socket is paused
    /// (at most until `wait` ends) instead of read. Answers whether it was.
    pub(super) fn hold_back_caller(&mut self, now: Instant, wait: Duration) -> bool {
        let Some(ahead) = self
            .caller_ahead(now)
            .or_else(|| self.reading_too_fast(now))
        else {
            return false;
        };
        if !self.stats.held_back {
            self.stats.held_back = true;
            crate::warn!(
                "media.caller_held_back",
                callLogId = self.call_log_id,
                detail = "the caller sends faster than real time (MEDIA_MAX_AHEAD_S, MEDIA_MAX_FRAMES_PER_S): read at real time from now on"
            );
        }
        let hold = crate::timer::whole_millis(ahead).clamp(Duration::from_millis(1), wait);
        self.ws.get_mut().pause(hold);
        // Not hearing from a caller we chose not to read is not the caller's silence.
        self.last_received = now;
        true
    }

    /// Nothing arrived before the wait ended: ping if we have been silent, end if the peer has.
    pub(super) fn on_quiet(&mut self, now: Instant) -> Option<EndReason> {
        if now.duration_since(self.last_received) >= self.settings.idle_timeout {
            return Some(EndReason::IdleTimeout);
        }
        if now.duration_since(self.last_sent) >= self.settings.ping_interval {
            let pinged = self.ws.ping();
            if let Err(reason) = self.sent(pinged) {
                return Some(reason);
            }
        }
        None
    }

    /// The earliest of: the next chunk allowed by pacing, Exotel running dry (to flush a short
    /// last piece), the next ping, the idle limit.
    pub(super) fn next_wake(&self, now: Instant) -> Instant {
        let mut wake = (self.last_sent + self.settings.ping_interval)
            .min(self.last_received + self.settings.idle_timeout);
        if !self.phase.is_live() {
            wake = wake.min(self.opened + self.settings.start_timeout);
        }
        if let Some(live) = self.phase.live() {
            if self.outbox.queued_samples() > 0 {
                let due = match live.pacer.runs_dry_at() {
                    Some(dry)
                        if self.outbox.queued_samples() >= live.rules.min_samples
                            || self.outbox.samples_until_mark().is_some() =>
                    {
                        Pacer::next_send(dry, self.settings.lead).unwrap_or(now)
                    }
                    Some(dry) => dry,
                    None => now,
                };
                wake = wake.min(due);
            }
        }
        wake
    }
}
