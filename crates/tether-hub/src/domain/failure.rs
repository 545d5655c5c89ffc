//! Why something the hub was asked to do did not happen: what the caller got wrong, what they
//! may not do, or what is unavailable — with a message for the person. Every layer below HTTP
//! returns it; `http::error` maps each [`Kind`] to its status code.

/// The kind of failure, which decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    PayloadTooLarge,
    RangeNotSatisfiable,
    TooManyRequests,
    Internal,
    BadGateway,
    Unavailable,
    GatewayTimeout,
    InsufficientStorage,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Failure::new(Kind::BadRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(Kind::NotFound, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Failure::new(Kind::Forbidden, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Failure::new(Kind::Conflict, message)
    }
}

/// Internal failures (database, I/O) are logged in full and answered without details.
impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        tracing::error!("internal error: {error:#}");
        Failure::new(Kind::Internal, "internal error (see the hub's log)")
    }
}
