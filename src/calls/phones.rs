//! ExoPhones with their own Exotel accounts (the `/phones` routes are `routes::phones`): each
//! is a [`Line`] calls go out on; the environment's `EXOTEL_*` stay the default line. A phone's
//! API token is written, never shown ([`shown`] masks it) and never logged.
//!
//! Kept by [`crate::store`]; held in memory for the calls that will use them.

use super::slots::LineLimit;
use super::PhoneNumber;
use super::{Refusal, Refused};
use crate::exotel::ExotelClient;
use crate::store::{Phone, Store};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub struct Phones {
    by_number: RwLock<BTreeMap<String, Line>>,
    store: Store,
    /// `EXOTEL_TIMEOUT_MS`, for every phone's client.
    timeout: Duration,
}

/// What a call goes out on: an Exotel account, the number Exotel shows the customer, where
/// Exotel connects the answered call, and the phone's own limit. The environment's `EXOTEL_*`
/// make the default line; each phone of `/phones` is another.
#[derive(Clone, Debug)]
pub struct Line {
    /// The phone's number (E.164); `None` for the environment's line.
    pub phone: Option<String>,
    pub account: Arc<ExotelClient>,
    /// Exotel's `CallerId`.
    pub caller_id: String,
    /// The Voicebot applet's App ID; `None` is stream mode.
    pub app_id: Option<String>,
    /// Live calls on this line at most, besides the server's limit.
    pub max_concurrent: Option<usize>,
    /// The agent its calls get unless the request names one.
    pub agent: Option<String>,
    /// The phone as stored (for the answers; `None` for the environment's line).
    stored: Option<Phone>,
}

impl Line {
    /// The environment's line.
    pub fn from_environment(
        account: ExotelClient,
        caller_id: String,
        app_id: Option<String>,
        agent: Option<String>,
    ) -> Line {
        Line {
            phone: None,
            account: Arc::new(account),
            caller_id,
            app_id,
            max_concurrent: None,
            agent,
            stored: None,
        }
    }

    fn from_phone(phone: Phone, timeout: Duration) -> Line {
        let base = phone
            .api_base_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", phone.subdomain));
        let account =
            ExotelClient::new(&base, &phone.sid, &phone.api_key, &phone.api_token, timeout);
        Line {
            phone: Some(phone.number.clone()),
            account: Arc::new(account),
            caller_id: phone.number.clone(),
            app_id: phone.app_id.clone(),
            max_concurrent: phone.max_concurrent.map(|m| m as usize),
            agent: phone.agent.clone(),
            stored: Some(phone),
        }
    }

    /// The phone's own limit, for [`super::slots::Slots::acquire_new`].
    pub fn limit(&self) -> Option<LineLimit<'_>> {
        match (&self.phone, self.max_concurrent) {
            (Some(phone), Some(max)) => Some(LineLimit { phone, max }),
            _ => None,
        }
    }
}

/// The fields `POST` and `PATCH` take; every one optional here, required ones checked for
/// `POST`. An unknown field is refused with its name.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fields {
    number: Option<String>,
    api_key: Option<String>,
    api_token: Option<String>,
    sid: Option<String>,
    subdomain: Option<String>,
    api_base_url: Option<String>,
    app_id: Option<String>,
    #[serde(default, deserialize_with = "crate::http::whole::opt_u32")]
    max_concurrent: Option<u32>,
    agent: Option<String>,
}

impl Fields {
    /// A new phone from `POST`'s fields: the required ones present, every one checked.
    fn into_phone(self) -> Result<Phone, String> {
        let required = |name: &str, v: Option<String>| {
            v.filter(|s| !s.trim().is_empty())
                .ok_or_else(|| format!("{name} is missing"))
        };
        let number = PhoneNumber::parse(&required("number", self.number)?)
            .map_err(|e| format!("number: {e}"))?;
        let phone = Phone {
            number: number.canonical(),
            api_key: required("apiKey", self.api_key)?,
            api_token: required("apiToken", self.api_token)?,
            sid: required("sid", self.sid)?,
            subdomain: self.subdomain.unwrap_or_else(|| "api.exotel.com".into()),
            api_base_url: self.api_base_url,
            app_id: self.app_id.filter(|v| !v.is_empty()),
            max_concurrent: self.max_concurrent,
            agent: self.agent.filter(|v| !v.is_empty()),
        };
        check(&phone)?;
        Ok(phone)
    }
}

