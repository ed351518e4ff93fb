//! Relaying calls to an upstream bot (`BOT=relay`, relay agents): the bot's address and handshake
//! headers, what happens when it cannot be reached, the CA it is trusted by, and the hosts a
//! relay agent may name.

use super::*;

/// `BOT`: what answers each call.
#[derive(Clone, Debug)]
pub enum BotChoice {
    /// The echo bot (or the bots a library user passes to `start`).
    Echo,
    /// Each call relayed to an upstream bot (`BOT=relay`).
    Relay(RelayConfig),
}

/// What a call gets when its relayed bot cannot be reached (`BOT_FALLBACK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// A short tone, then the call is hung up (`bot-unavailable`).
    Hangup,
    /// The server's own bot (the echo bot) takes the call over.
    Echo,
    /// The caller is handed to a person at once (the Passthru applet after the bot is told
    /// "hand off"), so an outage of the bot still reaches people.
    Handoff,
}

/// The stream protocol a relayed bot speaks (`BOT_PROTOCOL`; `BOT=realtime` for the last).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BotProtocol {
    /// Exotel's own: the caller's frames go to the bot as Exotel sent them.
    Exotel,
    /// Twilio Media Streams: every frame translated both ways, the audio as 8 kHz μ-law in
    /// 20 ms frames (`bot::twilio`).
    Twilio,
    /// A speech-to-speech AI service speaking OpenAI's Realtime protocol (`bot::realtime`).
    Realtime(std::sync::Arc<RealtimeSettings>),
}

/// The upstream bot of `BOT=relay`. Its `Debug` shows the headers' names only: their values
/// are often credentials.
#[derive(Clone)]
pub struct RelayConfig {
    /// `BOT_URL`, as given: `ws://` or `wss://`, host, optional port, path and query.
    pub url: String,
    pub tls: bool,
    /// The host as written (an IPv6 address without its brackets).
    pub host: String,
    pub port: u16,
    /// `BOT_HEADERS`: extra handshake headers, from a JSON object of strings.
    pub headers: Vec<(String, String)>,
    /// `BOT_FALLBACK`
    pub fallback: Fallback,
    /// `BOT_PROTOCOL`: `exotel` (the default) or `twilio`.
    pub protocol: BotProtocol,
    /// `BOT_CONNECT_TIMEOUT_MS`: connecting and the handshake at call start, at most.
    pub connect_timeout: Duration,
    /// `BOT_RECONNECT_MS`: the one reconnect after the bot dropped mid-call, at most.
    pub reconnect: Duration,
    /// `BOT_SEND_BUFFER_BYTES`: caller frames waiting for a slow bot, at most; beyond it frames
    /// are dropped and counted.
    pub send_buffer_bytes: usize,
    /// `BOT_CA_FILE`: certificates (PEM) trusted for `wss://` besides the web's root
    /// certificates, as DER: for a bot behind a private CA.
    pub extra_roots: Vec<Vec<u8>>,
}

impl fmt::Debug for RelayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("RelayConfig")
            .field("url", &self.url)
            .field("headers", &names)
            .field("fallback", &self.fallback)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// Handshake headers a user may not set: the WebSocket handshake writes them itself.
pub(super) const RESERVED_HEADERS: [&str; 6] = [
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "content-length",
];

