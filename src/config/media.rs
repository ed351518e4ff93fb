//! The media sessions' settings: what every session needs, read once from the environment.

use super::*;

/// What every media session needs to know, read once from the environment (the `MEDIA_*`
/// variables and `HANDOFF_DTMF`) and handed to each session as it is.
#[derive(Debug, Clone)]
pub struct MediaSettings {
    /// How far ahead of real time outbound audio may be sent (`MEDIA_LEAD_MS`).
    pub lead: Duration,
    /// A ping goes out after this long without sending anything.
    pub ping_interval: Duration,
    /// Nothing received for this long ends the call (`MEDIA_IDLE_TIMEOUT_MS`).
    pub idle_timeout: Duration,
    /// A stream with no usable `start` and no media this long after the socket opened is ended
    /// (`no-start`); one whose media arrives without a `start` gets one made up at once
    /// (`MEDIA_START_TIMEOUT_MS`).
    pub start_timeout: Duration,
    /// How far ahead of real time a caller's audio may run before reading waits
    /// (`MEDIA_MAX_AHEAD_S`, default [`MAX_INBOUND_LEAD`]).
    pub max_inbound_lead: Duration,
    /// Frames read from one socket per second at most (`MEDIA_MAX_FRAMES_PER_S`, default
    /// [`MAX_FRAMES_PER_SECOND`]).
    pub max_frames_per_second: u32,
    /// `HANDOFF_DTMF`: the key that hands the caller to a person at any time, whatever the bot.
    pub handoff_dtmf: Option<char>,
}

impl Default for MediaSettings {
    fn default() -> Self {
        MediaSettings {
            lead: Duration::from_millis(200),
            ping_interval: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(5),
            max_inbound_lead: MAX_INBOUND_LEAD,
            max_frames_per_second: MAX_FRAMES_PER_SECOND,
            handoff_dtmf: None,
        }
    }
}
