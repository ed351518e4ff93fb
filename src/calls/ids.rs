//! The identifiers that follow a call: [`CallLogId`] (ours, travels as Exotel's `CustomField`)
//! and [`MediaToken`] (the per-call secret in the media URL).
//!
//! Owns their syntax and generation; must not know where they are stored.

use base64::Engine as _;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

/// Longest call log id we accept: Exotel's `CustomField` holds at most 128 characters.
pub const MAX_CALL_LOG_ID_LEN: usize = 128;

/// The id of one call in our log, from `POST /call` or generated. It is restricted to characters
/// that need no escaping in a URL query or a log line, so it can be put in both verbatim.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallLogId(String);

impl CallLogId {
    /// Accepts 1–128 characters of `A-Z a-z 0-9 - _ . :`.
    pub fn parse(s: &str) -> Result<CallLogId, String> {
        if s.is_empty() {
            return Err("is empty".into());
        }
        if s.len() > MAX_CALL_LOG_ID_LEN {
            return Err(format!(
                "is {} characters long; Exotel's CustomField holds at most {MAX_CALL_LOG_ID_LEN}",
                s.len()
            ));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(format!(
                "contains {c:?}; only letters, digits and - _ . : are allowed"
            ));
        }
        Ok(CallLogId(s.to_owned()))
    }

