//! What each [`LogEvent`] writes: the status state machine (a status never moves backwards)
//! and the rows Exotel's callbacks and the Passthru find by callLogId, else CallSid.

use super::*;

pub(super) fn current_status(conn: &dyn Db, id: &str) -> sql::Result<Option<Status>> {
    conn.row(
        "SELECT status FROM calls WHERE call_log_id = ?1",
        params![id],
        |r| r.get::<String>(0),
    )
    .map(|s| s.and_then(|s| Status::parse(&s)))
}

/// One event's writes, inside the batch's transaction: the connection, when the event
/// happened (ms since the epoch), the final statuses reached (counted in the metrics once the
/// transaction commits), and whether changes make events for the user's backend (`outbox`).
pub(super) struct EventWrite<'a> {
    conn: &'a dyn Db,
    now: i64,
    ended: &'a mut Vec<Status>,
    outbox: bool,
}

/// Writes one event, as of `now`.
pub(super) fn apply(
    conn: &dyn Db,
    event: &LogEvent,
    now: i64,
    ended: &mut Vec<Status>,
    outbox: bool,
) -> sql::Result<()> {
    let mut w = EventWrite {
        conn,
        now,
        ended,
        outbox,
    };
    match event {
        LogEvent::Requested { id, to, caller_id } => w.requested(id.as_str(), to, caller_id),
        LogEvent::Placed { id, call_sid } => w.placed(id.as_str(), call_sid),
        LogEvent::PlaceFailed { id, error } => w.place_failed(id.as_str(), error),
        LogEvent::PlaceUnknown { id, error } => w.set(
            "UPDATE calls SET last_error = ?2 WHERE call_log_id = ?1",
            params![id.as_str(), error],
        ),
        LogEvent::Connected {
            id,
            direction,
            call_sid,
            from,
            to,
        } => w.connected(id.as_str(), *direction, call_sid, from, to),
        LogEvent::MediaStarted {
            id,
            stream_sid,
            call_sid,
            from,
            to,
            recording_path,
            agent,
            bot,
        } => {
            w.media_started(id.as_str(), stream_sid, call_sid, from, to)?;
            w.answered_by(id.as_str(), agent, bot, recording_path)
        }
        LogEvent::MediaEnded {
            id,
            status,
            reason,
            counts,
        } => w.media_ended(id.as_str(), *status, reason, counts),
        LogEvent::Handoff { id, reason } => w.handoff(id.as_str(), reason),
        LogEvent::StreamEnd(end) => stream_end(conn, end),
        LogEvent::Transcript { id, speaker, text } => w.set(
            "INSERT INTO call_transcript (call_log_id, role, text, at) VALUES (?1, ?2, ?3, ?4)",
            params![id.as_str(), speaker.as_str(), text, w.now],
        ),
        LogEvent::DoNotCall { id } => w.set(
            "UPDATE calls SET do_not_call = 1 WHERE call_log_id = ?1",
            params![id.as_str()],
        ),
        LogEvent::ExotelStatus {
            custom_field,
            call_sid,
            status,
            duration_s,
            recording_url,
        } => {
            let Some(id) = status_row(conn, custom_field.as_deref(), call_sid.as_deref())? else {
                return Ok(());
            };
            w.exotel_status(
                &id,
                call_sid.as_deref(),
                *status,
                *duration_s,
                recording_url,
            )
        }
    }
}

