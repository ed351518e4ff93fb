//! Who may ask what (see `docs/ARCHITECTURE.md`): the user's `/call` and `/calls` with `API_TOKEN`
//! (or local clients only without it), `/metrics` with `METRICS_TOKEN` when one is set, and
//! Exotel's webhooks with `WEBHOOK_SECRET` when one is set.
//!
//! "Local" means the client, not the last hop: a request that came through a reverse proxy
//! (`Forwarded`, `X-Forwarded-For`, `X-Real-IP`) is some stranger's until the operator names the
//! proxy in `TRUST_PROXY`, and then the client is the address that proxy reports. So putting a
//! proxy in front for HTTPS never opens `/call` to the internet by accident.
//!
//! Owns the checks and their 401 answers; every secret is compared in constant time.

use crate::calls::ids::constant_time_eq;
use crate::config::Access;
use crate::console::sessions::{self, Presented, Sessions, SignInRefused, SignedIn};
use crate::http::{Params, Request, Response};
use base64::Engine as _;
use std::net::IpAddr;

/// `/call` and the call log: `Authorization: Bearer $API_TOKEN`, or the console's session
/// cookie (with its CSRF token and a same-origin `Origin` on a request that changes
/// something), or a loopback peer when no `API_TOKEN` is set. A browser's request from
/// another site is refused whatever it carries.
pub fn user(config: &Access, sessions: &Sessions, request: &Request) -> Result<(), Response> {
    refuse_cross_site(request)?;
    match &config.api_token {
        Some(token) => match bearer_matches(request, token) {
            Some(true) => Ok(()),
            Some(false) => Err(
                Response::error(401, "unauthorized", "the bearer token is wrong")
                    .with_header("WWW-Authenticate", "Bearer"),
            ),
            None => match cookie(request, sessions::COOKIE) {
                Some(id) => console_session(config, sessions, request, id),
                None => Err(Response::error(
                    401,
                    "unauthorized",
                    "send Authorization: Bearer <API_TOKEN>",
                )
                .with_header("WWW-Authenticate", "Bearer")),
            },
        },
        None => {
            // Without a token the loopback rule is all there is: a page on another name that
            // resolves to 127.0.0.1 (DNS rebinding) must not pass it.
            host_allowed(config, request)?;
            loopback_only(config, request)
        }
    }
}

fn loopback_only(config: &Access, request: &Request) -> Result<(), Response> {
    match client_address(config, request) {
        Client::Direct(ip) | Client::Forwarded(ip) if ip.to_canonical().is_loopback() => Ok(()),
        Client::Untrusted => Err(Response::error(
            401,
            "unauthorized",
            "this request came through a proxy (Forwarded, X-Forwarded-For or X-Real-IP) and API_TOKEN is not set: set API_TOKEN, or name the proxy's address in TRUST_PROXY",
        )),
        _ => Err(Response::error(
            401,
            "unauthorized",
            "API_TOKEN is not set, so only loopback clients may use this endpoint; set API_TOKEN and send Authorization: Bearer <API_TOKEN>",
        )),
    }
}

/// A console session: a live cookie, a `Host` the operator named; for a request that changes
/// something, the page's CSRF token and its own origin too.
fn console_session(
    config: &Access,
    sessions: &Sessions,
    request: &Request,
    id: &str,
) -> Result<(), Response> {
    host_allowed(config, request)?;
    let Presented::Valid { csrf } = sessions.presented(id, std::time::Instant::now()) else {
        return Err(Response::error(
            401,
            "unauthorized",
            "the console session has expired or was signed out: sign in again",
        ));
    };
    if matches!(request.method.as_str(), "GET" | "HEAD") {
        return Ok(());
    }
    let token_ok = request
        .header("x-csrf-token")
        .is_some_and(|given| constant_time_eq(given.as_bytes(), csrf.as_bytes()));
    if !token_ok || !same_origin(request) {
        return Err(Response::error(
            403,
            "csrf",
            "a console request that changes something needs the page's X-CSRF-Token header and its own Origin",
        ));
    }
    Ok(())
}

/// A browser's request sent from another site (its `Origin` or `Sec-Fetch-Site` says so):
/// 403, so that no page elsewhere can use a signed-in console or a loopback server.
pub fn refuse_cross_site(request: &Request) -> Result<(), Response> {
    let fetched_cross_site = request
        .header("sec-fetch-site")
        .is_some_and(|v| v.eq_ignore_ascii_case("cross-site"));
    let foreign_origin = request.header("origin").is_some() && !same_origin(request);
    if fetched_cross_site || foreign_origin {
        return Err(Response::error(
            403,
            "cross_site",
            "a request from another site's page is refused",
        ));
    }
    Ok(())
}

/// The request's `Origin` names the host it was sent to (`Host`).
fn same_origin(request: &Request) -> bool {
    match (request.header("origin"), request.header("host")) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host)),
        _ => false,
    }
}