impl RelayConfig {
    /// A relay to `url` with these handshake headers (a JSON object, as `BOT_HEADERS`), every
    /// other setting taken from `template` (the environment's relay, when `BOT=relay`) or the
    /// defaults. For an agent of `/agents`; the error names what is wrong.
    pub fn for_endpoint(
        url: &str,
        headers: Option<&str>,
        template: Option<&RelayConfig>,
    ) -> Result<RelayConfig, String> {
        let lookup = |name: &str| match name {
            "BOT_URL" => Some(url.to_owned()),
            "BOT_HEADERS" => headers.map(str::to_owned),
            _ => None,
        };
        let mut relay = RelayConfig::from_vars(&lookup).map_err(|e| {
            e.problem
                .replace("BOT_URL", "url")
                .replace("BOT_HEADERS", "headers")
        })?;
        if let Some(t) = template {
            relay.fallback = t.fallback;
            // BOT_PROTOCOL applies to every relayed bot; BOT=realtime's service is not one
            // an agent's url points at.
            if !matches!(t.protocol, BotProtocol::Realtime(_)) {
                relay.protocol = t.protocol.clone();
            }
            relay.connect_timeout = t.connect_timeout;
            relay.reconnect = t.reconnect;
            relay.send_buffer_bytes = t.send_buffer_bytes;
            relay.extra_roots = t.extra_roots.clone();
        }
        Ok(relay)
    }

    pub(super) fn from_vars(
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<RelayConfig, ConfigError> {
        let url = var("BOT_URL").ok_or(ConfigError {
            variable: "BOT_URL",
            problem: "is required with BOT=relay (ws://host:port/path or wss://…)".into(),
        })?;
        let address = BotAddress::parse(&url).map_err(|why| ConfigError {
            variable: "BOT_URL",
            problem: format!("{url:?} {why}"),
        })?;
        let headers = match var("BOT_HEADERS") {
            None => Vec::new(),
            Some(json) => parse_headers(&json).map_err(|problem| ConfigError {
                variable: "BOT_HEADERS",
                problem,
            })?,
        };
        Ok(RelayConfig {
            extra_roots: bot_ca_file(var)?,
            tls: address.tls,
            host: address.host,
            port: address.port,
            headers,
            fallback: bot_fallback(var)?,
            protocol: bot_protocol(var)?,
            connect_timeout: Duration::from_millis(ranged(
                var,
                "BOT_CONNECT_TIMEOUT_MS",
                3000,
                50,
                60_000,
            )?),
            reconnect: Duration::from_millis(ranged(var, "BOT_RECONNECT_MS", 1000, 50, 60_000)?),
            send_buffer_bytes: ranged(
                var,
                "BOT_SEND_BUFFER_BYTES",
                256 * 1024,
                16 * 1024,
                64 * 1024 * 1024,
            )? as usize,
            url,
        })
    }
}

/// Where `BOT_URL` points: the scheme's TLS, the host as written (an IPv6 address without its
/// brackets) and the port (the scheme's when none is given).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct BotAddress {
    pub(super) tls: bool,
    pub(super) host: String,
    pub(super) port: u16,
}

impl BotAddress {
    /// Reads a `ws://` or `wss://` URL; the error says what is wrong with it.
    pub(super) fn parse(url: &str) -> Result<BotAddress, &'static str> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("wss://") {
            (true, rest)
        } else if let Some(rest) = url.strip_prefix("ws://") {
            (false, rest)
        } else {
            return Err("has no ws:// or wss:// scheme");
        };
        if url.contains([' ', '#']) {
            return Err("must not hold spaces or a fragment");
        }
        let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
        if authority.contains('@') {
            return Err("holds credentials: put them in BOT_HEADERS as an Authorization header");
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or("has an unclosed [IPv6 address")?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err("has no host");
        }
        if host.contains(':') && !authority.starts_with('[') {
            return Err("has an IPv6 address without [brackets]");
        }
        let port = match port {
            None if tls => 443,
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("has a port that is not 1..=65535")?,
        };
        Ok(BotAddress {
            tls,
            host: host.to_owned(),
            port,
        })
    }
}

/// `BOT_FALLBACK`: what a call gets when its bot cannot be reached (hang up by default).
pub(super) fn bot_fallback(var: &impl Fn(&str) -> Option<String>) -> Result<Fallback, ConfigError> {
    match var("BOT_FALLBACK").as_deref() {
        None | Some("hangup") => Ok(Fallback::Hangup),
        Some("echo") => Ok(Fallback::Echo),
        Some("handoff") => Ok(Fallback::Handoff),
        Some(other) => Err(ConfigError {
            variable: "BOT_FALLBACK",
            problem: format!("{other:?} is not hangup, echo or handoff"),
        }),
    }
}

