//! A campaign's settings: the request that creates one (JSON, or CSV with its settings in the
//! query), its defaults, and the checks each value passes before anything is stored.

use super::*;

/// Which outcomes are tried again, how many attempts a contact gets in all, and the wait.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    #[serde(default)]
    pub on: Vec<Outcome>,
    /// Attempts per contact, the first included (1: no retry).
    #[serde(default = "one", deserialize_with = "crate::http::whole::u32")]
    pub attempts: u32,
    #[serde(default = "ten_minutes", deserialize_with = "crate::http::whole::u64")]
    pub wait_seconds: u64,
}

pub(super) fn one() -> u32 {
    1
}
pub(super) fn ten_minutes() -> u64 {
    600
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            on: Vec::new(),
            attempts: 1,
            wait_seconds: ten_minutes(),
        }
    }
}

/// The hours a campaign may dial in, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WindowSpec {
    #[serde(default = "nine")]
    pub start: String,
    #[serde(default = "twenty_one")]
    pub end: String,
    #[serde(default = "kolkata")]
    pub timezone: String,
    #[serde(default = "every_day")]
    pub days: Vec<String>,
}

pub(super) fn nine() -> String {
    "09:00".into()
}
pub(super) fn twenty_one() -> String {
    "21:00".into()
}
pub(super) fn kolkata() -> String {
    "Asia/Kolkata".into()
}
pub(super) fn every_day() -> Vec<String> {
    window::DAY_NAMES.iter().map(|d| d.to_string()).collect()
}

impl Default for WindowSpec {
    /// 09:00–21:00 in India, every day: the hours India's telemarketing rules allow.
    fn default() -> WindowSpec {
        WindowSpec {
            start: nine(),
            end: twenty_one(),
            timezone: kolkata(),
            days: every_day(),
        }
    }
}

/// What a campaign asks for: everything of `POST /campaigns` but its contacts. Kept as this
/// JSON with the campaign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    pub name: String,
    /// The phone to call from (E.164, one of `/phones`); `None`: the environment's line.
    pub from: Option<String>,
    pub agent: Option<String>,
    pub max_concurrent: u32,
    pub calls_per_minute: u32,
    pub retry: Retry,
    pub window: WindowSpec,
    /// RFC 3339; nothing is dialed before it.
    pub start_at: Option<String>,
    /// Whether an attempt of unknown fate is dialed again (by default it is not: the
    /// customer may have been called).
    pub redial_unknown: bool,
}

/// `POST /campaigns` as JSON: the settings and the contacts.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateRequest {
    name: Option<String>,
    from: Option<String>,
    agent: Option<String>,
    contacts: Option<Vec<serde_json::Value>>,
    #[serde(default, deserialize_with = "crate::http::whole::opt_u32")]
    max_concurrent: Option<u32>,
    #[serde(default, deserialize_with = "crate::http::whole::opt_u32")]
    calls_per_minute: Option<u32>,
    retry: Option<Retry>,
    window: Option<WindowSpec>,
    start_at: Option<String>,
    redial_unknown: Option<bool>,
}

/// The query parameters a CSV upload takes for its settings (the JSON fields, flattened).
/// (`dryRun` is not a setting: `POST /campaigns` reads it, for every kind of upload.)
pub const CSV_QUERY_FIELDS: [&str; 15] = [
    "name",
    "from",
    "agent",
    "maxConcurrent",
    "callsPerMinute",
    "retryOn",
    "retryAttempts",
    "retryWaitSeconds",
    "windowStart",
    "windowEnd",
    "timezone",
    "days",
    "startAt",
    "redialUnknown",
    "dryRun",
];

/// The settings, checked: each value within its limits, the window readable, the phone known.
pub struct Checked {
    pub settings: Settings,
    pub window: Window,
    pub start_at_ms: Option<i64>,
}

impl Checked {
    /// The status a dialing campaign with these settings has at `now_ms`.
    pub fn status_at(&self, now_ms: i64) -> &'static str {
        dialing_status(self.start_at_ms, &self.window, now_ms)
    }
}

