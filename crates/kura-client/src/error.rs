//! Typed client errors: what went wrong, with the OSS code and request id when the server said.

use std::fmt;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error.
    #[error("{0}")]
    Service(Box<ServiceError>),
    /// The request did not complete (connection, timeout, protocol).
    #[error("network error: {0}")]
    Transport(#[from] reqwest::Error),
    /// Bytes or checksums did not match: never treated as success.
    #[error("integrity check failed: {0}")]
    Integrity(String),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// One part of a transfer failed.
    #[error("part {number}: {source}")]
    Part {
        number: u32,
        #[source]
        source: Box<Error>,
    },
    /// A response the client could not understand, or bad input to the client.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct ServiceError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}): {} [request id {}]",
            self.code, self.status, self.message, self.request_id
        )
    }
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// The OSS error code, for service errors.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::Service(s) => Some(&s.code),
            Error::Part { source, .. } => source.code(),
            _ => None,
        }
    }

    /// The error itself, without the part context.
    pub fn root(&self) -> &Error {
        match self {
            Error::Part { source, .. } => source.root(),
            e => e,
        }
    }

    /// Whether a retry may succeed: 5xx, throttling, clock skew, and transport failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Service(s) => s.status >= 500 || s.status == 429 || s.code == "RequestTimeTooSkewed",
            Error::Transport(e) => !e.is_builder(),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
