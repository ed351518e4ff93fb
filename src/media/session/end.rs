//! The end of a session: the loop's turn with its scratch buffers, the closes still due, and
//! `finish`, which closes the socket, tells the bot and reports the call's counts.

use super::*;

impl<'a, S: MediaIo> Session<'a, S> {
    /// [`Session::turn`] working in `scratch` (an event loop's, shared by its calls) instead of
    /// buffers of its own: the two are swapped by their pointers, and back after the turn.
    pub fn turn_in(&mut self, now: Instant, scratch: &mut Box<Scratch>) -> Option<EndReason> {
        std::mem::swap(&mut self.scratch, scratch);
        let ended = self.turn(now);
        std::mem::swap(&mut self.scratch, scratch);
        ended
    }

    /// [`Session::finish`] working in `scratch`, as [`Session::turn_in`].
    pub fn finish_in(&mut self, reason: &EndReason, scratch: &mut Box<Scratch>) {
        std::mem::swap(&mut self.scratch, scratch);
        self.finish(reason);
        std::mem::swap(&mut self.scratch, scratch);
    }

    /// The socket, for the event loop that drives this session.
    pub fn io_mut(&mut self) -> &mut S {
        self.ws.get_mut()
    }

    /// Writes what the socket held back when it was full. `Err` when the socket has failed.
    pub fn flush(&mut self) -> Result<(), EndReason> {
        match self.ws.flush() {
            Ok(()) | Err(WsError::WouldBlock | WsError::Closed) => Ok(()),
            Err(e) => Err(EndReason::SocketError(e.to_string())),
        }
    }

    /// After [`Session::finish`] on a socket that does not wait: reads what has come toward
    /// the closes still due, the relayed bot's and, when `caller`, the caller's (not after a
    /// broken frame: see [`waits_for_close`]). `true` once each is over or its socket gone.
    pub fn read_toward_close(&mut self, caller: bool) -> bool {
        let bot_done = match self.phase.live_mut().map(|l| &mut l.handler) {
            Some(Handler::Relay(relay)) => relay.read_toward_close(),
            _ => true,
        };
        let caller_done = !caller || self.read_caller_toward_close(None);
        bot_done && caller_done
    }

    /// Reads and drops the caller's messages until its close: `true` once it came or the
    /// socket failed, `false` when nothing more is there yet or `deadline` has passed.
    pub(super) fn read_caller_toward_close(&mut self, deadline: Option<Instant>) -> bool {
        let mut message = std::mem::take(&mut self.scratch.message);
        let done = loop {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break false;
            }
            match self.ws.read(&mut message) {
                Ok(Incoming::Close) => break true,
                Ok(_) => continue,
                Err(WsError::WouldBlock) => break false,
                Err(_) => break true,
            }
        };
        self.scratch.message = message;
        done
    }

    /// Closes the socket (unless the peer did), tells the bot, logs the call's counts.
    pub fn finish(&mut self, reason: &EndReason) {
        self.stats.handoff = self.outbox.handoff().map(str::to_owned);
        if let Some(on_end) = &self.on_end {
            on_end(reason, self.stats.handoff.as_deref());
        }
        // The bot first: it hears of the end even when Exotel's socket takes its time to close.
        if let Some(live) = self.phase.live_mut() {
            match &mut live.handler {
                Handler::Bot(bot) => bot.on_stop(reason.as_str()),
                Handler::Dialing(_) => {}
                Handler::Relay(relay) => {
                    // Exotel's own `stop` was forwarded; a bot that hung up needs none.
                    let stop = match reason {
                        EndReason::Stopped(_) | EndReason::BotHungUp => None,
                        _ => {
                            self.scratch.frame.clear();
                            live.encoder.stop(
                                &mut self.scratch.frame,
                                &live.start,
                                reason.as_str(),
                            );
                            std::str::from_utf8(&self.scratch.frame).ok()
                        }
                    };
                    relay.close(stop);
                }
            }
        }
        // What the bot said last (an in-process bot may speak in `on_stop`).
        self.pass_transcript();
        if !matches!(reason, EndReason::ClosedByPeer | EndReason::SocketError(_)) {
            // RFC 6455 §7.4.1: 1009 too big, 1002 protocol, 1007 not UTF-8, 1001 going away.
            let code = match reason {
                EndReason::FrameTooLarge => 1009,
                EndReason::ProtocolError(_) => 1002,
                EndReason::InvalidUtf8 => 1007,
                EndReason::IdleTimeout | EndReason::Shutdown => 1001,
                _ => 1000,
            };
            let _ = self.ws.close(code, reason.as_str());
            let _ = self.ws.flush();
            if waits_for_close(reason) && self.ws.get_ref().waits() {
                // Let the close handshake finish, briefly.
                let _ = self
                    .ws
                    .get_mut()
                    .set_read_timeout(Some(Duration::from_millis(500)));
                self.read_caller_toward_close(Some(Instant::now() + Duration::from_secs(1)));
            }
        }
        self.report_metrics(self.clock);
        let s = &self.stats;
        let error = match reason {
            EndReason::SocketError(e) | EndReason::ProtocolError(e) => e.as_str(),
            _ => "",
        };
        crate::info!(
            "media.ended",
            callLogId = self.call_log_id,
            reason = reason.as_str(),
            error = error,
            framesIn = s.frames_in,
            bytesIn = s.bytes_in,
            framesOut = s.frames_out,
            bytesOut = s.bytes_out,
            marksOut = s.marks_out,
            marksIn = s.marks_in,
            dtmf = s.dtmf,
            badFrames = s.bad_frames,
            relayDroppedToBot = s.relay.dropped_to_bot,
            relayDroppedToCaller = s.relay.dropped_to_caller,
            relayBadFrames = s.relay.bad_frames
        );
    }
}
