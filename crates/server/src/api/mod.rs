//! The REST API under `/v1`. Handlers are thin: parse, call the core, map the result.

pub mod dto;
pub mod login;
pub mod messaging;
pub mod oidc;
pub mod security;
pub mod vault;
pub mod webhooks;

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use dto::*;
use twofold_core::rollout::RolloutStatus;
use twofold_core::service::{EnrollOptions, NewUserInput};
use twofold_otp::Algorithm;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants", post(create_tenant))
        .route("/v1/tenants/{tenant}", get(get_tenant))
        .route(
            "/v1/api-keys",
            post(create_operator_key).get(list_operator_keys),
        )
        .route("/v1/api-keys/{key_id}", delete(revoke_api_key))
        .route(
            "/v1/tenants/{tenant}/api-keys",
            post(create_tenant_key).get(list_tenant_keys),
        )
        .route(
            "/v1/tenants/{tenant}/users",
            post(create_user).get(list_users),
        )
        .route("/v1/tenants/{tenant}/users/{user}", get(get_user))
        .route("/v1/tenants/{tenant}/rollout", get(rollout))
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors",
            get(list_factors),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/totp",
            post(enroll_totp),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}",
            delete(delete_factor),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/confirm",
            post(confirm_factor),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/resync",
            post(resync_factor),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/unlock",
            post(unlock_factor),
        )
        .route("/v1/tenants/{tenant}/users/{user}/verify", post(verify))
        .route("/v1/tenants/{tenant}/audit", get(list_audit))
        .merge(messaging::routes())
        .merge(login::routes())
        .merge(webhooks::routes())
        .merge(oidc::routes())
        .merge(vault::routes())
        .merge(security::routes())
}

pub(crate) type Created<T> = (StatusCode, axum::Json<T>);

pub(crate) fn created<T>(v: T) -> Created<T> {
    (StatusCode::CREATED, axum::Json(v))
}

