//! A speech-to-speech AI service speaking OpenAI's Realtime protocol (`BOT=realtime`, realtime
//! agents): where it is, its key, the model asked of it, and what each call tells it (the
//! instructions, voice, greeting, turn detection and transcription model). The environment's
//! `REALTIME_*` and `OPENAI_API_KEY` are `BOT=realtime`'s, and a realtime agent's for what the
//! agent does not say itself.

use super::*;

/// The service a realtime call is bridged to, unless `REALTIME_URL` says another (any service
/// speaking the same protocol), and the model asked of it.
pub const REALTIME_URL: &str = "wss://api.openai.com/v1/realtime";
pub const REALTIME_MODEL: &str = "gpt-realtime";
/// What the service transcribes the caller with, unless `REALTIME_TRANSCRIPTION_MODEL` says.
pub const TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
const DEFAULT_VOICE: &str = "marin";
const DEFAULT_INSTRUCTIONS: &str =
    "You answer phone calls for this business. Speak briefly and clearly.";
/// The longest instructions and greeting a call sends, in bytes.
pub const MAX_INSTRUCTIONS_BYTES: usize = 32 * 1024;
pub const MAX_GREETING_BYTES: usize = 2 * 1024;

/// How the service decides the caller has finished (`REALTIME_TURN_DETECTION`, an agent's
/// `turnDetection`): by silence, or by what was said, as eager as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TurnDetection {
    ServerVad,
    SemanticVad(Eagerness),
}

/// How soon `semantic_vad` answers (`REALTIME_EAGERNESS`, an agent's `eagerness`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eagerness {
    Low,
    Medium,
    High,
    Auto,
}

impl TurnDetection {
    /// `server_vad`, or `semantic_vad` with an eagerness (`auto` when none is given); an
    /// eagerness is refused with `server_vad`, which has none.
    pub fn parse(kind: Option<&str>, eagerness: Option<&str>) -> Result<TurnDetection, String> {
        match (kind.unwrap_or("server_vad"), eagerness) {
            ("server_vad", None) => Ok(TurnDetection::ServerVad),
            ("server_vad", Some(_)) => Err("eagerness is for semantic_vad only".into()),
            ("semantic_vad", e) => Ok(TurnDetection::SemanticVad(match e.unwrap_or("auto") {
                "low" => Eagerness::Low,
                "medium" => Eagerness::Medium,
                "high" => Eagerness::High,
                "auto" => Eagerness::Auto,
                other => {
                    return Err(format!(
                        "eagerness {other:?} is not low, medium, high or auto"
                    ))
                }
            })),
            (other, _) => Err(format!(
                "turn detection {other:?} is neither server_vad nor semantic_vad"
            )),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TurnDetection::ServerVad => "server_vad",
            TurnDetection::SemanticVad(_) => "semantic_vad",
        }
    }

    pub fn eagerness(self) -> Option<&'static str> {
        match self {
            TurnDetection::ServerVad => None,
            TurnDetection::SemanticVad(e) => Some(match e {
                Eagerness::Low => "low",
                Eagerness::Medium => "medium",
                Eagerness::High => "high",
                Eagerness::Auto => "auto",
            }),
        }
    }
}

/// What a realtime call tells the service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RealtimeSettings {
    /// The model's instructions (`REALTIME_INSTRUCTIONS`).
    pub instructions: String,
    /// `REALTIME_VOICE`.
    pub voice: String,
    /// What the model says first, if it speaks first (`REALTIME_GREETING`).
    pub greeting: Option<String>,
    pub turn_detection: TurnDetection,
    /// `REALTIME_TRANSCRIPTION_MODEL`: what transcribes the caller.
    pub transcription_model: String,
}

impl RealtimeSettings {
    /// The `{{name}}` placeholders of the instructions and the greeting, each once, in order.
    pub fn placeholders(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for text in std::iter::once(&self.instructions).chain(&self.greeting) {
            let mut rest = text.as_str();
            while let Some(open) = rest.find("{{") {
                let after = &rest[open + 2..];
                let Some(close) = after.find("}}") else {
                    break;
                };
                let name = after[..close].trim().to_owned();
                if !name.is_empty() && !names.contains(&name) {
                    names.push(name);
                }
                rest = &after[close + 2..];
            }
        }
        names
    }

    /// `text` with each `{{name}}` replaced by the call's value for it; one the call has no
    /// value for becomes empty (an inbound call has no variables).
    pub fn fill(text: &str, values: &std::collections::BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                break;
            };
            out.push_str(&rest[..open]);
            if let Some(value) = values.get(after[..close].trim()) {
                out.push_str(value);
            }
            rest = &after[close + 2..];
        }
        out.push_str(rest);
        out
    }
}

/// The environment's realtime service and settings.
#[derive(Clone)]
pub struct RealtimeDefaults {
    /// `REALTIME_URL`, without the model.
    pub url: String,
    /// `REALTIME_MODEL`.
    pub model: String,
    /// `OPENAI_API_KEY`: required by `BOT=realtime` and by realtime agents without a key of
    /// their own.
    pub key: Option<String>,
    pub settings: RealtimeSettings,
}

