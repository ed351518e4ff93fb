//! Configuration: the `.env` file, then the process environment (which wins), parsed and
//! validated once at start into [`Config`].
//!
//! Owns every variable's name, default and check. It must not be read anywhere else: the rest of
//! the code gets a `Config`, never the environment.

use crate::http::Limits;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

mod relay;
pub use relay::*;

mod realtime;
pub use realtime::*;

mod access;
mod events;
pub use access::*;
pub use events::*;

mod media;
pub use media::*;

mod storage;

/// Frames read from one media socket in one second at most (`MEDIA_MAX_FRAMES_PER_S`; Exotel
/// sends about 50); past it the session waits for the second to end before reading on. may's
/// coroutines are cooperative: a peer that floods its socket would otherwise keep its session
/// from ever parking, and every call on that worker would stall (seen: seconds of silence for
/// dozens of calls next to one client sending as fast as loopback allows).
/// `may::coroutine::yield_now` was tried first and lost the session's next read timeout (the
/// window `vendor/README.md` describes).
pub const MAX_FRAMES_PER_SECOND: u32 = 1000;
/// A caller whose audio is more than this far ahead of real time (since its first frame) is not
/// read until real time catches up (`MEDIA_MAX_AHEAD_S`): Exotel sends in real time, and a peer
/// that floods would otherwise queue hours of audio for the bot and hold a worker in seconds.
/// Not reading is TCP's back-pressure on the sender; nothing is dropped.
pub const MAX_INBOUND_LEAD: Duration = Duration::from_secs(10);
/// How long a media loop that found little to do rests before it asks for readiness again
/// (`MEDIA_LOOP_REST_MS`, at most [`MAX_LOOP_REST_MS`]), so that frames arriving meanwhile
/// share one wake-up rather than having one each: a wake-up is a loop's dearest step at light
/// load (docs/ARCHITECTURE.md §7). A frame waits this much at most. A loop with a relayed call
/// on it does not rest (see `media::engine`).
pub const DEFAULT_LOOP_REST: Duration = Duration::from_millis(2);
/// The longest `MEDIA_LOOP_REST_MS`: the 20 ms a chunk's turnaround is held to, which a longer
/// rest alone would break.
pub const MAX_LOOP_REST_MS: u64 = 20;

/// How `POST /call` asks Exotel to connect the call to us (docs/exotel.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectMode {
    /// `Url` = the flow with the Voicebot applet; Exotel then calls our connect webhook.
    Applet,
    /// "Connect Voice AI": `StreamType=bidirectional` + `StreamUrl`; no applet, no webhook.
    Stream,
}

/// Exotel account settings. Credentials are optional: without them the server still runs and
/// `/call` answers 503 naming what is missing.
#[derive(Clone, Debug)]
pub struct ExotelConfig {
    pub api_key: Option<String>,
    pub api_token: Option<String>,
    pub sid: Option<String>,
    pub app_id: Option<String>,
    pub caller_id: Option<String>,
    /// `https://api.exotel.com` unless `EXOTEL_API_BASE_URL` says otherwise; no trailing slash.
    pub api_base_url: String,
    pub connect_mode: ConnectMode,
    /// How long `/call` waits for Exotel's answer (`EXOTEL_TIMEOUT_MS`).
    pub timeout: Duration,
    /// OS threads that make the blocking API requests (`EXOTEL_API_THREADS`).
    pub api_threads: usize,
}

impl ExotelConfig {
    /// The variables `/call` needs that are not set, by their environment names.
    pub fn missing_for_calls(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        let required = [
            ("EXOTEL_API_KEY", &self.api_key),
            ("EXOTEL_API_TOKEN", &self.api_token),
            ("EXOTEL_SID", &self.sid),
            ("EXOTEL_CALLER_ID", &self.caller_id),
        ];
        for (name, value) in required {
            if value.is_none() {
                missing.push(name);
            }
        }
        if self.connect_mode == ConnectMode::Applet && self.app_id.is_none() {
            missing.push("EXOTEL_APP_ID");
        }
        missing
    }
}