/// Create a tenant (operator key). Returns the tenant and its first tenant-scoped API key.
#[utoipa::path(post, path = "/v1/tenants", tag = "tenants", request_body = CreateTenant,
    responses((status = 201, body = CreatedTenant), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_tenant(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Json(body): Json<CreateTenant>,
) -> ApiResult<Created<CreatedTenant>> {
    let (tenant, key) = s
        .core
        .create_tenant(&actor, &meta, &body.slug, &body.name)
        .await?;
    Ok(created(CreatedTenant {
        tenant: TenantDto::from(&tenant),
        api_key: key.into(),
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}", tag = "tenants",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = TenantDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_tenant(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<TenantDto>> {
    let t = s.core.tenant_for(&actor, &tenant).await?;
    Ok(axum::Json(TenantDto::from(&*t)))
}

/// Create an operator-wide API key (operator key).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = CreateApiKey,
    responses((status = 201, body = IssuedApiKeyDto), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_operator_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Json(body): Json<CreateApiKey>,
) -> ApiResult<Created<IssuedApiKeyDto>> {
    let key = s
        .core
        .create_api_key(&actor, &meta, None, &body.label)
        .await?;
    Ok(created(key.into()))
}

#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = ApiKeyList), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_operator_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<axum::Json<ApiKeyList>> {
    let keys = s.core.list_api_keys(&actor, None).await?;
    Ok(axum::Json(ApiKeyList {
        api_keys: keys.iter().map(ApiKeyDto::from).collect(),
    }))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateApiKey,
    responses((status = 201, body = IssuedApiKeyDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_tenant_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<CreateApiKey>,
) -> ApiResult<Created<IssuedApiKeyDto>> {
    let key = s
        .core
        .create_api_key(&actor, &meta, Some(&tenant), &body.label)
        .await?;
    Ok(created(key.into()))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/api-keys", tag = "api-keys",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = ApiKeyList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tenant_keys(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<ApiKeyList>> {
    let keys = s.core.list_api_keys(&actor, Some(&tenant)).await?;
    Ok(axum::Json(ApiKeyList {
        api_keys: keys.iter().map(ApiKeyDto::from).collect(),
    }))
}

/// Revoke an API key. Takes effect at once on this node, within the cache TTL on others.
#[utoipa::path(delete, path = "/v1/api-keys/{key_id}", tag = "api-keys",
    params(("key_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_api_key(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(key_id): Path<String>,
) -> ApiResult<StatusCode> {
    s.core.revoke_api_key(&actor, &meta, &key_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/users", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug")),
    request_body = CreateUser,
    responses((status = 201, body = UserDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<CreateUser>,
) -> ApiResult<Created<UserDto>> {
    let user = s
        .core
        .create_user(
            &actor,
            &meta,
            &tenant,
            NewUserInput {
                external_id: body.external_id,
                email: body.email,
                phone: body.phone,
                profile: body.profile,
                is_admin: body.is_admin,
            },
        )
        .await?;
    Ok(created(UserDto::from(&user)))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug"), UserListParams),
    responses((status = 200, body = UserPage), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_users(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
    Query(q): Query<UserListParams>,
) -> ApiResult<axum::Json<UserPage>> {
    let only = q
        .status
        .as_deref()
        .map(|v| {
            RolloutStatus::parse(v).ok_or(twofold_core::CoreError::Invalid {
                field: "status",
                message: "one of enrolled, pending, overdue, optional, not_required".into(),
            })
        })
        .transpose()?;
    let (users, next_cursor) = s
        .core
        .list_users(&actor, &tenant, q.cursor.as_deref(), q.limit, only)
        .await?;
    Ok(axum::Json(UserPage {
        users: users.iter().map(UserStatusDto::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}", tag = "users",
    params(("tenant" = String, Path), ("user" = String, Path, description = "External user id")),
    responses((status = 200, body = UserStatusDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<UserStatusDto>> {
    let u = s.core.user_status(&actor, &tenant, &user).await?;
    Ok(axum::Json(UserStatusDto::from(&u)))
}

/// Counts per 2FA status and method, the deadline and the enrolled share: what an admin
/// watches while 2FA becomes mandatory.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/rollout", tag = "users",
    params(("tenant" = String, Path, description = "Tenant slug")),
    responses((status = 200, body = RolloutDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn rollout(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<RolloutDto>> {
    Ok(axum::Json(
        s.core.rollout_report(&actor, &tenant).await?.into(),
    ))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/factors", tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = FactorList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_factors(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<FactorList>> {
    let factors = s.core.list_factors(&actor, &tenant, &user).await?;
    Ok(axum::Json(FactorList {
        factors: factors.into_iter().map(FactorDto::from).collect(),
    }))
}

/// Enrol an authenticator app. The factor stays `pending` until confirmed with a code.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/totp", tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = EnrollTotp,
    responses((status = 201, body = EnrollmentDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn enroll_totp(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    body: Option<Json<EnrollTotp>>,
) -> ApiResult<Created<EnrollmentDto>> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let defaults = EnrollOptions::default();
    let algorithm = match body.algorithm.as_deref() {
        None => defaults.algorithm,
        Some(a) => Algorithm::parse(a).ok_or_else(|| {
            ApiError::from(twofold_core::CoreError::Invalid {
                field: "algorithm",
                message: "must be SHA1, SHA256 or SHA512".into(),
            })
        })?,
    };
    let opts = EnrollOptions {
        algorithm,
        digits: body.digits.unwrap_or(defaults.digits),
        period: body.period.unwrap_or(defaults.period),
        issuer: body.issuer,
        account_name: body.account_name,
    };
    let e = s
        .core
        .enroll_totp(&actor, &meta, &tenant, &user, opts)
        .await?;
    Ok(created(e.into()))
}

/// Confirm a pending factor with a code from the app. A wrong code leaves it pending.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/confirm",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    request_body = CodeBody,
    responses((status = 200, body = ConfirmResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn confirm_factor(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
    Json(body): Json<CodeBody>,
) -> ApiResult<axum::Json<ConfirmResult>> {
    let (verdict, codes) = s
        .core
        .confirm_factor(&actor, &meta, &tenant, &user, &factor, &body.code)
        .await?;
    s.metrics.observe_verification("confirm", verdict.label());
    Ok(axum::Json(ConfirmResult {
        confirmed: verdict.is_accepted(),
        recovery_codes: codes.map(|c| c.codes),
    }))
}

/// Re-learn a device's clock drift (up to ±10 steps) from two consecutive codes.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/resync",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    request_body = ResyncBody,
    responses((status = 200, body = ResyncResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resync_factor(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
    Json(body): Json<ResyncBody>,
) -> ApiResult<axum::Json<ResyncResult>> {
    let verdict = s
        .core
        .resync_factor(
            &actor,
            &meta,
            &tenant,
            &user,
            &factor,
            &body.code1,
            &body.code2,
        )
        .await?;
    s.metrics.observe_verification("resync", verdict.label());
    Ok(axum::Json(ResyncResult {
        resynced: verdict.is_accepted(),
    }))
}

/// Clear a factor's failure count, backoff and lock.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/unlock",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    responses((status = 200, body = FactorDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn unlock_factor(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
) -> ApiResult<axum::Json<FactorDto>> {
    let f = s
        .core
        .unlock_factor(&actor, &meta, &tenant, &user, &factor)
        .await?;
    Ok(axum::Json(f.into()))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_factor(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .delete_factor(&actor, &meta, &tenant, &user, &factor)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Verify a code. Each code is accepted once (replay-protected across all nodes).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/verify", tag = "verify",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = VerifyBody,
    responses((status = 200, body = VerifyResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn verify(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<VerifyBody>,
) -> ApiResult<axum::Json<VerifyResult>> {
    let meta = security::with_client_ip(meta, body.ip.as_deref())?;
    let verdict = s
        .core
        .verify(
            &actor,
            &meta,
            &tenant,
            &user,
            &body.code,
            body.factor_id.as_deref(),
        )
        .await?;
    s.metrics.observe_verification("verify", verdict.label());
    Ok(axum::Json(VerifyResult {
        verified: verdict.is_accepted(),
    }))
}

/// The tenant's audit trail, newest first.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/audit", tag = "audit",
    params(("tenant" = String, Path), AuditParams),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_audit(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
    Query(q): Query<AuditParams>,
) -> ApiResult<axum::Json<AuditPage>> {
    let (events, next_cursor) = s
        .core
        .list_audit(
            &actor,
            &tenant,
            q.user.as_deref(),
            q.action.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(axum::Json(AuditPage {
        events: events.into_iter().map(AuditEventDto::from).collect(),
        next_cursor,
    }))
}
