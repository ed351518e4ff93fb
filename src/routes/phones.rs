//! `/phones`: ExoPhones with their own Exotel accounts ([`crate::calls::phones`]), guarded like
//! `/call`. `POST /phones` creates one, `GET /phones` and `GET /phones/{number}` show them,
//! `PATCH /phones/{number}` changes fields, `DELETE /phones/{number}` removes one.

use super::{json_body, Answer};
use crate::calls::phones::{shown, Phones};
use crate::http::{Request, Response};

/// `POST /phones`.
pub(super) fn create(phones: &Phones, request: &Request) -> Answer {
    let fields = json_body(request, "a JSON object of phone fields")?;
    let phone = phones.create(fields)?;
    // A number's `+` is its own in a path segment (`PhoneNumber::from_path_segment`).
    let location = format!("/phones/{}", phone.number);
    Ok(Response::json(201, &shown(&phone)).with_header("Location", location))
}

/// `GET /phones`.
pub(super) fn list(phones: &Phones) -> Answer {
    let shown: Vec<_> = phones.all().iter().map(shown).collect();
    Ok(Response::json(200, &serde_json::json!({ "phones": shown })))
}

/// `GET /phones/{number}`.
pub(super) fn show(phones: &Phones, number: &str) -> Answer {
    Ok(Response::json(200, &shown(&phones.lookup(number)?)))
}

/// `PATCH /phones/{number}`: the fields given replace the phone's; the number stays.
pub(super) fn update(phones: &Phones, number: &str, request: &Request) -> Answer {
    // The phone is looked up first, so an unknown number is a 404 whatever the body says.
    phones.lookup(number)?;
    let fields = json_body(request, "a JSON object of phone fields")?;
    Ok(Response::json(200, &shown(&phones.update(number, fields)?)))
}

/// `DELETE /phones/{number}`.
pub(super) fn remove(phones: &Phones, number: &str) -> Answer {
    let deleted = phones.remove(number)?;
    Ok(Response::json(
        200,
        &serde_json::json!({ "deleted": deleted }),
    ))
}