/// A phone as answers show it: the token masked.
pub fn shown(p: &Phone) -> serde_json::Value {
    serde_json::json!({
        "number": p.number,
        "apiKey": p.api_key,
        "apiToken": mask(&p.api_token),
        "sid": p.sid,
        "subdomain": p.subdomain,
        "apiBaseUrl": p.api_base_url,
        "appId": p.app_id,
        "mode": if p.app_id.is_some() { "applet" } else { "stream" },
        "maxConcurrent": p.max_concurrent,
        "agent": p.agent,
    })
}

/// `****` and, for a token long enough that it gives nothing away, its last four characters.
pub fn mask(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() >= 16 {
        format!(
            "****{}",
            chars[chars.len() - 4..].iter().collect::<String>()
        )
    } else {
        "****".into()
    }
}

/// A value that goes into Exotel's URL paths, checked the one way the client wants.
fn url_segment(field: &str, value: &str) -> Result<(), String> {
    crate::exotel::client::check_url_segment(value).map_err(|problem| format!("{field} {problem}"))
}

impl Phones {
    pub fn new(store: Store, phones: Vec<Phone>, timeout: Duration) -> Phones {
        Phones {
            by_number: RwLock::new(
                phones
                    .into_iter()
                    .map(|p| (p.number.clone(), Line::from_phone(p, timeout)))
                    .collect(),
            ),
            store,
            timeout,
        }
    }

    /// Another instance changed the phones: read again.
    pub fn changed_elsewhere(&self) {
        match self.store.phones() {
            Ok(phones) => {
                let lines = phones
                    .into_iter()
                    .map(|p| (p.number.clone(), Line::from_phone(p, self.timeout)))
                    .collect();
                *self.by_number.write().unwrap_or_else(|p| p.into_inner()) = lines;
            }
            Err(e) => crate::error!("phones.reload_failed", error = e),
        }
    }

    /// The line of the phone with this number, in any spelling.
    pub fn line(&self, number: &PhoneNumber) -> Option<Line> {
        self.by_number
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&number.canonical())
            .cloned()
    }

    /// The phone with this number, in any spelling.
    pub fn get(&self, number: &PhoneNumber) -> Option<Phone> {
        self.line(number).and_then(|l| l.stored)
    }

    /// A new phone from `POST /phones`'s fields; answers it as stored.
    pub fn create(&self, fields: Fields) -> Result<Phone, Refusal> {
        let phone = fields.into_phone().map_err(Refusal::invalid)?;
        match self.store.phone_put(phone.clone(), true) {
            Ok(true) => {}
            Ok(false) => {
                return Err(Refusal::new(
                    Refused::Conflict,
                    "phone_exists",
                    format!(
                        "{} is a phone already: PATCH /phones/{} changes it",
                        phone.number, phone.number
                    ),
                ))
            }
            Err(e) => return Err(Refusal::store(e)),
        }
        crate::info!("phone.created", number = phone.number, sid = phone.sid);
        self.remember(phone.clone());
        Ok(phone)
    }

    /// Every phone, by number.
    pub fn all(&self) -> Vec<Phone> {
        self.by_number
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|l| l.stored.clone())
            .collect()
    }

    /// Every phone with a limit of its own, and that limit (the live view's capacity).
    pub fn limits(&self) -> Vec<(String, usize)> {
        self.by_number
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter_map(|l| l.limit().map(|limit| (limit.phone.to_owned(), limit.max)))
            .collect()
    }

    /// The fields given replace the phone's (`PATCH /phones/{number}`); the number stays.
    pub fn update(&self, raw: &str, fields: Fields) -> Result<Phone, Refusal> {
        let mut phone = self.lookup(raw)?;
        if fields.number.is_some() {
            return Err(Refusal::invalid(
                "number cannot change: create the new phone and delete this one",
            ));
        }
        token_follows_destination(&phone, &fields).map_err(Refusal::invalid)?;
        let set = |slot: &mut String, v: Option<String>| {
            if let Some(v) = v {
                *slot = v;
            }
        };
        set(&mut phone.api_key, fields.api_key);
        set(&mut phone.api_token, fields.api_token);
        set(&mut phone.sid, fields.sid);
        set(&mut phone.subdomain, fields.subdomain);
        if fields.api_base_url.is_some() {
            phone.api_base_url = fields.api_base_url;
        }
        if fields.app_id.is_some() {
            phone.app_id = fields.app_id.filter(|v| !v.is_empty());
        }
        if fields.max_concurrent.is_some() {
            phone.max_concurrent = fields.max_concurrent;
        }
        if fields.agent.is_some() {
            phone.agent = fields.agent.filter(|v| !v.is_empty());
        }
        check(&phone).map_err(Refusal::invalid)?;
        self.store
            .phone_put(phone.clone(), false)
            .map_err(Refusal::store)?;
        crate::info!("phone.updated", number = phone.number);
        self.remember(phone.clone());
        Ok(phone)
    }

    /// Removes the phone a path segment names; answers its number.
    pub fn remove(&self, raw: &str) -> Result<String, Refusal> {
        let phone = self.lookup(raw)?;
        self.store
            .phone_remove(phone.number.clone())
            .map_err(Refusal::store)?;
        self.by_number
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&phone.number);
        crate::info!("phone.deleted", number = phone.number);
        Ok(phone.number)
    }

    fn remember(&self, phone: Phone) {
        self.by_number
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(phone.number.clone(), Line::from_phone(phone, self.timeout));
    }

    /// The phone a path segment names (`+` kept as it is).
    pub fn lookup(&self, raw: &str) -> Result<Phone, Refusal> {
        let number = PhoneNumber::from_path_segment(raw)
            .map_err(|e| Refusal::invalid(format!("number: {e}")))?;
        self.get(&number).ok_or_else(|| {
            Refusal::not_found(format!("{} is not a phone here", number.canonical()))
        })
    }
}

