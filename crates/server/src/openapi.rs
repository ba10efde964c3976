//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use crate::api::{
    self, dto, login as l, messaging as m, oidc as o, security as sec, vault as v, webhooks as w,
};
use crate::error::{ErrorBody, ErrorDetail};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
    modifiers(&BearerAuth)
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
