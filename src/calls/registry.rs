//! The registry of media tokens and live media sessions: which token, issued by the webhook or
//! `/call`, opens the media WebSocket of which call, and which session currently owns each call.
//! Shared by all coroutines; every operation holds a lock briefly and never across I/O.
//!
//! Token rules: a token never used expires after its lifetime (`MEDIA_TOKEN_TTL`, or the
//! ring time plus a margin for a stream-mode call); once used it stays valid while its own
//! session owns the call (Exotel may reconnect with it, and the second connection replaces the
//! first). It is void, and gone from memory, the moment a session with another token takes the
//! call or the call ends, so repeated connects cannot fill `MAX_PENDING_MEDIA_TOKENS` and an old
//! token never comes back to life when a later call reuses the callLogId. A token is bound to
//! the CallSid of the first `start` it carried; a later `start` under another CallSid is refused.
//!
//! It must not touch the disk or the network.

use super::{CallLogId, MediaToken};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A token not used within this time after it was issued is void (`MEDIA_TOKEN_TTL_S`).
pub const MEDIA_TOKEN_TTL: Duration = Duration::from_secs(60);
/// Default for tokens waiting to be used at once (`MAX_PENDING_MEDIA_TOKENS`); past it the
/// webhook answers 503, so a flood of webhook requests cannot grow memory without bound (about
/// 200 bytes a token). Legitimate traffic needs one per call started in the last minute.
pub const DEFAULT_MAX_PENDING_TOKENS: usize = 100_000;

/// What a token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMedia {
    pub call_log_id: CallLogId,
    pub issued_at: Instant,
    /// How long it may wait to be used.
    pub ttl: Duration,
    /// The CallSid of the first `start` it carried.
    pub call_sid: Option<String>,
    /// A session has started with it.
    pub used: bool,
    /// Every slot was taken when the webhook answered: the call hears a tone and is hung up.
    pub over_capacity: bool,
}

/// Values of a session's stop flag.
pub const RUNNING: u8 = 0;
/// A newer connection for the same call took over: the session ends, the call goes on.
pub const REPLACED: u8 = 1;
/// The server is shutting down: the session ends the call.
pub const SHUTDOWN: u8 = 2;

#[derive(Debug)]
struct LiveSession {
    generation: u64,
    token: Option<MediaToken>,
    stop: Arc<AtomicU8>,
}

/// A running media session's claim on its call.
#[derive(Debug)]
pub struct SessionTicket {
    pub call_log_id: CallLogId,
    token: Option<MediaToken>,
    generation: u64,
    /// [`RUNNING`], or why the session must end ([`REPLACED`], [`SHUTDOWN`]).
    pub stop: Arc<AtomicU8>,
}