/// The phone's token goes wherever `apiBaseUrl` (else `subdomain`) points, so a request that
/// moves it must carry the token itself: knowing where it goes is not knowing it.
fn token_follows_destination(current: &Phone, fields: &Fields) -> Result<(), String> {
    let moves_base = fields
        .api_base_url
        .as_ref()
        .is_some_and(|url| current.api_base_url.as_ref() != Some(url));
    let moves_host = fields
        .subdomain
        .as_ref()
        .is_some_and(|host| *host != current.subdomain);
    if (moves_base || moves_host) && fields.api_token.is_none() {
        return Err(format!(
            "{} decides where the phone's apiToken is sent: send apiToken in the same request",
            if moves_base {
                "apiBaseUrl"
            } else {
                "subdomain"
            }
        ));
    }
    Ok(())
}

/// What is checked of every phone written.
/// A phone's `maxConcurrent` at most: what `MAX_CONCURRENT_CALLS` may be.
pub const MAX_PHONE_CONCURRENT: u32 = 100_000;

fn check(p: &Phone) -> Result<(), String> {
    url_segment("sid", &p.sid)?;
    if let Some(app_id) = &p.app_id {
        url_segment("appId", app_id)?;
    }
    super::destination::check_host("subdomain", &p.subdomain)?;
    if let Some(url) = &p.api_base_url {
        super::destination::Destination::parse("apiBaseUrl", url, "https", "http")?;
    }
    if p.max_concurrent == Some(0) {
        return Err("maxConcurrent 0 would refuse every call; leave it out for no limit".into());
    }
    if p.max_concurrent.is_some_and(|n| n > MAX_PHONE_CONCURRENT) {
        return Err(format!(
            "maxConcurrent is at most {MAX_PHONE_CONCURRENT} (MAX_CONCURRENT_CALLS's own limit)"
        ));
    }
    if p.api_key.trim().is_empty() || p.api_token.trim().is_empty() {
        return Err("apiKey and apiToken must not be empty".into());
    }
    // They go into a Basic auth header: printable ASCII, no spaces.
    for (field, value) in [("apiKey", &p.api_key), ("apiToken", &p.api_token)] {
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "{field} holds a space, a control or a non-ASCII character"
            ));
        }
    }
    if let Some(agent) = p.agent.as_deref().filter(|a| !a.is_empty()) {
        let fits = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if agent.len() > 64 || !agent.chars().all(fits) {
            return Err(format!(
                "agent {agent:?} is not an agent's name (1 to 64 letters, digits, '-' or '_')"
            ));
        }
    }
    Ok(())
}