/// The `Host` a browser used is an IP address, `localhost`, or a name of `UI_ALLOWED_HOSTS` or
/// the public base URL; a request without one (not a browser's) passes.
pub fn host_allowed(config: &Access, request: &Request) -> Result<(), Response> {
    let Some(host) = request.header("host") else {
        return Ok(());
    };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    let name = name.to_ascii_lowercase();
    let allowed = name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || config.console.allowed_hosts.contains(&name);
    if allowed {
        Ok(())
    } else {
        Err(Response::error(
            403,
            "host_not_allowed",
            format!("Host {name:?} is not this server's: name it in UI_ALLOWED_HOSTS"),
        ))
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request
        .headers
        .iter()
        .filter(|(n, _)| n == "cookie")
        .flat_map(|(_, v)| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k.trim() == name).then(|| v.trim())
        })
}

/// The console's sign-in: the same `API_TOKEN`, from the page, limited per client address.
pub fn sign_in(
    config: &Access,
    sessions: &Sessions,
    request: &Request,
    given: &str,
) -> Result<SignedIn, Response> {
    refuse_cross_site(request)?;
    host_allowed(config, request)?;
    let Some(token) = &config.api_token else {
        return Err(Response::error(
            400,
            "no_api_token",
            "API_TOKEN is not set: the console is open to this machine's browsers only, without signing in",
        ));
    };
    let client = match client_address(config, request) {
        Client::Direct(ip) | Client::Forwarded(ip) => ip,
        Client::Untrusted => request.peer.ip(),
    };
    sessions
        .sign_in(token, given, client, std::time::Instant::now())
        .map_err(|refused| match refused {
            SignInRefused::WrongToken => {
                Response::error(401, "unauthorized", "that is not the API_TOKEN")
            }
            SignInRefused::TooMany { retry_after_s } => Response::error(
                429,
                "too_many_sign_ins",
                format!("too many wrong tokens from this address: wait {retry_after_s} s"),
            )
            .with_header("Retry-After", retry_after_s.to_string()),
        })
}

/// `/metrics`: `Authorization: Bearer $METRICS_TOKEN` when one is set; open otherwise.
pub fn metrics(config: &Access, request: &Request) -> Result<(), Response> {
    let Some(token) = &config.metrics_token else {
        return Ok(());
    };
    match bearer_matches(request, token) {
        Some(true) => Ok(()),
        _ => Err(Response::error(
            401,
            "unauthorized",
            "METRICS_TOKEN is set: send Authorization: Bearer <METRICS_TOKEN>",
        )
        .with_header("WWW-Authenticate", "Bearer")),
    }
}

/// Whether the request's `Authorization: Bearer …` is `token` (compared in constant time);
/// `None` when it sends no bearer token.
fn bearer_matches(request: &Request, token: &str) -> Option<bool> {
    let given = request.header("authorization").and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    })?;
    Some(constant_time_eq(given.trim().as_bytes(), token.as_bytes()))
}

/// Who sent a request, as far as it can be known.
#[derive(Debug, PartialEq, Eq)]
enum Client {
    /// No proxy headers: the peer is the client.
    Direct(IpAddr),
    /// Through a proxy named in `TRUST_PROXY`: the client it reports.
    Forwarded(IpAddr),
    /// Proxy headers from a peer not named in `TRUST_PROXY`, or a trusted proxy that named no
    /// readable client.
    Untrusted,
}

/// The client behind `request`. With a trusted proxy, the client is the rightmost address of
/// `X-Forwarded-For` that is not itself a trusted proxy (the one the first trusted hop saw),
/// else `X-Real-IP`, else `Forwarded: for=`.
fn client_address(config: &Access, request: &Request) -> Client {
    let peer = request.peer.ip().to_canonical();
    let forwarded_for = request.header("x-forwarded-for");
    let real_ip = request.header("x-real-ip");
    let forwarded = request.header("forwarded");
    if forwarded_for.is_none() && real_ip.is_none() && forwarded.is_none() {
        return Client::Direct(peer);
    }
    let trusted = |ip: &IpAddr| {
        config
            .trust_proxy
            .iter()
            .any(|t| t.to_canonical() == ip.to_canonical())
    };
    if !trusted(&peer) {
        return Client::Untrusted;
    }
    let parse = |s: &str| -> Option<IpAddr> {
        let s = s.trim().trim_matches('"');
        let s = s
            .strip_prefix('[')
            .map_or(s, |r| r.split(']').next().unwrap_or(r));
        s.parse()
            .ok()
            .or_else(|| s.rsplit_once(':').and_then(|(h, _)| h.parse().ok()))
    };
    // The first hop from the right that is not a trusted proxy; all trusted: the leftmost.
    let from_xff = forwarded_for.and_then(|v| {
        let hops: Vec<Option<IpAddr>> = v.split(',').map(parse).collect();
        let untrusted = hops
            .iter()
            .rev()
            .find(|ip| ip.as_ref().is_none_or(|ip| !trusted(ip)));
        untrusted.or(hops.first()).copied().flatten()
    });
    let from_forwarded = || {
        forwarded?.split([',', ';']).rev().find_map(|part| {
            let (k, v) = part.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("for")
                .then(|| parse(v))
                .flatten()
        })
    };
    from_xff
        .or_else(|| real_ip.and_then(parse))
        .or_else(from_forwarded)
        .map_or(Client::Untrusted, Client::Forwarded)
}

