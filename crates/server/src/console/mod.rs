//! The admin console (issue #6): org admins change their organisation's 2FA settings (applied
//! only with the code emailed to them), follow the rollout, reset a user, read the audit log
//! and the delivery status, and see the vault's live codes (issue #7).
//!
//! The way in is the hosted second step shared with the account pages ([`crate::signed_in`],
//! `twofold_core::service::hosted_session`): from the integrator (`/console/sso`, with a login
//! hint) or from an operator's one-time link (`twofold console link`, console only), then
//! `/console/callback` sets the `tf_console` cookie (path `/console`, SameSite=Strict).
//! Every page checks the session, that it is a console session, and that its user is still
//! an admin; a missing or dead session gets the "signed out" page (401), never another
//! admin's data.

mod admin;
mod signin;
mod views;

pub(crate) use crate::signed_in::{
    csrf_refused, error_page, see_other, when, Area, CsrfForm, CsrfOnly, Visitor,
};
use crate::state::AppState;
use crate::web::{escape, Csrf};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use twofold_core::service::hosted_session::Audience;
use twofold_core::CoreError;

/// The admin console as an [`Area`].
pub(crate) struct Console;

impl Area for Console {
    const AUDIENCE: Audience = Audience::Console;
    const SESSION_COOKIE: &'static str = "tf_console";
    const START_COOKIE: &'static str = "tf_console_start";
    const NAME: &'static str = "the admin console";
    const COME_BACK: &'static str = "Open the admin console again from your application, or \
                                     ask your operator for a new console link.";
    const NAV_CLASS: &'static str = "console";
    const LINKS: &'static [(&'static str, &'static str)] = &[
        ("/console", "Overview"),
        ("/console/settings", "Settings"),
        ("/console/users", "Users"),
        ("/console/audit", "Audit log"),
        ("/console/outbox", "Messages"),
        ("/console/vault", "Vault"),
    ];
}

pub fn routes() -> Router<AppState> {
    use crate::signed_in::{callback, sign_out, sso};
    crate::web::hardened(
        Router::new()
            .route("/console/sso", get(sso::<Console>))
            .route("/console/start", get(signin::link))
            .route("/console/callback", get(callback::<Console>))
            .route("/console/sign-out", post(sign_out::<Console>))
            .route("/console", get(views::overview))
            .route(
                "/console/settings",
                get(admin::settings).post(admin::propose),
            )
            .route(
                "/console/confirm/{proposal}",
                get(admin::confirm_form).post(admin::confirm),
            )
            .route("/console/users", get(admin::users))
            .route("/console/users/{user}/reset", post(admin::reset))
            .route("/console/audit", get(views::audit))
            .route("/console/outbox", get(views::outbox))
            .route("/console/vault", get(views::vault))
            .route("/console/vault/{entry}/code", post(views::vault_code)),
    )
}

/// The signed-in admin of a console request.
pub(crate) type Admin = Visitor<Console>;

/// A console page: the navigation, then `body`; a CSRF token for its forms is attached
/// (`body` gets the hidden field to put in each form).
pub(crate) fn console_page(
    s: &AppState,
    admin: &Admin,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    crate::signed_in::area_page(s, admin, status, title, body)
}

/// The handlers all take the state and the admin; this keeps their signatures short.
pub(crate) type St = State<AppState>;

/// A table's body rows, or one row saying there is nothing to show.
pub(crate) fn rows_or_none(rows: String, columns: usize, none: &str) -> String {
    if rows.is_empty() {
        format!("<tr><td colspan=\"{columns}\">{}</td></tr>\n", escape(none))
    } else {
        rows
    }
}
