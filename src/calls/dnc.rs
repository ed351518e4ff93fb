//! The do-not-call list: numbers that must never be dialed (its routes are `routes::dnc`).
//! `POST /call` to a listed number answers `403 do_not_call` and nothing reaches Exotel.
//!
//! Numbers are kept in E.164 (`PhoneNumber::canonical`), so `09876543210`, `9876543210` and
//! `+919876543210` are one entry. The list is held in memory for the check on every `/call`;
//! [`crate::store`] keeps it on disk.

use super::PhoneNumber;
use super::Refusal;
use crate::store::Store;
use std::collections::BTreeSet;
use std::sync::RwLock;

pub struct DoNotCall {
    /// The list in memory, each E.164 number as the integer of its digits: a list of a
    /// million numbers is 8 MB of keys, not 50 MB of strings.
    numbers: RwLock<BTreeSet<u64>>,
    store: Store,
}

/// Numbers written to the store in one transaction of a large upload.
const STORE_BATCH: usize = 50_000;

/// The E.164 spelling of a [`PhoneNumber::key`].
fn spelled(key: u64) -> String {
    format!("+{key}")
}

/// A row of a `POST /dnc` body that is not a number.
#[derive(serde::Serialize)]
pub struct Invalid {
    row: usize,
    value: String,
    error: String,
}

impl DoNotCall {
    pub fn new(store: Store, numbers: Vec<String>) -> DoNotCall {
        DoNotCall {
            numbers: RwLock::new(
                numbers
                    .iter()
                    .filter_map(|n| PhoneNumber::parse(n).ok())
                    .map(|n| n.key())
                    .collect(),
            ),
            store,
        }
    }

    /// Another instance changed the list (`store::tell_instances`): `+NUMBER` or `-NUMBER`
    /// applied here, anything else read again whole.
    pub fn changed_elsewhere(&self, change: &str) {
        let one = |n: &str| PhoneNumber::parse(n).ok().map(|n| n.key());
        let mut numbers = self.numbers.write().unwrap_or_else(|p| p.into_inner());
        match (change.chars().next(), change.get(1..).and_then(one)) {
            (Some('+'), Some(key)) => {
                numbers.insert(key);
            }
            (Some('-'), Some(key)) => {
                numbers.remove(&key);
            }
            _ => {
                drop(numbers);
                match self.store.dnc_numbers() {
                    Ok(all) => {
                        let keys = all.iter().filter_map(|n| one(n)).collect();
                        *self.numbers.write().unwrap_or_else(|p| p.into_inner()) = keys;
                    }
                    Err(e) => crate::error!("dnc.reload_failed", error = e),
                }
            }
        }
    }

    /// Whether `number` must not be dialed.
    pub fn contains(&self, number: &PhoneNumber) -> bool {
        self.numbers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&number.key())
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
            .insert(number.key());
        Ok(added > 0)
    }

    /// Adds the numbers an upload names (`POST /dnc`: `{"numbers": [...]}`, or CSV/plain text
    /// whose first column holds them). The body is read one value at a time into the set of
    /// numbers it names (so a list of one number repeated holds one), and its invalid rows are
    /// listed up to [`crate::calls::rejects::MAX_LISTED_REJECTS`] and counted past it.
    pub fn add(&self, content_type: &str, body: &[u8]) -> Result<Added, Refusal> {
        let mut upload = Upload::default();
        read_values(content_type, body, |value| upload.take(value))?;
        if upload.given == 0 && upload.invalid.is_empty() {
            return Err(Refusal::invalid(
                "no numbers: send {\"numbers\": [\"+919876543210\"]} or CSV with one number per line",
            ));
        }
        let mut added = 0;
        let numbers: Vec<u64> = upload.numbers.into_iter().collect();
        for batch in numbers.chunks(STORE_BATCH) {
            let spellings = batch.iter().map(|k| spelled(*k)).collect();
            added += self
                .store
                .dnc_add(spellings, super::log::now_ms())
                .map_err(Refusal::store)?;
            self.numbers
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .extend(batch);
        }
        crate::info!("dnc.added", numbers = added, invalid = upload.invalid.count);
        Ok(Added {
            added,
            already_listed: upload.given - added,
            invalid: upload.invalid,
        })
    }

    /// Every number on the list, in E.164, sorted.
    pub fn numbers(&self) -> Vec<String> {
        let mut numbers: Vec<String> = self
            .numbers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|k| spelled(*k))
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Takes the number a path segment names off the list; answers it in E.164.
    pub fn remove(&self, raw: &str) -> Result<String, Refusal> {
        let (number, key) = match PhoneNumber::from_path_segment(raw) {
            Ok(n) => (n.canonical(), n.key()),
            Err(e) => return Err(Refusal::invalid(e)),
        };
        match self.store.dnc_remove(number.clone()) {
            Ok(true) => {
                self.numbers
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&key);
                crate::info!("dnc.removed", number = number);
                Ok(number)
            }
            Ok(false) => Err(Refusal::not_found(format!("{number} is not on the list"))),
            Err(e) => Err(Refusal::store(e)),
        }
    }
}

