//! The account pages (issue #6): a user's own security settings. Their methods (remove one,
//! add an authenticator app, SMS or email, change the phone number), their recovery codes,
//! their trusted devices and sessions, and "sign out everywhere".
//!
//! The way in is the hosted second step shared with the console ([`crate::signed_in`]): the
//! integrator links "Security settings" to `/account/sso?client_id&login_hint_token` with a
//! hint for its signed-in user; a user without a method enrols first. `/account/callback`
//! sets `tf_account` (path `/account`, SameSite=Strict); a console cookie does not open these
//! pages, nor the reverse.
//!
//! Every operation is the core's, on the session's own user (never an id the browser names
//! as a user), with the core's checks and audit rows: ids of factors, sessions and devices
//! are looked up among that user's own (anyone else's is a 404 page). Removing a method,
//! new recovery codes and signing out everywhere need a fresh code ([`proof`]); the phone
//! change needs the codes sent to the old and to the new number. A seed is shown only once,
//! on the page that adds the authenticator app.

mod methods;
mod proof;
mod security;

use crate::signed_in::{area_page, Area, Visitor};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use twofold_core::service::hosted_session::Audience;

/// The account pages as an [`Area`].
pub(crate) struct AccountArea;

impl Area for AccountArea {
    const AUDIENCE: Audience = Audience::Account;
    const SESSION_COOKIE: &'static str = "tf_account";
    const START_COOKIE: &'static str = "tf_account_start";
    const NAME: &'static str = "your security settings";
    const COME_BACK: &'static str =
        "Open your security settings again from your organisation's application.";
    const NAV_CLASS: &'static str = "account";
    const LINKS: &'static [(&'static str, &'static str)] = &[
        ("/account", "Security settings"),
        ("/account/recovery", "Recovery codes"),
        ("/account/devices", "Trusted devices"),
        ("/account/sessions", "Sessions"),
    ];
}

/// The signed-in user of an account request.
pub(crate) type Account = Visitor<AccountArea>;

type St = State<AppState>;

pub fn routes() -> Router<AppState> {
    use crate::signed_in::{callback, sign_out, sso};
    crate::web::hardened(
        Router::new()
            .route("/account/sso", get(sso::<AccountArea>))
            .route("/account/callback", get(callback::<AccountArea>))
            .route("/account/sign-out", post(sign_out::<AccountArea>))
            .route("/account", get(methods::overview))
            .route("/account/methods/totp", post(methods::add_totp))
            .route(
                "/account/methods/sms",
                get(methods::sms_form).post(methods::add_sms),
            )
            .route(
                "/account/methods/email",
                get(methods::email_form).post(methods::add_email),
            )
            .route(
                "/account/methods/key",
                get(methods::key_form_page).post(methods::add_key),
            )
            .route("/account/methods/resend", post(methods::resend))
            .route("/account/methods/confirm", post(methods::confirm))
            .route(
                "/account/methods/{factor}/remove",
                get(methods::remove_form).post(methods::remove),
            )
            .route(
                "/account/methods/{factor}/phone",
                get(methods::phone_form).post(methods::phone_start),
            )
            .route(
                "/account/methods/{factor}/phone/{change}",
                post(methods::phone_confirm),
            )
            .route(
                "/account/methods/{factor}/phone/{change}/resend",
                post(methods::phone_resend),
            )
            .route("/account/send-code", post(proof::send_code))
            .route(
                "/account/recovery",
                get(security::recovery).post(security::regenerate),
            )
            .route("/account/devices", get(security::devices))
            .route("/account/devices/{device}/forget", post(security::forget))
            .route("/account/sessions", get(security::sessions))
            .route("/account/sessions/{session}/revoke", post(security::revoke))
            .route(
                "/account/sign-out-everywhere",
                post(security::sign_out_everywhere),
            ),
    )
}

/// An account page: the navigation, then `body(csrf_field)`.
fn account_page(
    s: &AppState,
    acc: &Account,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    area_page(s, acc, status, title, body)
}

/// The factor kind of a security key.
const KEY_KIND: &str = "webauthn";

/// "Authenticator app", "Text message", "Email", "Security key".
fn method_name(kind: &str) -> &'static str {
    match kind {
        "totp" => "Authenticator app",
        "sms" => "Text message",
        KEY_KIND => "Security key",
        _ => "Email",
    }
}

/// A status line above a page's content (plain text).
fn note(text: &str) -> String {
    format!(
        "<p class=\"note\" role=\"status\">{}</p>\n",
        crate::web::escape(text)
    )
}
