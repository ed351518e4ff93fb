//! Named parameters from a query string, a form body or a flat JSON object: one type, so that
//! `/call` and Exotel's webhooks read their fields the same way whatever the encoding.

use super::{form, Request, Response};

/// Parameters in arrival order; JSON numbers and booleans become their text, JSON arrays give one
/// entry per element (`StatusCallbackEvents[]`), nested objects their JSON text.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Params(Vec<(String, String)>);

impl Params {
    pub fn from_query(query: &str) -> Params {
        Params(form::parse(query))
    }

    /// Adds the body's parameters. `application/json`, `application/x-www-form-urlencoded` and
    /// `multipart/form-data` (text fields) are read; a body without a content type is read as JSON if it starts with `{`, else as a
    /// form. Anything else is a 415.
    pub fn add_body(&mut self, request: &Request) -> Result<(), Response> {
        if request.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let looks_json = request.body.trim_ascii_start().first() == Some(&b'{');
        match request.content_type().as_deref() {
            Some("application/json") => self.add_json(&request.body),
            None if looks_json => self.add_json(&request.body),
            Some("application/x-www-form-urlencoded") | None => {
                let text = String::from_utf8_lossy(&request.body);
                self.0.extend(form::parse(text.trim()));
                Ok(())
            }
            Some("multipart/form-data") => {
                let header = request.header("content-type").unwrap_or("");
                match form::parse_multipart(header, &request.body) {
                    Some(fields) => {
                        self.0.extend(fields);
                        Ok(())
                    }
                    None => Err(Response::error(
                        400,
                        "bad_request",
                        "the multipart/form-data body has no boundary or does not start with it",
                    )),
                }
            }
            Some(other) => Err(Response::error(
                415,
                "unsupported_media_type",
                format!("Content-Type {other:?} is not accepted; send application/json, application/x-www-form-urlencoded or multipart/form-data"),
            )),
        }
    }

    fn add_json(&mut self, body: &[u8]) -> Result<(), Response> {
        let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
            Response::error(
                400,
                "bad_request",
                format!("the body is not valid JSON: {e}"),
            )
        })?;
        let serde_json::Value::Object(map) = value else {
            return Err(Response::error(
                400,
                "bad_request",
                "the JSON body must be an object",
            ));
        };
        for (key, value) in map {
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::String(s) => self.0.push((key, s)),
                serde_json::Value::Array(items) => {
                    for item in items {
                        let text = match item {
                            serde_json::Value::Null => continue,
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        self.0.push((key.clone(), text));
                    }
                }
                serde_json::Value::Number(n) => self.0.push((key, super::whole::text(&n))),
                other => self.0.push((key, other.to_string())),
            }
        }
        Ok(())
    }

    /// The first name not in `known`, if any.
    pub fn first_unknown<'a>(&'a self, known: &[&str]) -> Option<&'a str> {
        self.0
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| !known.contains(name))
    }

    /// The first value named exactly `name`, else the first whose name matches ignoring case
    /// (some proxies lower-case Exotel's `CallSid` to `callsid`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .or_else(|| self.0.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)))
            .map(|(_, v)| v.as_str())
    }

    /// Like [`Params::get`], but an empty value counts as absent.
    pub fn get_non_empty(&self, name: &str) -> Option<&str> {
        // ASCII's spaces only: a value that is only some other character (U+0085, U+00A0) is
        // there, and is checked as what it is.
        self.get(name)
            .map(|v| v.trim_matches(|c: char| c.is_ascii_whitespace()))
            .filter(|v| !v.is_empty())
    }

    /// A value that must be one of `choices` (each as written, with what it stands for); `None`
    /// when absent or empty. The error names the field and the value, then says `why`.
    pub fn one_of<T: Copy>(
        &self,
        name: &str,
        choices: &[(&str, T)],
        why: &str,
    ) -> Result<Option<T>, String> {
        let Some(v) = self.get_non_empty(name) else {
            return Ok(None);
        };
        match choices.iter().find(|(written, _)| *written == v) {
            Some((_, meant)) => Ok(Some(*meant)),
            None => Err(format!("{name} {v:?} {why}")),
        }
    }

    /// Every value named `name` (or `name[]`), in order.
    pub fn get_all(&self, name: &str) -> Vec<&str> {
        let bracketed = format!("{name}[]");
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name) || k.eq_ignore_ascii_case(&bracketed))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}