impl fmt::Debug for RealtimeDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RealtimeDefaults")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A key sent as a bearer token: no space or control character can go into the header.
pub fn check_api_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 512 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("must be 1 to 512 printable ASCII characters, without spaces".into());
    }
    Ok(())
}

impl RealtimeDefaults {
    pub(super) fn from_vars(
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<RealtimeDefaults, ConfigError> {
        let key = var("OPENAI_API_KEY");
        if let Some(key) = &key {
            check_api_key(key).map_err(|problem| ConfigError {
                variable: "OPENAI_API_KEY",
                problem,
            })?;
        }
        let turn_detection = TurnDetection::parse(
            var("REALTIME_TURN_DETECTION").as_deref(),
            var("REALTIME_EAGERNESS").as_deref(),
        )
        .map_err(|problem| ConfigError {
            variable: if var("REALTIME_EAGERNESS").is_some() {
                "REALTIME_EAGERNESS"
            } else {
                "REALTIME_TURN_DETECTION"
            },
            problem,
        })?;
        let instructions =
            var("REALTIME_INSTRUCTIONS").unwrap_or_else(|| DEFAULT_INSTRUCTIONS.into());
        if instructions.len() > MAX_INSTRUCTIONS_BYTES {
            return Err(ConfigError {
                variable: "REALTIME_INSTRUCTIONS",
                problem: format!("is longer than {MAX_INSTRUCTIONS_BYTES} bytes"),
            });
        }
        Ok(RealtimeDefaults {
            url: var("REALTIME_URL").unwrap_or_else(|| REALTIME_URL.into()),
            model: var("REALTIME_MODEL").unwrap_or_else(|| REALTIME_MODEL.into()),
            key,
            settings: RealtimeSettings {
                instructions,
                voice: var("REALTIME_VOICE").unwrap_or_else(|| DEFAULT_VOICE.into()),
                greeting: var("REALTIME_GREETING").filter(|g| !g.trim().is_empty()),
                turn_detection,
                transcription_model: var("REALTIME_TRANSCRIPTION_MODEL")
                    .unwrap_or_else(|| TRANSCRIPTION_MODEL.into()),
            },
        })
    }

    /// `BOT=realtime`: the environment's service, its key required, the relay's other
    /// settings (`BOT_FALLBACK`, timeouts, `BOT_CA_FILE`) as for any relayed bot.
    pub(super) fn relay(
        &self,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<RelayConfig, ConfigError> {
        let key = self.key.as_deref().ok_or(ConfigError {
            variable: "OPENAI_API_KEY",
            problem: "is required with BOT=realtime (the service's API key)".into(),
        })?;
        let url = realtime_url(&self.url, &self.model);
        let headers = bearer(key, None).map_err(|problem| ConfigError {
            variable: "OPENAI_API_KEY",
            problem,
        })?;
        let lookup = |name: &str| match name {
            "BOT_URL" => Some(url.clone()),
            "BOT_HEADERS" => Some(headers.clone()),
            other => var(other),
        };
        let mut relay = RelayConfig::from_vars(&lookup).map_err(|e| ConfigError {
            variable: match e.variable {
                "BOT_URL" => "REALTIME_URL",
                other => other,
            },
            problem: e.problem.replace(key, "****"),
        })?;
        relay.protocol = BotProtocol::Realtime(std::sync::Arc::new(self.settings.clone()));
        Ok(relay)
    }
}

/// The service's URL with `?model=` (or `&model=`) appended.
pub fn realtime_url(base: &str, model: &str) -> String {
    let mut url = base.to_owned();
    url.push(if base.contains('?') { '&' } else { '?' });
    url.push_str("model=");
    crate::http::form::encode_into(&mut url, model);
    url
}

/// The handshake headers of a realtime service: `extra` (a JSON object, as `BOT_HEADERS`) and
/// the key as a bearer token.
fn bearer(key: &str, extra: Option<&str>) -> Result<String, String> {
    check_api_key(key)?;
    let mut headers: serde_json::Map<String, serde_json::Value> = match extra {
        Some(json) => serde_json::from_str(json).map_err(|e| format!("headers: {e}"))?,
        None => serde_json::Map::new(),
    };
    headers.insert("Authorization".into(), format!("Bearer {key}").into());
    Ok(serde_json::Value::Object(headers).to_string())
}

impl RelayConfig {
    /// A realtime agent's service: `url` asked for `model` with `key`, `headers` (a JSON
    /// object) beside it, every other relay setting from `template` (the environment's relay)
    /// or the defaults. The error never holds the key.
    pub fn realtime(
        url: &str,
        model: &str,
        key: &str,
        headers: Option<&str>,
        settings: RealtimeSettings,
        template: Option<&RelayConfig>,
    ) -> Result<RelayConfig, String> {
        let headers = bearer(key, headers).map_err(|e| format!("apiKey {e}"))?;
        let mut relay =
            RelayConfig::for_endpoint(&realtime_url(url, model), Some(&headers), template)
                .map_err(|e| e.replace(key, "****"))?;
        relay.protocol = BotProtocol::Realtime(std::sync::Arc::new(settings));
        Ok(relay)
    }
}
