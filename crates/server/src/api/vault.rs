//! The authenticator vault: entries (by otpauth:// URI, QR image or secret), groups, scoped
//! tokens, codes for automation and the admin-confirmed export.

use super::messaging::SendReceiptDto;
use super::{created, Created};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Auth, Json, Meta, Path, Query};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post, put};
use axum::Router;
use serde::{Deserialize, Serialize};
use twofold_core::service::vault::*;
use twofold_core::vault::{EntryKind, OwnerKind, VaultGroup};
use twofold_core::CoreError;
use twofold_otp::Algorithm;
use utoipa::{IntoParams, ToSchema};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/tenants/{tenant}/vault/entries",
            post(create_entry).get(list_entries),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/qr",
            post(create_entry_from_qr)
                .layer(DefaultBodyLimit::max(crate::qrimage::MAX_IMAGE_BYTES)),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/{name}",
            get(get_entry).delete(delete_entry),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/{name}/group",
            put(set_entry_group),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/{name}/code",
            get(entry_code),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/{name}/export",
            post(start_export),
        )
        .route(
            "/v1/tenants/{tenant}/vault/entries/{name}/export/confirm",
            post(confirm_export),
        )
        .route(
            "/v1/tenants/{tenant}/vault/groups",
            post(create_group).get(list_groups),
        )
        .route(
            "/v1/tenants/{tenant}/vault/tokens",
            post(create_token).get(list_tokens),
        )
        .route(
            "/v1/tenants/{tenant}/vault/tokens/{id}",
            delete(revoke_token),
        )
        .route("/v1/vault/code", get(token_code))
}

fn owner_kind(s: Option<&str>) -> Result<OwnerKind, ApiError> {
    match s {
        None => Ok(OwnerKind::User),
        Some(s) => OwnerKind::parse(s).ok_or_else(|| {
            CoreError::Invalid {
                field: "owner_kind",
                message: "must be user or service".into(),
            }
            .into()
        }),
    }
}

/// A new entry: `uri`, or `secret` with its parameters.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultCreateEntry {
    /// Unique in the tenant: 1 to 64 of `A-Z a-z 0-9 . _ - @ + :`.
    pub name: String,
    /// A user's external id, or a service account's name.
    pub owner: String,
    /// `user` (default) or `service` (a service account: an owner that cannot sign in).
    pub owner_kind: Option<String>,
    /// A group's name.
    pub group: Option<String>,
    /// `otpauth://totp/…` or `otpauth://hotp/…`.
    pub uri: Option<String>,
    /// Base32 secret (instead of `uri`).
    pub secret: Option<String>,
    /// `totp` (default) or `hotp`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `SHA1` (default), `SHA256`, `SHA512`.
    pub algorithm: Option<String>,
    /// 6 (default) to 8.
    pub digits: Option<u8>,
    /// TOTP step in seconds, 1 to 86400 (default 30).
    pub period: Option<u32>,
    /// HOTP: the next counter (default 0).
    pub counter: Option<u64>,
    pub issuer: Option<String>,
    pub account: Option<String>,
}