#[derive(Debug)]
pub struct Registry {
    pending: Mutex<HashMap<MediaToken, PendingMedia>>,
    live: Mutex<HashMap<CallLogId, LiveSession>>,
    generations: AtomicU64,
    ttl: Duration,
    max_pending: usize,
    /// Where token ages are read: the monotonic clock, or a test's.
    clock: crate::timer::Clock,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RegistryFull;

impl Default for Registry {
    fn default() -> Self {
        Registry::new(MEDIA_TOKEN_TTL, DEFAULT_MAX_PENDING_TOKENS)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Registry {
    pub fn new(ttl: Duration, max_pending: usize) -> Registry {
        Registry::with_clock(ttl, max_pending, crate::timer::Clock::monotonic())
    }

    /// A registry that reads token ages from `clock` (a test's, which it moves by hand).
    pub fn with_clock(ttl: Duration, max_pending: usize, clock: crate::timer::Clock) -> Registry {
        Registry {
            pending: Mutex::new(HashMap::new()),
            live: Mutex::new(HashMap::new()),
            generations: AtomicU64::new(0),
            ttl,
            max_pending,
            clock,
        }
    }

    /// Issues a fresh token for the call's media stream.
    pub fn issue_token(&self, call_log_id: &CallLogId) -> Result<MediaToken, RegistryFull> {
        self.issue(call_log_id, false, self.ttl)
    }

    /// Issues a token that may wait `ttl` to be used (a stream-mode call, which Exotel may ring
    /// for longer than `MEDIA_TOKEN_TTL` before the customer answers).
    pub fn issue_token_for(
        &self,
        call_log_id: &CallLogId,
        ttl: Duration,
    ) -> Result<MediaToken, RegistryFull> {
        self.issue(call_log_id, false, ttl.max(self.ttl))
    }

    /// Takes up a token another instance issued (`calls::shared::grants`), valid for what is
    /// left of its lifetime, as if this instance had issued it.
    pub fn adopt(
        &self,
        token: &MediaToken,
        call_log_id: &CallLogId,
        ttl_left: Duration,
        over_capacity: bool,
    ) {
        lock(&self.pending).insert(
            token.clone(),
            PendingMedia {
                call_log_id: call_log_id.clone(),
                issued_at: self.clock.now(),
                ttl: ttl_left,
                call_sid: None,
                used: false,
                over_capacity,
            },
        );
    }

    /// Issues a token for a call that is over capacity (it will be refused with a tone).
    pub fn issue_over_capacity_token(
        &self,
        call_log_id: &CallLogId,
    ) -> Result<MediaToken, RegistryFull> {
        self.issue(call_log_id, true, self.ttl)
    }

    fn issue(
        &self,
        call_log_id: &CallLogId,
        over_capacity: bool,
        ttl: Duration,
    ) -> Result<MediaToken, RegistryFull> {
        let now = self.clock.now();
        let token = MediaToken::generate();
        let keep = |p: &PendingMedia| p.used || now.duration_since(p.issued_at) < p.ttl;
        let mut pending = lock(&self.pending);
        if pending.len() >= self.max_pending {
            pending.retain(|_, p| keep(p));
            if pending.len() >= self.max_pending {
                return Err(RegistryFull);
            }
        } else if pending.len().is_power_of_two() {
            // Amortized sweep: cost proportional to growth.
            pending.retain(|_, p| keep(p));
        }
        pending.insert(
            token.clone(),
            PendingMedia {
                call_log_id: call_log_id.clone(),
                issued_at: now,
                ttl,
                call_sid: None,
                used: false,
                over_capacity,
            },
        );
        Ok(token)
    }

    /// The call a token opens, if it is valid now.
    pub fn lookup(&self, token: &MediaToken) -> Option<PendingMedia> {
        let pending = lock(&self.pending);
        let p = pending.get(token)?;
        let valid = if p.used {
            lock(&self.live)
                .get(&p.call_log_id)
                .is_some_and(|live| live.token.as_ref() == Some(token))
        } else {
            self.clock.now().duration_since(p.issued_at) < p.ttl
        };
        valid.then(|| p.clone())
    }

    /// Claims the call for a new media session; a session already running for it is told to
    /// end (its `replaced` flag is set).
    pub fn begin_session(
        &self,
        call_log_id: &CallLogId,
        token: Option<&MediaToken>,
    ) -> SessionTicket {
        let mut pending = lock(&self.pending);
        if let Some(t) = token {
            if let Some(p) = pending.get_mut(t) {
                p.used = true;
            }
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        let stop = Arc::new(AtomicU8::new(RUNNING));
        let previous = lock(&self.live).insert(
            call_log_id.clone(),
            LiveSession {
                generation,
                token: token.cloned(),
                stop: stop.clone(),
            },
        );
        if let Some(old) = previous {
            old.stop.store(REPLACED, Ordering::Release);
            // The replaced session's token dies with its claim, unless it is this one.
            if let Some(old_token) = old.token.filter(|t| Some(t) != token) {
                pending.remove(&old_token);
            }
        }
        SessionTicket {
            call_log_id: call_log_id.clone(),
            token: token.cloned(),
            generation,
            stop,
        }
    }

    /// Releases the call, unless a newer session has taken it over. The session's token is
    /// void either way, unless the newer session carries the same one (Exotel reconnecting).
    pub fn end_session(&self, ticket: &SessionTicket) {
        let mut pending = lock(&self.pending);
        let mut live = lock(&self.live);
        let successor_token = match live.get(&ticket.call_log_id) {
            Some(s) if s.generation == ticket.generation => {
                live.remove(&ticket.call_log_id);
                None
            }
            Some(s) => s.token.clone(),
            None => None,
        };
        if let Some(t) = &ticket.token {
            if successor_token.as_ref() != Some(t) {
                pending.remove(t);
            }
        }
    }

    /// Binds the session's token to the CallSid of its `start`. A token already bound to
    /// another CallSid refuses it (with that CallSid). A session without a token, or a `start`
    /// without a CallSid, binds nothing.
    pub fn bind_call_sid(&self, ticket: &SessionTicket, call_sid: &str) -> Result<(), String> {
        let (Some(token), false) = (&ticket.token, call_sid.is_empty()) else {
            return Ok(());
        };
        let mut pending = lock(&self.pending);
        let Some(p) = pending.get_mut(token) else {
            return Ok(());
        };
        match &p.call_sid {
            Some(bound) if bound != call_sid => Err(bound.clone()),
            Some(_) => Ok(()),
            None => {
                p.call_sid = Some(call_sid.to_owned());
                Ok(())
            }
        }
    }

    /// Tokens issued and not yet expired, used up or swept.
    pub fn pending_tokens(&self) -> usize {
        lock(&self.pending).len()
    }

    /// How long an unused token lives (the webhook's calls wait this long for their media).
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Calls with a live media stream.
    pub fn active_calls(&self) -> usize {
        lock(&self.live).len()
    }

    /// Tells every live session to end its call (graceful shutdown, after the grace period).
    pub fn stop_all(&self) {
        for session in lock(&self.live).values() {
            session.stop.store(SHUTDOWN, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_their_own_call_until_they_expire() {
        let clock = crate::timer::Clock::manual();
        let registry = Registry::with_clock(Duration::from_millis(50), 10, clock.clone());
        let id = CallLogId::parse("call-1").unwrap();
        let token = registry.issue_token(&id).unwrap();
        assert_eq!(registry.lookup(&token).unwrap().call_log_id, id);
        assert_eq!(registry.lookup(&MediaToken::generate()), None);
        clock.advance(Duration::from_millis(49));
        assert!(registry.lookup(&token).is_some(), "not yet expired");
        clock.advance(Duration::from_millis(1));
        assert_eq!(registry.lookup(&token), None);
        // The next issue at a power-of-two size sweeps the expired one.
        registry.issue_token(&id).unwrap();
        assert_eq!(registry.pending_tokens(), 1);
    }

    #[test]
    fn the_pending_limit_counts_only_live_tokens() {
        let clock = crate::timer::Clock::manual();
        let registry = Registry::with_clock(Duration::from_millis(50), 3, clock.clone());
        let id = CallLogId::parse("call-2").unwrap();
        for _ in 0..3 {
            registry.issue_token(&id).unwrap();
        }
        assert_eq!(registry.issue_token(&id), Err(RegistryFull));
        clock.advance(Duration::from_millis(50));
        assert!(
            registry.issue_token(&id).is_ok(),
            "expired tokens make room"
        );
    }

    #[test]
    fn a_used_token_lives_with_its_call_and_a_second_session_replaces_the_first() {
        let clock = crate::timer::Clock::manual();
        let registry = Registry::with_clock(Duration::from_millis(50), 10, clock.clone());
        let id = CallLogId::parse("call-3").unwrap();
        let token = registry.issue_token(&id).unwrap();
        let first = registry.begin_session(&id, Some(&token));
        assert_eq!(registry.active_calls(), 1);
        clock.advance(Duration::from_millis(60));
        assert!(
            registry.lookup(&token).is_some(),
            "valid past the TTL while the call is live"
        );
        let second = registry.begin_session(&id, Some(&token));
        assert_eq!(first.stop.load(Ordering::Acquire), REPLACED);
        assert_eq!(second.stop.load(Ordering::Acquire), RUNNING);
        registry.stop_all();
        assert_eq!(second.stop.load(Ordering::Acquire), SHUTDOWN);
        assert_eq!(registry.active_calls(), 1);
        registry.end_session(&first);
        assert_eq!(
            registry.active_calls(),
            1,
            "the replaced session does not end the call"
        );
        registry.end_session(&second);
        assert_eq!(registry.active_calls(), 0);
        assert_eq!(registry.lookup(&token), None, "void once the call ended");
    }
}