/// The status a dialing campaign has at `now_ms`: `scheduled` before its start,
/// `waiting-window` outside its window, else `running`. One rule for a campaign created, one
/// resumed, and the dialer's every turn.
pub fn dialing_status(start_at_ms: Option<i64>, window: &Window, now_ms: i64) -> &'static str {
    match start_at_ms {
        Some(at) if now_ms < at => "scheduled",
        _ if !window.is_open(now_ms) => "waiting-window",
        _ => "running",
    }
}

impl Settings {
    /// A campaign's settings as stored (JSON), read and checked again.
    pub fn read_stored(json: &str) -> Result<Checked, String> {
        serde_json::from_str::<Settings>(json)
            .map_err(|e| e.to_string())?
            .check()
    }

    /// Checks every value; the error names the field.
    pub fn check(&self) -> Result<Checked, String> {
        if !(1..=MAX_CONCURRENT).contains(&self.max_concurrent) {
            return Err(format!(
                "maxConcurrent {} is not from 1 to {MAX_CONCURRENT}",
                self.max_concurrent
            ));
        }
        if !(1..=MAX_CALLS_PER_MINUTE).contains(&self.calls_per_minute) {
            return Err(format!(
                "callsPerMinute {} is not from 1 to {MAX_CALLS_PER_MINUTE}",
                self.calls_per_minute
            ));
        }
        let r = &self.retry;
        if !(1..=MAX_ATTEMPTS).contains(&r.attempts) {
            return Err(format!(
                "retry.attempts {} is not from 1 to {MAX_ATTEMPTS} (the first call included)",
                r.attempts
            ));
        }
        if !(1..=MAX_RETRY_WAIT_S).contains(&r.wait_seconds) {
            return Err(format!(
                "retry.waitSeconds {} is not from 1 to {MAX_RETRY_WAIT_S}",
                r.wait_seconds
            ));
        }
        if let Some(bad) =
            r.on.iter()
                .find(|o| !matches!(o, Outcome::Busy | Outcome::NoAnswer | Outcome::Failed))
        {
            return Err(format!(
                "retry.on {:?}: only busy, no-answer and failed are retried",
                bad.as_str()
            ));
        }
        let w = &self.window;
        let window = Window::parse(&w.start, &w.end, &w.timezone, &w.days)?;
        let start_at_ms = self
            .start_at
            .as_deref()
            .map(|t| window::parse_time(t).map_err(|e| format!("startAt {e}")))
            .transpose()?;
        if self.name.chars().count() > 200 {
            return Err("name is longer than 200 characters".into());
        }
        Ok(Checked {
            settings: self.clone(),
            window,
            start_at_ms,
        })
    }

    /// The wait before the next attempt after `outcome` on attempt `attempt`, or `None` when
    /// the contact is done.
    pub fn retry_after(&self, outcome: Outcome, attempt: i64) -> Option<std::time::Duration> {
        let again = self.retry.on.contains(&outcome)
            || (outcome == Outcome::Unknown && self.redial_unknown);
        (again && attempt < i64::from(self.retry.attempts))
            .then(|| std::time::Duration::from_secs(self.retry.wait_seconds))
    }
}

/// How a new campaign arrives: JSON with `contacts`, or a CSV file with the settings in the
/// query.
pub enum Upload<'a> {
    Json(&'a [u8]),
    Csv { query: &'a str, file: &'a [u8] },
}

