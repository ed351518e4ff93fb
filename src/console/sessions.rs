//! The console's sign-ins: a browser that gave the `API_TOKEN` once holds a random session id
//! in an `HttpOnly` cookie, and a CSRF token it keeps in the page's memory for the requests
//! that change something. In memory: a restart signs every browser out.
//!
//! Sign-in attempts are limited per client address ([`MAX_FAILED_SIGN_INS`] a minute), so the
//! token cannot be guessed at the speed of the network. Knows nothing of HTTP.

use crate::calls::ids::constant_time_eq;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sessions at once; past it the oldest is signed out (a browser that signs in again and
/// again, or a script, cannot grow memory).
pub const MAX_UI_SESSIONS: usize = 1_000;
/// Wrong tokens one client address may send in [`SIGN_IN_WINDOW`]; the next attempt is
/// refused unread with `Retry-After`.
pub const MAX_FAILED_SIGN_INS: u32 = 5;
pub const SIGN_IN_WINDOW: Duration = Duration::from_secs(60);
/// Client addresses whose failures are remembered at once.
const MAX_REMEMBERED_CLIENTS: usize = 10_000;

/// The cookie's name.
pub const COOKIE: &str = "evb_session";

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// A sign-in's result, for the page and the cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub id: String,
    pub csrf: String,
    pub lasts: Duration,
}

/// Why a sign-in was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInRefused {
    WrongToken,
    /// Too many wrong tokens from this address: wait this many seconds.
    TooMany {
        retry_after_s: u64,
    },
}

/// What a session cookie is worth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presented {
    /// A live session; its CSRF token.
    Valid { csrf: String },
    /// Unknown or expired.
    Invalid,
}

#[derive(Debug)]
pub struct Sessions {
    lasts: Duration,
    live: Mutex<HashMap<String, Session>>,
    failures: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl Sessions {
    pub fn new(lasts: Duration) -> Sessions {
        Sessions {
            lasts,
            live: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Checks `given` against `token` (constant time) for a client at `from`.
    pub fn sign_in(
        &self,
        token: &str,
        given: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<SignedIn, SignInRefused> {
        let mut failures = lock(&self.failures);
        failures.retain(|_, (since, _)| now.duration_since(*since) < SIGN_IN_WINDOW);
        if let Some((since, count)) = failures.get(&from) {
            if *count >= MAX_FAILED_SIGN_INS {
                let wait = SIGN_IN_WINDOW.saturating_sub(now.duration_since(*since));
                return Err(SignInRefused::TooMany {
                    retry_after_s: wait.as_secs().max(1),
                });
            }
        }
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            if failures.len() < MAX_REMEMBERED_CLIENTS || failures.contains_key(&from) {
                failures.entry(from).or_insert((now, 0)).1 += 1;
            }
            return Err(SignInRefused::WrongToken);
        }
        failures.remove(&from);
        drop(failures);
        let signed_in = SignedIn {
            id: random_hex(),
            csrf: random_hex(),
            lasts: self.lasts,
        };
        let mut live = lock(&self.live);
        live.retain(|_, s| s.expires > now);
        if live.len() >= MAX_UI_SESSIONS {
            let oldest = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(id, _)| id.clone());
            oldest.map(|id| live.remove(&id));
        }
        live.insert(
            signed_in.id.clone(),
            Session {
                csrf: signed_in.csrf.clone(),
                expires: now + self.lasts,
            },
        );
        Ok(signed_in)
    }

    /// What the cookie `id` stands for at `now`.
    pub fn presented(&self, id: &str, now: Instant) -> Presented {
        let live = lock(&self.live);
        match live.get(id) {
            Some(session) if session.expires > now => Presented::Valid {
                csrf: session.csrf.clone(),
            },
            _ => Presented::Invalid,
        }
    }

    pub fn sign_out(&self, id: &str) {
        lock(&self.live).remove(id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// 32 random bytes as hex.
fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS has randomness");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_session_lasts_its_hours_and_a_sign_out_ends_it() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let s = sessions.sign_in("tok", "tok", HOME, t0).unwrap();
        assert_eq!((s.id.len(), s.csrf.len()), (64, 64));
        assert_ne!(s.id, s.csrf);
        let valid = Presented::Valid {
            csrf: s.csrf.clone(),
        };
        assert_eq!(sessions.presented(&s.id, t0), valid);
        let almost = t0 + Duration::from_secs(3599);
        assert_eq!(sessions.presented(&s.id, almost), valid);
        let after = t0 + Duration::from_secs(3600);
        assert_eq!(sessions.presented(&s.id, after), Presented::Invalid);
        assert_eq!(sessions.presented("forged", t0), Presented::Invalid);
        sessions.sign_out(&s.id);
        assert_eq!(sessions.presented(&s.id, t0), Presented::Invalid);
    }

    #[test]
    fn five_wrong_tokens_a_minute_from_one_address_then_it_waits_and_others_do_not() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        for _ in 0..MAX_FAILED_SIGN_INS {
            assert_eq!(
                sessions.sign_in("tok", "guess", HOME, t0),
                Err(SignInRefused::WrongToken)
            );
        }
        let later = t0 + Duration::from_secs(20);
        assert_eq!(
            sessions.sign_in("tok", "tok", HOME, later),
            Err(SignInRefused::TooMany { retry_after_s: 40 }),
            "even the right token waits"
        );
        let other: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(sessions.sign_in("tok", "tok", other, later).is_ok());
        let window_over = t0 + SIGN_IN_WINDOW;
        assert!(sessions.sign_in("tok", "tok", HOME, window_over).is_ok());
    }

    #[test]
    fn at_the_session_limit_the_oldest_is_signed_out() {
        let sessions = Sessions::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let first = sessions.sign_in("t", "t", HOME, t0).unwrap();
        for i in 1..MAX_UI_SESSIONS as u64 {
            sessions
                .sign_in("t", "t", HOME, t0 + Duration::from_millis(i))
                .unwrap();
        }
        assert!(matches!(
            sessions.presented(&first.id, t0),
            Presented::Valid { .. }
        ));
        let newest = sessions
            .sign_in("t", "t", HOME, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!(sessions.presented(&first.id, t0), Presented::Invalid);
        assert!(matches!(
            sessions.presented(&newest.id, t0),
            Presented::Valid { .. }
        ));
    }
}
