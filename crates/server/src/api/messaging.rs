//! SMS and email factors, sending codes, removing a factor with a fresh code, the phone
//! change, tenant messaging settings, invitations and the outbox. Thin handlers over the core.

use super::{created, Created};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::messaging::OutboxStats;
use twofold_core::service::{CodeFor, ContactKind, MessageView, PhoneChangeView, SendReceipt};
use twofold_core::CoreError;
use utoipa::{IntoParams, ToSchema};

use super::dto::{FactorDto, TenantDto};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/sms",
            post(enroll_sms),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/email",
            post(enroll_email),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/send-code",
            post(send_code),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/disable",
            post(disable_factor),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change",
            post(start_phone_change),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}",
            get(get_phone_change),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}/confirm",
            post(confirm_phone_change),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}/resend",
            post(resend_phone_change),
        )
        .route(
            "/v1/tenants/{tenant}/users/{user}/invite",
            post(invite_user),
        )
        .route(
            "/v1/tenants/{tenant}/messaging",
            get(get_messaging).put(put_messaging),
        )
        .route("/v1/tenants/{tenant}/outbox", get(list_tenant_outbox))
        .route(
            "/v1/tenants/{tenant}/outbox/stats",
            get(tenant_outbox_stats),
        )
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/outbox/stats", get(outbox_stats))
        .route("/v1/outbox/{id}/retry", post(retry_message))
}