/// Everything the server reads from its environment.
#[derive(Clone, Debug)]
pub struct Config {
    pub bind: IpAddr,
    pub port: u16,
    /// The public base URL, `https://host[/prefix]`, no trailing slash: `WEBHOOK_BASE_URL`, else
    /// `RENDER_EXTERNAL_URL`; when neither is set the server uses `http://localhost:<bound port>`.
    pub public_base_url: Option<String>,
    pub exotel: ExotelConfig,
    /// Who may ask what: all that `auth` reads.
    pub access: Access,
    /// `SAMPLE_RATE`: the audio rate asked of Exotel in the media URL.
    pub sample_rate: u32,
    /// `MAX_PENDING_MEDIA_TOKENS`: media tokens issued and not yet expired, at most.
    pub max_pending_media_tokens: usize,
    /// `MEDIA_PORT`: a dedicated listener for the media WebSocket (any path), besides `/media`.
    pub media_port: Option<u16>,
    /// `TLS_CERT` and `TLS_KEY`: PEM files that make `PORT` (and `MEDIA_PORT`) serve HTTPS and
    /// `wss://`, read again on SIGHUP.
    pub tls: Option<crate::tls::TlsFiles>,
    /// `MEDIA_SECRET`: lets in a media socket without a per-call token (static applet URL).
    pub media_secret: Option<String>,
    /// What every media session needs (`MEDIA_LEAD_MS`, `MEDIA_IDLE_TIMEOUT_MS`,
    /// `MEDIA_PING_INTERVAL_MS`, `MEDIA_START_TIMEOUT_MS`, `MEDIA_MAX_AHEAD_S`,
    /// `MEDIA_MAX_FRAMES_PER_S`, `HANDOFF_DTMF`), as the sessions take it.
    pub media: MediaSettings,
    /// `MEDIA_TOKEN_TTL_S`: an unused media token expires this long after the webhook issued it
    /// (and a webhook call whose media has not connected by then is ended, `no-media`).
    pub media_token_ttl: Duration,
    /// `MEDIA_LOOPS`: event-loop threads that carry the media sockets of calls answered by a
    /// bot in this process (default: one per core this process may run on); 0 runs each call
    /// on its connection's coroutine instead. Relayed and TLS calls always run on coroutines.
    pub media_loops: usize,
    /// `MEDIA_LOOP_REST_MS`: how long a media loop that found little to do rests before it
    /// looks for readiness again, so that frames arriving meanwhile share one wake-up (0-20,
    /// default 2). A caller's frame or a bot's chunk waits this much at most; a lower value
    /// costs CPU at light load, a higher one adds latency.
    pub media_loop_rest: Duration,
    /// `CALL_CHECK_MARGIN_S`: after a placed call's ring time plus this with no status, Exotel
    /// is asked about it; also what a stream-mode media token outlives the ring time by.
    pub call_check_margin: Duration,
    /// `ECHO_DELAY_MS`: how far behind the caller the echo bot plays.
    pub echo_delay_ms: u32,
    /// `BOT`: the echo bot, or a relay to an upstream bot (`BOT_URL`, …).
    pub bot: BotChoice,
    /// What relay and realtime agents take from the environment, whatever `BOT` is.
    pub agent_bots: AgentBotDefaults,
    /// `DATA_DIR`: recordings, agents' greetings and (without `DATABASE_URL`) the SQLite
    /// database live here.
    pub data_dir: std::path::PathBuf,
    /// `DATABASE_URL`, else SQLite's `DATA_DIR/calls.db`: where the stored state lives.
    pub database: crate::store::Location,
    /// `INSTANCE_LEASE_S`: on PostgreSQL, how long a dead instance's slots and campaigns stay
    /// its own.
    pub instance_lease: Duration,
    /// `MAX_CONCURRENT_CALLS`: live calls at once, inbound and outbound together.
    pub max_concurrent_calls: usize,
    /// `CALL_SLOT_TIMEOUT_S`: a call's slot is given back after this long whatever happened.
    pub call_slot_timeout: Duration,
    /// `SHUTDOWN_GRACE_S`: after SIGTERM or SIGINT, how long live calls may go on.
    pub shutdown_grace: Duration,
    /// `RECORD`: write each call as a stereo WAV under `$DATA_DIR/recordings`.
    pub record: bool,
    pub http: Limits,
    /// `LOG_LEVEL` and `LOG_FORMAT`.
    pub log: crate::log::Settings,
    /// `EVENTS_URL` and its secret: signed call events to the user's backend, when set.
    pub events: Option<EventsConfig>,
    /// `RETENTION_DAYS`: calls (rows and recordings) older than this are deleted by the server;
    /// `None` keeps everything.
    pub retention: Option<Duration>,
    /// `CAMPAIGN_CLOCK_START` (RFC 3339): the campaigns' clock reads this when the server
    /// starts and runs on from it, to rehearse a calling window (and for the tests); `None`
    /// is the system clock.
    pub campaign_clock_start: Option<i64>,
    /// `CAMPAIGN_DNC_KEY` (default `9`, `off` for none): a caller who presses it during a
    /// campaign call is put on the do-not-call list.
    pub campaign_dnc_key: Option<char>,
    /// `PASSTHRU_HANDOFF_STATUS` (`200` by default, or `302`): the Passthru answer that means
    /// "hand off"; the other one means "no handoff".
    pub passthru_handoff_status: u16,
}

