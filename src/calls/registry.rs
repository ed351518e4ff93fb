//! The registry of media tokens: which token, issued by the webhook or `/call`, opens the media
//! WebSocket of which call. Shared by all coroutines; every operation holds its lock briefly and
//! never across I/O.
//!
//! It must not touch the disk or the network.

use super::{CallLogId, MediaToken};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token not used within this time after it was issued is void (issue 3).
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
}

#[derive(Debug)]
pub struct Registry {
    pending: Mutex<HashMap<MediaToken, PendingMedia>>,
    ttl: Duration,
    max_pending: usize,
    /// Media sessions running now; the media session (issue 3) counts itself in and out.
    live_media_sessions: AtomicUsize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct RegistryFull;

impl Default for Registry {
    fn default() -> Self {
        Registry::new(MEDIA_TOKEN_TTL, DEFAULT_MAX_PENDING_TOKENS)
    }
}

impl Registry {
    pub fn new(ttl: Duration, max_pending: usize) -> Registry {
        Registry {
            pending: Mutex::new(HashMap::new()),
            ttl,
            max_pending,
            live_media_sessions: AtomicUsize::new(0),
        }
    }

    /// Issues a fresh token for the call's media stream.
    pub fn issue_token(&self, call_log_id: &CallLogId) -> Result<MediaToken, RegistryFull> {
        let now = Instant::now();
        let token = MediaToken::generate();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.len() >= self.max_pending {
            pending.retain(|_, p| now.duration_since(p.issued_at) < self.ttl);
            if pending.len() >= self.max_pending {
                return Err(RegistryFull);
            }
        } else if pending.len().is_power_of_two() {
            // Amortized sweep: cost proportional to growth.
            pending.retain(|_, p| now.duration_since(p.issued_at) < self.ttl);
        }
        pending.insert(
            token.clone(),
            PendingMedia {
                call_log_id: call_log_id.clone(),
                issued_at: now,
            },
        );
        Ok(token)
    }

    /// The call a token was issued for, if it is known and not expired. The token stays valid
    /// until it expires, so a retried handshake for the same call is let in again.
    pub fn lookup(&self, token: &MediaToken) -> Option<PendingMedia> {
        let pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending
            .get(token)
            .filter(|p| p.issued_at.elapsed() < self.ttl)
            .cloned()
    }

    /// Tokens issued and not yet expired or swept.
    pub fn pending_tokens(&self) -> usize {
        self.pending.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Calls with a live media stream.
    pub fn active_calls(&self) -> usize {
        self.live_media_sessions.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_open_their_own_call_until_they_expire() {
        let registry = Registry::new(Duration::from_millis(50), 10);
        let id = CallLogId::parse("call-1").unwrap();
        let token = registry.issue_token(&id).unwrap();
        assert_eq!(registry.lookup(&token).unwrap().call_log_id, id);
        assert_eq!(registry.lookup(&MediaToken::generate()), None);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(registry.lookup(&token), None);
        // The next issue at a power-of-two size sweeps the expired one.
        registry.issue_token(&id).unwrap();
        assert_eq!(registry.pending_tokens(), 1);
    }

    #[test]
    fn the_pending_limit_counts_only_live_tokens() {
        let registry = Registry::new(Duration::from_millis(50), 3);
        let id = CallLogId::parse("call-2").unwrap();
        for _ in 0..3 {
            registry.issue_token(&id).unwrap();
        }
        assert_eq!(registry.issue_token(&id), Err(RegistryFull));
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            registry.issue_token(&id).is_ok(),
            "expired tokens make room"
        );
    }
}