/// Reads a new campaign's settings and contacts (`POST /campaigns`).
pub fn read_create(upload: Upload<'_>) -> Result<(Settings, contacts::Checked), Refusal> {
    let bad = Refusal::invalid;
    let (fields, checked) = match upload {
        Upload::Csv { query, file } => {
            let fields = csv_query(&Params::from_query(query)).map_err(bad)?;
            let checked = contacts::from_csv(file).map_err(bad)?;
            (fields, checked)
        }
        Upload::Json(body) => json_create(body)?,
    };
    let from = match fields.from.as_deref().filter(|f| !f.is_empty()) {
        Some(f) => Some(
            crate::calls::PhoneNumber::parse(f)
                .map_err(|e| Refusal::invalid(format!("from: {e}")))?
                .canonical(),
        ),
        None => None,
    };
    let settings = Settings {
        name: fields.name.unwrap_or_default(),
        from,
        agent: fields.agent.filter(|a| !a.is_empty()),
        max_concurrent: fields.max_concurrent.unwrap_or(10),
        calls_per_minute: fields.calls_per_minute.unwrap_or(60),
        retry: fields.retry.unwrap_or_default(),
        window: fields.window.unwrap_or_default(),
        start_at: fields.start_at.filter(|s| !s.is_empty()),
        redial_unknown: fields.redial_unknown.unwrap_or(false),
    };
    Ok((settings, checked))
}

/// A JSON upload's settings and its contacts, checked.
fn json_create(body: &[u8]) -> Result<(CreateRequest, contacts::Checked), Refusal> {
    let fields: CreateRequest = serde_json::from_slice(body).map_err(|e| {
        Refusal::invalid(format!(
            "the body must be a campaign as JSON ({{\"contacts\": [{{\"to\": \"+91…\"}}], …}}), or CSV with Content-Type: text/csv: {e}"
        ))
    })?;
    let Some(list) = &fields.contacts else {
        return Err(Refusal::invalid(
            "contacts is missing: a list of {\"to\": \"+91…\", \"params\": {…}}",
        ));
    };
    let checked = contacts::from_json(list);
    Ok((fields, checked))
}

/// The settings of a CSV upload, from its query, as the JSON request would carry them.
pub(super) fn csv_query(params: &Params) -> Result<CreateRequest, String> {
    if let Some(name) = params.first_unknown(&CSV_QUERY_FIELDS) {
        return Err(format!(
            "{name:?} is not a setting of a CSV upload (the query takes {})",
            CSV_QUERY_FIELDS.join(", ")
        ));
    }
    let get = |name: &str| params.get_non_empty(name).map(str::to_owned);
    let number = |name: &str| -> Result<Option<u64>, String> {
        get(name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| format!("{name} {v:?} is not a whole number"))
            })
            .transpose()
    };
    let list = |v: String| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let retry = if get("retryOn").is_some()
        || get("retryAttempts").is_some()
        || get("retryWaitSeconds").is_some()
    {
        let on = get("retryOn")
            .map(list)
            .unwrap_or_default()
            .iter()
            .map(|o| {
                serde_json::from_value(serde_json::Value::String(o.clone()))
                    .map_err(|_| format!("retryOn {o:?} is not busy, no-answer or failed"))
            })
            .collect::<Result<Vec<Outcome>, String>>()?;
        Some(Retry {
            on,
            attempts: number("retryAttempts")?.map_or(1, |n| n.min(u64::from(u32::MAX)) as u32),
            wait_seconds: number("retryWaitSeconds")?.unwrap_or_else(ten_minutes),
        })
    } else {
        None
    };
    let defaults = WindowSpec::default();
    let window = Some(WindowSpec {
        start: get("windowStart").unwrap_or(defaults.start),
        end: get("windowEnd").unwrap_or(defaults.end),
        timezone: get("timezone").unwrap_or(defaults.timezone),
        days: get("days").map(list).unwrap_or(defaults.days),
    });
    let redial_unknown = match get("redialUnknown").as_deref() {
        None => None,
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        Some(v) => return Err(format!("redialUnknown {v:?} is neither true nor false")),
    };
    let clamp = |n: u64| n.min(u64::from(u32::MAX)) as u32;
    Ok(CreateRequest {
        name: get("name"),
        from: get("from"),
        agent: get("agent"),
        contacts: None,
        max_concurrent: number("maxConcurrent")?.map(clamp),
        calls_per_minute: number("callsPerMinute")?.map(clamp),
        retry,
        window,
        start_at: get("startAt"),
        redial_unknown,
    })
}
