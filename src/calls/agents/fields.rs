//! An agent's fields as `POST` and `PATCH /agents` take them, checked and merged over the
//! agent's current ones into the stored form. Which fields a kind of bot takes:
//!
//! | bot        | its fields                                                                 |
//! |------------|----------------------------------------------------------------------------|
//! | `echo`     | `handoff` (a greeting is a WAV: `PUT /agents/{name}/greeting`)             |
//! | `relay`    | `url`, `headers`, `protocol` (`exotel`, `twilio`), `handoff`               |
//! | `realtime` | `instructions`, `voice`, `model`, `greeting` (text), `turnDetection`,      |
//! |            | `eagerness`, `transcriptionModel`, `apiKey`, `url`, `headers`, `handoff`   |
//!
//! A field of another kind is refused, naming it. A realtime field left out (or sent empty)
//! is the environment's (`REALTIME_*`, `OPENAI_API_KEY`), read when the agent is built.

use super::RelayHosts;
use crate::config::{check_api_key, TurnDetection, MAX_GREETING_BYTES, MAX_INSTRUCTIONS_BYTES};
use crate::store::StoredAgent;

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fields {
    pub(super) name: Option<String>,
    bot: Option<String>,
    url: Option<String>,
    headers: Option<serde_json::Map<String, serde_json::Value>>,
    handoff: Option<String>,
    protocol: Option<String>,
    instructions: Option<String>,
    voice: Option<String>,
    model: Option<String>,
    greeting: Option<String>,
    turn_detection: Option<String>,
    eagerness: Option<String>,
    transcription_model: Option<String>,
    api_key: Option<String>,
}

impl Fields {
    /// The realtime agent's fields given (serde cannot flatten them and refuse unknown ones).
    fn realtime(&self) -> RealtimeFields {
        RealtimeFields {
            instructions: self.instructions.clone(),
            voice: self.voice.clone(),
            model: self.model.clone(),
            greeting: self.greeting.clone(),
            turn_detection: self.turn_detection.clone(),
            eagerness: self.eagerness.clone(),
            transcription_model: self.transcription_model.clone(),
        }
    }
}

/// A realtime agent's own settings, stored as a JSON object; what is `None` is the
/// environment's.
#[derive(serde::Deserialize, serde::Serialize, Default, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RealtimeFields {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub greeting: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn_detection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eagerness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transcription_model: Option<String>,
}

impl RealtimeFields {
    /// The fields given, by their names in the API.
    fn given(&self) -> Vec<&'static str> {
        [
            ("instructions", self.instructions.is_some()),
            ("voice", self.voice.is_some()),
            ("model", self.model.is_some()),
            ("greeting", self.greeting.is_some()),
            ("turnDetection", self.turn_detection.is_some()),
            ("eagerness", self.eagerness.is_some()),
            ("transcriptionModel", self.transcription_model.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, given)| given.then_some(name))
        .collect()
    }

    /// `self` over `current`: a field given replaces it, one given empty clears it.
    fn over(self, current: RealtimeFields) -> RealtimeFields {
        let pick = |new: Option<String>, old: Option<String>| match new {
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(v),
            None => old,
        };
        RealtimeFields {
            instructions: pick(self.instructions, current.instructions),
            voice: pick(self.voice, current.voice),
            model: pick(self.model, current.model),
            greeting: pick(self.greeting, current.greeting),
            turn_detection: pick(self.turn_detection, current.turn_detection),
            eagerness: pick(self.eagerness, current.eagerness),
            transcription_model: pick(self.transcription_model, current.transcription_model),
        }
    }

    fn check(&self) -> Result<(), String> {
        let too_long = |field: &str, value: &Option<String>, max: usize| match value {
            Some(v) if v.len() > max => Err(format!("{field} is longer than {max} bytes")),
            _ => Ok(()),
        };
        too_long("instructions", &self.instructions, MAX_INSTRUCTIONS_BYTES)?;
        too_long("greeting", &self.greeting, MAX_GREETING_BYTES)?;
        for (field, value) in [
            ("voice", &self.voice),
            ("model", &self.model),
            ("transcriptionModel", &self.transcription_model),
        ] {
            let fits = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
            if let Some(v) = value {
                if v.len() > 64 || !v.chars().all(fits) {
                    return Err(format!(
                        "{field} {v:?} must be 1 to 64 letters, digits, '-', '_', '.' or ':'"
                    ));
                }
            }
        }
        TurnDetection::parse(self.turn_detection.as_deref(), self.eagerness.as_deref())?;
        Ok(())
    }

    /// The stored JSON of `current`'s realtime fields.
    pub(crate) fn of(stored: &StoredAgent) -> RealtimeFields {
        stored
            .realtime
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    }
}

