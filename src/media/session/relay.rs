//! A relayed call's bot: dialing it (on the loop or a coroutine, never blocking a thread other
//! calls need), forwarding the caller's frames, polling its answers, reconnecting or falling back.

use super::*;

impl<'a, S: MediaIo> Session<'a, S> {
    /// Dials the relayed bot, if the call has one, with Exotel's `connected` and the call's
    /// `start`: at the stream's start, or as the one `reconnect` after the bot dropped.
    pub(super) fn dial_relay(&mut self, reconnect: bool) {
        let (Some(config), Some(live)) = (self.relay_config.clone(), self.phase.live()) else {
            return;
        };
        let call = CallStart {
            call_log_id: &self.call_log_id,
            start: &live.start,
            url_parameters: &self.url_parameters,
        };
        let connected = self.connected_text.as_deref();
        let dial = Dial::new(config, &call, connected, &live.start_text, reconnect);
        self.open_relay(dial);
    }

    /// Opens the relay: here, on a socket that waits (a coroutine, whose pump the bot's socket
    /// gets); on an event loop, by the loop, which takes the dial ([`Session::take_dial`]) and
    /// hands back what came of it ([`Session::dialed`]).
    pub(super) fn open_relay(&mut self, dial: Dial) {
        if self.ws.get_ref().waits() {
            let opened = Relay::open(&dial, WaitsIn::Pump);
            self.dialed(&dial, opened);
            return;
        }
        // A relay being replaced is dropped here: its socket leaves the loop's poller as it
        // closes.
        if let Some(live) = self.phase.live_mut() {
            live.handler = Handler::Dialing(Some(dial));
        }
    }

    /// The relay this session's event loop is to open. Until the loop hands back what came of
    /// it, the session must not be turned.
    pub fn take_dial(&mut self) -> Option<Dial> {
        match self.phase.live_mut().map(|l| &mut l.handler) {
            Some(Handler::Dialing(dial)) => dial.take(),
            _ => None,
        }
    }

    /// What came of a dial: the relay answers the call from now on, or the fallback does.
    pub fn dialed(&mut self, dial: &Dial, opened: Result<Relay, ConnectError>) {
        // The bot changed under the last settle: the next turn makes its checks first.
        self.settled_until = None;
        let Some(live) = self.phase.live_mut() else {
            return;
        };
        match opened {
            Ok(relay) => {
                if dial.reconnect {
                    self.metrics.relay_event(RelayEvent::Reconnected);
                    crate::info!(
                        "relay.reconnected",
                        callLogId = self.call_log_id,
                        tookMs = dial.elapsed().as_millis()
                    );
                } else {
                    self.metrics.relay_event(RelayEvent::Connected);
                    crate::info!(
                        "relay.connected",
                        callLogId = self.call_log_id,
                        bot = dial.config().url
                    );
                }
                live.handler = Handler::Relay(Box::new(relay));
            }
            Err(e) => {
                let call = CallStart {
                    call_log_id: &self.call_log_id,
                    start: &live.start,
                    url_parameters: &self.url_parameters,
                };
                let (handler, unavailable) = fallback(
                    dial.config(),
                    &e,
                    &*self.bots,
                    &call,
                    &mut self.outbox,
                    self.metrics,
                );
                live.handler = handler;
                self.stats.bot_unavailable = unavailable;
                self.stats.note_bot_error(format!("bot unavailable: {e}"));
            }
        }
    }

    /// The relayed bot's socket, when it waits in this session's event loop.
    pub fn relay_socket(&mut self) -> Option<&mut LoopSocket> {
        match self.phase.live_mut().map(|l| &mut l.handler) {
            Some(Handler::Relay(relay)) => relay.looped(),
            _ => None,
        }
    }

    /// The relayed bot sent more than one turn takes: the session wants another turn now.
    pub fn relay_has_more(&self) -> bool {
        matches!(self.phase.live().map(|l| &l.handler), Some(Handler::Relay(r)) if r.has_more())
    }

    /// Hands one of Exotel's frames to the relayed bot, if there is one.
    pub(super) fn forward_to_relay(&mut self, text: &str) -> Result<(), EndReason> {
        let Some(Live {
            handler: Handler::Relay(relay),
            ..
        }) = self.phase.live_mut()
        else {
            return Ok(());
        };
        let forwarded = relay.forward(text, &mut self.stats.relay);
        self.on_relay_result(forwarded)
    }

    /// Moves what the relayed bot sent into the outbox, if there is a relayed bot.
    pub(super) fn poll_relay(&mut self, now: Instant) -> Result<(), EndReason> {
        let Some(Live {
            handler: Handler::Relay(relay),
            ..
        }) = self.phase.live_mut()
        else {
            return Ok(());
        };
        // Only a bad frame allocates here (its description, for the log).
        let mut bad: Option<String> = None;
        let polled = relay.poll(&mut self.outbox, &mut self.stats.relay, &mut |what| {
            bad = Some(what.to_owned())
        });
        if let Some(what) = bad {
            self.warn_limited(now, "relay.bad_frame", &what);
        }
        if let Some(notes) = self.outbox.take_service_notes() {
            use crate::metrics::ServiceEvent;
            self.metrics
                .service_events(ServiceEvent::Error, notes.errors);
            self.metrics
                .service_events(ServiceEvent::RateLimits, notes.rate_limits);
            if let Some(error) = notes.last_error {
                crate::warn!(
                    "realtime.error",
                    callLogId = self.call_log_id,
                    error = error
                );
                self.stats.note_bot_error(error);
            }
        }
        self.on_relay_result(polled)
    }

    /// A bot that closed hung up; a bot that dropped gets one reconnect within
    /// `BOT_RECONNECT_MS` with a fresh `start`, then the fallback.
    pub(super) fn on_relay_result(&mut self, result: Result<(), Lost>) -> Result<(), EndReason> {
        let why = match result {
            Ok(()) => return Ok(()),
            Err(Lost::HungUp) => return Err(EndReason::BotHungUp),
            Err(Lost::Dropped(why)) => why,
        };
        if self.relay_config.is_none() || !self.phase.is_live() {
            return Ok(());
        }
        self.metrics.relay_event(RelayEvent::Dropped);
        crate::warn!("relay.dropped", callLogId = self.call_log_id, error = why);
        self.stats.note_bot_error(format!("bot dropped: {why}"));
        // The new bot (or the fallback) starts the conversation afresh: what the old bot had
        // queued is dropped here and at Exotel.
        self.outbox.clear();
        self.dial_relay(true);
        Ok(())
    }
}