/// A variable that is present but wrong: names it and says what is wrong.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `.env` in the working directory (if any), then the environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let mut vars = match std::fs::read_to_string(Path::new(".env")) {
            Ok(text) => parse_dotenv(&text).map_err(|problem| ConfigError {
                variable: ".env",
                problem,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => {
                return Err(ConfigError {
                    variable: ".env",
                    problem: format!("cannot be read: {e}"),
                })
            }
        };
        vars.extend(std::env::vars());
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    /// Builds the configuration from any source of variables; empty values count as unset.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let var = |name: &str| {
            get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };

        let port = parse_or(&var, "PORT", 3000u16, "is not a port number (0-65535)")?;
        let bind = parse_or(
            &var,
            "BIND",
            IpAddr::from([0, 0, 0, 0]),
            "is not an IP address (e.g. 0.0.0.0 or 127.0.0.1)",
        )?;

        let configured_base = match var("WEBHOOK_BASE_URL") {
            Some(v) => Some(base_url("WEBHOOK_BASE_URL", &v)?),
            None => match var("RENDER_EXTERNAL_URL") {
                Some(v) => Some(base_url("RENDER_EXTERNAL_URL", &v)?),
                None => None,
            },
        };

        let exotel = exotel_from_vars(&var)?;

        let media = media_from_vars(&var)?;
        let calls = calls_from_vars(&var)?;
        let http = limits_from_vars(&var)?;
        let console = console_from_vars(&var, configured_base.as_deref())?;

        Ok(Config {
            bind,
            port,
            public_base_url: configured_base,
            exotel,
            access: Access {
                console,
                ..access_from_vars(&var)?
            },
            sample_rate: media.sample_rate,
            max_pending_media_tokens: media.max_pending_media_tokens,
            media_port: media.media_port,
            tls: tls_from_vars(&var)?,
            media_secret: var("MEDIA_SECRET"),
            media: MediaSettings {
                handoff_dtmf: calls.handoff_dtmf,
                ..media.settings
            },
            media_token_ttl: media.media_token_ttl,
            media_loops: media.media_loops,
            media_loop_rest: media.media_loop_rest,
            call_check_margin: calls.call_check_margin,
            echo_delay_ms: calls.echo_delay_ms,
            bot: calls.bot,
            agent_bots: AgentBotDefaults::from_vars(&var)?,
            database: storage::location_from_vars(&var, &calls.data_dir)?,
            instance_lease: storage::instance_lease(&var)?,
            data_dir: calls.data_dir,
            max_concurrent_calls: calls.max_concurrent_calls,
            call_slot_timeout: calls.call_slot_timeout,
            shutdown_grace: calls.shutdown_grace,
            record: calls.record,
            http,
            log: log_from_vars(&var)?,
            events: events_from_vars(&var)?,
            retention: calls.retention,
            campaign_clock_start: calls.campaign_clock_start,
            campaign_dnc_key: calls.campaign_dnc_key,
            passthru_handoff_status: calls.passthru_handoff_status,
        })
    }
}

