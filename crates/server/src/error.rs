//! The API error type: every failure becomes a status, a stable machine-readable `code` and a
//! human message, in one place. Internal causes are logged, never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use twofold_core::CoreError;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

/// `{"error": {"code": "...", "message": "..."}}`
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `user_not_found`.
    pub code: String,
    /// Human-readable explanation; may change between versions.
    pub message: String,
    /// The offending request field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        match e {
            CoreError::Invalid { field, message } => Self {
                field: Some(field),
                ..Self::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_field",
                    format!("{field}: {message}"),
                )
            },
            CoreError::NotFound(kind) => {
                let code = match kind {
                    "tenant" => "tenant_not_found",
                    "user" => "user_not_found",
                    "factor" => "factor_not_found",
                    "api_key" => "api_key_not_found",
                    "phone_change" => "phone_change_not_found",
                    "proposal" => "proposal_not_found",
                    "session" => "session_not_found",
                    "device" => "device_not_found",
                    "webhook" => "webhook_not_found",
                    "vault_entry" => "vault_entry_not_found",
                    "vault_group" => "vault_group_not_found",
                    "vault_token" => "vault_token_not_found",
                    _ => "not_found",
                };
                Self::new(StatusCode::NOT_FOUND, code, format!("{kind} not found"))
            }
            CoreError::Conflict { code, message } => Self::new(StatusCode::CONFLICT, code, message),
            CoreError::TooMany {
                code,
                message,
                retry_after_ms,
            } => Self {
                retry_after: Some((retry_after_ms.max(0) as u64).div_ceil(1000).max(1)),
                ..Self::new(StatusCode::TOO_MANY_REQUESTS, code, message)
            },
            CoreError::Unauthenticated => Self::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "send a valid API key as `Authorization: Bearer tfk_…`",
            ),
            CoreError::Forbidden(why) => Self::new(StatusCode::FORBIDDEN, "forbidden", why),
            CoreError::Unavailable => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the server is busy; retry after the Retry-After delay",
            ),
            CoreError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has details",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry_after = self.retry_after;
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                field: self.field.map(str::to_string),
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            StatusCode::TOO_MANY_REQUESTS => {
                let secs = retry_after.unwrap_or(1);
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            _ => {}
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
