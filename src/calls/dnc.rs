//! The do-not-call list: numbers that must never be dialed. `POST /dnc` adds numbers (a JSON
//! list, or CSV text with one number per line in its first column), `GET /dnc` lists them,
//! `DELETE /dnc/{number}` takes one off; all guarded like `/call`. `POST /call` to a listed
//! number answers `403 do_not_call` and nothing reaches Exotel.
//!
//! Numbers are kept in E.164 (`PhoneNumber::canonical`), so `09876543210`, `9876543210` and
//! `+919876543210` are one entry. The list is held in memory for the check on every `/call`;
//! [`crate::store`] keeps it on disk.

use super::PhoneNumber;
use crate::http::{Request, Response};
use crate::store::Store;
use std::collections::BTreeSet;
use std::sync::RwLock;

pub struct DoNotCall {
    numbers: RwLock<BTreeSet<String>>,
    store: Store,
}

/// A row of a `POST /dnc` body that is not a number.
#[derive(serde::Serialize)]
struct Invalid {
    row: usize,
    value: String,
    error: String,
}

impl DoNotCall {
    pub fn new(store: Store, numbers: Vec<String>) -> DoNotCall {
        DoNotCall {
            numbers: RwLock::new(numbers.into_iter().collect()),
            store,
        }
    }

    /// Whether `number` must not be dialed.
    pub fn contains(&self, number: &PhoneNumber) -> bool {
        self.numbers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&number.canonical())
    }

    /// Puts one number on the list (a caller who asked); answers whether it was new.
    pub fn add_number(&self, number: &PhoneNumber) -> Result<bool, String> {
        let canonical = number.canonical();
        let added = self
            .store
            .dnc_add(vec![canonical.clone()], super::log::now_ms())?;
        self.numbers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(canonical);
        Ok(added > 0)
    }

    /// `POST /dnc`.
    pub fn add(&self, request: &Request) -> Response {
        let values = match values_of(request) {
            Ok(values) => values,
            Err(response) => return response,
        };
        let mut numbers = Vec::with_capacity(values.len());
        let mut invalid = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            match PhoneNumber::parse(&value) {
                Ok(n) => numbers.push(n.canonical()),
                Err(error) => invalid.push(Invalid {
                    row: i + 1,
                    value,
                    error,
                }),
            }
        }
        if numbers.is_empty() && invalid.is_empty() {
            return Response::error(
                400,
                "bad_request",
                "no numbers: send {\"numbers\": [\"+919876543210\"]} or CSV with one number per line",
            );
        }
        let given = numbers.len();
        let added = match self.store.dnc_add(numbers.clone(), super::log::now_ms()) {
            Ok(added) => added,
            Err(e) => return Response::error(503, "store_unavailable", e),
        };
        self.numbers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .extend(numbers);
        crate::info!("dnc.added", numbers = added, invalid = invalid.len());
        Response::json(
            200,
            &serde_json::json!({
                "added": added,
                "alreadyListed": given - added,
                "invalid": invalid,
            }),
        )
    }

    /// `GET /dnc`.
    pub fn list(&self) -> Response {
        let numbers: Vec<String> = self
            .numbers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        Response::json(
            200,
            &serde_json::json!({"count": numbers.len(), "numbers": numbers}),
        )
    }

    /// `DELETE /dnc/{number}`.
    pub fn remove(&self, raw: &str) -> Response {
        let number = match PhoneNumber::from_path_segment(raw) {
            Ok(n) => n.canonical(),
            Err(e) => return Response::error(400, "bad_request", e),
        };
        match self.store.dnc_remove(number.clone()) {
            Ok(true) => {
                self.numbers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&number);
                crate::info!("dnc.removed", number = number);
                Response::json(200, &serde_json::json!({"removed": number}))
            }
            Ok(false) => Response::error(404, "not_found", format!("{number} is not on the list")),
            Err(e) => Response::error(503, "store_unavailable", e),
        }
    }
}

/// The numbers of a `POST /dnc` body: `{"numbers": [...]}`, or CSV/plain text whose first
/// column holds them (a header row such as `number` is skipped).
fn values_of(request: &Request) -> Result<Vec<String>, Response> {
    let content_type = request.content_type().unwrap_or_default();
    let text = String::from_utf8_lossy(&request.body);
    if content_type == "application/json" || text.trim_start().starts_with('{') {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            numbers: Vec<String>,
        }
        let body: Body = serde_json::from_str(&text).map_err(|e| {
            Response::error(
                400,
                "bad_request",
                format!("the body must be {{\"numbers\": [\"+91…\"]}}: {e}"),
            )
        })?;
        return Ok(body.numbers);
    }
    let mut values = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let first = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let is_header = i == 0 && first.chars().any(|c| c.is_ascii_alphabetic());
        if !first.is_empty() && !is_header {
            values.push(first.to_owned());
        }
    }
    Ok(values)
}
