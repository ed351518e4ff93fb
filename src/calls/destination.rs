//! Where a stored secret may be sent: the URLs an API user sets on a phone (`apiBaseUrl`,
//! `subdomain`) and on a relay agent (`url`), which the server later sends the phone's token or
//! the agent's headers to. Parsed strictly, because each goes into a request line or a header:
//! `scheme://host[:port][/path]` and nothing else (no user, query, fragment, space or control
//! character), the secure scheme to any host and the plain one to loopback only.
//!
//! Owns the parse and its named refusals; knows no socket. Who may change such a field (only
//! with the secret in the same request) is the handlers' rule, in `phones` and `agents`.

use std::net::IpAddr;

/// A URL a secret may be sent to, as parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Destination {
    /// Whether it is the secure scheme (`https`, `wss`).
    pub secure: bool,
    /// The host as written (lower-cased), without brackets for IPv6.
    pub host: String,
    pub port: Option<u16>,
}

impl Destination {
    /// `url` for `field` (named in every refusal), with `secure` its TLS scheme and `plain`
    /// the scheme allowed to loopback hosts only.
    pub fn parse(field: &str, url: &str, secure: &str, plain: &str) -> Result<Destination, String> {
        let refuse = |why: &str| {
            Err(format!(
                "{field} {url:?} {why}: write {secure}://host[:port][/path] ({plain}:// only to a loopback host)"
            ))
        };
        if let Some(c) = url.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return refuse(&format!("holds {c:?}"));
        }
        if !url.is_ascii() {
            return refuse("holds a character outside ASCII");
        }
        let (scheme, rest) = match url.split_once("://") {
            Some(parts) => parts,
            None => return refuse("has no scheme"),
        };
        let is_secure = scheme.eq_ignore_ascii_case(secure);
        if !is_secure && !scheme.eq_ignore_ascii_case(plain) {
            return refuse(&format!("has the scheme {scheme:?}"));
        }
        if rest.contains(['?', '#']) {
            return refuse("has a query or fragment");
        }
        if rest.contains('@') {
            return refuse("names a user (credentials go in their own fields)");
        }
        let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
        if !path.bytes().all(path_byte) {
            return refuse("has a path with characters a path cannot hold");
        }
        let (host, port) = match split_port(authority) {
            Ok(parts) => parts,
            Err(why) => return refuse(why),
        };
        if !is_host(host) {
            return refuse(&format!("has no valid host ({host:?})"));
        }
        let destination = Destination {
            secure: is_secure,
            host: host.to_ascii_lowercase(),
            port,
        };
        if !is_secure && !destination.is_loopback() {
            return refuse(&format!("sends a secret in the clear to {host}"));
        }
        Ok(destination)
    }

    /// Whether the host is this machine's loopback (`localhost`, 127.0.0.0/8, `::1`).
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.to_canonical().is_loopback())
    }

    /// The port, or the scheme's own (443 secure, 80 plain).
    pub fn port_or_default(&self) -> u16 {
        self.port.unwrap_or(if self.secure { 443 } else { 80 })
    }
}

/// A host name for [`check_host`]'s purposes: letters, digits, `-` and `.`, as `subdomain`
/// must be.
pub fn check_host(field: &str, host: &str) -> Result<(), String> {
    if is_host(host) && !host.starts_with('[') {
        Ok(())
    } else {
        Err(format!(
            "{field} {host:?} is not a host name (api.exotel.com or api.in.exotel.com)"
        ))
    }
}

/// `host[:port]`, the host of an IPv6 address in brackets.
fn split_port(authority: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err("has an unclosed [");
        };
        if inside.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 address");
        }
        (inside, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err("has a port outside 1-65535"),
            }
        }
        Some(_) => return Err("has a port that is not a number"),
    };
    Ok((host, port))
}

/// A DNS name (labels of letters, digits and `-`), an IPv4 address or an IPv6 address.
fn is_host(host: &str) -> bool {
    if host.parse::<IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// What a URL path may hold (RFC 3986's pchar and `/`, `%` for escapes).
fn path_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn https(url: &str) -> Result<Destination, String> {
        Destination::parse("apiBaseUrl", url, "https", "http")
    }

    #[test]
    fn the_secure_scheme_goes_anywhere_and_the_plain_one_to_loopback_only() {
        for ok in [
            "https://api.exotel.com",
            "https://api.in.exotel.com/",
            "https://exotel.example:8443/v1",
            "https://10.0.0.7",
            "https://[2001:db8::1]:443/x",
            "http://127.0.0.1:8080",
            "http://localhost/fake",
            "http://[::1]:9000",
        ] {
            assert!(https(ok).is_ok(), "{ok}: {:?}", https(ok));
        }
        for (bad, why) in [
            ("http://api.exotel.com", "in the clear"),
            ("http://10.0.0.7", "in the clear"),
            ("ftp://x", "scheme"),
            ("api.exotel.com", "no scheme"),
            ("https://evil.example/x y", "' '"),
            ("https://evil.example/\r\nX-Injected: 1", "'\\r'"),
            ("https://evil.example\t", "'\\t'"),
            ("https://user:pw@evil.example", "user"),
            ("https://evil.example/?steal=1", "query"),
            ("https://evil.example/#x", "fragment"),
            ("https://evil.example:0", "port"),
            ("https://evil.example:99999", "port"),
            ("https://evil.example:http", "port"),
            ("https://", "host"),
            ("https://-bad-.example", "host"),
            ("https://ex\u{e4}mple.com", "ASCII"),
            ("https://[::1", "unclosed"),
            ("https://a.example/pa\"th", "path"),
        ] {
            let err = https(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with("apiBaseUrl "), "{err}");
        }
    }

    #[test]
    fn hosts_are_names_or_addresses_only() {
        assert!(check_host("subdomain", "api.in.exotel.com").is_ok());
        for bad in [
            "",
            "a b",
            "evil.example/x",
            "evil.example:1",
            "a@b",
            "x\r\n",
        ] {
            assert!(check_host("subdomain", bad).is_err(), "{bad:?}");
        }
    }
}
