//! Campaigns, their contacts and every attempt to call one, in SQLite.
//!
//! The tables are the dialer's memory across a crash, so each step is one transaction:
//! - a contact is `pending` (due at `next_at`), `dialing` (an attempt is open) or `done`;
//! - an attempt row is written, `dialing`, **before** Exotel is asked, and is unique per contact
//!   and attempt number: the same attempt can never be sent twice. It becomes `placed` when
//!   Exotel gives its CallSid and `done` with an outcome; an attempt that was `dialing` when
//!   the process died is reconciled as `unknown` (Exotel may or may not have placed it).
//! - a placed attempt ends when its call's row in the call log (`calls`, same database) reaches
//!   a final status: [`Store::attempts_ended`] joins the two.
//!
//! The settings of a campaign are kept as the JSON the API shows, so that adding one needs no
//! migration.

use super::sql::{self, params, Db, Row};
use super::Store;

/// A campaign to write, with its settings as JSON.
pub struct NewCampaign {
    pub id: String,
    pub name: String,
    pub status: String,
    pub settings: String,
    pub created_at: i64,
}

/// One contact to write: its number (E.164) and its parameters (a JSON object).
pub struct NewContact {
    pub to: String,
    pub params: String,
}

/// A campaign as stored.
#[derive(Clone, Debug)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub settings: String,
    pub total: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_error: Option<String>,
}

/// How far a campaign is.
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Attempts made (each call to Exotel, retries included).
    pub dialed: i64,
    /// Contacts waiting for a first or next attempt.
    pub pending: i64,
    /// Contacts with an attempt open.
    pub in_flight: i64,
    /// Of the pending, those already called at least once (waiting to be called again).
    pub retrying: i64,
    /// Contacts finished, by final outcome.
    pub by_outcome: Vec<(String, i64)>,
    /// Attempts by attempt number (1 is the first call).
    pub by_attempt: Vec<(i64, i64)>,
}

/// A contact due for its next attempt.
#[derive(Clone, Debug)]
pub struct DueContact {
    pub row: i64,
    pub to: String,
    pub params: String,
    /// Attempts made so far.
    pub attempts: i64,
}

/// An attempt not yet done.
#[derive(Clone, Debug)]
pub struct OpenAttempt {
    pub call_log_id: String,
    pub campaign_id: String,
    pub row: i64,
    pub attempt: i64,
    /// `dialing` or `placed`.
    pub state: String,
    pub call_sid: Option<String>,
}

/// A placed attempt whose call has a final status in the call log.
#[derive(Clone, Debug)]
pub struct EndedAttempt {
    pub call_log_id: String,
    pub campaign_id: String,
    pub row: i64,
    pub attempt: i64,
    pub call_sid: Option<String>,
    /// The call's status in the call log.
    pub call_status: String,
}

/// What happens to a contact after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then {
    /// Pending again, due at this time (ms since the epoch).
    RetryAt(i64),
    /// Done with the attempt's outcome.
    Final,
}

/// One contact of a campaign with its last call, for `/campaigns/{id}/calls`.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContactReport {
    pub row: i64,
    pub to: String,
    pub params: serde_json::Value,
    pub attempts: i64,
    pub state: String,
    pub outcome: Option<String>,
    pub call_log_id: Option<String>,
    pub call_sid: Option<String>,
    pub duration_s: Option<i64>,
    pub recording: Option<String>,
}

const CAMPAIGN_COLUMNS: &str =
    "id, name, status, settings, total, created_at, updated_at, last_error";

fn campaign_row(r: &Row) -> sql::Result<CampaignRow> {
    Ok(CampaignRow {
        id: r.get(0)?,
        name: r.get(1)?,
        status: r.get(2)?,
        settings: r.get(3)?,
        total: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
        last_error: r.get(7)?,
    })
}

impl Store {
    /// Writes a campaign and all its contacts (pending, due at once) in one transaction.
    pub fn campaign_create(
        &self,
        campaign: NewCampaign,
        contacts: Vec<NewContact>,
    ) -> Result<(), String> {
        self.ask(move |conn| {
            conn.transaction(|tx| {
                tx.execute(
                    &format!("INSERT INTO campaigns ({CAMPAIGN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, NULL)"),
                    params![
                        campaign.id,
                        campaign.name,
                        campaign.status,
                        campaign.settings,
                        contacts.len() as i64,
                        campaign.created_at
                    ],
                )?;
                insert_contacts(tx, &campaign.id, &contacts)
            })
        })
    }

