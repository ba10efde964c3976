//! The admin console (issue #6): org admins change their organisation's 2FA settings (applied
//! only with the code emailed to them), follow the rollout, reset a user, read the audit log
//! and the delivery status, and see the vault's live codes (issue #7).
//!
//! The way in is the hosted second step (`twofold_core::service::console`): from the
//! integrator (`/console/sso`, with a login hint) or from an operator's one-time link
//! (`twofold console link`), then `/console/callback` sets the console cookie. Cookies (from
//! [`crate::web::CookieFactory`], path `/console`, SameSite=Strict):
//! - `tf_console`: the console session's token (a session row that dies with the admin's
//!   credential generation, sign-out everywhere and revocation);
//! - `tf_console_start`: state and PKCE verifier of a sign-in in progress;
//! - `tf_csrf`: the forms' double-submit token.
//!
//! Every page checks the session and that its user is still an admin; a missing or dead
//! session gets the "signed out" page (401), never another admin's data.

mod admin;
mod signin;
mod views;

use crate::extract::Meta;
use crate::pages::client_meta;
use crate::state::AppState;
use crate::web::{escape, read_cookie, CookieFactory, Csrf, SameSite};
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use twofold_core::service::console::ConsoleAdmin;
use twofold_core::{CoreError, RequestMeta};

const PATH: &str = "/console";
const SESSION_COOKIE: &str = "tf_console";
const START_COOKIE: &str = "tf_console_start";

pub fn routes() -> Router<AppState> {
    crate::web::hardened(
        Router::new()
            .route("/console/sso", get(signin::sso))
            .route("/console/start", get(signin::link))
            .route("/console/callback", get(signin::callback))
            .route("/console/sign-out", post(signin::sign_out))
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

/// The signed-in admin of a console request, with the request's facts for audit rows.
pub(crate) struct Admin {
    pub who: ConsoleAdmin,
    pub meta: RequestMeta,
    pub headers: HeaderMap,
}

impl Admin {
    fn slug(&self) -> &str {
        &self.who.tenant.slug
    }
}

/// A console request without a live console session.
pub(crate) struct SignedOut(Response);

impl IntoResponse for SignedOut {
    fn into_response(self) -> Response {
        self.0
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = SignedOut;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, SignedOut> {
        let meta = match Meta::from_request_parts(parts, s).await {
            Ok(Meta(meta)) => meta,
            Err(_) => RequestMeta::default(),
        };
        let headers = parts.headers.clone();
        let token = read_cookie(&headers, SESSION_COOKIE).unwrap_or("");
        match s.core.console_admin(token).await {
            Ok(Some(who)) => Ok(Admin {
                who,
                meta: client_meta(s, meta, &headers),
                headers,
            }),
            Ok(None) => Err(SignedOut(signed_out_page())),
            Err(e) => Err(SignedOut(error_page(&e))),
        }
    }
}

fn signed_out_page() -> Response {
    crate::web::page(
        StatusCode::UNAUTHORIZED,
        "You are signed out of the console",
        "<p>Your console session ended (or it never started). Open the admin console again \
         from your application, or ask your operator for a new console link.</p>",
    )
}

/// A core error as a console page: the client's mistakes are 4xx with what to do next.
pub(crate) fn error_page(e: &CoreError) -> Response {
    let (status, title, text) = match e {
        CoreError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no such {what} in your organisation."),
        ),
        CoreError::Invalid { field, message } => (
            StatusCode::BAD_REQUEST,
            "Please check the form",
            format!("{field} {message}."),
        ),
        CoreError::Conflict { message, .. } => (
            StatusCode::CONFLICT,
            "This cannot be done now",
            message.clone(),
        ),
        CoreError::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", why.to_string()),
        CoreError::TooMany { .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "Please wait a moment",
            "There were too many attempts. Wait a little, then try again.".into(),
        ),
        CoreError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a minute",
            "The service is busy.".into(),
        ),
        _ => {
            tracing::error!(error = %e, "console page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again; if it keeps failing, tell your operator.".into(),
            )
        }
    };
    crate::web::page(status, title, &format!("<p>{}</p>", escape(&text)))
}

fn csrf_refused() -> Response {
    crate::web::page(
        StatusCode::FORBIDDEN,
        "Please go back and try again",
        "<p>This form did not come from the console page we showed you (or it is too old). \
         Reload the page and try again.</p>",
    )
}

/// A console page: the navigation, then `body`; a CSRF token for its forms is attached
/// (`body` gets the hidden field to put in each form).
pub(crate) fn console_page(
    s: &AppState,
    admin: &Admin,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    let csrf = Csrf::reuse_or_issue(&CookieFactory::of(s), &admin.headers, PATH);
    let field = csrf.field();
    let links = [
        ("/console", "Overview"),
        ("/console/settings", "Settings"),
        ("/console/users", "Users"),
        ("/console/audit", "Audit log"),
        ("/console/outbox", "Messages"),
        ("/console/vault", "Vault"),
    ];
    let nav: Vec<String> = links
        .iter()
        .map(|(href, label)| {
            let current = if *label == title || title.starts_with(label) {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<li><a href=\"{href}\"{current}>{label}</a></li>")
        })
        .collect();
    let html = format!(
        "<nav class=\"console\" aria-label=\"Console\"><p>{org} · signed in as \
         <strong>{who}</strong></p>\n<ul>{nav}</ul>\n\
         <form method=\"post\" action=\"/console/sign-out\">{field}\
         <button type=\"submit\" class=\"plain\">Sign out</button></form></nav>\n{body}",
        org = escape(&admin.who.tenant.name),
        who = escape(&admin.who.user.external_id),
        nav = nav.join(""),
        body = body(&field),
    );
    let mut resp = crate::web::page(status, title, &html);
    csrf.attach(&mut resp);
    resp
}

/// A 303 to a console path (the browser follows with a GET).
pub(crate) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn cookie(s: &AppState, name: &str, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    CookieFactory::of(s).build(
        name,
        value,
        PATH,
        max_age_secs.max(0) as u64,
        SameSite::Strict,
    )
}

fn clear_cookie(s: &AppState, name: &str) -> Option<HeaderValue> {
    CookieFactory::of(s).clear(name, PATH, SameSite::Strict)
}

fn set_cookie(resp: &mut Response, value: Option<HeaderValue>) {
    if let Some(v) = value {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A table's body rows, or one row saying there is nothing to show.
pub(crate) fn rows_or_none(rows: String, columns: usize, none: &str) -> String {
    if rows.is_empty() {
        format!("<tr><td colspan=\"{columns}\">{}</td></tr>\n", escape(none))
    } else {
        rows
    }
}

/// UTC `YYYY-MM-DD HH:MM` of Unix milliseconds, for tables.
pub(crate) fn when(ms: i64) -> String {
    twofold_core::service::notices::human_utc(ms)
}

/// The handlers all take the state and the admin; this keeps their signatures short.
pub(crate) type St = State<AppState>;
