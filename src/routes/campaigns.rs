//! `/campaigns`: many calls from a list, within a window, a rate and a retry policy
//! ([`crate::calls::campaigns`]), guarded like `/call`. `POST /campaigns` (JSON with
//! `contacts`, or a CSV body with the settings in the query), `GET /campaigns`,
//! `GET /campaigns/{id}`, `GET /campaigns/{id}/calls` and `calls.csv`, and
//! `POST /campaigns/{id}/pause|resume|cancel`.

use super::Answer;
use crate::app::App;
use crate::calls::campaigns::contacts::Checked;
use crate::calls::campaigns::{
    read_create, Created, NotCreated, Settings, Upload, DEFAULT_PAGE, MAX_PAGE,
};
use crate::calls::Refusal;
use crate::http::{Params, Request, Response};

/// Contacts a preview shows, the first of the file.
pub(crate) const PREVIEW_ROWS: usize = 20;

/// `POST /campaigns`: 201 with the campaign and every refused row; with `dryRun=1` in the
/// query, 200 with what it would be (the first contacts, every refused row) and nothing made.
pub(super) fn create(app: &App, request: &Request) -> Answer {
    let dry_run = Params::from_query(&request.query)
        .one_of(
            "dryRun",
            &[("1", true), ("true", true), ("0", false), ("false", false)],
            "is neither 1 nor 0",
        )
        .map_err(Refusal::invalid)?
        .unwrap_or(false);
    let is_csv = request
        .header("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("text/csv"));
    let upload = if is_csv {
        Upload::Csv {
            query: &request.query,
            file: &request.body,
        }
    } else {
        Upload::Json(&request.body)
    };
    let (settings, mut checked) = read_create(upload)?;
    checked.require(&crate::calls::place::placeholders_for(
        app,
        settings.agent.as_deref(),
        settings.from.as_deref(),
    ));
    let phone_known = |number: &str| {
        crate::calls::PhoneNumber::parse(number).is_ok_and(|n| app.phones.line(&n).is_some())
    };
    let agent_known = |agent: &str| app.agents.get(agent).is_some();
    let made = if dry_run {
        app.campaigns
            .preview(&settings, checked, phone_known, agent_known)
            .map(|checked| previewed(&settings, checked))
    } else {
        app.campaigns
            .create(settings, checked, phone_known, agent_known)
            .map(created)
    };
    match made {
        Ok(answer) => Ok(answer),
        Err(NotCreated::Refused(refusal)) => Err(refusal.into()),
        Err(NotCreated::NoContacts(rejected)) => Err(Response::json(
            400,
            &serde_json::json!({
                "error": "bad_request",
                "detail": "no contact could be taken: see rejected",
                "rejected": rejected.listed,
                "rejectedSummary": rejected.summary(),
            }),
        )),
    }
}

fn created(created: Created) -> Response {
    Response::json(
        201,
        &serde_json::json!({
            "id": created.id,
            "name": created.settings.name,
            "status": created.status,
            "total": created.total,
            "rejected": created.rejected.listed,
            "rejectedSummary": created.rejected.summary(),
            "settings": created.settings,
        }),
    )
    .with_header("Location", format!("/campaigns/{}", created.id))
}

fn previewed(settings: &Settings, checked: Checked) -> Response {
    let first: Vec<_> = checked
        .contacts
        .iter()
        .take(PREVIEW_ROWS)
        .map(|c| {
            let params: serde_json::Map<_, _> = c
                .params
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            serde_json::json!({ "to": c.to, "params": params })
        })
        .collect();
    Response::json(
        200,
        &serde_json::json!({
            "dryRun": true,
            "name": settings.name,
            "total": checked.contacts.len(),
            "first": first,
            "rejected": checked.rejected.listed,
            "rejectedSummary": checked.rejected.summary(),
            "settings": settings,
        }),
    )
}

/// `GET /campaigns`.
pub(super) fn list(app: &App) -> Answer {
    let shown = app.campaigns.list()?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "campaigns": shown }),
    ))
}

/// `GET /campaigns/{id}`: where it stands, with counts by outcome and by attempt.
pub(super) fn show(app: &App, id: &str) -> Answer {
    Ok(Response::json(200, &app.campaigns.progress(id)?))
}

/// `POST /campaigns/{id}/pause|resume|cancel`.
pub(super) fn control(app: &App, id: &str, action: &str) -> Answer {
    Ok(Response::json(200, &app.campaigns.control(id, action)?))
}

/// `GET /campaigns/{id}/calls?after=&limit=`: its contacts with their last call, by row.
pub(super) fn calls(app: &App, id: &str, request: &Request) -> Answer {
    // An unknown campaign is a 404 whatever the query says.
    app.campaigns.exists(id)?;
    let (after, limit) = page(&Params::from_query(&request.query)).map_err(Refusal::invalid)?;
    let calls = app.campaigns.calls(id, after, limit)?;
    let next = (calls.len() == limit)
        .then(|| calls.last().map(|c| c.row.to_string()))
        .flatten();
    Ok(Response::json(
        200,
        &serde_json::json!({ "calls": calls, "next": next }),
    ))
}

/// `GET /campaigns/{id}/calls.csv`: every contact with attempts, final status, duration and
/// recording.
pub(super) fn calls_csv(app: &App, id: &str) -> Answer {
    let (id, file) = app.campaigns.calls_csv(id)?;
    Ok(
        Response::text(200, "text/csv; charset=utf-8", file).with_header(
            "Content-Disposition",
            format!("attachment; filename=\"campaign-{id}.csv\""),
        ),
    )
}

/// `after` and `limit` of a page of contacts.
fn page(params: &Params) -> Result<(i64, usize), String> {
    let after = params
        .get_non_empty("after")
        .map(|v| {
            v.parse::<i64>()
                .ok()
                .filter(|after| *after >= 0)
                .ok_or_else(|| format!("after {v:?} is not a row number from `next`"))
        })
        .transpose()?
        .unwrap_or(0);
    let limit = match params.get_non_empty("limit") {
        None => DEFAULT_PAGE,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => return Err(format!("limit {v:?} is not a number from 1 to {MAX_PAGE}")),
        },
    };
    Ok((after, limit))
}