// ---------------------------------------------------------------- bodies

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollSms {
    /// E.164: `+` then 8 to 15 digits, e.g. `+14155550123`.
    pub phone: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollEmail {
    pub email: String,
}

/// What was sent (never the code).
#[derive(Debug, Serialize, ToSchema)]
pub struct SendReceiptDto {
    pub factor_id: String,
    /// `sms` or `email`.
    pub channel: String,
    /// Masked number or address.
    pub destination: String,
    /// Unix milliseconds after which the code no longer works.
    pub expires_at: i64,
    /// Unix milliseconds before which asking for another code is refused.
    pub resend_at: i64,
}

impl From<SendReceipt> for SendReceiptDto {
    fn from(r: SendReceipt) -> Self {
        Self {
            factor_id: r.factor_id,
            channel: r.channel.as_str().into(),
            destination: r.destination,
            expires_at: r.expires_at,
            resend_at: r.resend_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactEnrollment {
    pub factor: FactorDto,
    pub code_sent: SendReceiptDto,
}

impl ContactEnrollment {
    pub fn new(factor: twofold_core::service::FactorView, receipt: SendReceipt) -> Self {
        Self {
            factor: factor.into(),
            code_sent: receipt.into(),
        }
    }
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendCodeBody {
    /// Ask for a code that can only remove this factor (of the same user).
    pub disable_factor_id: Option<String>,
    /// Ask for a code that confirms only this change of the user's own settings:
    /// `recovery_codes` (make new ones) or `app_password` (create one).
    #[serde(rename = "for")]
    pub purpose: Option<String>,
}

/// No `Debug`: it carries codes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableBody {
    /// A fresh code: from the factor itself, or from `code_factor_id`. Not needed to withdraw
    /// a pending factor.
    pub code: Option<String>,
    /// Another active factor of the user that proves the removal.
    pub code_factor_id: Option<String>,
    /// Instead of `code`: one of the user's recovery codes (the phone is lost).
    pub recovery_code: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DisableResult {
    /// False for a wrong, expired, replayed or throttled code; nothing was removed.
    pub disabled: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartPhoneChange {
    pub new_phone: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneChangeDto {
    pub id: String,
    pub factor_id: String,
    /// `awaiting_old` (code sent to the old number), `awaiting_new` (code sent to the new
    /// number), `done`, or `cancelled` (also when expired).
    pub state: String,
    /// Masked.
    pub new_phone: String,
    pub expires_at: i64,
}

impl From<PhoneChangeView> for PhoneChangeDto {
    fn from(v: PhoneChangeView) -> Self {
        Self {
            id: v.id,
            factor_id: v.factor_id,
            state: v.state.as_str().into(),
            new_phone: v.new_phone,
            expires_at: v.expires_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneChangeStarted {
    pub change: PhoneChangeDto,
    pub code_sent: SendReceiptDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneChangeConfirmed {
    /// False for a wrong, expired, replayed or throttled code; the change did not move.
    pub accepted: bool,
    pub change: PhoneChangeDto,
    /// The code sent to the new number after the old number agreed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_sent: Option<SendReceiptDto>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// Free text shown in the invitation, e.g. `1 March 2027`.
    pub deadline: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDto {
    pub id: i64,
    /// Stable Message-ID / SMS idempotency key.
    pub message_id: String,
    pub channel: String,
    /// Masked.
    pub destination: String,
    /// `code`, `invitation` or `security_notice`.
    pub template: String,
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl From<MessageView> for MessageDto {
    fn from(m: MessageView) -> Self {
        Self {
            id: m.id,
            message_id: m.message_id,
            channel: m.channel.as_str().into(),
            destination: m.destination,
            template: m.template.as_str().into(),
            status: m.status.as_str().into(),
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<MessageDto>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct OutboxParams {
    /// `pending`, `sending`, `sent` or `failed`.
    pub status: Option<String>,
    pub cursor: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxStatsDto {
    pub pending: u64,
    pub sending: u64,
    pub sent: u64,
    pub failed: u64,
    pub oldest_unsent_at: Option<i64>,
}

impl From<OutboxStats> for OutboxStatsDto {
    fn from(s: OutboxStats) -> Self {
        Self {
            pending: s.pending,
            sending: s.sending,
            sent: s.sent,
            failed: s.failed,
            oldest_unsent_at: s.oldest_unsent_at,
        }
    }
}

/// Absent leaves a setting unchanged; `null` restores its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagingSettings {
    /// Sender display name of the tenant's emails; `null` restores the tenant's name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub sender_name: Option<Option<String>>,
    /// Calling codes or number prefixes SMS may go to (e.g. `["44", "1"]`); `null` restores
    /// the server default. Operator key only.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    pub sms_countries: Option<Option<Vec<String>>>,
}

/// Tells a field that is present (even as `null`) from one that is absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessagingSettingsDto {
    pub tenant: TenantDto,
    pub sender_name: String,
    pub sms_countries: Vec<String>,
    /// True when `sms_countries` is the server default rather than the tenant's own list.
    pub sms_countries_default: bool,
}

// ---------------------------------------------------------------- handlers

fn settings(s: &AppState, t: &twofold_core::model::Tenant) -> MessagingSettingsDto {
    MessagingSettingsDto {
        tenant: TenantDto::from(t),
        sender_name: t.sender_name.clone().unwrap_or_else(|| t.name.clone()),
        sms_countries: s.core.effective_sms_countries(t).to_vec(),
        sms_countries_default: t.sms_countries.is_none(),
    }
}

async fn enroll_contact(
    s: &AppState,
    actor: &twofold_core::Actor,
    meta: &twofold_core::RequestMeta,
    (tenant, user): (String, String),
    kind: ContactKind,
    destination: &str,
) -> ApiResult<Created<ContactEnrollment>> {
    let (factor, receipt) = s
        .core
        .enroll_contact(actor, meta, &tenant, &user, kind, destination)
        .await?;
    Ok(created(ContactEnrollment::new(factor, receipt)))
}

/// Enrol a phone: the factor is created `pending` and a code is texted to the number.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/sms", tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = EnrollSms,
    responses((status = 201, body = ContactEnrollment), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn enroll_sms(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    Json(body): Json<EnrollSms>,
) -> ApiResult<Created<ContactEnrollment>> {
    enroll_contact(&s, &actor, &meta, path, ContactKind::Sms, &body.phone).await
}

/// Enrol an email address: the factor is created `pending` and a code is emailed.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/email", tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body = EnrollEmail,
    responses((status = 201, body = ContactEnrollment), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn enroll_email(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(path): Path<(String, String)>,
    Json(body): Json<EnrollEmail>,
) -> ApiResult<Created<ContactEnrollment>> {
    enroll_contact(&s, &actor, &meta, path, ContactKind::Email, &body.email).await
}

/// Send a code to an SMS or email factor: the enrolment code again while it is pending, else
/// a sign-in code (check it with `/verify` and this `factor_id`), or a removal code.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/send-code",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    request_body(content = SendCodeBody, description = "Optional"),
    responses((status = 202, body = SendReceiptDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn send_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
    body: Option<Json<SendCodeBody>>,
) -> ApiResult<(StatusCode, axum::Json<SendReceiptDto>)> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let code_for = match (body.disable_factor_id.as_deref(), body.purpose.as_deref()) {
        (None, None | Some("sign_in")) => CodeFor::SignIn,
        (Some(target), None) => CodeFor::Disable(target),
        (None, Some("recovery_codes")) => CodeFor::RecoveryCodes,
        (None, Some("app_password")) => CodeFor::AppPassword,
        _ => {
            return Err(CoreError::Invalid {
                field: "for",
                message: "is sign_in, recovery_codes or app_password, and not given together \
                          with disable_factor_id"
                    .into(),
            }
            .into())
        }
    };
    let r = s
        .core
        .send_code(&actor, &meta, &tenant, &user, &factor, code_for)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r.into())))
}

/// Remove a factor with a fresh code from it or from another active factor of the user.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/disable",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    request_body = DisableBody,
    responses((status = 200, body = DisableResult), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn disable_factor(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
    Json(body): Json<DisableBody>,
) -> ApiResult<axum::Json<DisableResult>> {
    let verdict = s
        .core
        .disable_factor(
            &actor,
            &meta,
            &tenant,
            &user,
            &factor,
            super::security::proof_of(
                body.code.as_deref(),
                body.code_factor_id.as_deref(),
                body.recovery_code.as_deref(),
            )?,
        )
        .await?;
    s.metrics.observe_verification("disable", verdict.label());
    Ok(axum::Json(DisableResult {
        disabled: verdict.is_accepted(),
    }))
}

/// Start changing an SMS factor's number: a code goes to the old number first.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path)),
    request_body = StartPhoneChange,
    responses((status = 201, body = PhoneChangeStarted), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn start_phone_change(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor)): Path<(String, String, String)>,
    Json(body): Json<StartPhoneChange>,
) -> ApiResult<Created<PhoneChangeStarted>> {
    let (change, receipt) = s
        .core
        .start_phone_change(&actor, &meta, &tenant, &user, &factor, &body.new_phone)
        .await?;
    Ok(created(PhoneChangeStarted {
        change: change.into(),
        code_sent: receipt.into(),
    }))
}

#[utoipa::path(get,
    path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path),
           ("change" = String, Path)),
    responses((status = 200, body = PhoneChangeDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_phone_change(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, user, factor, change)): Path<(String, String, String, String)>,
) -> ApiResult<axum::Json<PhoneChangeDto>> {
    let v = s
        .core
        .phone_change(&actor, &tenant, &user, &factor, &change)
        .await?;
    Ok(axum::Json(v.into()))
}

/// Confirm the current step of a phone change with the code just received.
#[utoipa::path(post,
    path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}/confirm",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path),
           ("change" = String, Path)),
    request_body = super::dto::CodeBody,
    responses((status = 200, body = PhoneChangeConfirmed), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn confirm_phone_change(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor, change)): Path<(String, String, String, String)>,
    Json(body): Json<super::dto::CodeBody>,
) -> ApiResult<axum::Json<PhoneChangeConfirmed>> {
    let (verdict, view, receipt) = s
        .core
        .confirm_phone_change(&actor, &meta, &tenant, &user, &factor, &change, &body.code)
        .await?;
    s.metrics
        .observe_verification("phone_change", verdict.label());
    Ok(axum::Json(PhoneChangeConfirmed {
        accepted: verdict.is_accepted(),
        change: view.into(),
        code_sent: receipt.map(Into::into),
    }))
}

/// Send the current step's code again (cooldown and caps apply).
#[utoipa::path(post,
    path = "/v1/tenants/{tenant}/users/{user}/factors/{factor}/phone-change/{change}/resend",
    tag = "factors",
    params(("tenant" = String, Path), ("user" = String, Path), ("factor" = String, Path),
           ("change" = String, Path)),
    responses((status = 202, body = SendReceiptDto), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn resend_phone_change(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user, factor, change)): Path<(String, String, String, String)>,
) -> ApiResult<(StatusCode, axum::Json<SendReceiptDto>)> {
    let r = s
        .core
        .resend_phone_change_code(&actor, &meta, &tenant, &user, &factor, &change)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r.into())))
}

/// Email the user an invitation to set up two-step verification.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/users/{user}/invite", tag = "users",
    params(("tenant" = String, Path), ("user" = String, Path)),
    request_body(content = InviteBody, description = "Optional"),
    responses((status = 202, body = MessageDto), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn invite_user(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, user)): Path<(String, String)>,
    body: Option<Json<InviteBody>>,
) -> ApiResult<(StatusCode, axum::Json<MessageDto>)> {
    let body = body.map(|b| b.0).unwrap_or_default();
    let m = s
        .core
        .invite_user(&actor, &meta, &tenant, &user, body.deadline.as_deref())
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(m.into())))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/messaging", tag = "tenants",
    params(("tenant" = String, Path)),
    responses((status = 200, body = MessagingSettingsDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_messaging(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<MessagingSettingsDto>> {
    let t = s.core.tenant_for(&actor, &tenant).await?;
    Ok(axum::Json(settings(&s, &t)))
}

/// Change the tenant's email sender name, or (operator key) the countries SMS may go to.
#[utoipa::path(put, path = "/v1/tenants/{tenant}/messaging", tag = "tenants",
    params(("tenant" = String, Path)),
    request_body = MessagingSettings,
    responses((status = 200, body = MessagingSettingsDto), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn put_messaging(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<MessagingSettings>,
) -> ApiResult<axum::Json<MessagingSettingsDto>> {
    let t = s
        .core
        .update_messaging(
            &actor,
            &meta,
            &tenant,
            body.sender_name.as_ref().map(|n| n.as_deref()),
            body.sms_countries.as_ref().map(|c| c.as_deref()),
        )
        .await?;
    Ok(axum::Json(settings(&s, &t)))
}

async fn page(
    s: &AppState,
    actor: &twofold_core::Actor,
    tenant: Option<&str>,
    q: OutboxParams,
) -> ApiResult<axum::Json<MessagePage>> {
    let (messages, next_cursor) = s
        .core
        .list_messages(
            actor,
            tenant,
            q.status.as_deref(),
            q.cursor.as_deref(),
            q.limit,
        )
        .await?;
    Ok(axum::Json(MessagePage {
        messages: messages.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// The tenant's queued and delivered messages, newest first (never their content).
#[utoipa::path(get, path = "/v1/tenants/{tenant}/outbox", tag = "outbox",
    params(("tenant" = String, Path), OutboxParams),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tenant_outbox(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
    Query(q): Query<OutboxParams>,
) -> ApiResult<axum::Json<MessagePage>> {
    page(&s, &actor, Some(&tenant), q).await
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/outbox/stats", tag = "outbox",
    params(("tenant" = String, Path)),
    responses((status = 200, body = OutboxStatsDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn tenant_outbox_stats(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<OutboxStatsDto>> {
    Ok(axum::Json(
        s.core.outbox_stats(&actor, Some(&tenant)).await?.into(),
    ))
}

/// Every tenant's messages (operator key).
#[utoipa::path(get, path = "/v1/outbox", tag = "outbox",
    params(OutboxParams),
    responses((status = 200, body = MessagePage), (status = 400, body = ErrorBody),
              (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_outbox(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Query(q): Query<OutboxParams>,
) -> ApiResult<axum::Json<MessagePage>> {
    page(&s, &actor, None, q).await
}

/// Queue depth of the whole server (operator key).
#[utoipa::path(get, path = "/v1/outbox/stats", tag = "outbox",
    responses((status = 200, body = OutboxStatsDto), (status = 403, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn outbox_stats(
    State(s): State<AppState>,
    Auth(actor): Auth,
) -> ApiResult<axum::Json<OutboxStatsDto>> {
    Ok(axum::Json(s.core.outbox_stats(&actor, None).await?.into()))
}

/// Put a failed message back in the queue (operator key).
#[utoipa::path(post, path = "/v1/outbox/{id}/retry", tag = "outbox",
    params(("id" = i64, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn retry_message(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(id): Path<i64>,
) -> ApiResult<StatusCode> {
    s.core.retry_message(&actor, &meta, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
