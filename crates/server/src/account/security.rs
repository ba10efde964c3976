//! Recovery codes, trusted devices, sessions and signing out everywhere.

use super::proof::{proof_form, ProofForm, Sensitive, Shown};
use super::*;
use crate::oidc_enroll::{recovery_codes_page, ShownCodes};
use crate::signed_in::{csrf_refused, error_page, signed_out_page, when, CsrfForm, CsrfOnly};
use crate::web::escape;
use axum::extract::{Form, Path};
use twofold_core::CoreError;

// ------------------------------------------------------------ recovery codes

/// The recovery codes page: how many are left, and new ones for a fresh code.
pub(super) async fn recovery_page(s: &AppState, acc: &Account, shown: Shown) -> Response {
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    let (status, provers) = match tokio::try_join!(
        s.core.recovery_status(actor, slug, ext),
        super::proof::provers_of(s, acc, &Sensitive::RecoveryCodes)
    ) {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    account_page(s, acc, shown.status, "Recovery codes", |field| {
        let left = match status.remaining {
            0 => "<p><strong>You have no recovery codes left.</strong> Make new ones: without \
                  them, losing your phone locks you out.</p>\n"
                .to_string(),
            1 => "<p>You have <strong>1</strong> unused recovery code.</p>\n".to_string(),
            n => format!("<p>You have <strong>{n}</strong> unused recovery codes.</p>\n"),
        };
        format!(
            "{left}<p>If you lose your phone, a recovery code signs you in once. New codes \
             replace all the old ones.</p>\n<h2>Make new recovery codes</h2>\n{}",
            proof_form(
                field,
                "/account/recovery",
                &Sensitive::RecoveryCodes,
                &provers,
                &shown,
                "Make new recovery codes"
            )
        )
    })
}

/// `GET /account/recovery`
pub(super) async fn recovery(State(s): St, acc: Account) -> Response {
    recovery_page(&s, &acc, Shown::fresh()).await
}

/// `POST /account/recovery`: new codes (the old ones die), shown once, for a fresh code.
pub(super) async fn regenerate(State(s): St, acc: Account, Form(f): Form<ProofForm>) -> Response {
    if !f.valid(&acc) {
        return csrf_refused();
    }
    let made = s
        .core
        .regenerate_recovery_codes(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            f.proof(&Sensitive::RecoveryCodes.binding(&acc)),
        )
        .await;
    match made {
        Ok((_, Some(codes))) => recovery_codes_page(
            &s,
            &ShownCodes {
                tenant_name: &acc.who.tenant.name,
                codes: &codes.codes,
                done: "New recovery codes are ready; the old ones no longer work.",
                next: (
                    "/account",
                    "I have saved them: back to your security settings",
                ),
            },
        ),
        Ok((_, None)) | Err(CoreError::Invalid { .. }) => {
            recovery_page(&s, &acc, Shown::refused(&f)).await
        }
        Err(e) => error_page(&e),
    }
}

// ------------------------------------------------------------ trusted devices

async fn devices_page(s: &AppState, acc: &Account, notice: &str) -> Response {
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    let devices = match s.core.list_devices(actor, slug, ext).await {
        Ok(d) => d,
        Err(e) => return error_page(&e),
    };
    account_page(s, acc, StatusCode::OK, "Trusted devices", |field| {
        let rows: String = devices
            .iter()
            .filter(|d| d.active)
            .map(|d| {
                format!(
                    "<li><strong>{label}</strong><br>\nTrusted since {added} · last used \
                     {used} · until {until}\n\
                     <form method=\"post\" action=\"/account/devices/{id}/forget\">{field}\
                     <button type=\"submit\" class=\"plain\" aria-label=\"Forget {label}\">\
                     Forget</button></form></li>\n",
                    label = escape(&d.label),
                    added = escape(&when(d.created_at)),
                    used = escape(&d.last_used_at.map(when).unwrap_or_else(|| "—".into())),
                    until = escape(&when(d.expires_at)),
                    id = escape(&d.id),
                )
            })
            .collect();
        let table = if rows.is_empty() {
            "<p>No device is trusted: every sign-in asks for a code.</p>\n".to_string()
        } else {
            format!("<ul class=\"items\">\n{rows}</ul>\n")
        };
        format!(
            "{notice}<p>A trusted device signs in without a code until the date shown. Forget \
             one you no longer use or do not recognise.</p>\n{table}"
        )
    })
}

/// `GET /account/devices`
pub(super) async fn devices(State(s): St, acc: Account) -> Response {
    devices_page(&s, &acc, "").await
}

/// `POST /account/devices/{device}/forget`: the device asks for a code again (a device that
/// is not the user's is not found).
pub(super) async fn forget(
    State(s): St,
    acc: Account,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !f.valid(&acc.headers) {
        return csrf_refused();
    }
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    match s.core.revoke_device(actor, &acc.meta, slug, ext, &id).await {
        Ok(()) => devices_page(&s, &acc, &note("The device was forgotten.")).await,
        Err(e) => error_page(&e),
    }
}

// ------------------------------------------------------------ sessions

/// Where a session was opened, in words.
fn session_place(client_id: Option<&str>) -> String {
    use twofold_core::service::hosted_session::{ACCOUNT_APP, CONSOLE_APP};
    match client_id {
        Some(ACCOUNT_APP) => "These security settings".into(),
        Some(CONSOLE_APP) => "The admin console".into(),
        Some(app) => format!("Application {app}"),
        None => "Your organisation's application".into(),
    }
}

/// The sessions page: the live sessions (this one marked), and signing out everywhere.
pub(super) async fn sessions_page(s: &AppState, acc: &Account, shown: Shown) -> Response {
    sessions_page_with(s, acc, shown, "").await
}

async fn sessions_page_with(s: &AppState, acc: &Account, shown: Shown, notice: &str) -> Response {
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    let (sessions, provers) = match tokio::try_join!(
        s.core.list_sessions(actor, slug, ext),
        super::proof::provers_of(s, acc, &Sensitive::SignOutEverywhere)
    ) {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    account_page(s, acc, shown.status, "Sessions", |field| {
        let rows: String = sessions
            .iter()
            .filter(|v| v.active)
            .map(|v| {
                let place = session_place(v.client_id.as_deref());
                let change = if v.id == acc.who.session_id {
                    "<br>\n<strong>This session</strong>".to_string()
                } else {
                    format!(
                        "\n<form method=\"post\" action=\"/account/sessions/{id}/revoke\">\
                         {field}<button type=\"submit\" class=\"plain\" aria-label=\"Sign out \
                         the session started {started}\">Sign out</button></form>",
                        id = escape(&v.id),
                        started = escape(&when(v.created_at)),
                    )
                };
                format!(
                    "<li><strong>{place}</strong><br>\nStarted {started} · last active \
                     {seen}{change}</li>\n",
                    place = escape(&place),
                    started = escape(&when(v.created_at)),
                    seen = escape(&when(v.last_seen_at)),
                )
            })
            .collect();
        format!(
            "{notice}<ul class=\"items\">\n{rows}</ul>\n\
             <h2>Sign out everywhere</h2>\n<p>Every session ends, this one too, and every \
             trusted device asks for a code again. Do it if you lost a device or think someone \
             else signed in.</p>\n{}",
            proof_form(
                field,
                "/account/sign-out-everywhere",
                &Sensitive::SignOutEverywhere,
                &provers,
                &shown,
                "Sign out everywhere"
            )
        )
    })
}

/// `GET /account/sessions`
pub(super) async fn sessions(State(s): St, acc: Account) -> Response {
    sessions_page(&s, &acc, Shown::fresh()).await
}

/// `POST /account/sessions/{session}/revoke`: one of the user's own sessions ends.
pub(super) async fn revoke(
    State(s): St,
    acc: Account,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !f.valid(&acc.headers) {
        return csrf_refused();
    }
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    match s
        .core
        .revoke_session(actor, &acc.meta, slug, ext, &id)
        .await
    {
        Ok(()) if id == acc.who.session_id => signed_out_page::<AccountArea>(&s, StatusCode::OK),
        Ok(()) => {
            let notice = note("The session was signed out.");
            sessions_page_with(&s, &acc, Shown::fresh(), &notice).await
        }
        Err(e) => error_page(&e),
    }
}

/// `POST /account/sign-out-everywhere`: with a fresh code, every session and trusted device
/// of the user ends, this one included: the signed-out page follows.
pub(super) async fn sign_out_everywhere(
    State(s): St,
    acc: Account,
    Form(f): Form<ProofForm>,
) -> Response {
    if !f.valid(&acc) {
        return csrf_refused();
    }
    match s
        .core
        .account_sign_out_everywhere(
            &acc.who,
            &acc.meta,
            f.proof(&Sensitive::SignOutEverywhere.binding(&acc)),
        )
        .await
    {
        Ok(v) if v.is_accepted() => signed_out_page::<AccountArea>(&s, StatusCode::OK),
        Ok(_) | Err(CoreError::Invalid { .. }) => sessions_page(&s, &acc, Shown::refused(&f)).await,
        Err(e) => error_page(&e),
    }
}