    /// A fresh id that sorts by creation time: 12 hex digits of Unix milliseconds, then 16 random
    /// hex digits (`0193a1b2c3d4-9f1e…`).
    pub fn generate() -> CallLogId {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let mut r = [0u8; 8];
        random_bytes(&mut r);
        CallLogId(format!("{ms:012x}-{:016x}", u64::from_be_bytes(r)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CallLogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A per-call secret of 128 random bits, written as 22 characters of unpadded base64url so that
/// the media URL's custom parameters stay far under Exotel's 256 characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct MediaToken(String);

impl MediaToken {
    pub fn generate() -> MediaToken {
        let mut bytes = [0u8; 16];
        random_bytes(&mut bytes);
        MediaToken(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A token as it arrives in a media URL; anything not of the generated shape is no token.
    pub fn parse(s: &str) -> Option<MediaToken> {
        let ok = s.len() == 22
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| MediaToken(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

// Tokens are secrets: never print them whole.
impl fmt::Debug for MediaToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MediaToken({}…)", &self.0[..4])
    }
}

/// A number Exotel can dial, in one spelling per line: E.164 (`+` then 8–15 digits, no `0`
/// after the `+`) or an Indian national number (10 digits starting 6–9, or the trunk `0` and 10
/// digits). Spaces, dashes, dots and parentheses are dropped first.
///
/// India's numbers follow its national rules, so that no two spellings of one line are two
/// numbers (a do-not-call entry must hold for all of them): after `+91` come exactly 10 digits,
/// not starting with 0; a trunk `0` written after the country code (`+91 0 98765 43210`, as
/// people copy it from a national spelling) is dropped; `0091…` is the same `+91`. Anything
/// else after `+91` cannot be a real number and is refused; so is `91` and 10 digits without
/// the `+`, which is what a form makes of an unencoded `+` (the answer hints at `%2B`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhoneNumber(String);

/// India's country code, whose national rules [`PhoneNumber`] applies.
const INDIA: &str = "91";

impl PhoneNumber {
    pub fn parse(s: &str) -> Result<PhoneNumber, String> {
        let compact: String = s
            .chars()
            .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
            .collect();
        let (plus, digits) = match compact.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => match compact.strip_prefix("00") {
                // The international prefix dialed from India: the same as `+`.
                Some(rest) if rest.len() > 10 => (true, rest),
                _ => (false, compact.as_str()),
            },
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is not a phone number (digits, optionally after +)"
            ));
        }
        let indian = |national: &str| -> Result<PhoneNumber, String> {
            let national = national.strip_prefix('0').unwrap_or(national);
            if national.len() == 10 && !national.starts_with('0') {
                Ok(PhoneNumber(format!("+{INDIA}{national}")))
            } else {
                Err(format!(
                    "{s:?} is not an Indian number: +91 is followed by 10 digits (a 0 written after +91 is dropped)"
                ))
            }
        };
        if plus {
            if let Some(national) = digits.strip_prefix(INDIA) {
                return indian(national);
            }
            if (8..=15).contains(&digits.len()) && !digits.starts_with('0') {
                return Ok(PhoneNumber(format!("+{digits}")));
            }
        } else if (digits.len() == 10 && matches!(digits.as_bytes()[0], b'6'..=b'9'))
            || (digits.len() == 11 && digits.starts_with('0') && !digits.starts_with("00"))
        {
            return Ok(PhoneNumber(digits.to_owned()));
        }
        Err(format!(
            "{s:?} is neither E.164 (+ and 8-15 digits, e.g. +919876543210) nor an Indian national number (10 digits from 6-9, or 0 and 10 digits)"
        ))
    }

    /// A number as the last segment of a path (`/dnc/+9198…`, `/phones/%2B9180…`): `%`-escapes
    /// decoded, a `+` kept as it is (only forms read it as a space).
    pub fn from_path_segment(raw: &str) -> Result<PhoneNumber, String> {
        PhoneNumber::parse(&crate::http::form::decode(&raw.replace('+', "%2B")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number as the integer of its E.164 digits: one key per line in 8 bytes, for the
    /// sets that hold many numbers (the do-not-call list, a campaign's duplicates). E.164 has
    /// at most 15 digits and none leading 0, so the key spells the number back as `+{key}`.
    pub fn key(&self) -> u64 {
        self.canonical()[1..]
            .bytes()
            .fold(0, |key, digit| key * 10 + u64::from(digit - b'0'))
    }

    /// The number in E.164, one spelling per line: an Indian national number gets `+91`
    /// (`9876543210` and `09876543210` are both `+919876543210`).
    pub fn canonical(&self) -> String {
        match self.0.strip_prefix('+') {
            Some(_) => self.0.clone(),
            None => format!("+91{}", self.0.strip_prefix('0').unwrap_or(&self.0)),
        }
    }
}

/// Fills `buf` from the operating system's random source. Without one the process cannot issue
/// unguessable tokens, so failing here is fatal rather than silently weaker.
pub fn random_bytes(buf: &mut [u8]) {
    getrandom::fill(buf).expect("the operating system's random source failed");
}

/// Compares two secrets in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_log_ids_accept_the_documented_alphabet_only() {
        assert!(CallLogId::parse("test-call-123").is_ok());
        assert!(CallLogId::parse("a:b.c_d").is_ok());
        assert!(CallLogId::parse(&"x".repeat(128)).is_ok());
        assert!(CallLogId::parse(&"x".repeat(129)).is_err());
        assert!(CallLogId::parse("").is_err());
        assert!(CallLogId::parse("a b").is_err());
        assert!(CallLogId::parse("a&b=c").is_err());
    }

    #[test]
    fn generated_ids_parse_and_differ() {
        let a = CallLogId::generate();
        let b = CallLogId::generate();
        assert_ne!(a, b);
        assert_eq!(CallLogId::parse(a.as_str()).unwrap(), a);
        assert_eq!(a.as_str().len(), 29);
    }

    #[test]
    fn tokens_are_22_url_safe_characters_and_parse_back() {
        let t = MediaToken::generate();
        assert_eq!(t.as_str().len(), 22);
        assert_eq!(MediaToken::parse(t.as_str()), Some(t.clone()));
        assert_ne!(MediaToken::generate(), t);
        assert_eq!(MediaToken::parse("short"), None);
        assert_eq!(MediaToken::parse("+++++++++++++++++++++/"), None);
    }

    #[test]
    fn phone_numbers_follow_design_section_3() {
        assert_eq!(
            PhoneNumber::parse("+919876543210").unwrap().as_str(),
            "+919876543210"
        );
        assert_eq!(
            PhoneNumber::parse("+91 98765-43210").unwrap().as_str(),
            "+919876543210"
        );
        assert_eq!(
            PhoneNumber::parse("9876543210").unwrap().as_str(),
            "9876543210"
        );
        assert_eq!(
            PhoneNumber::parse("08012345678").unwrap().as_str(),
            "08012345678"
        );
        assert!(PhoneNumber::parse("+1234567").is_err());
        assert!(PhoneNumber::parse("+12345678").is_ok());
        assert!(PhoneNumber::parse("+1234567890123456").is_err());
        assert!(PhoneNumber::parse("5876543210").is_err());
        assert!(PhoneNumber::parse("+91abc").is_err());
        assert!(PhoneNumber::parse("").is_err());
        assert!(PhoneNumber::parse("+").is_err());
    }

    #[test]
    fn every_spelling_of_an_indian_number_is_one_canonical_number() {
        let canonical = |s: &str| PhoneNumber::parse(s).map(|n| n.canonical());
        for spelling in [
            "+919876543210",
            "+91 98765 43210",
            "+91-0-98765-43210",
            "+910 9876543210",
            "+91 (0) 98765.43210",
            "0091 98765 43210",
            "00910 9876543210",
            "09876543210",
            "9876543210",
            "(098765) 43210",
        ] {
            assert_eq!(
                canonical(spelling).as_deref(),
                Ok("+919876543210"),
                "{spelling}"
            );
        }
        // What cannot be an Indian number after +91 is refused, not dialed as another.
        for bad in [
            "00987654321",
            "+9109876543",
            "+91987654321",
            "+919876543210 1",
            "+9100987654321",
            "+91",
        ] {
            assert!(PhoneNumber::parse(bad).is_err(), "{bad}");
        }
        // One key per line, which spells the number back.
        let key = PhoneNumber::parse("+91 0 98765 43210").unwrap().key();
        assert_eq!(key, 919_876_543_210);
        assert_eq!(format!("+{key}"), "+919876543210");
        assert_eq!(PhoneNumber::parse("09876543210").unwrap().key(), key);
        // Other countries keep their digits.
        assert_eq!(canonical("+1 415 555 0100").as_deref(), Ok("+14155550100"));
    }

    #[test]
    fn constant_time_eq_compares_contents() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
    }
}