/// What an upload did: numbers new to the list, numbers it had, and the rows that were not
/// numbers.
pub struct Added {
    pub added: usize,
    pub already_listed: usize,
    pub invalid: crate::calls::rejects::Rejects<Invalid>,
}

/// What a `POST /dnc` body holds, read value by value.
#[derive(Default)]
struct Upload {
    /// The distinct numbers, as [`PhoneNumber::key`]s.
    numbers: BTreeSet<u64>,
    /// Valid values, repeats included.
    given: usize,
    invalid: crate::calls::rejects::Rejects<Invalid>,
    rows: usize,
}

impl Upload {
    fn take(&mut self, value: &str) {
        self.rows += 1;
        match PhoneNumber::parse(value) {
            Ok(n) => {
                self.given += 1;
                self.numbers.insert(n.key());
            }
            Err(error) => {
                let row = self.rows;
                self.invalid.push("number", || Invalid {
                    row,
                    value: value.to_owned(),
                    error,
                });
            }
        }
    }
}

/// Hands each number of a `POST /dnc` body to `take`: `{"numbers": [...]}`, or CSV/plain
/// text whose first column holds them (a header row such as `number` is skipped).
fn read_values(content_type: &str, body: &[u8], mut take: impl FnMut(&str)) -> Result<(), Refusal> {
    let text = String::from_utf8_lossy(body);
    if content_type == "application/json" || text.trim_start().starts_with('{') {
        use serde::de::DeserializeSeed as _;
        let mut de = serde_json::Deserializer::from_str(&text);
        return NumbersBody(&mut take)
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| {
                Refusal::invalid(format!("the body must be {{\"numbers\": [\"+91…\"]}}: {e}"))
            });
    }
    for (i, line) in text.lines().enumerate() {
        let first = line
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        let is_header = i == 0 && first.chars().any(|c| c.is_ascii_alphabetic());
        if !first.is_empty() && !is_header {
            take(first);
        }
    }
    Ok(())
}

/// `{"numbers": [...]}` read without holding the list: each string goes to the closure.
struct NumbersBody<'a, F>(&'a mut F);

impl<'de, F: FnMut(&str)> serde::de::DeserializeSeed<'de> for NumbersBody<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, F: FnMut(&str)> serde::de::Visitor<'de> for NumbersBody<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with one field, numbers")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'_, str>>()? {
            if key != "numbers" {
                return Err(serde::de::Error::unknown_field(&key, &["numbers"]));
            }
            if seen {
                return Err(serde::de::Error::duplicate_field("numbers"));
            }
            seen = true;
            map.next_value_seed(NumberList(&mut *self.0))?;
        }
        if !seen {
            return Err(serde::de::Error::missing_field("numbers"));
        }
        Ok(())
    }
}

/// The `numbers` array, one string at a time.
struct NumberList<'a, F>(&'a mut F);

impl<'de, F: FnMut(&str)> serde::de::DeserializeSeed<'de> for NumberList<'_, F> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(&str)> serde::de::Visitor<'de> for NumberList<'_, F> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of numbers as strings")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<std::borrow::Cow<'_, str>>()? {
            (self.0)(&value);
        }
        Ok(())
    }
}