/// Exotel's requests: when `WEBHOOK_SECRET` is set, it must come as the `secret` query parameter
/// or as the password of HTTP Basic auth (a URL written `https://user:secret@host/…` in Exotel's
/// dashboard is sent that way).
pub fn exotel(config: &Access, request: &Request, query: &Params) -> Result<(), Response> {
    let Some(secret) = &config.webhook_secret else {
        return Ok(());
    };
    let from_query = query.get("secret").map(|s| s.to_owned());
    let from_basic = basic_password(request);
    let ok = [from_query, from_basic]
        .iter()
        .flatten()
        .any(|given| constant_time_eq(given.as_bytes(), secret.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(Response::error(
            401,
            "unauthorized",
            "WEBHOOK_SECRET is set: send it as the secret query parameter or as the Basic auth password",
        ))
    }
}

/// The password of a request's `Authorization: Basic` header.
pub fn basic_password(request: &Request) -> Option<String> {
    basic_password_of(request.header("authorization")?)
}

/// The password of an `Authorization: Basic …` value.
pub fn basic_password_of(authorization: &str) -> Option<String> {
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    text.split_once(':')
        .map(|(_, password)| password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::BodyFraming;

    fn request_from(peer: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: "POST".into(),
            path: "/call".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            framing: BodyFraming::None,
            peer: peer.parse().unwrap(),
        }
    }

    fn no_sessions() -> Sessions {
        Sessions::new(std::time::Duration::from_secs(60))
    }

    fn config(pairs: &[(&str, &str)]) -> Access {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        crate::config::Config::from_lookup(|k| map.get(k).cloned())
            .unwrap()
            .access
    }

    #[test]
    fn without_api_token_only_loopback_peers_may_call() {
        let open = config(&[]);
        let user = |c: &Access, r: &Request| user(c, &no_sessions(), r);
        assert!(user(&open, &request_from("127.0.0.1:5000", &[])).is_ok());
        assert!(user(&open, &request_from("127.9.9.9:5000", &[])).is_ok());
        assert!(user(&open, &request_from("[::1]:5000", &[])).is_ok());
        assert!(user(&open, &request_from("[::ffff:127.0.0.1]:5000", &[])).is_ok());
        let denied = user(&open, &request_from("10.1.2.3:5000", &[])).unwrap_err();
        assert_eq!(denied.status, 401);
        assert!(String::from_utf8_lossy(&denied.body).contains("API_TOKEN is not set"));
    }

    #[test]
    fn a_forwarded_request_is_a_strangers_until_its_proxy_is_trusted() {
        let open = config(&[]);
        let user = |c: &Access, r: &Request| user(c, &no_sessions(), r);
        for header in ["x-forwarded-for", "x-real-ip", "forwarded"] {
            let value = if header == "forwarded" {
                "for=203.0.113.7"
            } else {
                "203.0.113.7"
            };
            let r = user(&open, &request_from("127.0.0.1:5000", &[(header, value)]));
            let denied = r.unwrap_err();
            assert!(
                String::from_utf8_lossy(&denied.body).contains("TRUST_PROXY"),
                "{header}"
            );
        }
        let trusting = config(&[("TRUST_PROXY", "127.0.0.1, 10.0.0.2")]);
        let via_proxy = |xff: &str| request_from("127.0.0.1:5000", &[("x-forwarded-for", xff)]);
        assert!(
            user(&trusting, &via_proxy("203.0.113.7")).is_err(),
            "a stranger behind it"
        );
        assert!(
            user(&trusting, &via_proxy("127.0.0.1")).is_ok(),
            "curl on the proxy's host"
        );
        assert!(
            user(&trusting, &via_proxy("203.0.113.7, 127.0.0.1")).is_err(),
            "a client that claims to be local is not believed past the first untrusted hop"
        );
        assert!(user(&trusting, &via_proxy("127.0.0.1, 10.0.0.2")).is_ok());
        let untrusted_peer = request_from("127.0.0.2:1", &[("x-real-ip", "127.0.0.1")]);
        assert!(user(&trusting, &untrusted_peer).is_err());
        let forwarded = request_from(
            "127.0.0.1:1",
            &[("forwarded", "for=\"[::1]:443\";proto=https")],
        );
        assert!(user(&trusting, &forwarded).is_ok());
    }

    #[test]
    fn with_api_token_every_peer_needs_it_even_loopback() {
        let closed = config(&[("API_TOKEN", "t0k")]);
        let user = |c: &Access, r: &Request| user(c, &no_sessions(), r);
        assert!(user(&closed, &request_from("127.0.0.1:1", &[])).is_err());
        let good = [("authorization", "Bearer t0k")];
        assert!(user(&closed, &request_from("203.0.113.9:1", &good)).is_ok());
    }
}