/// The media socket's variables, read by [`media_from_vars`].
struct MediaVars {
    sample_rate: u32,
    max_pending_media_tokens: usize,
    media_port: Option<u16>,
    /// The sessions' settings, but for `HANDOFF_DTMF` (a call's, read with the calls').
    settings: MediaSettings,
    media_token_ttl: Duration,
    media_loops: usize,
    media_loop_rest: Duration,
}

/// `SAMPLE_RATE`, `MAX_PENDING_MEDIA_TOKENS` and the `MEDIA_*` limits.
/// `SAMPLE_RATE`: one of Exotel's rates.
fn sample_rate_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<u32, ConfigError> {
    let sample_rate = ranged(var, "SAMPLE_RATE", 8000, 8000, 24000)? as u32;
    if ![8000, 16000, 24000].contains(&sample_rate) {
        return Err(ConfigError {
            variable: "SAMPLE_RATE",
            problem: format!("{sample_rate} is not one of Exotel's rates: 8000, 16000, 24000"),
        });
    }
    Ok(sample_rate)
}

fn media_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<MediaVars, ConfigError> {
    let sample_rate = sample_rate_from_vars(var)?;
    let max_pending_media_tokens = ranged(
        var,
        "MAX_PENDING_MEDIA_TOKENS",
        crate::calls::registry::DEFAULT_MAX_PENDING_TOKENS as u64,
        1,
        10_000_000,
    )? as usize;

    let media_port = match var("MEDIA_PORT") {
        None => None,
        Some(v) => Some(v.parse::<u16>().map_err(|_| ConfigError {
            variable: "MEDIA_PORT",
            problem: format!("{v:?} is not a port number (0-65535)"),
        })?),
    };
    let media_lead = Duration::from_millis(ranged(var, "MEDIA_LEAD_MS", 200, 0, 5_000)?);
    let media_idle_timeout = Duration::from_millis(ranged(
        var,
        "MEDIA_IDLE_TIMEOUT_MS",
        30_000,
        100,
        3_600_000,
    )?);
    let media_ping_interval =
        Duration::from_millis(ranged(var, "MEDIA_PING_INTERVAL_MS", 10_000, 100, 600_000)?);
    let media_start_timeout =
        Duration::from_millis(ranged(var, "MEDIA_START_TIMEOUT_MS", 5_000, 100, 600_000)?);
    let media_token_ttl = Duration::from_secs(ranged(
        var,
        "MEDIA_TOKEN_TTL_S",
        crate::calls::registry::MEDIA_TOKEN_TTL.as_secs(),
        1,
        3600,
    )?);
    let media_max_ahead = Duration::from_secs(ranged(
        var,
        "MEDIA_MAX_AHEAD_S",
        MAX_INBOUND_LEAD.as_secs(),
        1,
        86_400,
    )?);
    let media_max_frames_per_second = ranged(
        var,
        "MEDIA_MAX_FRAMES_PER_S",
        MAX_FRAMES_PER_SECOND.into(),
        10,
        1_000_000,
    )? as u32;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let media_loops = ranged(var, "MEDIA_LOOPS", cores, 0, 1024)? as usize;
    let default_rest = DEFAULT_LOOP_REST.as_millis() as u64;
    let media_loop_rest = Duration::from_millis(ranged(
        var,
        "MEDIA_LOOP_REST_MS",
        default_rest,
        0,
        MAX_LOOP_REST_MS,
    )?);
    Ok(MediaVars {
        sample_rate,
        max_pending_media_tokens,
        media_port,
        settings: MediaSettings {
            lead: media_lead,
            idle_timeout: media_idle_timeout,
            ping_interval: media_ping_interval,
            start_timeout: media_start_timeout,
            max_inbound_lead: media_max_ahead,
            max_frames_per_second: media_max_frames_per_second,
            handoff_dtmf: None,
        },
        media_token_ttl,
        media_loops,
        media_loop_rest,
    })
}

/// The calls' variables, read by [`calls_from_vars`].
struct CallsVars {
    call_check_margin: Duration,
    echo_delay_ms: u32,
    bot: BotChoice,
    data_dir: std::path::PathBuf,
    max_concurrent_calls: usize,
    call_slot_timeout: Duration,
    shutdown_grace: Duration,
    record: bool,
    retention: Option<Duration>,
    campaign_clock_start: Option<i64>,
    campaign_dnc_key: Option<char>,
    handoff_dtmf: Option<char>,
    passthru_handoff_status: u16,
}

