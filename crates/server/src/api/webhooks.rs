//! Webhook subscriptions: events delivered as signed POSTs through the outbox.

use super::{created, Created};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::service::WebhookView;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/webhooks",
            post(create_webhook).get(list_webhooks),
        )
        .route("/v1/tenants/{tenant}/webhooks/{id}", delete(delete_webhook))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// `https://…` (plain `http://` only to localhost).
    pub url: String,
    /// Any of `login.decided`, `factor.enrolled`, `factor.removed`, `session.revoked`,
    /// `policy.changed`.
    pub events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub created_at: i64,
}

impl From<WebhookView> for WebhookDto {
    fn from(w: WebhookView) -> Self {
        Self {
            id: w.id,
            url: w.url,
            events: w.events,
            created_at: w.created_at,
        }
    }
}

/// No `Debug`: it holds the signing secret.
#[derive(Serialize, ToSchema)]
pub struct CreatedWebhook {
    pub webhook: WebhookDto,
    /// Verify `X-Twofold-Signature: v1=<hex HMAC-SHA256(secret, "<X-Twofold-Timestamp>.<body>")>`.
    /// Shown only here.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookDto>,
}

/// Subscribe a URL to events.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks",
    params(("tenant" = String, Path)),
    request_body = CreateWebhook,
    responses((status = 201, body = CreatedWebhook), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_webhook(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<CreateWebhook>,
) -> ApiResult<Created<CreatedWebhook>> {
    let (view, secret) = s
        .core
        .create_webhook(&actor, &meta, &tenant, &body.url, &body.events)
        .await?;
    Ok(created(CreatedWebhook {
        webhook: view.into(),
        secret,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/webhooks", tag = "webhooks",
    params(("tenant" = String, Path)),
    responses((status = 200, body = WebhookList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_webhooks(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<WebhookList>> {
    let hooks = s.core.list_webhooks(&actor, &tenant).await?;
    Ok(axum::Json(WebhookList {
        webhooks: hooks.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/webhooks/{id}", tag = "webhooks",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_webhook(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core.delete_webhook(&actor, &meta, &tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
