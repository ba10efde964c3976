//! The tenant's 2FA policy (proposed by an admin, confirmed by the code emailed to them), the
//! login decision, the second step, sessions and remembered devices. Pending, session and
//! device tokens travel in bodies, never in URLs, so they stay out of access logs.

use super::messaging::SendReceiptDto;
use super::{created, Created};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::policy::{Decision, Policy};
use twofold_core::service::{DeviceView, IssuedToken, LoginRequest, SessionView};
use twofold_core::CoreError;
use utoipa::ToSchema;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/tenants/{tenant}/policy", get(get_policy))
        .route("/v1/tenants/{tenant}/policy/proposals", post(propose))
        .route(
            "/v1/tenants/{tenant}/policy/proposals/{proposal}/confirm",
            post(confirm_proposal),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/admin-proposals",
            post(propose_admin),
        )
        .route("/v1/tenants/{tenant}/logins", post(decide))
        .route(
            "/v1/tenants/{tenant}/logins/send-code",
            post(login_send_code),
        )
        .route("/v1/tenants/{tenant}/logins/verify", post(login_verify))
        .route("/v1/tenants/{tenant}/logins/skip", post(login_skip))
        .route(
            "/v1/tenants/{tenant}/logins/enroll/totp",
            post(login_enroll_totp),
        )
        .route(
            "/v1/tenants/{tenant}/logins/enroll/sms",
            post(login_enroll_sms),
        )
        .route(
            "/v1/tenants/{tenant}/logins/enroll/email",
            post(login_enroll_email),
        )
        .route(
            "/v1/tenants/{tenant}/logins/enroll/confirm",
            post(login_enroll_confirm),
        )
        .route("/v1/tenants/{tenant}/sessions/introspect", post(introspect))
        .route(
            "/v1/tenants/{tenant}/users/{user}/sessions",
            get(list_sessions),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/sessions/{session}",
            delete(revoke_session),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/sign-out-everywhere",
            post(sign_out_everywhere),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/devices",
            get(list_devices),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/devices/{device}",
            delete(revoke_device),
        )
}