/// The bot, the concurrency and lifetime of calls, and what is kept of them on disk.
fn calls_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<CallsVars, ConfigError> {
    let call_check_margin = Duration::from_secs(ranged(var, "CALL_CHECK_MARGIN_S", 60, 1, 86_400)?);
    let echo_delay_ms = ranged(var, "ECHO_DELAY_MS", 400, 0, 10_000)? as u32;
    let max_concurrent_calls = ranged(var, "MAX_CONCURRENT_CALLS", 50, 1, 100_000)? as usize;
    let call_slot_timeout =
        Duration::from_secs(ranged(var, "CALL_SLOT_TIMEOUT_S", 7200, 1, 7 * 86_400)?);
    let record = match var("RECORD")
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("0" | "false" | "off" | "no") => false,
        Some("1" | "true" | "on" | "yes") => true,
        Some(other) => {
            return Err(ConfigError {
                variable: "RECORD",
                problem: format!("{other:?} is neither 1/true/on nor 0/false/off"),
            })
        }
    };
    let shutdown_grace = Duration::from_secs(ranged(var, "SHUTDOWN_GRACE_S", 30, 0, 3600)?);
    let data_dir = std::path::PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "./data".into()));
    let bot = match var("BOT").as_deref() {
        None | Some("echo") => BotChoice::Echo,
        Some("relay") => BotChoice::Relay(RelayConfig::from_vars(var)?),
        Some("realtime") => BotChoice::Relay(RealtimeDefaults::from_vars(var)?.relay(var)?),
        Some(other) => {
            return Err(ConfigError {
                variable: "BOT",
                problem: format!("{other:?} is not a bot this version has (echo, relay, realtime)"),
            })
        }
    };

    let retention = match var("RETENTION_DAYS") {
        None => None,
        Some(_) => Some(Duration::from_secs(
            86_400 * ranged(var, "RETENTION_DAYS", 0, 1, 36_500)?,
        )),
    };
    let campaign_clock_start = var("CAMPAIGN_CLOCK_START")
        .map(|v| {
            crate::calls::campaigns::window::parse_time(&v).map_err(|problem| ConfigError {
                variable: "CAMPAIGN_CLOCK_START",
                problem,
            })
        })
        .transpose()?;
    let campaign_dnc_key = key_var(var, "CAMPAIGN_DNC_KEY", Some('9'))?;
    let handoff_dtmf = key_var(var, "HANDOFF_DTMF", None)?;
    let passthru_handoff_status = match var("PASSTHRU_HANDOFF_STATUS").as_deref() {
        None | Some("200") => 200,
        Some("302") => 302,
        Some(other) => {
            return Err(ConfigError {
                variable: "PASSTHRU_HANDOFF_STATUS",
                problem: format!("{other:?} is neither 200 nor 302"),
            })
        }
    };
    Ok(CallsVars {
        call_check_margin,
        echo_delay_ms,
        bot,
        data_dir,
        max_concurrent_calls,
        call_slot_timeout,
        shutdown_grace,
        record,
        retention,
        campaign_clock_start,
        campaign_dnc_key,
        handoff_dtmf,
        passthru_handoff_status,
    })
}

/// A phone key (`0`-`9`, `*`, `#`), or `off`/`none` for none; `default` when unset.
fn key_var(
    var: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: Option<char>,
) -> Result<Option<char>, ConfigError> {
    match var(variable).as_deref() {
        None => Ok(default),
        Some("off" | "none") => Ok(None),
        Some(k)
            if k.len() == 1
                && k.chars()
                    .all(|c| c.is_ascii_digit() || c == '*' || c == '#') =>
        {
            Ok(k.chars().next())
        }
        Some(other) => Err(ConfigError {
            variable,
            problem: format!("{other:?} is not one key (0-9, * or #) nor off"),
        }),
    }
}

