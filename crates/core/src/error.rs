//! The core's one error type. The server maps each variant once to an HTTP status and a stable
//! machine-readable code; internal causes are logged, never echoed to clients.

use crate::ports::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// A field failed parsing; `field` names it for the client.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    /// The named kind of object does not exist (or belongs to another tenant: same answer).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness or state conflict, with a stable code.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// A sending cap, cooldown or throttle; asking again after `retry_after_ms` can succeed.
    #[error("{message}")]
    TooMany {
        code: &'static str,
        message: String,
        retry_after_ms: i64,
    },
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    /// The store is overloaded or restarting; the client may retry.
    #[error("temporarily unavailable, retry shortly")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<StoreError> for CoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Busy => CoreError::Unavailable,
            StoreError::Conflict("state_changed") => CoreError::conflict(
                "state_changed",
                "the factor or change was modified meanwhile; reload and try again",
            ),
            StoreError::Conflict("too_many_factors") => CoreError::conflict(
                "too_many_factors",
                format!(
                    "a user may have at most {} factors; delete one first",
                    crate::service::MAX_FACTORS_PER_USER
                ),
            ),
            StoreError::Conflict("credential_registered") => CoreError::conflict(
                "credential_registered",
                "this security key is already registered; use it to sign in, or pick another",
            ),
            StoreError::Conflict(what) => CoreError::conflict(
                what,
                format!("{} already exists", what.trim_end_matches("_exists")),
            ),
            StoreError::Backend(msg) => CoreError::Internal(msg),
        }
    }
}

impl From<twofold_crypto::CryptoError> for CoreError {
    fn from(e: twofold_crypto::CryptoError) -> Self {
        CoreError::Internal(format!("crypto: {e}"))
    }
}
