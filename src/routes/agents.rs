//! `/agents`: named bot configurations ([`crate::calls::agents`]), guarded like `/call`:
//! `POST /agents`, `GET /agents`, `GET|PATCH|DELETE /agents/{name}`, and
//! `PUT|DELETE /agents/{name}/greeting` (a WAV played when each call connects).

use super::{json_body, Answer};
use crate::calls::agents::{shown, Agents};
use crate::http::{Request, Response};

/// `POST /agents`.
pub(super) fn create(agents: &Agents, request: &Request) -> Answer {
    let fields = json_body(request, "a JSON object of agent fields")?;
    let agent = agents.create(fields)?;
    Ok(Response::json(201, &shown(&agent))
        .with_header("Location", format!("/agents/{}", agent.name)))
}

/// `GET /agents`.
pub(super) fn list(agents: &Agents) -> Answer {
    let shown: Vec<_> = agents.all().iter().map(|a| shown(a)).collect();
    Ok(Response::json(200, &serde_json::json!({ "agents": shown })))
}

/// `GET /agents/{name}`.
pub(super) fn show(agents: &Agents, name: &str) -> Answer {
    Ok(Response::json(200, &shown(&*agents.lookup(name)?)))
}

/// `PATCH /agents/{name}`.
pub(super) fn update(agents: &Agents, name: &str, request: &Request) -> Answer {
    // An unknown name is a 404 whatever the body says.
    agents.lookup(name)?;
    let fields = json_body(request, "a JSON object of agent fields")?;
    Ok(Response::json(200, &shown(&*agents.update(name, fields)?)))
}

/// `DELETE /agents/{name}`.
pub(super) fn remove(agents: &Agents, name: &str) -> Answer {
    let deleted = agents.remove(name)?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "deleted": deleted }),
    ))
}

/// `PUT /agents/{name}/greeting`: the body is the WAV.
pub(super) fn put_greeting(agents: &Agents, name: &str, request: &Request) -> Answer {
    Ok(Response::json(
        200,
        &shown(&*agents.put_greeting(name, &request.body)?),
    ))
}

/// `DELETE /agents/{name}/greeting`.
pub(super) fn delete_greeting(agents: &Agents, name: &str) -> Answer {
    Ok(Response::json(200, &shown(&*agents.delete_greeting(name)?)))
}