/// `LOG_LEVEL` (info, warn, error, off) and `LOG_FORMAT` (text, json).
fn log_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<crate::log::Settings, ConfigError> {
    let level = match var("LOG_LEVEL") {
        None => crate::log::Settings::DEFAULT.level,
        Some(v) => crate::log::Settings::parse_level(&v).ok_or_else(|| ConfigError {
            variable: "LOG_LEVEL",
            problem: format!("{v:?} is not one of info, warn, error, off"),
        })?,
    };
    let json = match var("LOG_FORMAT").map(|v| v.to_ascii_lowercase()).as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            return Err(ConfigError {
                variable: "LOG_FORMAT",
                problem: format!("{other:?} is neither text nor json"),
            })
        }
    };
    Ok(crate::log::Settings { level, json })
}

/// `TLS_CERT` and `TLS_KEY`, both or neither, read once here so that a broken pair stops the
/// server at start with the variable named.
fn tls_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<crate::tls::TlsFiles>, ConfigError> {
    let files = match (var("TLS_CERT"), var("TLS_KEY")) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => crate::tls::TlsFiles {
            cert: cert.into(),
            key: key.into(),
        },
        (cert, _) => {
            let (variable, other) = match cert {
                Some(_) => ("TLS_KEY", "TLS_CERT"),
                None => ("TLS_CERT", "TLS_KEY"),
            };
            return Err(ConfigError {
                variable,
                problem: format!("is needed with {other} (HTTPS takes a certificate and its key)"),
            });
        }
    };
    crate::tls::server_config(&files).map_err(|e| ConfigError {
        variable: e.variable,
        problem: e.problem,
    })?;
    Ok(Some(files))
}

/// The `EXOTEL_*` variables.
fn exotel_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<ExotelConfig, ConfigError> {
    let subdomain = var("EXOTEL_SUBDOMAIN").unwrap_or_else(|| "api.exotel.com".into());
    let subdomain = subdomain
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    if subdomain.is_empty() || subdomain.contains(['/', ' ', '@']) {
        return Err(ConfigError {
            variable: "EXOTEL_SUBDOMAIN",
            problem: format!(
                "{subdomain:?} is not a host name (api.exotel.com or api.in.exotel.com)"
            ),
        });
    }
    let api_base_url = match var("EXOTEL_API_BASE_URL") {
        Some(v) => base_url("EXOTEL_API_BASE_URL", &v)?,
        None => format!("https://{subdomain}"),
    };

    let app_id = url_segment(var, "EXOTEL_APP_ID")?;
    let connect_mode = match var("EXOTEL_CONNECT_MODE").as_deref() {
        None if app_id.is_some() => ConnectMode::Applet,
        None => ConnectMode::Stream,
        Some("applet") => ConnectMode::Applet,
        Some("stream") => ConnectMode::Stream,
        Some(other) => {
            return Err(ConfigError {
                variable: "EXOTEL_CONNECT_MODE",
                problem: format!("{other:?} is neither \"applet\" nor \"stream\""),
            })
        }
    };
    let timeout_ms = ranged(var, "EXOTEL_TIMEOUT_MS", 10_000, 100, 120_000)?;
    let api_threads = ranged(var, "EXOTEL_API_THREADS", 4, 1, 64)?;

    Ok(ExotelConfig {
        api_key: var("EXOTEL_API_KEY"),
        api_token: var("EXOTEL_API_TOKEN"),
        sid: url_segment(var, "EXOTEL_SID")?,
        app_id,
        caller_id: var("EXOTEL_CALLER_ID"),
        api_base_url,
        connect_mode,
        timeout: Duration::from_millis(timeout_ms),
        api_threads: api_threads as usize,
    })
}

/// A variable that becomes one segment of an Exotel URL path (the account SID, the app id).
fn url_segment(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = var(name) else {
        return Ok(None);
    };
    crate::exotel::client::check_url_segment(&value).map_err(|problem| ConfigError {
        variable: name,
        problem: format!("{problem} (copy it from the Exotel dashboard's API settings)"),
    })?;
    Ok(Some(value))
}

