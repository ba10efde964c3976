//! Recovery codes, app passwords, the 2FA freeze and operator controls.

use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::service::{AppPasswordView, Proof};
use twofold_core::{CoreError, RequestMeta};
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/users/{user}/recovery-codes",
            get(recovery_status).post(regenerate_recovery_codes),
        )
        .route("/v1/tenants/{tenant}/logins/recover", post(login_recover))
        .route(
            "/v1/tenants/{tenant}/users/{user}/app-passwords",
            post(create_app_password).get(list_app_passwords),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/app-passwords/{id}",
            delete(revoke_app_password),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/unfreeze",
            post(unfreeze_user),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/disable-2fa",
            post(disable_user_2fa),
        )
        .route("/v1/tenants/{tenant}/disable-2fa", post(disable_tenant_2fa))
}

/// The proof of a sensitive change from a request's fields: a code (with the factor it came
/// from) or a recovery code, not both.
pub fn proof_of<'a>(
    code: Option<&'a str>,
    code_factor_id: Option<&'a str>,
    recovery_code: Option<&'a str>,
) -> Result<Option<Proof<'a>>, ApiError> {
    match (code, recovery_code) {
        (None, None) => Ok(None),
        (Some(code), None) => Ok(Some(Proof::Code {
            code,
            factor_id: code_factor_id,
        })),
        (None, Some(r)) if code_factor_id.is_none() => Ok(Some(Proof::Recovery(r))),
        _ => Err(CoreError::Invalid {
            field: "recovery_code",
            message: "give either code (with code_factor_id) or recovery_code, not both".into(),
        }
        .into()),
    }
}

fn required_proof<'a>(
    code: Option<&'a str>,
    code_factor_id: Option<&'a str>,
    recovery_code: Option<&'a str>,
) -> Result<Proof<'a>, ApiError> {
    proof_of(code, code_factor_id, recovery_code)?.ok_or_else(|| {
        CoreError::Invalid {
            field: "code",
            message: "needs a fresh code (code and code_factor_id) or a recovery code".into(),
        }
        .into()
    })
}

/// The end user's IP as the integrator passed it, checked, in the request's context.
pub fn with_client_ip(mut meta: RequestMeta, ip: Option<&str>) -> Result<RequestMeta, ApiError> {
    if let Some(ip) = ip {
        let ip: std::net::IpAddr = ip.parse().map_err(|_| CoreError::Invalid {
            field: "ip",
            message: "must be an IPv4 or IPv6 address".into(),
        })?;
        meta.client_ip = Some(ip.to_string());
    }
    Ok(meta)
}

// ---------------------------------------------------------------- bodies

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryStatusDto {
    /// Unused recovery codes left.
    pub remaining: u32,
}

/// No `Debug`: it carries codes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProofBody {
    /// A fresh code from the user's active factor `code_factor_id` (for SMS and email, one
    /// sent with `for` set to this change).
    pub code: Option<String>,
    pub code_factor_id: Option<String>,
    /// Instead: one of the user's recovery codes.
    pub recovery_code: Option<String>,
}

/// No `Debug`: it holds codes.
#[derive(Serialize, ToSchema)]
pub struct RecoveryCodesDto {
    /// False for a wrong, used or throttled proof: the old codes still hold.
    pub verified: bool,
    /// Shown once: Twofold keeps only keyed hashes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// No `Debug`: it carries a code.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverBody {
    pub pending_token: String,
    pub recovery_code: String,
}

/// No `Debug`: it carries codes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppPassword {
    /// A client app of the tenant's policy with `app_passwords: true`.
    pub client_id: String,
    /// E.g. "Mail on my laptop"; defaults to the client id.
    pub label: Option<String>,
    pub code: Option<String>,
    pub code_factor_id: Option<String>,
    pub recovery_code: Option<String>,
}