// ---------------------------------------------------------------- bodies

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyDto {
    /// `{methods, enforcement: {mode, profiles?}, mandatory_from, reminder_days,
    /// remember_device_days, sso_exempt, revoke_sessions_after_hours, skip_hours, clients}`.
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
    /// 0 until a policy was first confirmed.
    pub version: i64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeBody {
    /// External id of the admin proposing; the confirmation code goes to their email.
    pub admin: String,
    /// The whole new policy (see `GET …/policy`).
    #[schema(value_type = Object)]
    pub policy: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalDto {
    pub id: String,
    pub state: String,
    pub expires_at: i64,
    /// E.g. that SMS- or email-only is the weakest setting.
    pub warnings: Vec<String>,
    pub code_sent: SendReceiptDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeAdminBody {
    /// External id of the existing admin who confirms; the code goes to their email.
    pub admin: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmedDto {
    /// False for a wrong, expired, reused or throttled code: nothing changed.
    pub confirmed: bool,
}

/// No `Debug`: it may carry an app password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// The user's external id.
    pub user: String,
    /// `password` or `sso`.
    pub primary: String,
    /// A client app registered in the policy.
    pub client_id: Option<String>,
    /// The end user's IP address as you saw it.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The browser's remembered-device token, if it has one.
    pub device_token: Option<String>,
    /// Your own stable id of the browser or device (e.g. a long-lived cookie), for the
    /// tenant's risk rules; only a keyed hash of it is kept.
    pub device_id: Option<String>,
    /// The end user's country (two letters) as your proxy or CDN reported it (e.g.
    /// `CF-IPCountry`); used when the geo-IP database does not know the IP.
    pub country: Option<String>,
    /// For a client app that cannot show a second step: the app password it was given
    /// (needs `client_id`). Decides `allow` (reason `app_password`) or `deny`
    /// (`app_password_invalid`) on its own.
    pub app_password: Option<String>,
}

/// No `Debug`: it holds a token.
#[derive(Serialize, ToSchema)]
pub struct TokenDto {
    pub id: String,
    /// Shown once; Twofold keeps only its hash.
    pub token: String,
    pub expires_at: i64,
}

impl From<IssuedToken> for TokenDto {
    fn from(t: IssuedToken) -> Self {
        Self {
            id: t.id,
            token: t.token,
            expires_at: t.expires_at,
        }
    }
}

/// No `Debug`: it holds tokens.
#[derive(Serialize, ToSchema)]
pub struct DecisionDto {
    /// `allow`, `challenge`, `enroll_required`, `enroll_offered` or `deny`.
    pub decision: String,
    /// For `allow` and `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Methods to challenge with, or to offer for enrolment (authenticator app first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deadline: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_left: Option<i64>,
    /// For the second step: accepted only by `…/logins/*` of this login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<TokenDto>,
    /// For `allow`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<TokenDto>,
    /// Where the tenant's risk rules are on: why a code was or was not asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk: Option<RiskDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RiskDto {
    /// A known device, or a known network in a known country, and no impossible travel.
    pub familiar: bool,
    pub impossible_travel: bool,
    /// Speed since the previous located sign-in, when both were located far enough apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub travel_kmh: Option<u32>,
    /// The country of the sign-in's IP, when the geo database knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// Every rule's finding, e.g. `familiar_device`, `new_network`, `new_country`,
    /// `impossible_travel`, `no_ip`, `first_login`.
    pub reasons: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingBody {
    pub pending_token: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginEnrollContact {
    pub pending_token: String,
    /// The phone number (E.164) for `…/enroll/sms`, the address for `…/enroll/email`.
    pub destination: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginEnrollConfirm {
    pub pending_token: String,
    pub factor_id: String,
    pub code: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginSendCode {
    pub pending_token: String,
    pub factor_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginVerify {
    pub pending_token: String,
    pub code: String,
    /// Needed for SMS and email codes; optional for authenticator apps.
    pub factor_id: Option<String>,
    /// Remember this device (when the tenant allows it).
    #[serde(default)]
    pub remember_device: bool,
    pub device_label: Option<String>,
}

/// No `Debug`: it holds tokens.
#[derive(Serialize, ToSchema)]
pub struct StepDto {
    /// False for a wrong, expired, replayed or throttled code.
    pub verified: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<TokenDto>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<TokenDto>,
    /// When the login enrolled the user's first factor: their recovery codes, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntrospectBody {
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionDto {
    pub id: String,
    pub active: bool,
    pub user: String,
    /// E.g. `["pwd", "otp"]`.
    pub amr: Vec<String>,
    pub second_factor: bool,
    pub client_id: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<SessionView> for SessionDto {
    fn from(s: SessionView) -> Self {
        Self {
            id: s.id,
            active: s.active,
            user: s.user,
            amr: s.amr,
            second_factor: s.second_factor,
            client_id: s.client_id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.expires_at,
            revoked_at: s.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectDto {
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<SessionDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionDto>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceDto {
    pub id: String,
    pub active: bool,
    pub label: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl From<DeviceView> for DeviceDto {
    fn from(d: DeviceView) -> Self {
        Self {
            id: d.id,
            active: d.active,
            label: d.label,
            created_at: d.created_at,
            expires_at: d.expires_at,
            last_used_at: d.last_used_at,
            revoked_at: d.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceList {
    pub devices: Vec<DeviceDto>,
}

// ---------------------------------------------------------------- handlers

#[utoipa::path(get, path = "/v1/tenants/{tenant}/policy", tag = "policy",
    params(("tenant" = String, Path)),
    responses((status = 200, body = PolicyDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_policy(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<PolicyDto>> {
    let (policy, version) = s.core.get_policy(&actor, &tenant).await?;
    let policy = serde_json::to_value(&policy)
        .map_err(|e| CoreError::Internal(format!("policy json: {e}")))?;
    Ok(axum::Json(PolicyDto { policy, version }))
}

/// Propose new 2FA settings on behalf of an admin; a code is emailed to that admin, and only
/// confirming with it makes the change.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/policy/proposals", tag = "policy",
    params(("tenant" = String, Path)),
    request_body = ProposeBody,
    responses((status = 201, body = ProposalDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn propose(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<ProposeBody>,
) -> ApiResult<Created<ProposalDto>> {
    let policy: Policy = serde_json::from_value(body.policy).map_err(|e| {
        ApiError::from(CoreError::Invalid {
            field: "policy",
            message: e.to_string(),
        })
    })?;
    let (proposal, receipt) = s
        .core
        .propose_policy(&actor, &meta, &tenant, &body.admin, policy)
        .await?;
    Ok(created(ProposalDto::new(proposal, receipt)))
}

impl ProposalDto {
    fn new(p: twofold_core::service::ProposalView, r: twofold_core::service::SendReceipt) -> Self {
        Self {
            id: p.id,
            state: p.state.as_str().into(),
            expires_at: p.expires_at,
            warnings: p.warnings,
            code_sent: r.into(),
        }
    }
}

/// Propose making a user an admin; an existing admin confirms with the code emailed to them
/// (confirm at `…/policy/proposals/{id}/confirm`).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/admin-proposals", tag = "policy",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = ProposeAdminBody,
    responses((status = 201, body = ProposalDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn propose_admin(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    Json(body): Json<ProposeAdminBody>,
) -> ApiResult<Created<ProposalDto>> {
    let (proposal, receipt) = s
        .core
        .propose_admin(&actor, &meta, &tenant, &body.admin, &user)
        .await?;
    Ok(created(ProposalDto::new(proposal, receipt)))
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/policy/proposals/{proposal}/confirm",
    tag = "policy",
    params(("tenant" = String, Path), ("proposal" = String, Path)),
    request_body = super::dto::CodeBody,
    responses((status = 200, body = ConfirmedDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn confirm_proposal(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, proposal)): Path<(String, String)>,
    Json(body): Json<super::dto::CodeBody>,
) -> ApiResult<axum::Json<ConfirmedDto>> {
    let verdict = s
        .core
        .confirm_proposal(&actor, &meta, &tenant, &proposal, &body.code)
        .await?;
    s.metrics
        .observe_verification("admin_confirm", verdict.label());
    Ok(axum::Json(ConfirmedDto {
        confirmed: verdict.is_accepted(),
    }))
}

/// The login decision: call it after your own first-factor check (password or SSO).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginBody,
    responses((status = 200, body = DecisionDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn decide(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginBody>,
) -> ApiResult<axum::Json<DecisionDto>> {
    let out = s
        .core
        .decide_login(
            &actor,
            &meta,
            &tenant,
            LoginRequest {
                user: body.user,
                primary: body.primary,
                client_id: body.client_id,
                ip: body.ip,
                user_agent: body.user_agent,
                device_token: body.device_token,
                device_id: body.device_id,
                country: body.country,
                app_password: body.app_password,
            },
        )
        .await?;
    let names = |m: &[twofold_core::policy::Method]| {
        Some(m.iter().map(|m| m.as_str().to_string()).collect())
    };
    let mut dto = DecisionDto {
        decision: out.decision.label().into(),
        reason: None,
        methods: None,
        deadline: None,
        days_left: None,
        pending: out.pending.map(Into::into),
        session: out.session.map(Into::into),
        risk: out.risk.map(|r| RiskDto {
            familiar: r.assessment.familiar,
            impossible_travel: r.assessment.impossible_travel,
            travel_kmh: r.assessment.travel_kmh,
            country: r.country,
            reasons: r
                .assessment
                .reasons
                .iter()
                .map(|x| x.as_str().to_string())
                .collect(),
        }),
    };
    match &out.decision {
        Decision::Allow { .. } | Decision::Deny { .. } => dto.reason = out.decision.reason(),
        Decision::Challenge { methods } | Decision::EnrollRequired { methods } => {
            dto.methods = names(methods)
        }
        Decision::EnrollOffered {
            methods,
            deadline,
            days_left,
        } => {
            dto.methods = names(methods);
            dto.deadline = *deadline;
            dto.days_left = *days_left;
        }
    }
    Ok(axum::Json(dto))
}

/// Send an SMS or email code for this login's challenge.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/send-code", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginSendCode,
    responses((status = 202, body = SendReceiptDto), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_send_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginSendCode>,
) -> ApiResult<(StatusCode, axum::Json<SendReceiptDto>)> {
    let r = s
        .core
        .login_send_code(&actor, &meta, &tenant, &body.pending_token, &body.factor_id)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r.into())))
}

/// Complete a challenge with a code; the session is minted only for a right code.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/verify", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginVerify,
    responses((status = 200, body = StepDto), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_verify(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginVerify>,
) -> ApiResult<axum::Json<StepDto>> {
    let out = s
        .core
        .login_verify(
            &actor,
            &meta,
            &tenant,
            &body.pending_token,
            &body.code,
            body.factor_id.as_deref(),
            body.remember_device,
            body.device_label.as_deref(),
        )
        .await?;
    s.metrics.observe_verification("login", out.verdict.label());
    Ok(axum::Json(StepDto {
        verified: out.verdict.is_accepted(),
        session: out.session.map(Into::into),
        device: out.device.map(Into::into),
        recovery_codes: None,
    }))
}

/// "Later" at the 2FA reminder (refused once 2FA is mandatory for the user).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/skip", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = PendingBody,
    responses((status = 200, body = TokenDto), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_skip(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<PendingBody>,
) -> ApiResult<axum::Json<TokenDto>> {
    let session = s
        .core
        .login_skip(&actor, &meta, &tenant, &body.pending_token)
        .await?;
    Ok(axum::Json(session.into()))
}

/// Is this session token live, and whose is it?
#[utoipa::path(post, path = "/v1/tenants/{tenant}/sessions/introspect", tag = "sessions",
    params(("tenant" = String, Path)),
    request_body = IntrospectBody,
    responses((status = 200, body = IntrospectDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn introspect(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
    Json(body): Json<IntrospectBody>,
) -> ApiResult<axum::Json<IntrospectDto>> {
    let view = s.core.introspect(&actor, &tenant, &body.token).await?;
    Ok(axum::Json(IntrospectDto {
        active: view.as_ref().is_some_and(|v| v.active),
        session: view.filter(|v| v.active).map(Into::into),
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/sessions", tag = "sessions",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = SessionList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_sessions(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<SessionList>> {
    let sessions = s.core.list_sessions(&actor, &tenant, &user).await?;
    Ok(axum::Json(SessionList {
        sessions: sessions.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/sessions/{session}",
    tag = "sessions",
    params(("tenant" = String, Path), ("user" = String, Path), ("session" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_session(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, session)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .revoke_session(&actor, &meta, &tenant, &user, &session)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revoke every session and remembered device of the user.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/sign-out-everywhere",
    tag = "sessions",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn sign_out_everywhere(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .sign_out_everywhere(&actor, &meta, &tenant, &user)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/users/{user}/devices", tag = "sessions",
    params(("tenant" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = DeviceList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_devices(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user)): Path<(String, String)>,
) -> ApiResult<axum::Json<DeviceList>> {
    let devices = s.core.list_devices(&actor, &tenant, &user).await?;
    Ok(axum::Json(DeviceList {
        devices: devices.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/users/{user}/devices/{device}",
    tag = "sessions",
    params(("tenant" = String, Path), ("user" = String, Path), ("device" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_device(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, device)): Path<(String, String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .revoke_device(&actor, &meta, &tenant, &user, &device)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enrol an authenticator app from a pending login (only while the user has no active factor).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/enroll/totp", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = PendingBody,
    responses((status = 201, body = super::dto::EnrollmentDto), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_enroll_totp(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<PendingBody>,
) -> ApiResult<Created<super::dto::EnrollmentDto>> {
    let e = s
        .core
        .login_enroll_totp(
            &actor,
            &meta,
            &tenant,
            &body.pending_token,
            Default::default(),
        )
        .await?;
    Ok(created(e.into()))
}

async fn login_enroll_contact(
    s: &AppState,
    actor: &twofold_core::Actor,
    meta: &twofold_core::RequestMeta,
    tenant: &str,
    body: LoginEnrollContact,
    kind: twofold_core::service::ContactKind,
) -> ApiResult<Created<super::messaging::ContactEnrollment>> {
    let (factor, receipt) = s
        .core
        .login_enroll_contact(
            actor,
            meta,
            tenant,
            &body.pending_token,
            kind,
            &body.destination,
        )
        .await?;
    Ok(created(super::messaging::ContactEnrollment::new(
        factor, receipt,
    )))
}

/// Enrol a phone from a pending login; a code is texted to it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/enroll/sms", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginEnrollContact,
    responses((status = 201, body = super::messaging::ContactEnrollment),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_enroll_sms(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginEnrollContact>,
) -> ApiResult<Created<super::messaging::ContactEnrollment>> {
    let kind = twofold_core::service::ContactKind::Sms;
    login_enroll_contact(&s, &actor, &meta, &tenant, body, kind).await
}

/// Enrol an email address from a pending login; a code is emailed to it.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/enroll/email", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginEnrollContact,
    responses((status = 201, body = super::messaging::ContactEnrollment),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_enroll_email(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginEnrollContact>,
) -> ApiResult<Created<super::messaging::ContactEnrollment>> {
    let kind = twofold_core::service::ContactKind::Email;
    login_enroll_contact(&s, &actor, &meta, &tenant, body, kind).await
}

/// Confirm the factor enrolled at login with its first code: activates it, completes the
/// login and returns the session, all at once.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/logins/enroll/confirm", tag = "logins",
    params(("tenant" = String, Path)),
    request_body = LoginEnrollConfirm,
    responses((status = 200, body = StepDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn login_enroll_confirm(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<LoginEnrollConfirm>,
) -> ApiResult<axum::Json<StepDto>> {
    let out = s
        .core
        .login_enroll_confirm(
            &actor,
            &meta,
            &tenant,
            &body.pending_token,
            &body.factor_id,
            &body.code,
        )
        .await?;
    s.metrics
        .observe_verification("login_enroll", out.verdict.label());
    Ok(axum::Json(StepDto {
        verified: out.verdict.is_accepted(),
        session: out.session.map(Into::into),
        device: None,
        recovery_codes: out.recovery_codes.map(|c| c.codes),
    }))
}