    /// Every campaign, newest first.
    pub fn campaigns(&self) -> Result<Vec<CampaignRow>, String> {
        self.ask(|conn| {
            conn.rows(
                &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns ORDER BY seq DESC"),
                params![],
                campaign_row,
            )
        })
    }

    /// The campaigns not completed or canceled, oldest first.
    pub fn campaigns_active(&self) -> Result<Vec<CampaignRow>, String> {
        self.ask(|conn| {
            conn.rows(
                &format!(
                    "SELECT {CAMPAIGN_COLUMNS} FROM campaigns
                     WHERE status NOT IN ('completed', 'canceled') ORDER BY seq"
                ),
                params![],
                campaign_row,
            )
        })
    }

    pub fn campaign(&self, id: String) -> Result<Option<CampaignRow>, String> {
        self.ask(move |conn| {
            conn.row(
                &format!("SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?1"),
                params![id],
                campaign_row,
            )
        })
    }

    /// Sets a campaign's status if it is one of `from` (any, when empty); answers the status
    /// it had, or `None` when there is no such campaign.
    pub fn campaign_set_status(
        &self,
        id: String,
        from: &'static [&'static str],
        to: &'static str,
        error: Option<String>,
        at: i64,
    ) -> Result<Option<String>, String> {
        let outbox = self.outbox;
        self.ask(move |conn| {
            conn.transaction(|tx| {
                let current: Option<(String, String, i64)> = tx.row(
                    "SELECT status, name, total FROM campaigns WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?;
                if let Some((status, name, total)) = &current {
                    if from.is_empty() || from.contains(&status.as_str()) {
                        tx.execute(
                            "UPDATE campaigns SET status = ?2, updated_at = ?3,
                                 last_error = COALESCE(?4, last_error) WHERE id = ?1",
                            params![id, to, at, error],
                        )?;
                        if outbox && to == "completed" && status != "completed" {
                            let data = serde_json::json!({"id": id, "name": name, "total": total});
                            super::outbox::enqueue(tx, "campaign.completed", None, data, at)?;
                        }
                    }
                }
                Ok(current.map(|(status, _, _)| status))
            })
        })
    }

    /// Marks every pending contact of a canceled campaign `canceled`; answers how many.
    pub fn campaign_cancel_pending(&self, id: String) -> Result<usize, String> {
        self.ask(move |conn| {
            conn.execute(
                "UPDATE contacts SET state = 'done', outcome = 'canceled'
                 WHERE campaign_id = ?1 AND state = 'pending'",
                params![id],
            )
        })
    }

    pub fn campaign_counts(&self, id: String) -> Result<Counts, String> {
        self.ask(move |conn| {
            let mut counts = Counts::default();
            let by_state = conn.rows(
                "SELECT state, CASE WHEN attempts > 0 THEN 1 ELSE 0 END, COUNT(*) FROM contacts
                 WHERE campaign_id = ?1 GROUP BY state, CASE WHEN attempts > 0 THEN 1 ELSE 0 END",
                params![id],
                |r| Ok((r.get::<String>(0)?, r.get::<bool>(1)?, r.get::<i64>(2)?)),
            )?;
            for (state, called, n) in by_state {
                match state.as_str() {
                    "pending" => {
                        counts.pending += n;
                        if called {
                            counts.retrying += n;
                        }
                    }
                    "dialing" => counts.in_flight += n,
                    _ => {}
                }
            }
            counts.by_outcome = conn.rows(
                "SELECT outcome, COUNT(*) FROM contacts
                 WHERE campaign_id = ?1 AND state = 'done' GROUP BY outcome ORDER BY outcome",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            counts.by_attempt = conn.rows(
                "SELECT attempt, COUNT(*) FROM attempts WHERE campaign_id = ?1
                 GROUP BY attempt ORDER BY attempt",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            counts.dialed = counts.by_attempt.iter().map(|(_, n)| n).sum();
            Ok(counts)
        })
    }

    /// Up to `limit` pending contacts due at `now`, the longest due first.
    pub fn due_contacts(
        &self,
        campaign_id: String,
        now: i64,
        limit: usize,
    ) -> Result<Vec<DueContact>, String> {
        self.ask(move |conn| {
            conn.rows(
                "SELECT row, to_number, params, attempts FROM contacts
                 WHERE campaign_id = ?1 AND state = 'pending' AND next_at <= ?2
                 ORDER BY next_at, row LIMIT ?3",
                params![campaign_id, now, limit as i64],
                |r| {
                    Ok(DueContact {
                        row: r.get(0)?,
                        to: r.get(1)?,
                        params: r.get(2)?,
                        attempts: r.get(3)?,
                    })
                },
            )
        })
    }

    /// Whether any contact of the campaign is pending (due or not).
    pub fn has_pending(&self, campaign_id: String) -> Result<bool, String> {
        self.ask(move |conn| {
            conn.row(
                "SELECT 1 FROM contacts WHERE campaign_id = ?1 AND state = 'pending' LIMIT 1",
                params![campaign_id],
                |_| Ok(()),
            )
            .map(|found| found.is_some())
        })
    }

    /// Opens attempt number `attempt` of a pending contact, before Exotel is asked. Fails,
    /// changing nothing, if that attempt exists already (no attempt is ever sent twice) or the
    /// contact is no longer pending.
    pub fn attempt_begin(
        &self,
        campaign_id: String,
        row: i64,
        attempt: i64,
        call_log_id: String,
        at: i64,
    ) -> Result<(), String> {
        self.ask(move |conn| {
            conn.transaction(|tx| {
                tx.execute(
                    "INSERT INTO attempts (call_log_id, campaign_id, row, attempt, state, started_at)
                     VALUES (?1, ?2, ?3, ?4, 'dialing', ?5)",
                    params![call_log_id, campaign_id, row, attempt, at],
                )?;
                let changed = tx.execute(
                    "UPDATE contacts SET state = 'dialing', attempts = ?3, call_log_id = ?4
                     WHERE campaign_id = ?1 AND row = ?2 AND state = 'pending' AND attempts = ?3 - 1",
                    params![campaign_id, row, attempt, call_log_id],
                )?;
                if changed == 0 {
                    // The transaction rolls the attempt back.
                    return Err(sql::Error::other("the contact is not pending at this attempt"));
                }
                Ok(())
            })
        })
    }

    /// Exotel placed the attempt's call.
    pub fn attempt_placed(&self, call_log_id: String, call_sid: String) -> Result<(), String> {
        self.ask(move |conn| {
            conn.execute(
                "UPDATE attempts SET state = 'placed', call_sid = ?2
                 WHERE call_log_id = ?1 AND state = 'dialing'",
                params![call_log_id, call_sid],
            )
            .map(|_| ())
        })
    }

    /// Closes an attempt with its outcome, and its contact with it: pending again at
    /// `RetryAt`, or done. Answers `false` when the attempt was closed already.
    pub fn attempt_finish(
        &self,
        call_log_id: String,
        outcome: &'static str,
        then: Then,
        at: i64,
    ) -> Result<bool, String> {
        self.ask(move |conn| {
            conn.transaction(|tx| {
                let closed = tx.execute(
                    "UPDATE attempts SET state = 'done', outcome = ?2, ended_at = ?3
                     WHERE call_log_id = ?1 AND state != 'done'",
                    params![call_log_id, outcome, at],
                )?;
                if closed > 0 {
                    match then {
                        Then::RetryAt(next) => tx.execute(
                            "UPDATE contacts SET state = 'pending', next_at = ?2, outcome = ?3
                             WHERE call_log_id = ?1",
                            params![call_log_id, next, outcome],
                        )?,
                        Then::Final => tx.execute(
                            "UPDATE contacts SET state = 'done', outcome = ?2 WHERE call_log_id = ?1",
                            params![call_log_id, outcome],
                        )?,
                    };
                }
                Ok(closed > 0)
            })
        })
    }

    /// A contact finished without a call (on the do-not-call list).
    pub fn contact_skip(
        &self,
        campaign_id: String,
        row: i64,
        outcome: &'static str,
    ) -> Result<(), String> {
        self.ask(move |conn| {
            conn.execute(
                "UPDATE contacts SET state = 'done', outcome = ?3
                 WHERE campaign_id = ?1 AND row = ?2 AND state = 'pending'",
                params![campaign_id, row, outcome],
            )
            .map(|_| ())
        })
    }

    /// Every attempt not yet done, of every campaign.
    pub fn attempts_open(&self) -> Result<Vec<OpenAttempt>, String> {
        self.ask(|conn| {
            conn.rows(
                "SELECT call_log_id, campaign_id, row, attempt, state, call_sid FROM attempts
                 WHERE state != 'done'",
                params![],
                |r| {
                    Ok(OpenAttempt {
                        call_log_id: r.get(0)?,
                        campaign_id: r.get(1)?,
                        row: r.get(2)?,
                        attempt: r.get(3)?,
                        state: r.get(4)?,
                        call_sid: r.get(5)?,
                    })
                },
            )
        })
    }

    /// Placed attempts whose call has reached a final status in the call log.
    pub fn attempts_ended(&self) -> Result<Vec<EndedAttempt>, String> {
        self.ask(|conn| {
            conn.rows(
                "SELECT a.call_log_id, a.campaign_id, a.row, a.attempt, a.call_sid, c.status
                 FROM attempts a JOIN calls c ON c.call_log_id = a.call_log_id
                 WHERE a.state = 'placed' AND c.status NOT IN
                     ('queued', 'initiated', 'connected', 'in-progress')",
                params![],
                |r| {
                    Ok(EndedAttempt {
                        call_log_id: r.get(0)?,
                        campaign_id: r.get(1)?,
                        row: r.get(2)?,
                        attempt: r.get(3)?,
                        call_sid: r.get(4)?,
                        call_status: r.get(5)?,
                    })
                },
            )
        })
    }

    /// A page of a campaign's contacts (by row, after `after`), each with its last call.
    pub fn campaign_contacts(
        &self,
        campaign_id: String,
        after: i64,
        limit: usize,
    ) -> Result<Vec<ContactReport>, String> {
        self.ask(move |conn| {
            conn.rows(
                "SELECT k.row, k.to_number, k.params, k.attempts, k.state, k.outcome, k.call_log_id,
                        c.call_sid, c.duration_s, COALESCE(c.exotel_recording_url, c.recording_path)
                 FROM contacts k LEFT JOIN calls c ON c.call_log_id = k.call_log_id
                 WHERE k.campaign_id = ?1 AND k.row > ?2 ORDER BY k.row LIMIT ?3",
                params![campaign_id, after, limit as i64],
                contact_report,
            )
        })
    }
}

fn contact_report(r: &Row) -> sql::Result<ContactReport> {
    let params: String = r.get(2)?;
    Ok(ContactReport {
        row: r.get(0)?,
        to: r.get(1)?,
        params: serde_json::from_str(&params).unwrap_or_default(),
        attempts: r.get(3)?,
        state: r.get(4)?,
        outcome: r.get(5)?,
        call_log_id: r.get(6)?,
        call_sid: r.get(7)?,
        duration_s: r.get(8)?,
        recording: r.get(9)?,
    })
}

/// Contacts written per statement: one round trip to PostgreSQL per batch rather than per
/// contact (a million contacts were a million round trips), 4 parameters each, well under
/// both databases' limits on a statement's parameters (SQLite 32,766, PostgreSQL 65,535).
const CONTACTS_PER_INSERT: usize = 500;

/// A new campaign's contacts, pending and due at once, numbered from 1 in their order.
fn insert_contacts(tx: &dyn Db, campaign_id: &str, contacts: &[NewContact]) -> sql::Result<()> {
    let mut first_row = 1i64;
    for batch in contacts.chunks(CONTACTS_PER_INSERT) {
        let values: Vec<String> = (0..batch.len())
            .map(|i| {
                let p = 4 * i;
                format!(
                    "(?{}, ?{}, ?{}, ?{}, 'pending')",
                    p + 1,
                    p + 2,
                    p + 3,
                    p + 4
                )
            })
            .collect();
        let rows: Vec<i64> = (0..batch.len() as i64).map(|i| first_row + i).collect();
        let mut params: Vec<&dyn sql::ToValue> = Vec::with_capacity(4 * batch.len());
        for (contact, row) in batch.iter().zip(&rows) {
            params.extend([
                &campaign_id as &dyn sql::ToValue,
                row,
                &contact.to,
                &contact.params,
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO contacts (campaign_id, row, to_number, params, state) VALUES {}",
                values.join(", ")
            ),
            &params,
        )?;
        first_row += batch.len() as i64;
    }
    Ok(())
}