/// No `Debug`: it holds the password.
#[derive(Serialize, ToSchema)]
pub struct CreatedAppPassword {
    /// False for a wrong, used or throttled proof: nothing was created.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Shown once, grouped for typing: Twofold keeps only its keyed hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppPasswordDto {
    pub id: String,
    pub client_id: String,
    pub label: String,
    /// False once revoked, or after the user's credentials changed (sign out everywhere, a
    /// removed factor).
    pub active: bool,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<AppPasswordView> for AppPasswordDto {
    fn from(p: AppPasswordView) -> Self {
        Self {
            id: p.id,
            client_id: p.client_id,
            label: p.label,
            active: p.active,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
            revoked_at: p.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppPasswordList {
    pub app_passwords: Vec<AppPasswordDto>,
}

// ---------------------------------------------------------------- handlers

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/recovery-codes",
    tag = "recovery",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = RecoveryStatusDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn recovery_status(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<RecoveryStatusDto>> {
    let st = s.core.recovery_status(&actor, &tenant, &user).await?;
    Ok(axum::Json(RecoveryStatusDto {
        remaining: st.remaining,
    }))
}

/// New recovery codes (the old ones die), proven by a fresh second factor or a recovery code.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/recovery-codes",
    tag = "recovery",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = ProofBody,
    responses((status = 200, body = RecoveryCodesDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn regenerate_recovery_codes(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<ProofBody>,
) -> ApiResult<axum::Json<RecoveryCodesDto>> {
    let proof = required_proof(
        body.code.as_deref(),
        body.code_factor_id.as_deref(),
        body.recovery_code.as_deref(),
    )?;
    let (verdict, codes) = s
        .core
        .regenerate_recovery_codes(&actor, &meta, &tenant, &user, proof)
        .await?;
    s.metrics.observe_verification("sensitive", verdict.label());
    Ok(axum::Json(RecoveryCodesDto {
        verified: verdict.is_accepted(),
        recovery_codes: codes.map(|c| c.codes),
    }))
}

/// Complete a challenge with a recovery code (the phone is lost, or every factor is locked);
/// the session is minted only for an unused code of this user, and the user is emailed.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/recover", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = RecoverBody,
    responses((status = 200, body = super::login::StepDto), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_recover(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<RecoverBody>,
) -> ApiResult<axum::Json<super::login::StepDto>> {
    let out = s
        .core
        .login_recover(
            &actor,
            &meta,
            &tenant,
            &body.pending_token,
            &body.recovery_code,
        )
        .await?;
    s.metrics
        .observe_verification("recovery", out.verdict.label());
    Ok(axum::Json(super::login::StepDto {
        verified: out.verdict.is_accepted(),
        session: out.session.map(Into::into),
        device: None,
        recovery_codes: None,
    }))
}

/// Create an app password for a client app that cannot show a second step, proven by a
/// fresh second factor.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/app-passwords",
    tag = "app passwords",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = CreateAppPassword,
    responses((status = 200, body = CreatedAppPassword), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_app_password(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<CreateAppPassword>,
) -> ApiResult<axum::Json<CreatedAppPassword>> {
    let proof = required_proof(
        body.code.as_deref(),
        body.code_factor_id.as_deref(),
        body.recovery_code.as_deref(),
    )?;
    let (verdict, issued) = s
        .core
        .create_app_password(
            &actor,
            &meta,
            &tenant,
            &user,
            &body.client_id,
            body.label.as_deref(),
            proof,
        )
        .await?;
    s.metrics.observe_verification("sensitive", verdict.label());
    Ok(axum::Json(CreatedAppPassword {
        verified: verdict.is_accepted(),
        id: issued.as_ref().map(|p| p.id.clone()),
        password: issued.map(|p| p.password),
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/app-passwords",
    tag = "app passwords",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = AppPasswordList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_app_passwords(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<AppPasswordList>> {
    let list = s.core.list_app_passwords(&actor, &tenant, &user).await?;
    Ok(axum::Json(AppPasswordList {
        app_passwords: list.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/app-passwords/{id}",
    tag = "app passwords",
    params(("tenant" = String, Path), ("user" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_app_password(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, id)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .revoke_app_password(&actor, &meta, &tenant, &user, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lift the freeze a "this wasn't me" report put on the user's 2FA settings.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/unfreeze", tag = "users",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn unfreeze_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core.unfreeze_user(&actor, &meta, &tenant, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Operators only: switch 2FA off for one user (every factor and recovery code removed,
/// signed out everywhere, emailed).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/disable-2fa", tag = "operator",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn disable_user_2fa(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .disable_user_2fa(&actor, &meta, &tenant, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Operators only: switch 2FA off for the whole tenant (policy off at once; every user's
/// factors removed by a background job).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/disable-2fa", tag = "operator",
    params(("tenant" = String, Path)),
    responses((status = 202), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn disable_tenant_2fa(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
) -> ApiResult<StatusCode> {
    s.core.disable_tenant_2fa(&actor, &meta, &tenant).await?;
    Ok(StatusCode::ACCEPTED)
}