impl EventWrite<'_> {
    /// Who answered a call whose media started, and where it is recorded; `call.started`.
    fn answered_by(
        &self,
        id: &str,
        agent: &Option<String>,
        bot: &str,
        recording_path: &Option<String>,
    ) -> sql::Result<()> {
        self.set(
            "UPDATE calls SET agent = ?2, bot = ?3,
                 recording_path = COALESCE(?4, recording_path) WHERE call_log_id = ?1",
            params![id, agent, bot, recording_path],
        )?;
        self.row_event("call.started", id)
    }

    /// The caller went to a person, and why; `call.handoff`.
    fn handoff(&self, id: &str, reason: &str) -> sql::Result<()> {
        self.set(
            "UPDATE calls SET handoff = ?2 WHERE call_log_id = ?1",
            params![id, reason],
        )?;
        let data = serde_json::json!({"callLogId": id, "reason": reason});
        self.event("call.handoff", id, data)
    }

    /// One statement on the call's row.
    pub(super) fn set(&self, sql: &str, params: &[&dyn ToValue]) -> sql::Result<()> {
        self.conn.execute(sql, params).map(drop)
    }

    /// Moves the call to `status` if that is forward; returns whether it moved. A call
    /// reaching a final status is noted in `ended`.
    pub(super) fn advance(&mut self, id: &str, status: Status) -> sql::Result<bool> {
        let Some(current) = current_status(self.conn, id)? else {
            return Ok(false);
        };
        if !status.is_after(current) {
            return Ok(false);
        }
        self.set(
            "UPDATE calls SET status = ?2 WHERE call_log_id = ?1",
            params![id, status.as_str()],
        )?;
        self.set(
            "INSERT INTO call_history (call_log_id, status, at) VALUES (?1, ?2, ?3)",
            params![id, status.as_str(), self.now],
        )?;
        if status.is_final() {
            self.ended.push(status);
            self.row_event("call.ended", id)?;
            self.tell_instances(id)?;
        }
        Ok(true)
    }

    /// On PostgreSQL, the call's end is announced to every instance when this transaction
    /// commits (`NOTIFY`, delivered only then): the one holding its slot gives it back
    /// (`calls::shared::listen`).
    fn tell_instances(&self, id: &str) -> sql::Result<()> {
        if self.conn.backend() != sql::Backend::Postgres {
            return Ok(());
        }
        self.conn
            .query(
                &format!(
                    "SELECT pg_notify('{}', ?1)",
                    crate::store::schema::CALL_ENDED
                ),
                params![id],
            )
            .map(drop)
    }

    /// An event for the user's backend, in this transaction, when events are on.
    fn event(&self, kind: &str, id: &str, data: serde_json::Value) -> sql::Result<()> {
        if !self.outbox {
            return Ok(());
        }
        crate::store::outbox::enqueue(self.conn, kind, Some(id), data, self.now)
    }

    /// An event carrying the call's row as it is now (and, for `call.ended`, its transcript's
    /// turns when there are any).
    fn row_event(&self, kind: &str, id: &str) -> sql::Result<()> {
        if !self.outbox {
            return Ok(());
        }
        let Some(row) = get(self.conn, id)? else {
            return Ok(());
        };
        let mut data = serde_json::to_value(&row).unwrap_or_default();
        if kind == "call.ended" {
            let turns = transcript(self.conn, id)?.unwrap_or_default();
            if !turns.is_empty() {
                data["transcript"] = serde_json::to_value(turns).unwrap_or_default();
            }
        }
        self.event(kind, id, data)
    }

    /// A new row in `status` with its history, unless the call has one already.
    pub(super) fn insert(&self, id: &str, direction: Direction, status: Status) -> sql::Result<()> {
        let inserted = self.conn.execute(
            "INSERT INTO calls (call_log_id, direction, status, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            params![id, direction.as_str(), status.as_str(), self.now],
        )?;
        if inserted == 1 {
            self.set(
                "INSERT INTO call_history (call_log_id, status, at) VALUES (?1, ?2, ?3)",
                params![id, status.as_str(), self.now],
            )?;
        }
        Ok(())
    }

    /// `POST /call` accepted it: a new outbound row, `queued`.
    pub(super) fn requested(&self, id: &str, to: &str, caller_id: &str) -> sql::Result<()> {
        self.insert(id, Direction::Outbound, Status::Queued)?;
        self.set(
            "UPDATE calls SET to_number = ?2, caller_id = ?3 WHERE call_log_id = ?1",
            params![id, to, caller_id],
        )
    }

    pub(super) fn placed(&mut self, id: &str, call_sid: &str) -> sql::Result<()> {
        self.set(
            "UPDATE calls SET call_sid = ?2 WHERE call_log_id = ?1",
            params![id, call_sid],
        )?;
        self.advance(id, Status::Initiated).map(drop)
    }

    pub(super) fn place_failed(&mut self, id: &str, error: &str) -> sql::Result<()> {
        self.set(
            "UPDATE calls SET last_error = ?2, ended_at = COALESCE(ended_at, ?3) WHERE call_log_id = ?1",
            params![id, error, self.now],
        )?;
        self.advance(id, Status::Failed).map(drop)
    }

    pub(super) fn connected(
        &mut self,
        id: &str,
        direction: Direction,
        call_sid: &str,
        from: &str,
        to: &str,
    ) -> sql::Result<()> {
        self.insert(id, direction, Status::Connected)?;
        self.set(
            "UPDATE calls SET call_sid = COALESCE(call_sid, ?2),
                 from_number = COALESCE(from_number, NULLIF(?3, '')),
                 to_number = COALESCE(to_number, NULLIF(?4, '')) WHERE call_log_id = ?1",
            params![id, call_sid, from, to],
        )?;
        self.advance(id, Status::Connected).map(drop)
    }

    pub(super) fn media_started(
        &mut self,
        id: &str,
        stream_sid: &str,
        call_sid: &str,
        from: &str,
        to: &str,
    ) -> sql::Result<()> {
        // A static MEDIA_SECRET URL has no webhook before it: the row may start here.
        self.insert(id, Direction::Inbound, Status::InProgress)?;
        self.set(
            "UPDATE calls SET stream_sid = ?2, call_sid = COALESCE(call_sid, NULLIF(?3, '')),
                 from_number = COALESCE(from_number, NULLIF(?4, '')),
                 to_number = COALESCE(to_number, NULLIF(?5, '')),
                 answered_at = COALESCE(answered_at, ?6) WHERE call_log_id = ?1",
            params![id, stream_sid, call_sid, from, to, self.now],
        )?;
        self.advance(id, Status::InProgress).map(drop)
    }

    /// The stream's counts are added; a status (none when another socket took the call over)
    /// ends the call with its reason.
    pub(super) fn media_ended(
        &mut self,
        id: &str,
        status: Option<Status>,
        reason: &str,
        counts: &MediaCounts,
    ) -> sql::Result<()> {
        self.set(
            "UPDATE calls SET frames_in = frames_in + ?2, bytes_in = bytes_in + ?3,
                 frames_out = frames_out + ?4, bytes_out = bytes_out + ?5,
                 dtmf = dtmf || ?6 WHERE call_log_id = ?1",
            params![
                id,
                counts.frames_in as i64,
                counts.bytes_in as i64,
                counts.frames_out as i64,
                counts.bytes_out as i64,
                counts.dtmf
            ],
        )?;
        if let Some(error) = &counts.error {
            self.set(
                "UPDATE calls SET last_error = ?2 WHERE call_log_id = ?1",
                params![id, error],
            )?;
        }
        let Some(status) = status else {
            return Ok(());
        };
        self.set(
            "UPDATE calls SET ended_at = COALESCE(ended_at, ?2), end_reason = ?3,
                 duration_s = COALESCE(duration_s, (?2 - answered_at) / 1000)
             WHERE call_log_id = ?1",
            params![id, self.now, reason],
        )?;
        self.advance(id, status).map(drop)
    }

    /// Exotel's status callback on the call's row (`status_row` found it).
    pub(super) fn exotel_status(
        &mut self,
        id: &str,
        call_sid: Option<&str>,
        status: Option<Status>,
        duration_s: Option<u64>,
        recording_url: &Option<String>,
    ) -> sql::Result<()> {
        // Exotel's billing duration is authoritative over ours.
        self.set(
            "UPDATE calls SET duration_s = COALESCE(?2, duration_s),
                 exotel_recording_url = COALESCE(exotel_recording_url, ?3),
                 call_sid = COALESCE(call_sid, ?4) WHERE call_log_id = ?1",
            params![id, duration_s.map(|d| d as i64), recording_url, call_sid],
        )?;
        if let Some(status) = status {
            if self.advance(id, status)? && status.is_final() {
                self.set(
                    "UPDATE calls SET ended_at = COALESCE(ended_at, ?2) WHERE call_log_id = ?1",
                    params![id, self.now],
                )?;
            }
        }
        Ok(())
    }
}

