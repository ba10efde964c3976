//! OIDC clients: the tenant's client apps registered for the hosted sign-in, with exact
//! redirect URIs and a secret that Twofold generates and shows once (stored sealed: login
//! hints are HS256 JWTs, whose MAC needs the secret itself).

use super::{created, Created};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::oidc::OidcClientView;
use twofold_core::service::oidc::IssuedClient;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/oidc/clients",
            post(create_oidc_client).get(list_oidc_clients),
        )
        .route(
            "/v1/tenants/{tenant}/oidc/clients/{client_id}",
            put(set_redirect_uris).delete(delete_oidc_client),
        )
        .route(
            "/v1/tenants/{tenant}/oidc/clients/{client_id}/secret",
            post(rotate_oidc_secret),
        )
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOidcClient {
    /// The id of a client app in the tenant's policy (`clients`).
    pub client_app: String,
    /// Exact redirect URIs (1 to 10): `https://…`, or `http://` only for localhost,
    /// 127.0.0.1 or [::1]; no fragment. Compared byte for byte.
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedirectUris {
    pub redirect_uris: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OidcClientDto {
    /// `{tenant}.{client_app}`: the OAuth `client_id`, and the `iss` of the client's login
    /// hints.
    pub client_id: String,
    pub client_app: String,
    pub redirect_uris: Vec<String>,
    pub created_at: i64,
    pub secret_created_at: i64,
}

impl From<OidcClientView> for OidcClientDto {
    fn from(v: OidcClientView) -> Self {
        Self {
            client_id: v.client_id,
            client_app: v.client_app,
            redirect_uris: v.redirect_uris,
            created_at: v.created_at,
            secret_created_at: v.secret_created_at,
        }
    }
}

/// No `Debug`: it holds the client secret.
#[derive(Serialize, ToSchema)]
pub struct IssuedOidcClient {
    pub client: OidcClientDto,
    /// Authenticates the client at the token endpoint (`client_secret_basic` or
    /// `client_secret_post`) and signs its login hints (HS256). Shown only here.
    pub client_secret: String,
}

impl From<IssuedClient> for IssuedOidcClient {
    fn from(i: IssuedClient) -> Self {
        Self {
            client: i.client.into(),
            client_secret: i.client_secret,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OidcClientList {
    pub clients: Vec<OidcClientDto>,
}

/// Register a client app for the hosted sign-in; returns its secret once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/oidc/clients", tag = "oidc",
    params(("tenant" = String, Path)),
    request_body = CreateOidcClient,
    responses((status = 201, body = IssuedOidcClient), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_oidc_client(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<CreateOidcClient>,
) -> ApiResult<Created<IssuedOidcClient>> {
    let issued = s
        .core
        .create_oidc_client(
            &actor,
            &meta,
            &tenant,
            &body.client_app,
            &body.redirect_uris,
        )
        .await?;
    Ok(created(issued.into()))
}

/// The tenant's OIDC clients (never their secrets).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/oidc/clients", tag = "oidc",
    params(("tenant" = String, Path)),
    responses((status = 200, body = OidcClientList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_oidc_clients(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<OidcClientList>> {
    let clients = s.core.list_oidc_clients(&actor, &tenant).await?;
    Ok(axum::Json(OidcClientList {
        clients: clients.into_iter().map(Into::into).collect(),
    }))
}

/// Replace a client's redirect URIs.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/oidc/clients/{client_id}", tag = "oidc",
    params(("tenant" = String, Path), ("client_id" = String, Path)),
    request_body = RedirectUris,
    responses((status = 200, body = OidcClientDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_redirect_uris(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, client_id)): Path<(String, String)>,
    Json(body): Json<RedirectUris>,
) -> ApiResult<axum::Json<OidcClientDto>> {
    let view = s
        .core
        .set_oidc_redirect_uris(&actor, &meta, &tenant, &client_id, &body.redirect_uris)
        .await?;
    Ok(axum::Json(view.into()))
}

/// A new client secret, shown once; the old one stops working at once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/oidc/clients/{client_id}/secret", tag = "oidc",
    params(("tenant" = String, Path), ("client_id" = String, Path)),
    responses((status = 200, body = IssuedOidcClient), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rotate_oidc_secret(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, client_id)): Path<(String, String)>,
) -> ApiResult<axum::Json<IssuedOidcClient>> {
    let issued = s
        .core
        .rotate_oidc_secret(&actor, &meta, &tenant, &client_id)
        .await?;
    Ok(axum::Json(issued.into()))
}

/// Remove a client: its hints and codes stop working.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/oidc/clients/{client_id}", tag = "oidc",
    params(("tenant" = String, Path), ("client_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_oidc_client(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, client_id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .delete_oidc_client(&actor, &meta, &tenant, &client_id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
