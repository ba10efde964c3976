//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::api::{
    self, dto, login as l, messaging as m, oidc as o, security as sec, vault as v, webhooks as w,
};
use crate::error::{ErrorBody, ErrorDetail};
use utoipa::openapi::header::{Header, HeaderBuilder};
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder, Type};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Twofold",
        description = "Multi-tenant two-factor authentication server. Errors are \
            `{\"error\": {\"code\", \"message\"}}` with a stable `code`."
    ),
    paths(
        api::create_tenant, api::get_tenant,
        api::create_operator_key, api::list_operator_keys, api::revoke_api_key,
        api::create_tenant_key, api::list_tenant_keys,
        api::create_user, api::list_users, api::get_user, api::rollout,
        api::list_factors, api::enroll_totp, api::confirm_factor, api::resync_factor,
        api::unlock_factor, api::delete_factor, api::verify, api::list_audit,
        m::enroll_sms, m::enroll_email, m::send_code, m::disable_factor,
        m::start_phone_change, m::get_phone_change, m::confirm_phone_change,
        m::resend_phone_change, m::invite_user, m::get_messaging, m::put_messaging,
        m::list_tenant_outbox, m::tenant_outbox_stats, m::list_outbox, m::outbox_stats,
        m::retry_message,
        l::get_policy, l::propose, l::propose_admin, l::confirm_proposal, l::decide, l::login_send_code,
        w::create_webhook, w::list_webhooks, w::delete_webhook,
        l::login_verify, l::login_skip, l::login_enroll_totp, l::login_enroll_sms,
        l::login_enroll_email, l::login_enroll_confirm, l::introspect, l::list_sessions, l::revoke_session,
        l::sign_out_everywhere, l::list_devices, l::revoke_device,
        sec::recovery_status, sec::regenerate_recovery_codes, sec::login_recover,
        sec::create_app_password, sec::list_app_passwords, sec::revoke_app_password,
        sec::unfreeze_user, sec::disable_user_2fa, sec::disable_tenant_2fa,
        v::create_entry, v::create_entry_from_qr, v::list_entries, v::get_entry, v::delete_entry,
        v::set_entry_group, v::entry_code, v::token_code, v::start_export, v::confirm_export,
        v::create_group, v::list_groups, v::create_token, v::list_tokens, v::revoke_token,
        o::create_oidc_client, o::list_oidc_clients, o::set_redirect_uris, o::rotate_oidc_secret,
        o::delete_oidc_client,
    ),
    components(schemas(
        ErrorBody, ErrorDetail, dto::CreateTenant, dto::TenantDto, dto::CreatedTenant,
        dto::IssuedApiKeyDto, dto::CreateApiKey, dto::ApiKeyDto, dto::ApiKeyList,
        dto::CreateUser, dto::UserDto, dto::UserPage, dto::UserStatusDto, dto::TwoFactorDto,
        dto::RolloutDto, dto::MethodCountsDto, dto::EnrollTotp, dto::EnrollmentDto,
        dto::FactorDto, dto::FactorList, dto::CodeBody, dto::ConfirmResult, dto::VerifyBody,
        dto::VerifyResult, dto::ResyncBody, dto::ResyncResult, dto::AuditEventDto,
        dto::AuditPage, m::EnrollSms, m::EnrollEmail, m::SendReceiptDto,
        m::ContactEnrollment, m::SendCodeBody, m::DisableBody, m::DisableResult,
        m::StartPhoneChange, m::PhoneChangeDto, m::PhoneChangeStarted, m::PhoneChangeConfirmed,
        m::InviteBody, m::MessageDto, m::MessagePage, m::OutboxStatsDto, m::MessagingSettings,
        m::MessagingSettingsDto, l::PolicyDto, l::ProposeBody, l::ProposeAdminBody, l::ProposalDto, l::ConfirmedDto,
        w::CreateWebhook, w::WebhookDto, w::CreatedWebhook, w::WebhookList,
        l::LoginBody, l::RiskDto, l::LoginEnrollContact, l::LoginEnrollConfirm, l::TokenDto, l::DecisionDto, l::PendingBody, l::LoginSendCode,
        l::LoginVerify, l::StepDto, l::IntrospectBody, l::SessionDto, l::IntrospectDto,
        l::SessionList, l::DeviceDto, l::DeviceList,
        sec::RecoveryStatusDto, sec::ProofBody, sec::RecoveryCodesDto, sec::RecoverBody,
        sec::CreateAppPassword, sec::CreatedAppPassword, sec::AppPasswordDto, sec::AppPasswordList,
        v::VaultCreateEntry, v::VaultEntryDto, v::VaultEntryList, v::VaultSetGroup, v::VaultCodeDto,
        v::VaultExportBody, v::VaultConfirmExport, v::VaultExportDto, v::VaultCreateGroup,
        v::VaultGroupDto, v::VaultGroupList, v::VaultCreateToken, v::VaultTokenDto,
        v::VaultCreatedToken, v::VaultTokenList,
        o::CreateOidcClient, o::RedirectUris, o::OidcClientDto, o::IssuedOidcClient,
        o::OidcClientList,
    )),
    modifiers(&BearerAuth, &CommonErrors)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "api_key",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some("An API key: tfk_<id>_<secret>"))
                        .build(),
                ),
            );
            components.add_security_scheme(
                "vault_token",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(
                            "A vault token: tfv_<secret>, scoped to an entry or group",
                        ))
                        .build(),
                ),
            );
        }
    }
}

