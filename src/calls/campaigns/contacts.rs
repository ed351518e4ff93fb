//! A campaign's contacts, from a JSON array or a CSV file: each row checked, every bad one
//! reported with its row number and why, never dropped in silence.
//!
//! JSON: `[{"to": "+919876543210", "params": {"name": "Asha"}}, "+919812345678", …]` (a bare
//! string is a number without parameters). CSV: a header row with a `to` column; every other
//! column becomes a parameter of the same name, handed to the bot.

use crate::calls::PhoneNumber;
use std::collections::HashMap;

/// A contact's parameters at most, and the longest name and value of one.
pub const MAX_PARAMS: usize = 32;
pub const MAX_PARAM_NAME: usize = 64;
pub const MAX_PARAM_VALUE: usize = 1024;

/// One contact, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contact {
    /// E.164.
    pub to: String,
    pub params: Vec<(String, String)>,
}

impl Contact {
    /// The parameters as the JSON object stored.
    pub fn params_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .params
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(map).to_string()
    }
}

/// A row that was not taken, with why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Rejected {
    /// 1 for the first contact (the first line after a CSV's header).
    pub row: usize,
    pub to: String,
    pub error: String,
}

/// The contacts taken and the rows refused.
#[derive(Debug, Default)]
pub struct Checked {
    pub contacts: Vec<Contact>,
    pub rejected: crate::calls::rejects::Rejects<Rejected>,
    /// [`PhoneNumber::key`] → row, to find duplicates: 16 bytes a contact where the number's
    /// string was 40.
    seen: HashMap<u64, usize>,
}

impl Checked {
    fn take(&mut self, row: usize, to: &str, params: Result<Vec<(String, String)>, String>) {
        let refuse = |error: String| Rejected {
            row,
            to: to.to_owned(),
            error,
        };
        let (number, key) = match PhoneNumber::parse(to) {
            Ok(n) => (n.canonical(), n.key()),
            Err(e) => return self.rejected.push("number", || refuse(format!("to: {e}"))),
        };
        if let Some(first) = self.seen.get(&key) {
            let first = *first;
            return self.rejected.push("duplicate", || {
                refuse(format!("duplicate of row {first} ({number})"))
            });
        }
        match params {
            Ok(params) => {
                self.seen.insert(key, row);
                self.contacts.push(Contact { to: number, params });
            }
            Err(e) => self.rejected.push("params", || refuse(e)),
        }
    }
}

impl Checked {
    /// Refuses the contacts without a value for each of `names` (the `{{name}}`s of the
    /// campaign's realtime bot), naming the first missing: the model must not be told a blank.
    pub fn require(&mut self, names: &[String]) {
        if names.is_empty() {
            return;
        }
        let contacts = std::mem::take(&mut self.contacts);
        for contact in contacts {
            let missing = names.iter().find(|name| {
                !contact
                    .params
                    .iter()
                    .any(|(k, v)| k == *name && !v.is_empty())
            });
            let Some(missing) = missing else {
                self.contacts.push(contact);
                continue;
            };
            let row = PhoneNumber::parse(&contact.to)
                .ok()
                .and_then(|n| self.seen.get(&n.key()).copied())
                .unwrap_or(0);
            self.rejected.push("variables", || Rejected {
                row,
                to: contact.to.clone(),
                error: format!(
                    "no value for {{{{{missing}}}}}, which the agent's instructions or greeting use"
                ),
            });
        }
    }
}

/// Checks a JSON array of contacts.
pub fn from_json(values: &[serde_json::Value]) -> Checked {
    let mut checked = Checked::default();
    for (i, value) in values.iter().enumerate() {
        let row = i + 1;
        match value {
            serde_json::Value::String(to) => checked.take(row, to, Ok(Vec::new())),
            serde_json::Value::Object(fields) => {
                let to = fields.get("to").and_then(|v| v.as_str()).unwrap_or("");
                let params = json_params(fields);
                if to.is_empty() {
                    checked.rejected.push("number", || Rejected {
                        row,
                        to: String::new(),
                        error: "to is missing".into(),
                    });
                } else {
                    checked.take(row, to, params);
                }
            }
            other => checked.rejected.push("shape", || Rejected {
                row,
                to: String::new(),
                error: format!("a contact is an object {{\"to\": …}} or a number, not {other}"),
            }),
        }
    }
    checked
}

