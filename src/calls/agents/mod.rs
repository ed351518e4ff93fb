//! Agents: named bot configurations (the `/agents` routes are `routes::agents`). An agent is
//! the echo bot, a relay to an upstream bot (its URL, handshake headers and protocol), or a
//! speech-to-speech AI service (`realtime`: instructions, voice, model, greeting, turn
//! detection, its write-only API key); an echo agent may have a greeting played when the call
//! connects (a WAV kept under `DATA_DIR/agents`). [`fields`] checks what a request may set.
//!
//! A call's agent is the one its request names (`/call`'s or a campaign's `agent`), else its
//! phone's, else none: the environment's `BOT`. The agent is looked up when the call is dialed
//! (or, inbound, when the webhook answers) and travels with the call as a snapshot, so changing
//! an agent changes new calls only.
//!
//! The greeting is played by the in-process bots (echo, your own); a relayed bot speaks for
//! itself, so a relay agent with a greeting is refused rather than silently not greeted.

mod fields;
mod greeted;

pub use fields::Fields;
pub use greeted::{resample, Greeted};

use super::{Refusal, Refused};
use crate::config::{RealtimeDefaults, RealtimeSettings, RelayConfig, TurnDetection};
use crate::store::{Store, StoredAgent};
use fields::{check_name, stored_from, RealtimeFields};
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
    /// A speech-to-speech service, reached as a relayed bot whose protocol is `Realtime`.
    Realtime {
        relay: Box<RelayConfig>,
        model: String,
    },
}

impl AgentBot {
    /// The relayed bot its calls are bridged to; `None` for the echo bot.
    pub fn relay(&self) -> Option<&RelayConfig> {
        match self {
            AgentBot::Echo => None,
            AgentBot::Relay(relay) | AgentBot::Realtime { relay, .. } => Some(relay),
        }
    }