/// The error answers every operation can give, added where an operation's own annotations do
/// not list them, so that the document says what clients really get (checked by
/// `scripts/api-fuzz.sh`): 400 for a malformed path, query or body; 401 without a valid key
/// (`WWW-Authenticate: Bearer`); 413 and 415 for a body too large or not sent as JSON; 503
/// when the store is busy (`Retry-After`, SECURITY.md INV-09); and `Retry-After` on every 429.
struct CommonErrors;

fn error_response(description: &str, header: Option<(&str, &str)>) -> RefOr<Response> {
    let mut b = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("ErrorBody")))
            .build(),
    );
    if let Some((name, about)) = header {
        b = b.header(name, string_header(about));
    }
    RefOr::T(b.build())
}

fn string_header(about: &str) -> Header {
    HeaderBuilder::new()
        .schema(utoipa::openapi::ObjectBuilder::new().schema_type(Type::String))
        .description(Some(about))
        .build()
}

impl CommonErrors {
    fn add(op: &mut Operation) {
        let mut common = vec![
            ("400", error_response("malformed path, query or body", None)),
            (
                "503",
                error_response(
                    "the store is busy or unreachable: retry later",
                    Some(("Retry-After", "seconds to wait")),
                ),
            ),
        ];
        if op.security.as_ref().is_some_and(|s| !s.is_empty()) {
            common.push((
                "401",
                error_response(
                    "no valid credential",
                    Some(("WWW-Authenticate", "`Bearer`")),
                ),
            ));
        }
        if op.request_body.is_some() {
            common.push(("413", error_response("the body is too large", None)));
            common.push((
                "415",
                error_response("the body is not of the documented content type", None),
            ));
        }
        for (status, response) in common {
            op.responses
                .responses
                .entry(status.to_string())
                .or_insert(response);
        }
        // The headers the error mapping always sets, also where an operation lists the
        // status itself.
        for (status, name, about) in [
            ("401", "WWW-Authenticate", "`Bearer`"),
            ("429", "Retry-After", "seconds to wait"),
            ("503", "Retry-After", "seconds to wait"),
        ] {
            if let Some(RefOr::T(r)) = op.responses.responses.get_mut(status) {
                r.headers
                    .entry(name.to_string())
                    .or_insert_with(|| string_header(about));
            }
        }
    }
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                Self::add(op);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What `scripts/api-fuzz.sh` found missing: every operation documents the answers the
    /// extractors and the store give it, with their headers.
    #[test]
    fn every_operation_documents_the_common_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut operations = 0;
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                operations += 1;
                let responses = &op["responses"];
                let has = |s: &str| responses.get(s).is_some();
                assert!(has("400") && has("503"), "{method} {path}");
                assert!(responses["503"]["headers"]["Retry-After"].is_object());
                if has("429") {
                    assert!(responses["429"]["headers"]["Retry-After"].is_object());
                }
                if op.get("security").is_some() {
                    assert!(has("401"), "{method} {path}");
                    assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
                }
                if op.get("requestBody").is_some() {
                    assert!(has("413") && has("415"), "{method} {path}");
                }
            }
        }
        assert!(operations > 70, "{operations}");
    }
}