/// `params` of a JSON contact (and no field but `to` and `params`).
fn json_params(
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<(String, String)>, String> {
    if let Some(unknown) = fields.keys().find(|k| *k != "to" && *k != "params") {
        return Err(format!(
            "{unknown:?} is not a field of a contact (to, params)"
        ));
    }
    let Some(params) = fields.get("params") else {
        return Ok(Vec::new());
    };
    let Some(params) = params.as_object() else {
        return Err("params must be an object of names and values".into());
    };
    let pairs = params
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| {
            let v = match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), v)
        })
        .collect();
    check_params(pairs)
}

fn check_params(pairs: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    if pairs.len() > MAX_PARAMS {
        return Err(format!("more than {MAX_PARAMS} params"));
    }
    for (k, v) in &pairs {
        if k.is_empty() || k.len() > MAX_PARAM_NAME {
            return Err(format!(
                "param name {k:?} must have 1 to {MAX_PARAM_NAME} bytes"
            ));
        }
        if v.len() > MAX_PARAM_VALUE {
            return Err(format!(
                "param {k:?} is longer than {MAX_PARAM_VALUE} bytes"
            ));
        }
    }
    Ok(pairs)
}

/// Checks a CSV file whose header has a `to` column. Fails as a whole only when it is not
/// such a file (no header, no `to` column, broken quoting).
pub fn from_csv(text: &[u8]) -> Result<Checked, String> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text);
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("the CSV has no readable header row: {e}"))?
        .iter()
        .map(str::to_owned)
        .collect();
    let to_at = header
        .iter()
        .position(|h| h.eq_ignore_ascii_case("to"))
        .ok_or_else(|| {
            format!(
                "the CSV's header row has no \"to\" column (it has {})",
                header.join(", ")
            )
        })?;
    let mut checked = Checked::default();
    for (i, record) in reader.records().enumerate() {
        let row = i + 1;
        let record = record.map_err(|e| format!("CSV row {row}: {e}"))?;
        let to = record.get(to_at).unwrap_or("");
        if record.len() != header.len() {
            checked.rejected.push("columns", || Rejected {
                row,
                to: to.to_owned(),
                error: format!(
                    "{} columns where the header has {}",
                    record.len(),
                    header.len()
                ),
            });
            continue;
        }
        let pairs = header
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter(|(i, (_, v))| *i != to_at && !v.is_empty())
            .map(|(_, (k, v))| (k.clone(), v.to_owned()))
            .collect();
        checked.take(row, to, check_params(pairs));
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_become_contacts_and_bad_rows_are_named() {
        let csv = "to,name,amount\n\
                   +919876543210,Asha,1200\n\
                   98765 43211,\"Rao, K.\",\n\
                   12,Nobody,1\n\
                   09876543210,Asha again,5\n\
                   +919876543212,Too,many,columns\n";
        let checked = from_csv(csv.as_bytes()).unwrap();
        assert_eq!(
            checked.contacts,
            [
                Contact {
                    to: "+919876543210".into(),
                    params: vec![
                        ("name".into(), "Asha".into()),
                        ("amount".into(), "1200".into())
                    ]
                },
                Contact {
                    to: "+919876543211".into(),
                    params: vec![("name".into(), "Rao, K.".into())]
                },
            ]
        );
        let rows: Vec<(usize, &str)> = checked
            .rejected
            .listed
            .iter()
            .map(|r| (r.row, r.error.as_str()))
            .collect();
        assert_eq!(rows.len(), 3, "{rows:?}");
        assert_eq!(rows[0].0, 3);
        assert!(rows[1].1.starts_with("duplicate of row 1"), "{rows:?}");
        assert!(rows[2].1.contains("columns"), "{rows:?}");
        assert!(from_csv(b"number,name\n+919876543210,A\n")
            .unwrap_err()
            .contains("\"to\""));
    }

    #[test]
    fn json_contacts_take_objects_and_bare_numbers() {
        let values: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"to": "+919876543210", "params": {"name": "Asha", "due": 3}},
                "+919876543211", {"params": {}}, 42, {"to": "+919876543212", "name": "x"}]"#,
        )
        .unwrap();
        let checked = from_json(&values);
        assert_eq!(checked.contacts.len(), 2);
        assert_eq!(
            checked.contacts[0].params_json(),
            r#"{"due":"3","name":"Asha"}"#
        );
        let rows: Vec<usize> = checked.rejected.listed.iter().map(|r| r.row).collect();
        assert_eq!(rows, [3, 4, 5]);
    }
}
