//! Request and response bodies of the REST API. Requests reject unknown fields, so a typo or a
//! polluted parameter is an error rather than silently ignored.

use serde::{Deserialize, Serialize};
use twofold_core::model::{ApiKey, AuditEvent, Tenant, User};
use twofold_core::rollout::RolloutReport;
use twofold_core::service::{FactorView, IssuedApiKey, UserStatus};
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// 2–63 characters of a-z, 0-9 and inner hyphens.
    pub slug: String,
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantDto {
    pub slug: String,
    pub name: String,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl From<&Tenant> for TenantDto {
    fn from(t: &Tenant) -> Self {
        Self {
            slug: t.slug.clone(),
            name: t.name.clone(),
            created_at: t.created_at,
        }
    }
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Serialize, ToSchema)]
pub struct IssuedApiKeyDto {
    pub key_id: String,
    pub tenant: Option<String>,
    pub label: String,
    /// The bearer token. Shown only in this response; Twofold keeps only its hash.
    pub token: String,
}

impl From<IssuedApiKey> for IssuedApiKeyDto {
    fn from(k: IssuedApiKey) -> Self {
        Self {
            key_id: k.key_id,
            tenant: k.tenant,
            label: k.label,
            token: k.token,
        }
    }
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Serialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: TenantDto,
    /// A first tenant-scoped key.
    pub api_key: IssuedApiKeyDto,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub label: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    pub key_id: String,
    pub label: String,
    pub operator: bool,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<&ApiKey> for ApiKeyDto {
    fn from(k: &ApiKey) -> Self {
        Self {
            key_id: k.key_id.clone(),
            label: k.label.clone(),
            operator: k.tenant_id.is_none(),
            created_at: k.created_at,
            revoked_at: k.revoked_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub api_keys: Vec<ApiKeyDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The integrator's id for the user: 1–128 of A-Z a-z 0-9 . _ @ + - = :
    pub external_id: String,
    pub email: Option<String>,
    /// E.164, e.g. +14155550123.
    pub phone: Option<String>,
    pub profile: Option<String>,
    #[serde(default)]
    pub is_admin: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    pub external_id: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub profile: Option<String>,
    pub is_admin: bool,
    pub created_at: i64,
}

impl From<&User> for UserDto {
    fn from(u: &User) -> Self {
        Self {
            external_id: u.external_id.clone(),
            email: u.email.clone(),
            phone: u.phone.clone(),
            profile: u.profile.clone(),
            is_admin: u.is_admin,
            created_at: u.created_at,
        }
    }
}

/// Where a user stands in the organisation's 2FA rollout.
#[derive(Debug, Serialize, ToSchema)]
pub struct TwoFactorDto {
    /// `enrolled` (an active factor of a method the org enables), `pending` (required, before
    /// the deadline), `overdue` (required, deadline passed: the next login must enrol),
    /// `optional` or `not_required`.
    #[schema(example = "pending")]
    pub status: String,
    /// Methods of the user's active factors (`totp`, `sms`, `email`, `webauthn`).
    pub methods: Vec<String>,
}

/// A user with their 2FA status.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserStatusDto {
    #[serde(flatten)]
    pub user: UserDto,
    pub two_factor: TwoFactorDto,
}

impl From<&UserStatus> for UserStatusDto {
    fn from(u: &UserStatus) -> Self {
        Self {
            user: UserDto::from(&u.user),
            two_factor: TwoFactorDto {
                status: u.status.as_str().to_string(),
                methods: u.methods.iter().map(|m| m.as_str().to_string()).collect(),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserPage {
    pub users: Vec<UserStatusDto>,
    /// Pass as `cursor` for the next page; absent when no user is left. A page filtered by
    /// `status` may hold fewer users than `limit` (even none) and still have a next cursor.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListParams {
    pub cursor: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<u32>,
    /// Only users with this 2FA status: `enrolled`, `pending`, `overdue`, `optional`,
    /// `not_required`.
    pub status: Option<String>,
}

/// The rollout at a glance (the admin console's progress view).
#[derive(Debug, Serialize, ToSchema)]
pub struct RolloutDto {
    pub total: u64,
    pub enrolled: u64,
    pub pending: u64,
    pub overdue: u64,
    pub optional: u64,
    pub not_required: u64,
    /// Users with an active factor of each method; a user with two methods counts twice.
    pub by_method: MethodCountsDto,
    /// When 2FA becomes (or became) mandatory, Unix ms; absent when it is not scheduled.
    pub deadline: Option<i64>,
    /// Whole days until the deadline, rounded up; 0 once passed.
    pub days_left: Option<i64>,
    /// Enrolled among users for whom 2FA is required or optional, in per cent.
    pub progress_percent: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MethodCountsDto {
    pub totp: u64,
    pub sms: u64,
    pub email: u64,
    /// Security keys and passkeys.
    pub webauthn: u64,
}

impl From<RolloutReport> for RolloutDto {
    fn from(r: RolloutReport) -> Self {
        Self {
            total: r.total,
            enrolled: r.enrolled,
            pending: r.pending,
            overdue: r.overdue,
            optional: r.optional,
            not_required: r.not_required,
            by_method: MethodCountsDto {
                totp: r.by_method.totp,
                sms: r.by_method.sms,
                email: r.by_method.email,
                webauthn: r.by_method.webauthn,
            },
            deadline: r.deadline,
            days_left: r.days_left,
            progress_percent: r.progress_percent,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    pub cursor: Option<String>,
    /// 1–500, default 50.
    pub limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrollTotp {
    /// `SHA1` (default; what every authenticator app supports), `SHA256` or `SHA512`.
    pub algorithm: Option<String>,
    /// 6 (default), 7 or 8.
    pub digits: Option<u8>,
    /// Seconds, 15–300, default 30.
    pub period: Option<u32>,
    /// Shown in the authenticator app; defaults to the tenant's name.
    pub issuer: Option<String>,
    /// Defaults to the user's email, else their external id.
    pub account_name: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactorDto {
    pub id: String,
    /// `totp`, `sms` or `email`.
    pub kind: String,
    /// `pending` until confirmed with a code, then `active`.
    pub status: String,
    pub algorithm: String,
    pub digits: u8,
    pub period: u32,
    /// Learned clock drift of the user's device, in time steps.
    pub drift_steps: i32,
    /// The masked phone number or email address of an SMS or email factor.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// The name the user gave a security key (`webauthn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Locked after too many consecutive failures (or a security key that may have been
    /// cloned) until an operator unlocks it.
    pub locked: bool,
    pub created_at: i64,
    pub confirmed_at: Option<i64>,
}

impl From<FactorView> for FactorDto {
    fn from(f: FactorView) -> Self {
        Self {
            id: f.id,
            kind: f.kind,
            status: f.status.as_str().to_string(),
            algorithm: f.algorithm,
            digits: f.digits,
            period: f.period,
            drift_steps: f.drift_steps,
            destination: f.destination,
            label: f.label,
            locked: f.locked,
            created_at: f.created_at,
            confirmed_at: f.confirmed_at,
        }
    }
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Serialize, ToSchema)]
pub struct EnrollmentDto {
    pub factor_id: String,
    /// Base32 seed, unpadded. Shown only in this response.
    pub secret: String,
    pub otpauth_uri: String,
    /// QR code of `otpauth_uri`, as an SVG document.
    pub qr_svg: String,
    pub factor: FactorDto,
}

impl From<twofold_core::service::Enrollment> for EnrollmentDto {
    fn from(e: twofold_core::service::Enrollment) -> Self {
        Self {
            factor_id: e.factor.id.clone(),
            secret: e.secret,
            otpauth_uri: e.otpauth_uri,
            qr_svg: e.qr_svg,
            factor: e.factor.into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FactorList {
    pub factors: Vec<FactorDto>,
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeBody {
    /// 6–8 ASCII digits.
    pub code: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConfirmResult {
    /// False for a wrong, replayed or throttled code; the factor then stays pending.
    pub confirmed: bool,
    /// When this was the user's first factor: their recovery codes, shown this once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovery_codes: Option<Vec<String>>,
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    pub code: String,
    /// Check only this factor; by default every active TOTP factor of the user.
    pub factor_id: Option<String>,
    /// The end user's IP as you saw it: wrong codes then also count against that IP.
    pub ip: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResult {
    /// Wrong, replayed, throttled and locked all answer `false` alike; the audit log has the
    /// reason.
    pub verified: bool,
}

/// No `Debug`: it carries a code or secret that must never reach a log.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResyncBody {
    /// Two consecutive codes from the user's device.
    pub code1: String,
    pub code2: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ResyncResult {
    pub resynced: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only events about this user (external id).
    pub user: Option<String>,
    /// Only this action, e.g. `totp.verify`, `factor.enrol`.
    pub action: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventDto {
    pub id: i64,
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub user: Option<String>,
    pub factor_id: Option<String>,
    /// `ok` or `denied`.
    pub outcome: String,
    /// Why a code was denied: `wrong_code`, `replayed`, `throttled`, `locked`.
    pub reason: Option<String>,
    pub ip: Option<String>,
    pub request_id: Option<String>,
}

impl From<AuditEvent> for AuditEventDto {
    fn from(e: AuditEvent) -> Self {
        Self {
            id: e.id,
            at: e.record.at,
            actor: e.record.actor,
            action: e.record.action,
            user: e.user_external_id,
            factor_id: e.record.factor_id,
            outcome: e.record.outcome,
            reason: e.record.reason,
            ip: e.record.ip,
            request_id: e.record.request_id,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventDto>,
    pub next_cursor: Option<String>,
}
