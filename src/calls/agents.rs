//! Agents: named bot configurations (the `/agents` routes are `routes::agents`). An agent is
//! the echo bot or a relay to an upstream bot (its URL and handshake headers), with an optional
//! greeting played when the call connects (a WAV kept under `DATA_DIR/agents`).
//!
//! A call's agent is the one its request names (`/call`'s or a campaign's `agent`), else its
//! phone's, else none: the environment's `BOT`. The agent is looked up when the call is dialed
//! (or, inbound, when the webhook answers) and travels with the call as a snapshot, so changing
//! an agent changes new calls only.
//!
//! The greeting is played by the in-process bots (echo, your own); a relayed bot speaks for
//! itself, so a relay agent with a greeting is refused rather than silently not greeted.

use super::{Refusal, Refused};
use crate::config::RelayConfig;
use crate::store::{Store, StoredAgent};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

/// A greeting's length at most, in seconds.
pub const MAX_GREETING_S: usize = 60;

/// What answers an agent's calls.
#[derive(Clone, Debug)]
pub enum AgentBot {
    Echo,
    Relay(Box<RelayConfig>),
}

/// When an agent's calls go to a person as the stream ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffPolicy {
    /// When the bot says so (`Outbox::hand_off`, a relayed bot's `handoff` event), the
    /// caller's key (`HANDOFF_DTMF`) or a failed bot (`BOT_FALLBACK=handoff`).
    Bot,
    /// After every call the bot ends.
    Always,
    /// Never: the Passthru is always answered "no handoff".
    Never,
}

impl HandoffPolicy {
    fn parse(s: &str) -> Result<HandoffPolicy, String> {
        match s {
            "bot" => Ok(HandoffPolicy::Bot),
            "always" => Ok(HandoffPolicy::Always),
            "never" => Ok(HandoffPolicy::Never),
            other => Err(format!("handoff {other:?} is not bot, always or never")),
        }
    }
}

/// An agent as calls use it: immutable, shared by the calls that were dialed with it.
#[derive(Debug)]
pub struct Agent {
    pub name: String,
    pub bot: AgentBot,
    pub handoff: HandoffPolicy,
    /// Played first on every call: its rate and samples.
    pub greeting: Option<(u32, Vec<i16>)>,
    stored: StoredAgent,
}

pub struct Agents {
    by_name: RwLock<BTreeMap<String, Arc<Agent>>>,
    store: Store,
    dir: PathBuf,
    /// The environment's relay settings (timeouts, fallback, CA), for relay agents.
    relay_template: Option<RelayConfig>,
    /// Where a relay agent may point.
    relay_hosts: RelayHosts,
}

/// Where an API user may make the server connect, as a relay agent's `url`: not the server
/// itself (its own ports on its own addresses), and only `RELAY_ALLOWED_HOSTS` when set.
#[derive(Clone, Debug, Default)]
pub struct RelayHosts {
    /// The server's own hosts (loopback, its bind address, its public host) are refused on
    /// these ports.
    pub own_hosts: Vec<String>,
    pub own_ports: Vec<u16>,
    /// `RELAY_ALLOWED_HOSTS`.
    pub allowed: Option<Vec<String>>,
}

