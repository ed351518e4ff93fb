//! Who may ask what (design §3): the user's `/call` with `API_TOKEN` (or loopback only without
//! it), and Exotel's webhooks with `WEBHOOK_SECRET` when one is set.
//!
//! Owns the checks and their 401 answers; every secret is compared in constant time.

use crate::calls::ids::constant_time_eq;
use crate::config::Config;
use crate::http::{Params, Request, Response};
use base64::Engine as _;

/// `/call` and the call log: `Authorization: Bearer $API_TOKEN`, or a loopback peer when no
/// `API_TOKEN` is set.
pub fn user(config: &Config, request: &Request) -> Result<(), Response> {
    match &config.api_token {
        Some(token) => {
            let given = request
                .header("authorization")
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            match given {
                Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
                Some(_) => Err(Response::error(401, "unauthorized", "the bearer token is wrong")
                    .with_header("WWW-Authenticate", "Bearer")),
                None => Err(Response::error(
                    401,
                    "unauthorized",
                    "send Authorization: Bearer <API_TOKEN>",
                )
                .with_header("WWW-Authenticate", "Bearer")),
            }
        }
        None if request.peer.ip().to_canonical().is_loopback() => Ok(()),
        None => Err(Response::error(
            401,
            "unauthorized",
            "API_TOKEN is not set, so only loopback clients may use this endpoint; set API_TOKEN and send Authorization: Bearer <API_TOKEN>",
        )),
    }
}

/// Exotel's requests: when `WEBHOOK_SECRET` is set, it must come as the `secret` query parameter
/// or as the password of HTTP Basic auth (a URL written `https://user:secret@host/…` in Exotel's
/// dashboard is sent that way).
pub fn exotel(config: &Config, request: &Request, query: &Params) -> Result<(), Response> {
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

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned()).unwrap()
    }

    #[test]
    fn without_api_token_only_loopback_peers_may_call() {
        let open = config(&[]);
        assert!(user(&open, &request_from("127.0.0.1:5000", &[])).is_ok());
        assert!(user(&open, &request_from("127.9.9.9:5000", &[])).is_ok());
        assert!(user(&open, &request_from("[::1]:5000", &[])).is_ok());
        assert!(user(&open, &request_from("[::ffff:127.0.0.1]:5000", &[])).is_ok());
        let denied = user(&open, &request_from("10.1.2.3:5000", &[])).unwrap_err();
        assert_eq!(denied.status, 401);
        assert!(String::from_utf8_lossy(&denied.body).contains("API_TOKEN is not set"));
    }

    #[test]
    fn with_api_token_every_peer_needs_it_even_loopback() {
        let closed = config(&[("API_TOKEN", "t0k")]);
        assert!(user(&closed, &request_from("127.0.0.1:1", &[])).is_err());
        let good = [("authorization", "Bearer t0k")];
        assert!(user(&closed, &request_from("203.0.113.9:1", &good)).is_ok());
    }
}
