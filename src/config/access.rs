//! Who may ask what, as configured (`API_TOKEN`, `WEBHOOK_SECRET`, `METRICS_TOKEN`,
//! `TRUST_PROXY`) and the console's settings (`UI_SESSION_HOURS`, `UI_ALLOWED_HOSTS`): how long
//! a browser's sign-in lasts, and which `Host` names a browser may reach the server by. `auth`
//! owns the checks.

use super::*;

/// Who may ask what (`auth` owns the checks).
#[derive(Clone, Debug, Default)]
pub struct Access {
    /// `API_TOKEN`: bearer token for `/call`; without it only loopback clients may call.
    pub api_token: Option<String>,
    /// `WEBHOOK_SECRET`: required on Exotel's webhooks when set.
    pub webhook_secret: Option<String>,
    /// `METRICS_TOKEN`: when set, `/metrics` needs `Authorization: Bearer $METRICS_TOKEN`.
    pub metrics_token: Option<String>,
    /// `TRUST_PROXY`: reverse proxies whose forwarded requests count as the operator's own.
    pub trust_proxy: Vec<IpAddr>,
    /// The console's sessions and `Host` check (`UI_*`).
    pub console: ConsoleSettings,
}

/// Everything of [`Access`] but the console's settings (read beside the public base URL).
pub(super) fn access_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Access, ConfigError> {
    Ok(Access {
        api_token: var("API_TOKEN"),
        webhook_secret: var("WEBHOOK_SECRET"),
        metrics_token: var("METRICS_TOKEN"),
        trust_proxy: trust_proxy_from_vars(var)?,
        console: ConsoleSettings::default(),
    })
}

fn trust_proxy_from_vars(
    var: &impl Fn(&str) -> Option<String>,
) -> Result<Vec<IpAddr>, ConfigError> {
    let Some(list) = var("TRUST_PROXY") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| ConfigError {
                variable: "TRUST_PROXY",
                problem: format!("{s:?} is not an IP address (list the proxies' addresses)"),
            })
        })
        .collect()
}

/// A console sign-in lasts this long unless `UI_SESSION_HOURS` says otherwise.
pub const DEFAULT_UI_SESSION_HOURS: u64 = 12;

/// What the console's sessions and its `Host` check read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// `UI_SESSION_HOURS`: a session cookie is good this long after its sign-in.
    pub session_for: Duration,
    /// `UI_ALLOWED_HOSTS` and the public base URL's host, lower-cased: the names a browser
    /// may use besides IP addresses and `localhost` (a DNS-rebinding page sends its own).
    pub allowed_hosts: Vec<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            session_for: Duration::from_secs(DEFAULT_UI_SESSION_HOURS * 3600),
            allowed_hosts: Vec::new(),
        }
    }
}

pub(super) fn console_from_vars(
    var: &impl Fn(&str) -> Option<String>,
    public_base_url: Option<&str>,
) -> Result<ConsoleSettings, ConfigError> {
    let hours = ranged(var, "UI_SESSION_HOURS", DEFAULT_UI_SESSION_HOURS, 1, 720)?;
    let mut allowed_hosts = Vec::new();
    for host in var("UI_ALLOWED_HOSTS").unwrap_or_default().split(',') {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() {
            continue;
        }
        if host.contains(['/', ':', ' ', '@']) {
            return Err(ConfigError {
                variable: "UI_ALLOWED_HOSTS",
                problem: format!(
                    "{host:?} is not a host name: give names only, like console.example.com"
                ),
            });
        }
        allowed_hosts.push(host);
    }
    if let Some(host) = public_base_url.and_then(host_of_url) {
        allowed_hosts.push(host);
    }
    Ok(ConsoleSettings {
        session_for: Duration::from_secs(hours * 3600),
        allowed_hosts,
    })
}

/// `https://Host:port/prefix` → `host`, lower-cased.
fn host_of_url(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}