    /// A realtime agent's settings.
    pub fn realtime(&self) -> Option<&RealtimeSettings> {
        match self.relay().map(|r| &r.protocol) {
            Some(crate::config::BotProtocol::Realtime(settings)) => Some(settings),
            _ => None,
        }
    }
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
    pub(super) fn parse(s: &str) -> Result<HandoffPolicy, String> {
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
    defaults: AgentDefaults,
}

/// What an agent does not say itself: the environment's.
pub struct AgentDefaults {
    /// The environment's relay settings (timeouts, fallback, protocol, CA), for relay and
    /// realtime agents.
    pub relay: RelayConfig,
    /// `OPENAI_API_KEY` and `REALTIME_*`, for realtime agents.
    pub realtime: RealtimeDefaults,
    /// Where a relay or realtime agent may point.
    pub hosts: RelayHosts,
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

impl Agents {
    /// The agents kept in the store; one that no longer reads (a broken greeting file) is
    /// logged and kept without its greeting.
    pub fn new(
        store: Store,
        stored: Vec<StoredAgent>,
        dir: PathBuf,
        defaults: AgentDefaults,
    ) -> Agents {
        let agents = Agents {
            by_name: RwLock::new(BTreeMap::new()),
            store,
            dir,
            defaults,
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

    /// Another instance changed the agents: read again (an agent that does not build here, a
    /// greeting file on another instance's disk, is left out and said in the log).
    pub fn changed_elsewhere(&self) {
        let stored = match self.store.agents() {
            Ok(stored) => stored,
            Err(e) => return crate::error!("agents.reload_failed", error = e),
        };
        let mut fresh = BTreeMap::new();
        for s in stored {
            match self.build(s.clone()) {
                Ok(agent) => {
                    fresh.insert(agent.name.clone(), Arc::new(agent));
                }
                Err(e) => crate::error!("agent.unreadable", agent = s.name, error = e),
            }
        }
        *self.by_name.write().unwrap_or_else(|p| p.into_inner()) = fresh;
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
                let mut relay = RelayConfig::for_endpoint(
                    url,
                    stored.headers.as_deref(),
                    Some(&self.defaults.relay),
                )?;
                match stored.protocol.as_deref() {
                    Some("twilio") => relay.protocol = crate::config::BotProtocol::Twilio,
                    Some("exotel") => relay.protocol = crate::config::BotProtocol::Exotel,
                    _ => {}
                }
                AgentBot::Relay(Box::new(relay))
            }
            "realtime" => self.realtime_bot(&stored)?,
            other => return Err(format!("bot {other:?} is not echo, relay or realtime")),
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

    /// A realtime agent's service and settings: its own fields over the environment's.
    fn realtime_bot(&self, stored: &StoredAgent) -> Result<AgentBot, String> {
        let env = &self.defaults.realtime;
        let own = RealtimeFields::of(stored);
        let key = stored.api_key.as_deref().or(env.key.as_deref()).ok_or(
            "apiKey is missing, and OPENAI_API_KEY is not set for realtime agents without one",
        )?;
        let turn_detection = match &own.turn_detection {
            None => env.settings.turn_detection,
            Some(kind) => TurnDetection::parse(Some(kind), own.eagerness.as_deref())?,
        };
        let settings = RealtimeSettings {
            instructions: own
                .instructions
                .unwrap_or_else(|| env.settings.instructions.clone()),
            voice: own.voice.unwrap_or_else(|| env.settings.voice.clone()),
            greeting: own.greeting.or_else(|| env.settings.greeting.clone()),
            turn_detection,
            transcription_model: own
                .transcription_model
                .unwrap_or_else(|| env.settings.transcription_model.clone()),
        };
        let model = own.model.unwrap_or_else(|| env.model.clone());
        let relay = RelayConfig::realtime(
            stored.url.as_deref().unwrap_or(&env.url),
            &model,
            key,
            stored.headers.as_deref(),
            settings,
            Some(&self.defaults.relay),
        )?;
        Ok(AgentBot::Realtime {
            relay: Box::new(relay),
            model,
        })
    }

    /// A new agent from `POST /agents`'s fields.
    pub fn create(&self, fields: Fields) -> Result<Arc<Agent>, Refusal> {
        let name = fields.name.clone().unwrap_or_default();
        check_name(&name).map_err(Refusal::invalid)?;
        let stored =
            stored_from(name, fields, None, &self.defaults.hosts).map_err(Refusal::invalid)?;
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
            &self.defaults.hosts,
        )
        .map_err(Refusal::invalid)?;
        self.write(stored, false)
    }

    fn write(&self, stored: StoredAgent, create: bool) -> Result<Arc<Agent>, Refusal> {
        let agent = self.build(stored.clone()).map_err(Refusal::invalid)?;
        if agent.bot.relay().is_some() && agent.greeting.is_some() {
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
        if agent.bot.relay().is_some() {
            return Err(Refusal::invalid(
                "a relayed or realtime bot speaks its own greeting; greeting WAVs are for echo agents",
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

/// An agent as answers show it: headers' values hidden (they are often credentials), a
/// realtime agent's key as `****` and its last four characters (`null`: `OPENAI_API_KEY`), and
/// its settings as its calls get them (its own, else the environment's).
pub fn shown(a: &Agent) -> serde_json::Value {
    let headers: Vec<String> = match a.bot.relay() {
        Some(r) => r
            .headers
            .iter()
            .map(|(k, _)| k.clone())
            // A realtime agent's Authorization is its key, shown as apiKey.
            .filter(|k| a.bot.realtime().is_none() || k != "Authorization")
            .collect(),
        None => Vec::new(),
    };
    let mut shown = serde_json::json!({
        "name": a.name,
        "bot": a.stored.bot,
        "url": a.stored.url,
        "headers": headers,
        "handoff": a.stored.handoff.as_deref().unwrap_or("bot"),
        "greeting": a.greeting.as_ref().map(|(rate, samples)| serde_json::json!({
            "sampleRate": rate,
            "seconds": samples.len() as f64 / f64::from(*rate),
        })),
    });
    match &a.bot {
        AgentBot::Relay(relay) => {
            shown["protocol"] = match relay.protocol {
                crate::config::BotProtocol::Twilio => "twilio",
                _ => "exotel",
            }
            .into();
        }
        AgentBot::Realtime { relay, model } => {
            if let crate::config::BotProtocol::Realtime(s) = &relay.protocol {
                shown["model"] = model.as_str().into();
                shown["instructions"] = s.instructions.as_str().into();
                shown["voice"] = s.voice.as_str().into();
                shown["greeting"] = s.greeting.as_deref().into();
                shown["turnDetection"] = s.turn_detection.name().into();
                shown["eagerness"] = s.turn_detection.eagerness().into();
                shown["transcriptionModel"] = s.transcription_model.as_str().into();
            }
            shown["apiKey"] = a.stored.api_key.as_deref().map(super::phones::mask).into();
        }
        AgentBot::Echo => {}
    }
    shown
}
