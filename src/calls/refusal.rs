//! Why a request about calls was refused, in the domain's words: the `calls` modules answer
//! with a [`Refusal`] and know nothing of HTTP; [`crate::routes`] turns one into a status and
//! a `{"error", "detail"}` body.

/// What kind of no it is; the routes choose the status from it alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The request is malformed or asks for something impossible.
    Invalid,
    /// Policy forbids it (a number on the do-not-call list).
    Forbidden,
    /// What it names is not there.
    NotFound,
    /// It clashes with what exists: a name or id already used, a state that forbids it.
    Conflict,
    /// A limit of live calls is reached; try again after this many seconds.
    TooMany { retry_after_s: u64 },
    /// Something the answer needs is missing or full now (the store, the disk, the
    /// configuration, a pool); try again after this many seconds when that is known.
    Unavailable { retry_after_s: Option<u64> },
}

/// A refusal: its kind, a stable machine-readable code, and a sentence for the person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub kind: Refused,
    pub code: &'static str,
    pub detail: String,
}

impl Refusal {
    pub fn new(kind: Refused, code: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal {
            kind,
            code,
            detail: detail.into(),
        }
    }

    /// `bad_request`: the request itself is wrong, as `detail` says.
    pub fn invalid(detail: impl Into<String>) -> Refusal {
        Refusal::new(Refused::Invalid, "bad_request", detail)
    }

    /// `not_found`.
    pub fn not_found(detail: impl Into<String>) -> Refusal {
        Refusal::new(Refused::NotFound, "not_found", detail)
    }

    /// The store did not answer (`store_unavailable`).
    pub fn store(error: impl Into<String>) -> Refusal {
        Refusal::new(
            Refused::Unavailable {
                retry_after_s: None,
            },
            "store_unavailable",
            error,
        )
    }

    /// Something needed is not there now, with no time to retry after.
    pub fn unavailable(code: &'static str, detail: impl Into<String>) -> Refusal {
        Refusal::new(
            Refused::Unavailable {
                retry_after_s: None,
            },
            code,
            detail,
        )
    }
}
