//! Signed call events to the user's backend (`EVENTS_URL`, `EVENTS_SECRET`,
//! `EVENTS_RETRY_HOURS`): where they go, the key they are signed with, how long one is retried.

use super::*;
use base64::Engine as _;

/// How long an event is retried at most unless `EVENTS_RETRY_HOURS` says otherwise.
pub const DEFAULT_EVENTS_RETRY_HOURS: u64 = 24;

/// Where events go and how they are signed. Its `Debug` leaves out the key.
#[derive(Clone)]
pub struct EventsConfig {
    /// `EVENTS_URL`: https, or http to a loopback host.
    pub url: String,
    /// The HMAC-SHA256 key: the base64 part of `EVENTS_SECRET` (`whsec_…`), decoded.
    pub key: Vec<u8>,
    /// `EVENTS_RETRY_HOURS`: an event not taken within this is given up (`failed`).
    pub retry_for: Duration,
}

impl fmt::Debug for EventsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventsConfig")
            .field("url", &self.url)
            .field("retry_for", &self.retry_for)
            .finish_non_exhaustive()
    }
}

/// `None` without `EVENTS_URL`; with it, `EVENTS_SECRET` is required (events are always signed).
pub(super) fn events_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<EventsConfig>, ConfigError> {
    let Some(url) = var("EVENTS_URL") else {
        return Ok(None);
    };
    crate::calls::destination::Destination::parse("EVENTS_URL", &url, "https", "http").map_err(
        |problem| ConfigError {
            variable: "EVENTS_URL",
            problem,
        },
    )?;
    let secret = var("EVENTS_SECRET").ok_or(ConfigError {
        variable: "EVENTS_SECRET",
        problem: "is required with EVENTS_URL: whsec_ and a base64 key (events are signed)".into(),
    })?;
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .filter(|key| (24..=64).contains(&key.len()))
        .ok_or(ConfigError {
            variable: "EVENTS_SECRET",
            problem: "is not whsec_ and the base64 of a 24 to 64 byte key".into(),
        })?;
    let hours = ranged(
        var,
        "EVENTS_RETRY_HOURS",
        DEFAULT_EVENTS_RETRY_HOURS,
        1,
        720,
    )?;
    Ok(Some(EventsConfig {
        url,
        key,
        retry_for: Duration::from_secs(hours * 3600),
    }))
}