/// `BOT_PROTOCOL`: the stream protocol the relayed bot speaks.
pub(super) fn bot_protocol(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<BotProtocol, ConfigError> {
    match var("BOT_PROTOCOL").as_deref() {
        None | Some("exotel") => Ok(BotProtocol::Exotel),
        Some("twilio") => Ok(BotProtocol::Twilio),
        Some(other) => Err(ConfigError {
            variable: "BOT_PROTOCOL",
            problem: format!("{other:?} is neither exotel nor twilio"),
        }),
    }
}

/// `BOT_CA_FILE`: the certificates it holds, trusted for `wss://` besides the web's roots.
pub(super) fn bot_ca_file(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<Vec<u8>>, ConfigError> {
    let Some(path) = var("BOT_CA_FILE") else {
        return Ok(Vec::new());
    };
    crate::tls::trust_anchors(std::path::Path::new(&path)).map_err(|problem| ConfigError {
        variable: "BOT_CA_FILE",
        problem: format!("{path:?} {problem}"),
    })
}

/// `BOT_HEADERS`: `{"Authorization": "Bearer …", "X-Tenant": "a"}`.
pub(super) fn parse_headers(json: &str) -> Result<Vec<(String, String)>, String> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)
        .map_err(|e| format!("is not a JSON object of header names and strings ({e})"))?;
    let mut headers = Vec::with_capacity(map.len());
    for (name, value) in map {
        let serde_json::Value::String(value) = value else {
            return Err(format!("the value of {name:?} is not a string"));
        };
        if tungstenite::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("{name:?} is not a valid header name"));
        }
        if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{name:?} is written by the WebSocket handshake itself"
            ));
        }
        if tungstenite::http::HeaderValue::from_str(&value).is_err() {
            return Err(format!("the value of {name:?} holds control characters"));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

/// What relay and realtime agents take from the environment, whatever `BOT` is (with
/// `BOT=echo` too): an agent says where its bot is, the environment how it is reached.
#[derive(Clone, Debug)]
pub struct AgentBotDefaults {
    /// `BOT_FALLBACK`, `BOT_PROTOCOL`, the `BOT_*` timeouts, `BOT_SEND_BUFFER_BYTES` and
    /// `BOT_CA_FILE`; its URL is a placeholder, its headers none (an agent's are its own).
    pub relay: RelayConfig,
    /// `OPENAI_API_KEY` and `REALTIME_*`: realtime agents' defaults (and `BOT=realtime`'s).
    pub realtime: RealtimeDefaults,
    /// `RELAY_ALLOWED_HOSTS`: the hosts an agent's `url` may name (an API user makes the
    /// server connect there); `None`, any host but the server itself.
    pub allowed_hosts: Option<Vec<String>>,
}

impl AgentBotDefaults {
    pub(super) fn from_vars(
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<AgentBotDefaults, ConfigError> {
        let lookup = |name: &str| match name {
            "BOT_URL" => Some("ws://agent.invalid/".to_owned()),
            "BOT_HEADERS" => None,
            other => var(other),
        };
        Ok(AgentBotDefaults {
            relay: RelayConfig::from_vars(&lookup)?,
            realtime: RealtimeDefaults::from_vars(var)?,
            allowed_hosts: relay_allowed_hosts_from_vars(var)?,
        })
    }
}

/// `RELAY_ALLOWED_HOSTS`: comma-separated host names or addresses, lower-cased.
pub(super) fn relay_allowed_hosts_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(list) = var("RELAY_ALLOWED_HOSTS") else {
        return Ok(None);
    };
    let hosts: Vec<String> = list
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    for host in &hosts {
        crate::calls::destination::check_host("RELAY_ALLOWED_HOSTS", host).map_err(|problem| {
            ConfigError {
                variable: "RELAY_ALLOWED_HOSTS",
                problem,
            }
        })?;
    }
    Ok(Some(hosts))
}