/// The `HTTP_*` limits.
fn limits_from_vars(var: &impl Fn(&str) -> Option<String>) -> Result<Limits, ConfigError> {
    let defaults = Limits::default();
    let limits = Limits {
        max_headers: ranged(
            &var,
            "HTTP_MAX_HEADERS",
            defaults.max_headers as u64,
            8,
            1000,
        )? as usize,
        max_head_bytes: ranged(
            var,
            "HTTP_MAX_HEAD_BYTES",
            defaults.max_head_bytes as u64,
            1024,
            1 << 20,
        )? as usize,
        max_body_bytes: ranged(
            var,
            "HTTP_MAX_BODY_BYTES",
            defaults.max_body_bytes as u64,
            1024,
            16 << 20,
        )? as usize,
        max_upload_bytes: ranged(
            var,
            "HTTP_MAX_UPLOAD_BYTES",
            defaults.max_upload_bytes as u64,
            1024,
            256 << 20,
        )? as usize,
        uploads: defaults.uploads,
        max_uploads_held_bytes: ranged(
            var,
            "HTTP_MAX_UPLOADS_HELD_BYTES",
            defaults.max_uploads_held_bytes as u64,
            1024,
            4 << 30,
        )? as usize,
        idle_timeout: Duration::from_millis(ranged(
            var,
            "HTTP_IDLE_TIMEOUT_MS",
            defaults.idle_timeout.as_millis() as u64,
            50,
            3_600_000,
        )?),
        head_timeout: Duration::from_millis(ranged(
            var,
            "HTTP_HEAD_TIMEOUT_MS",
            defaults.head_timeout.as_millis() as u64,
            50,
            600_000,
        )?),
        max_connections: ranged(
            var,
            "HTTP_MAX_CONNECTIONS",
            defaults.max_connections as u64,
            1,
            1_000_000,
        )? as usize,
    };
    if limits.max_uploads_held_bytes < limits.max_upload_bytes {
        return Err(ConfigError {
            variable: "HTTP_MAX_UPLOADS_HELD_BYTES",
            problem: format!(
                "{} is less than HTTP_MAX_UPLOAD_BYTES ({}), so the largest upload could never be taken",
                limits.max_uploads_held_bytes, limits.max_upload_bytes
            ),
        });
    }
    Ok(limits)
}

/// `TRUST_PROXY`: the addresses of reverse proxies whose forwarded requests may use `/call`,
/// `/calls` and `/metrics` without a token (comma-separated IPs).
fn parse_or<T: std::str::FromStr>(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    problem: &str,
) -> Result<T, ConfigError> {
    match var(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError {
            variable: name,
            problem: format!("{v:?} {problem}"),
        }),
    }
}

fn ranged(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = parse_or(var, name, default, "is not a whole number")?;
    if !(min..=max).contains(&value) {
        return Err(ConfigError {
            variable: name,
            problem: format!("{value} is outside {min}..={max}"),
        });
    }
    Ok(value)
}

/// An `http://` or `https://` URL with a host, returned without its trailing slash.
fn base_url(name: &'static str, value: &str) -> Result<String, ConfigError> {
    let rest = value
        .strip_prefix("https://")
        .or_else(|| value.strip_prefix("http://"));
    let bad = |why: &str| ConfigError {
        variable: name,
        problem: format!("{value:?} {why}"),
    };
    match rest {
        None => Err(bad("has no http:// or https:// scheme")),
        Some(r) if r.is_empty() || r.starts_with('/') => Err(bad("has no host")),
        Some(r) if r.contains(['?', '#', ' ']) => {
            Err(bad("must be a base URL without query, fragment or spaces"))
        }
        Some(_) => Ok(value.trim_end_matches('/').to_owned()),
    }
}

/// The variables of a `.env` text, by dotenvy's rules (the ones the Node server's `dotenv` and
/// most tools share): `KEY=value`, `export KEY=value`, `#` comments, single quotes taken as they
/// are, double quotes with escapes and `${OTHER}` substitution. A line it cannot read is an
/// error naming the line, not a value silently dropped.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, String> {
    dotenvy::from_read_iter(text.as_bytes())
        .map(|item| {
            item.map_err(|e| match e {
                dotenvy::Error::LineParse(line, at) => {
                    format!("cannot read {line:?} (at character {at}): write it as KEY=value")
                }
                other => other.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