impl RelayHosts {
    fn check(&self, to: &super::destination::Destination) -> Result<(), String> {
        let own_host = to.is_loopback()
            || to.host == "0.0.0.0"
            || to.host == "::"
            || self.own_hosts.contains(&to.host);
        if own_host && self.own_ports.contains(&to.port_or_default()) {
            return Err(format!(
                "url points at this server itself ({}:{}): a relay agent's bot is another server",
                to.host,
                to.port_or_default()
            ));
        }
        if let Some(allowed) = &self.allowed {
            if !allowed.contains(&to.host) {
                return Err(format!(
                    "url's host {} is not in RELAY_ALLOWED_HOSTS ({})",
                    to.host,
                    allowed.join(", ")
                ));
            }
        }
        Ok(())
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fields {
    name: Option<String>,
    bot: Option<String>,
    url: Option<String>,
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    handoff: Option<String>,
}

/// Agent names: what goes into a URL path and a file name safely.
fn check_name(name: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(fits) {
        return Err(format!(
            "name {name:?} must be 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

impl Agents {
    /// The agents kept in the store; one that no longer reads (a broken greeting file) is
    /// logged and kept without its greeting.
    pub fn new(
        store: Store,
        stored: Vec<StoredAgent>,
        dir: PathBuf,
        relay_template: Option<RelayConfig>,
        relay_hosts: RelayHosts,
    ) -> Agents {
        let agents = Agents {
            by_name: RwLock::new(BTreeMap::new()),
            store,
            dir,
            relay_template,
            relay_hosts,
        };
        for s in stored {
            match agents.build(s.clone()) {
                Ok(agent) => {
                    agents.remember(agent);
                }
                Err(e) => crate::error!("agent.unreadable", agent = s.name, error = e),
            }
        }
        agents
    }

    /// The agent with this name, as it is now.
    pub fn get(&self, name: &str) -> Option<Arc<Agent>> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, agent: Agent) -> Arc<Agent> {
        let agent = Arc::new(agent);
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(agent.name.clone(), agent.clone());
        agent
    }

    /// An agent from its stored form: the relay checked, the greeting read.
    fn build(&self, stored: StoredAgent) -> Result<Agent, String> {
        let bot = match stored.bot.as_str() {
            "echo" => AgentBot::Echo,
            "relay" => {
                let url = stored.url.as_deref().ok_or("a relay agent needs url")?;
                AgentBot::Relay(Box::new(RelayConfig::for_endpoint(
                    url,
                    stored.headers.as_deref(),
                    self.relay_template.as_ref(),
                )?))
            }
            other => return Err(format!("bot {other:?} is neither echo nor relay")),
        };
        let greeting = match &stored.greeting {
            Some(file) => {
                let path = self.dir.join(file);
                let wav = std::fs::File::open(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|mut f| crate::media::audio::read_wav(&mut f))
                    .map_err(|e| format!("greeting {}: {e}", path.display()))?;
                Some((wav.sample_rate, wav.samples))
            }
            None => None,
        };
        let handoff = HandoffPolicy::parse(stored.handoff.as_deref().unwrap_or("bot"))?;
        Ok(Agent {
            name: stored.name.clone(),
            bot,
            handoff,
            greeting,
            stored,
        })
    }

    /// A new agent from `POST /agents`'s fields.
    pub fn create(&self, fields: Fields) -> Result<Arc<Agent>, Refusal> {
        let name = fields.name.clone().unwrap_or_default();
        check_name(&name).map_err(Refusal::invalid)?;
        let stored =
            stored_from(name, fields, None, &self.relay_hosts).map_err(Refusal::invalid)?;
        self.write(stored, true)
    }

    /// The fields given replace the agent's (`PATCH /agents/{name}`); new calls get it.
    pub fn update(&self, name: &str, fields: Fields) -> Result<Arc<Agent>, Refusal> {
        let current = self.lookup(name)?;
        if fields.name.as_deref().is_some_and(|n| n != name) {
            return Err(Refusal::invalid(
                "name cannot change: create the new agent and delete this one",
            ));
        }
        let stored = stored_from(
            name.to_owned(),
            fields,
            Some(&current.stored),
            &self.relay_hosts,
        )
        .map_err(Refusal::invalid)?;
        self.write(stored, false)
    }

    fn write(&self, stored: StoredAgent, create: bool) -> Result<Arc<Agent>, Refusal> {
        let agent = self.build(stored.clone()).map_err(Refusal::invalid)?;
        if matches!(agent.bot, AgentBot::Relay(_)) && agent.greeting.is_some() {
            return Err(Refusal::invalid(
                "a relayed bot speaks its own greeting: delete the greeting first, or use echo",
            ));
        }
        match self.store.agent_put(stored, create) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::new(
                    Refused::Conflict,
                    "agent_exists",
                    format!(
                        "agent {} exists: PATCH /agents/{} changes it",
                        agent.name, agent.name
                    ),
                ))
            }
            Err(e) => return Err(Refusal::store(e)),
        }
        crate::info!(
            "agent.saved",
            agent = agent.name,
            bot = agent.stored.bot,
            created = create
        );
        Ok(self.remember(agent))
    }

    /// Every agent, by name.
    pub fn all(&self) -> Vec<Arc<Agent>> {
        self.by_name
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Removes an agent (calls already dialed with it keep it); answers its name.
    pub fn remove(&self, name: &str) -> Result<String, Refusal> {
        let agent = self.lookup(name)?;
        self.store
            .agent_remove(agent.name.clone())
            .map_err(Refusal::store)?;
        self.by_name
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&agent.name);
        if let Some(file) = &agent.stored.greeting {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
        crate::info!("agent.deleted", agent = agent.name);
        Ok(agent.name.clone())
    }

    /// Gives the agent a greeting: `wav`, a 16-bit PCM WAV (8, 16 or 24 kHz), played when each
    /// call connects.
    pub fn put_greeting(&self, name: &str, wav_file: &[u8]) -> Result<Arc<Agent>, Refusal> {
        let agent = self.lookup(name)?;
        if matches!(agent.bot, AgentBot::Relay(_)) {
            return Err(Refusal::invalid(
                "a relayed bot speaks its own greeting; greetings are for echo agents",
            ));
        }
        let wav = crate::media::audio::read_wav(&mut &wav_file[..])
            .map_err(|e| Refusal::invalid(format!("the body must be a 16-bit PCM WAV: {e}")))?;
        if !crate::exotel::stream::SAMPLE_RATES.contains(&wav.sample_rate) {
            return Err(Refusal::invalid(format!(
                "the WAV's rate is {} Hz; Exotel streams 8000, 16000 or 24000",
                wav.sample_rate
            )));
        }
        if wav.samples.len() > MAX_GREETING_S * wav.sample_rate as usize {
            return Err(Refusal::invalid(format!(
                "the greeting is longer than {MAX_GREETING_S} s"
            )));
        }
        let file = format!("{}.wav", agent.name);
        std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(self.dir.join(&file), wav_file))
            .map_err(|e| {
                Refusal::unavailable("disk_unavailable", format!("{}: {e}", self.dir.display()))
            })?;
        let mut stored = agent.stored.clone();
        stored.greeting = Some(file);
        self.write(stored, false)
    }

    /// Takes the agent's greeting away.
    pub fn delete_greeting(&self, name: &str) -> Result<Arc<Agent>, Refusal> {
        let agent = self.lookup(name)?;
        let mut stored = agent.stored.clone();
        if let Some(file) = stored.greeting.take() {
            let _ = std::fs::remove_file(self.dir.join(file));
        }
        self.write(stored, false)
    }

    /// The agent a path names.
    pub fn lookup(&self, name: &str) -> Result<Arc<Agent>, Refusal> {
        self.get(name)
            .ok_or_else(|| Refusal::not_found(format!("no agent {name:?}")))
    }
}

/// An agent as answers show it (headers' values hidden: they are often credentials).
pub fn shown(a: &Agent) -> serde_json::Value {
    let headers: Vec<String> = match &a.bot {
        AgentBot::Relay(r) => r.headers.iter().map(|(k, _)| k.clone()).collect(),
        AgentBot::Echo => Vec::new(),
    };
    serde_json::json!({
        "name": a.name,
        "bot": a.stored.bot,
        "url": a.stored.url,
        "headers": headers,
        "handoff": a.stored.handoff.as_deref().unwrap_or("bot"),
        "greeting": a.greeting.as_ref().map(|(rate, samples)| serde_json::json!({
            "sampleRate": rate,
            "seconds": samples.len() as f64 / f64::from(*rate),
        })),
    })
}

/// The stored form of an agent from the request's fields over `current`'s.
fn stored_from(
    name: String,
    fields: Fields,
    current: Option<&StoredAgent>,
    relay_hosts: &RelayHosts,
) -> Result<StoredAgent, String> {
    let bot = fields
        .bot
        .or_else(|| current.map(|c| c.bot.clone()))
        .ok_or("bot is missing: echo or relay")?;
    let moves_url = fields
        .url
        .as_ref()
        .is_some_and(|url| current.and_then(|c| c.url.as_ref()) != Some(url));
    let has_headers = current.is_some_and(|c| c.headers.is_some());
    if moves_url && has_headers && fields.headers.is_none() {
        return Err(
            "url decides where the agent's headers are sent: send headers in the same request"
                .into(),
        );
    }
    if let Some(url) = &fields.url {
        relay_hosts.check(&super::destination::Destination::parse(
            "url", url, "wss", "ws",
        )?)?;
    }
    let url = fields.url.or_else(|| current.and_then(|c| c.url.clone()));
    let headers = match fields.headers {
        Some(h) => Some(serde_json::Value::Object(h).to_string()),
        None => current.and_then(|c| c.headers.clone()),
    };
    let (url, headers) = match bot.as_str() {
        "echo" => (None, None),
        "relay" if url.is_none() => {
            return Err("url is missing: a relay agent needs ws://… or wss://…".into())
        }
        "relay" => (url, headers),
        other => return Err(format!("bot {other:?} is neither echo nor relay")),
    };
    let handoff = fields
        .handoff
        .or_else(|| current.and_then(|c| c.handoff.clone()));
    if let Some(h) = &handoff {
        HandoffPolicy::parse(h)?;
    }
    Ok(StoredAgent {
        name,
        bot,
        url,
        headers,
        greeting: current.and_then(|c| c.greeting.clone()),
        handoff,
    })
}

/// The bot an agent gives a call in process, its greeting played first.
pub struct Greeted {
    pub inner: Box<dyn crate::bot::Bot>,
    pub greeting: Arc<Agent>,
}

impl crate::bot::Bot for Greeted {
    fn on_start(&mut self, call: &crate::bot::CallStart<'_>, out: &mut crate::bot::Outbox) {
        if let Some((rate, samples)) = &self.greeting.greeting {
            out.play(&resample(samples, *rate, out.sample_rate()));
        }
        self.inner.on_start(call, out);
    }
    fn on_audio(&mut self, samples: &[i16], out: &mut crate::bot::Outbox) {
        self.inner.on_audio(samples, out);
    }
    fn on_dtmf(&mut self, digit: char, out: &mut crate::bot::Outbox) {
        self.inner.on_dtmf(digit, out);
    }
    fn on_mark(&mut self, name: &str, out: &mut crate::bot::Outbox) {
        self.inner.on_mark(name, out);
    }
    fn on_stop(&mut self, reason: &str) {
        self.inner.on_stop(reason);
    }
}

/// `samples` at `from` Hz as `to` Hz (linear; once per call, at its start).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..n)
        .map(|i| {
            let at = i as f64 * f64::from(from) / f64::from(to);
            let j = at.floor() as usize;
            let frac = at - j as f64;
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            (a + (b - a) * frac).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_the_length_in_time() {
        let s: Vec<i16> = (0..160).map(|i| i as i16).collect();
        let up = resample(&s, 8000, 16000);
        assert_eq!(up.len(), 320);
        assert_eq!((up[0], up[2], up[3]), (0, 1, 2));
        assert_eq!(resample(&up, 16000, 8000), s);
    }
}