fn source_of(b: VaultCreateEntry) -> Result<NewEntryInput, ApiError> {
    let bad = |field, message: &str| -> ApiError {
        CoreError::Invalid {
            field,
            message: message.into(),
        }
        .into()
    };
    let source = match (b.uri, b.secret) {
        (Some(uri), None) => EntrySource::Uri(uri),
        (None, Some(secret)) => EntrySource::Secret {
            secret,
            kind: match b.kind.as_deref() {
                None => EntryKind::Totp,
                Some(k) => {
                    EntryKind::parse(k).ok_or_else(|| bad("type", "must be totp or hotp"))?
                }
            },
            algorithm: match b.algorithm.as_deref() {
                None => Algorithm::Sha1,
                Some(a) => Algorithm::parse(a)
                    .ok_or_else(|| bad("algorithm", "must be SHA1, SHA256 or SHA512"))?,
            },
            digits: b.digits.unwrap_or(6),
            period: b.period,
            counter: b.counter,
            issuer: b.issuer,
            account: b.account,
        },
        _ => return Err(bad("uri", "give either uri, or secret with its parameters")),
    };
    Ok(NewEntryInput {
        name: b.name,
        owner_kind: owner_kind(b.owner_kind.as_deref())?,
        owner: b.owner,
        group: b.group,
        source,
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultEntryDto {
    pub id: String,
    pub name: String,
    /// `user` or `service`.
    pub owner_kind: String,
    pub owner: String,
    pub group: Option<String>,
    /// `totp` or `hotp`.
    #[serde(rename = "type")]
    pub kind: String,
    pub algorithm: String,
    pub digits: u8,
    pub period: Option<u32>,
    pub counter: Option<i64>,
    pub issuer: Option<String>,
    pub account: Option<String>,
    pub created_at: i64,
}

impl From<VaultEntryView> for VaultEntryDto {
    fn from(v: VaultEntryView) -> Self {
        Self {
            id: v.id,
            name: v.name,
            owner_kind: v.owner_kind.as_str().into(),
            owner: v.owner,
            group: v.group,
            kind: v.kind.as_str().into(),
            algorithm: v.algorithm,
            digits: v.digits,
            period: v.period,
            counter: v.counter,
            issuer: v.issuer,
            account: v.account,
            created_at: v.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultEntryList {
    pub entries: Vec<VaultEntryDto>,
}

/// Add an entry from an otpauth:// URI or a secret and parameters. The secret is never
/// returned afterwards (see the export).
#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/entries", tag = "vault",
    params(("tenant" = String, Path)),
    request_body = VaultCreateEntry,
    responses((status = 201, body = VaultEntryDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_entry(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<VaultCreateEntry>,
) -> ApiResult<Created<VaultEntryDto>> {
    let input = source_of(body)?;
    let view = s
        .core
        .create_vault_entry(&actor, &meta, &tenant, input)
        .await?;
    Ok(created(view.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VaultQrParams {
    pub name: String,
    pub owner: String,
    /// `user` (default) or `service`.
    pub owner_kind: Option<String>,
    pub group: Option<String>,
}

/// Add an entry from a QR image (the body: `image/png` or `image/jpeg`, at most 2 MiB and
/// 2048×2048 pixels). A damaged image or one without a QR code is a 400 with
/// `image_malformed`, `image_no_qr` or `image_unsupported`; a larger one `image_too_large`.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/entries/qr", tag = "vault",
    params(("tenant" = String, Path), VaultQrParams),
    request_body(content = Vec<u8>, content_type = "image/png"),
    responses((status = 201, body = VaultEntryDto), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_entry_from_qr(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Query(q): Query<VaultQrParams>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<Created<VaultEntryDto>> {
    // Only the tenant's own callers learn anything about the upload.
    s.core.tenant_for(&actor, &tenant).await?;
    let too_large = |e: crate::qrimage::QrImageError| ApiError {
        field: Some("image"),
        ..ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.code(), e.to_string())
    };
    let body = body.map_err(|_| too_large(crate::qrimage::QrImageError::TooLarge))?;
    let text = crate::qrimage::decode(&body).map_err(|e| match e {
        crate::qrimage::QrImageError::TooLarge => too_large(e),
        e => ApiError {
            field: Some("image"),
            ..ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string())
        },
    })?;
    let input = NewEntryInput {
        name: q.name,
        owner_kind: owner_kind(q.owner_kind.as_deref())?,
        owner: q.owner,
        group: q.group,
        source: EntrySource::Qr(text),
    };
    let view = s
        .core
        .create_vault_entry(&actor, &meta, &tenant, input)
        .await?;
    Ok(created(view.into()))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/vault/entries", tag = "vault",
    params(("tenant" = String, Path)),
    responses((status = 200, body = VaultEntryList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_entries(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<VaultEntryList>> {
    let entries = s.core.list_vault_entries(&actor, &tenant).await?;
    Ok(axum::Json(VaultEntryList {
        entries: entries.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/vault/entries/{name}", tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = VaultEntryDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn get_entry(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<VaultEntryDto>> {
    let view = s.core.vault_entry(&actor, &tenant, &name).await?;
    Ok(axum::Json(view.into()))
}

/// Remove an entry and the tokens scoped to it.
#[utoipa::path(delete, path = "/v1/tenants/{tenant}/vault/entries/{name}", tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn delete_entry(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .delete_vault_entry(&actor, &meta, &tenant, &name)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultSetGroup {
    /// A group's name, or null for none.
    pub group: Option<String>,
}

#[utoipa::path(put, path = "/v1/tenants/{tenant}/vault/entries/{name}/group", tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    request_body = VaultSetGroup,
    responses((status = 200, body = VaultEntryDto), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn set_entry_group(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, name)): Path<(String, String)>,
    Json(body): Json<VaultSetGroup>,
) -> ApiResult<axum::Json<VaultEntryDto>> {
    let view = s
        .core
        .set_vault_entry_group(&actor, &meta, &tenant, &name, body.group.as_deref())
        .await?;
    Ok(axum::Json(view.into()))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultCodeDto {
    pub code: String,
    /// Seconds the TOTP code stays valid; null for HOTP.
    pub valid_for_secs: Option<u64>,
    pub entry: String,
    /// HOTP: the counter the code was made from.
    pub counter: Option<i64>,
}

impl From<VaultCode> for VaultCodeDto {
    fn from(c: VaultCode) -> Self {
        Self {
            code: c.code,
            valid_for_secs: c.valid_for_secs,
            entry: c.entry,
            counter: c.counter,
        }
    }
}

/// The entry's current code, for the tenant's API key. Audited and rate-limited.
#[utoipa::path(get, path = "/v1/tenants/{tenant}/vault/entries/{name}/code", tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = VaultCodeDto), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn entry_code(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<VaultCodeDto>> {
    let code = s
        .core
        .vault_code(VaultCaller::Key(&actor, &tenant), &meta, &name)
        .await?;
    Ok(axum::Json(code.into()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct VaultCodeQuery {
    /// The entry's name.
    pub entry: String,
}

/// The entry's current code, for a vault token (`Authorization: Bearer tfv_…`) whose scope
/// holds it. Audited (the token's id, the time, the socket IP) and rate-limited.
#[utoipa::path(get, path = "/v1/vault/code", tag = "vault",
    params(VaultCodeQuery),
    responses((status = 200, body = VaultCodeDto), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("vault_token" = [])))]
pub async fn token_code(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<VaultCodeQuery>,
) -> ApiResult<axum::Json<VaultCodeDto>> {
    let token = crate::extract::bearer(&headers)?;
    let code = s
        .core
        .vault_code(VaultCaller::Token(token), &meta, &q.entry)
        .await?;
    Ok(axum::Json(code.into()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultExportBody {
    /// The acting admin (external id), who receives the code by email.
    pub admin: String,
}

/// Start exporting an entry's secret: a code is emailed to the acting admin.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/entries/{name}/export", tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    request_body = VaultExportBody,
    responses((status = 202, body = SendReceiptDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn start_export(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, name)): Path<(String, String)>,
    Json(body): Json<VaultExportBody>,
) -> ApiResult<(StatusCode, axum::Json<SendReceiptDto>)> {
    let r = s
        .core
        .start_vault_export(&actor, &meta, &tenant, &name, &body.admin)
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(r.into())))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultConfirmExport {
    pub admin: String,
    /// The code emailed to the admin.
    pub code: String,
}

/// No `Debug`: it holds the secret.
#[derive(Serialize, ToSchema)]
pub struct VaultExportDto {
    /// False for a wrong, expired or reused code (then nothing else is set).
    pub exported: bool,
    pub secret: Option<String>,
    pub otpauth_uri: Option<String>,
}

/// Complete an export with the emailed code: only then is the secret returned.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/entries/{name}/export/confirm",
    tag = "vault",
    params(("tenant" = String, Path), ("name" = String, Path)),
    request_body = VaultConfirmExport,
    responses((status = 200, body = VaultExportDto), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn confirm_export(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, name)): Path<(String, String)>,
    Json(body): Json<VaultConfirmExport>,
) -> ApiResult<axum::Json<VaultExportDto>> {
    let out = s
        .core
        .confirm_vault_export(&actor, &meta, &tenant, &name, &body.admin, &body.code)
        .await?;
    Ok(axum::Json(match out {
        Some(secret) => VaultExportDto {
            exported: true,
            secret: Some(secret.secret),
            otpauth_uri: Some(secret.otpauth_uri),
        },
        None => VaultExportDto {
            exported: false,
            secret: None,
            otpauth_uri: None,
        },
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultCreateGroup {
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultGroupDto {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

impl From<VaultGroup> for VaultGroupDto {
    fn from(g: VaultGroup) -> Self {
        Self {
            id: g.id,
            name: g.name,
            created_at: g.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultGroupList {
    pub groups: Vec<VaultGroupDto>,
}

#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/groups", tag = "vault",
    params(("tenant" = String, Path)),
    request_body = VaultCreateGroup,
    responses((status = 201, body = VaultGroupDto), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_group(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<VaultCreateGroup>,
) -> ApiResult<Created<VaultGroupDto>> {
    let g = s
        .core
        .create_vault_group(&actor, &meta, &tenant, &body.name)
        .await?;
    Ok(created(g.into()))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/vault/groups", tag = "vault",
    params(("tenant" = String, Path)),
    responses((status = 200, body = VaultGroupList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_groups(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<VaultGroupList>> {
    let groups = s.core.list_vault_groups(&actor, &tenant).await?;
    Ok(axum::Json(VaultGroupList {
        groups: groups.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultCreateToken {
    pub label: String,
    /// The one entry the token may read (or give `group`).
    pub entry: Option<String>,
    /// The group whose entries the token may read.
    pub group: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultTokenDto {
    pub id: String,
    pub label: String,
    pub entry: Option<String>,
    pub group: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

impl From<VaultTokenView> for VaultTokenDto {
    fn from(t: VaultTokenView) -> Self {
        Self {
            id: t.id,
            label: t.label,
            entry: t.entry,
            group: t.group,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// No `Debug`: it holds the token.
#[derive(Serialize, ToSchema)]
pub struct VaultCreatedToken {
    #[serde(flatten)]
    pub info: VaultTokenDto,
    /// `tfv_…`: shown only here; only its keyed hash is stored.
    pub token: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VaultTokenList {
    pub tokens: Vec<VaultTokenDto>,
}

/// Create a token scoped to one entry or one group.
#[utoipa::path(post, path = "/v1/tenants/{tenant}/vault/tokens", tag = "vault",
    params(("tenant" = String, Path)),
    request_body = VaultCreateToken,
    responses((status = 201, body = VaultCreatedToken), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn create_token(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path(tenant): Path<String>,
    Json(body): Json<VaultCreateToken>,
) -> ApiResult<Created<VaultCreatedToken>> {
    let scope = match (&body.entry, &body.group) {
        (Some(e), None) => TokenScope::Entry(e),
        (None, Some(g)) => TokenScope::Group(g),
        _ => {
            return Err(CoreError::Invalid {
                field: "entry",
                message: "give exactly one of entry and group".into(),
            }
            .into())
        }
    };
    let (info, token) = s
        .core
        .create_vault_token(&actor, &meta, &tenant, &body.label, scope)
        .await?;
    Ok(created(VaultCreatedToken {
        info: info.into(),
        token,
    }))
}

#[utoipa::path(get, path = "/v1/tenants/{tenant}/vault/tokens", tag = "vault",
    params(("tenant" = String, Path)),
    responses((status = 200, body = VaultTokenList), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn list_tokens(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Path(tenant): Path<String>,
) -> ApiResult<axum::Json<VaultTokenList>> {
    let tokens = s.core.list_vault_tokens(&actor, &tenant).await?;
    Ok(axum::Json(VaultTokenList {
        tokens: tokens.into_iter().map(Into::into).collect(),
    }))
}

#[utoipa::path(delete, path = "/v1/tenants/{tenant}/vault/tokens/{id}", tag = "vault",
    params(("tenant" = String, Path), ("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)),
    security(("api_key" = [])))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Auth(actor): Auth,
    Meta(meta): Meta,
    Path((tenant, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    s.core
        .revoke_vault_token(&actor, &meta, &tenant, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