/// Agent names: what goes into a URL path and a file name safely.
pub(super) fn check_name(name: &str) -> Result<(), String> {
    let fits = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 64 || !name.chars().all(fits) {
        return Err(format!(
            "name {name:?} must be 1 to 64 letters, digits, '-' or '_'"
        ));
    }
    Ok(())
}

/// Refuses the fields given that `bot` does not take.
fn refuse_foreign(bot: &str, fields: &Fields) -> Result<(), String> {
    let mut foreign = Vec::new();
    if bot != "realtime" {
        foreign.extend(fields.realtime().given());
        if fields.api_key.is_some() {
            foreign.push("apiKey");
        }
    }
    if bot != "relay" && fields.protocol.is_some() {
        foreign.push("protocol");
    }
    if bot == "echo" {
        if fields.url.is_some() {
            foreign.push("url");
        }
        if fields.headers.is_some() {
            foreign.push("headers");
        }
    }
    match foreign.first() {
        None => Ok(()),
        Some(field) => Err(format!(
            "{field} is not a field of {} {bot} agent{}",
            if bot == "echo" { "an" } else { "a" },
            if *field == "greeting" {
                " (its greeting is a WAV: PUT /agents/{name}/greeting)"
            } else {
                ""
            }
        )),
    }
}

/// The stored form of an agent from the request's fields over `current`'s.
pub(super) fn stored_from(
    name: String,
    fields: Fields,
    current: Option<&StoredAgent>,
    relay_hosts: &RelayHosts,
) -> Result<StoredAgent, String> {
    let bot = fields
        .bot
        .clone()
        .or_else(|| current.map(|c| c.bot.clone()))
        .ok_or("bot is missing: echo, relay or realtime")?;
    if !["echo", "relay", "realtime"].contains(&bot.as_str()) {
        return Err(format!("bot {bot:?} is not echo, relay or realtime"));
    }
    refuse_foreign(&bot, &fields)?;
    let same_bot = current.filter(|c| c.bot == bot);
    let (url, headers) = endpoint(&bot, &fields, same_bot, relay_hosts)?;
    let handoff = fields
        .handoff
        .clone()
        .or_else(|| current.and_then(|c| c.handoff.clone()));
    if let Some(h) = &handoff {
        super::HandoffPolicy::parse(h)?;
    }
    let protocol = match fields.protocol.clone() {
        Some(p) if p == "exotel" || p == "twilio" => Some(p),
        Some(p) => return Err(format!("protocol {p:?} is neither exotel nor twilio")),
        None => same_bot.and_then(|c| c.protocol.clone()),
    };
    let (realtime, api_key) = if bot == "realtime" {
        let merged = fields
            .realtime()
            .over(same_bot.map(RealtimeFields::of).unwrap_or_default());
        merged.check()?;
        let api_key = match fields.api_key {
            Some(k) if k.is_empty() => None,
            Some(k) => {
                check_api_key(&k).map_err(|e| format!("apiKey {e}"))?;
                Some(k)
            }
            None => same_bot.and_then(|c| c.api_key.clone()),
        };
        let json = serde_json::to_string(&merged).map_err(|e| e.to_string())?;
        (Some(json), api_key)
    } else {
        (None, None)
    };
    Ok(StoredAgent {
        name,
        bot,
        url,
        headers,
        greeting: current.and_then(|c| c.greeting.clone()),
        handoff,
        protocol,
        realtime,
        api_key,
    })
}

/// A relayed or realtime agent's url and headers over the current ones; the url checked
/// against where a relay may point.
fn endpoint(
    bot: &str,
    fields: &Fields,
    current: Option<&StoredAgent>,
    relay_hosts: &RelayHosts,
) -> Result<(Option<String>, Option<String>), String> {
    if bot == "echo" {
        return Ok((None, None));
    }
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
        relay_hosts.check(&super::super::destination::Destination::parse(
            "url", url, "wss", "ws",
        )?)?;
    }
    let url = fields
        .url
        .clone()
        .or_else(|| current.and_then(|c| c.url.clone()));
    if bot == "relay" && url.is_none() {
        return Err("url is missing: a relay agent needs ws://… or wss://…".into());
    }
    let headers = match &fields.headers {
        Some(h) => Some(serde_json::Value::Object(h.clone()).to_string()),
        None => current.and_then(|c| c.headers.clone()),
    };
    Ok((url, headers))
}