/// The row a status callback is about: the one its CustomField names, else the one with its
/// CallSid. `None` (logged) when no row matches, or when the named row has another CallSid: a
/// callback naming another CallSid than the call's is not about this call.
pub(super) fn status_row(
    conn: &dyn Db,
    custom_field: Option<&str>,
    call_sid: Option<&str>,
) -> sql::Result<Option<String>> {
    let by_field = named_row(conn, custom_field)?;
    if let (Some((id, Some(row_sid))), Some(given)) = (&by_field, call_sid) {
        if !row_sid.is_empty() && row_sid != given {
            crate::warn!(
                "calllog.status_call_sid_mismatch",
                callLogId = id,
                callSid = given,
                rowCallSid = row_sid
            );
            return Ok(None);
        }
    }
    let id = row_by(conn, by_field.map(|(id, _)| id), call_sid)?;
    if id.is_none() {
        crate::warn!(
            "calllog.unmatched_status",
            customField = custom_field.unwrap_or(""),
            callSid = call_sid.unwrap_or("")
        );
    }
    Ok(id)
}

/// The row an Exotel request's `CustomField` names, with the CallSid the row knows.
fn named_row(
    conn: &dyn Db,
    custom_field: Option<&str>,
) -> sql::Result<Option<(String, Option<String>)>> {
    let Some(field) = custom_field else {
        return Ok(None);
    };
    conn.row(
        "SELECT call_log_id, call_sid FROM calls WHERE call_log_id = ?1",
        params![field],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// The row of an Exotel request: the one its CustomField named (`by_id`, already looked up),
/// else the one with its CallSid.
pub(super) fn row_by(
    conn: &dyn Db,
    by_id: Option<String>,
    call_sid: Option<&str>,
) -> sql::Result<Option<String>> {
    match (by_id, call_sid) {
        (Some(id), _) => Ok(Some(id)),
        (None, Some(sid)) => conn.row(
            "SELECT call_log_id FROM calls WHERE call_sid = ?1",
            params![sid],
            |r| r.get(0),
        ),
        (None, None) => Ok(None),
    }
}

/// Exotel's word on how a stream ended, on the call's row (found by callLogId, else CallSid).
pub(super) fn stream_end(conn: &dyn Db, end: &StreamEnd) -> sql::Result<()> {
    let named = named_row(conn, end.custom_field.as_deref())?;
    // A row that knows its CallSid is written only by a request with that CallSid.
    if let Some((id, Some(row_sid))) = &named {
        if end.call_sid.as_deref() != Some(row_sid.as_str()) {
            crate::warn!(
                "calllog.passthru_call_sid_mismatch",
                callLogId = id,
                callSid = end.call_sid.as_deref().unwrap_or(""),
                detail = "the CallSid is not this call's: nothing recorded"
            );
            return Ok(());
        }
    }
    let id = row_by(conn, named.map(|(id, _)| id), end.call_sid.as_deref())?;
    let Some(id) = id else {
        crate::warn!(
            "calllog.unmatched_passthru",
            customField = end.custom_field.as_deref().unwrap_or(""),
            callSid = end.call_sid.as_deref().unwrap_or("")
        );
        return Ok(());
    };
    conn.execute(
        "UPDATE calls SET stream_sid = COALESCE(stream_sid, ?2), stream_status = ?3,
             stream_duration_s = ?4, exotel_recording_url = COALESCE(exotel_recording_url, ?5),
             disconnected_by = ?6, stream_error = ?7, handoff_answer = ?8
         WHERE call_log_id = ?1",
        params![
            id,
            end.stream_sid,
            end.status,
            end.duration_s,
            end.recording_url,
            end.disconnected_by,
            end.error,
            end.answer
        ],
    )?;
    Ok(())
}
