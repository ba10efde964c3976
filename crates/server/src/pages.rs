//! Server-rendered pages reached from emails: the "this wasn't me" link of security notices.
//!
//! Opening the link (GET) only shows what happened and a button, because mail scanners and
//! link previews open links by themselves; the button's POST does the work. The form carries a
//! CSRF token that must equal a cookie set with the page (double submit, scoped to the link's
//! own path, see [`crate::web::Csrf`]). Layout, headers (a CSP that allows no script at all,
//! no framing, no referrer: the URL holds the link's token) and cookies come from
//! [`crate::web`].

use crate::state::AppState;
use crate::web::{CookieFactory, Csrf};
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use twofold_core::service::{RevertState, RevertView};
use twofold_core::{CoreError, RequestMeta};

/// The layout and escaping every page uses (they live in [`crate::web`]).
pub(crate) use crate::web::{escape, page};

pub fn routes() -> Router<AppState> {
    crate::web::hardened(Router::new().route("/wasnt-me/{token}", get(show).post(confirm)))
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

fn error_page(e: &CoreError) -> Response {
    let (status, title, text) = match e {
        CoreError::NotFound(_) => (
            StatusCode::NOT_FOUND,
            "This link is not valid",
            "Check that you opened the whole link from the email.".to_string(),
        ),
        CoreError::Conflict {
            code: "link_used",
            message,
        } => (
            StatusCode::CONFLICT,
            "This link was used already",
            message.clone(),
        ),
        CoreError::Conflict {
            code: "link_expired",
            message,
        } => (StatusCode::GONE, "This link has expired", message.clone()),
        CoreError::Conflict { message, .. } => {
            (StatusCode::CONFLICT, "Please try again", message.clone())
        }
        CoreError::Unavailable => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a minute",
            "The service is busy.".to_string(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Nothing was changed. Please try again later or contact your administrator."
                .to_string(),
        ),
    };
    if status.is_server_error() {
        tracing::error!(error = %e, "\"this wasn't me\" page failed");
    }
    page(status, title, &format!("<p>{}</p>", escape(&text)))
}

fn state_page(view: &RevertView) -> Option<Response> {
    match view.state {
        RevertState::Usable => None,
        RevertState::Used => Some(error_page(&CoreError::conflict(
            "link_used",
            "this link was used already; your account was secured then. Contact your \
             administrator if something still looks wrong",
        ))),
        RevertState::Expired => Some(error_page(&CoreError::conflict(
            "link_expired",
            "this link expired (links work for 7 days); contact your administrator",
        ))),
    }
}

async fn show(State(s): State<AppState>, Path(token): Path<String>) -> Response {
    let view = match s.core.revert_preview(&token).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    if let Some(done) = state_page(&view) {
        return done;
    }
    // Scoped to this one link's path, so two links open in two tabs do not clash.
    let csrf = Csrf::issue(&CookieFactory::of(&s), &format!("/wasnt-me/{token}"));
    let undo = view
        .undo
        .as_deref()
        .map(|u| format!("<li>{}</li>", escape(u)))
        .unwrap_or_default();
    let body = format!(
        "<p>We emailed you because this happened to your account:</p>\n\
         <p class=\"what\">{change}</p>\n\
         <p>If you did not do this, confirm below. We will then:</p>\n<ul>\n{undo}\
         <li>sign you out everywhere,</li>\n\
         <li>lock your two-step verification settings until an administrator has checked \
         them,</li>\n<li>tell your organisation's administrators.</li>\n</ul>\n\
         <form method=\"post\">\n{field}\n\
         <button type=\"submit\">This wasn't me: secure my account</button>\n</form>\n\
         <p>If it was you, close this page: nothing happens.</p>",
        change = escape(&view.change),
        field = csrf.field(),
    );
    let mut resp = page(StatusCode::OK, "Was this you?", &body);
    csrf.attach(&mut resp);
    resp
}

/// The request context of a page a user opened: the client IP from the socket, or from
/// `X-Forwarded-For` as far as configured trusted proxies vouch for it (INV-08). When no
/// vouched-for address exists, the audit row names the proxy and the per-IP budget is not
/// charged to an address the client chose.
pub(crate) fn client_meta(s: &AppState, meta: RequestMeta, headers: &HeaderMap) -> RequestMeta {
    let Some(peer) = meta.ip.as_deref().and_then(|ip| ip.parse().ok()) else {
        return meta;
    };
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let resolved = twofold_geo::resolve_client_ip(peer, &forwarded, &s.proxies);
    RequestMeta {
        ip: Some(resolved.addr().to_string()),
        client_ip: resolved.known().map(|ip| ip.to_string()),
        ..meta
    }
}

async fn confirm(
    State(s): State<AppState>,
    Path(token): Path<String>,
    crate::extract::Meta(meta): crate::extract::Meta,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> Response {
    if !Csrf::verify(&headers, &form.csrf) {
        return page(
            StatusCode::FORBIDDEN,
            "Please open the link again",
            "<p>This confirmation did not come from the page we showed you (or it is too \
             old). Open the link from the email again and press the button there.</p>",
        );
    }
    let meta = client_meta(&s, meta, &headers);
    match s.core.revert_confirm(&meta, &token).await {
        Ok(view) => {
            let undo = view
                .undo
                .as_deref()
                .map(|u| format!("<li>{}</li>", escape(u)))
                .unwrap_or_default();
            page(
                StatusCode::OK,
                "Your account is secured",
                &format!(
                    "<ul>\n{undo}<li>You were signed out everywhere.</li>\n\
                     <li>Your two-step verification settings are locked until an \
                     administrator has checked them.</li>\n\
                     <li>Your organisation's administrators were told.</li>\n</ul>\n\
                     <p>Change your password now, and contact your administrator.</p>"
                ),
            )
        }
        Err(e) => error_page(&e),
    }
}
