//! Server-rendered pages reached from emails: the "this wasn't me" link of security notices.
//!
//! Opening the link (GET) only shows what happened and a button, because mail scanners and
//! link previews open links by themselves; the button's POST does the work. The form carries a
//! CSRF token that must equal a cookie set with the page (double submit: HttpOnly,
//! SameSite=Strict, scoped to the link's own path, Secure when `public_url` is https), compared
//! in constant time. Every page is sent
//! with a CSP that allows no script at all, may not be framed, and leaks no referrer (the URL
//! holds the link's token).

use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use twofold_core::service::{RevertState, RevertView};
use twofold_core::{CoreError, RequestMeta};

const CSRF_COOKIE: &str = "tf_csrf";

pub fn routes() -> Router<AppState> {
    Router::new().route("/wasnt-me/{token}", get(show).post(confirm))
}

#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page around `body` (already escaped HTML), with the page headers.
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>\
         body{{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;\
         padding:24px;background:#f5f5f5;color:#1a1a1a;line-height:1.5}}\
         main{{max-width:32rem;margin:0 auto;background:#fff;padding:24px;border-radius:8px}}\
         h1{{font-size:1.4rem;margin-top:0}}\
         button{{font-size:1rem;padding:12px 20px;border:0;border-radius:6px;\
         background:#b00020;color:#fff;cursor:pointer}}\
         button:focus{{outline:3px solid #1a1a1a;outline-offset:2px}}\
         .what{{background:#f0f0f0;padding:12px;border-radius:6px}}\
         </style>\n</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
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
    let csrf = twofold_crypto::random_token(32);
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
         <form method=\"post\">\n<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\n\
         <button type=\"submit\">This wasn't me: secure my account</button>\n</form>\n\
         <p>If it was you, close this page: nothing happens.</p>",
        change = escape(&view.change),
    );
    let mut resp = page(StatusCode::OK, "Was this you?", &body);
    // Scoped to this one link's path, so two links open in two tabs do not clash.
    let secure = if s.https { "; Secure" } else { "" };
    let cookie = format!(
        "{CSRF_COOKIE}={csrf}; Path=/wasnt-me/{token}{secure}; HttpOnly; SameSite=Strict; \
         Max-Age=3600"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The request context of a page a user opened: the client IP from the socket, or from
/// `X-Forwarded-For` as far as configured trusted proxies vouch for it (INV-08). When no
/// vouched-for address exists, the audit row names the proxy and the per-IP budget is not
/// charged to an address the client chose.
fn client_meta(s: &AppState, meta: RequestMeta, headers: &HeaderMap) -> RequestMeta {
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

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

async fn confirm(
    State(s): State<AppState>,
    Path(token): Path<String>,
    crate::extract::Meta(meta): crate::extract::Meta,
    headers: HeaderMap,
    Form(form): Form<ConfirmForm>,
) -> Response {
    let expected = cookie(&headers, CSRF_COOKIE).unwrap_or("");
    let ok =
        !expected.is_empty() && twofold_crypto::ct_eq(expected.as_bytes(), form.csrf.as_bytes());
    if !ok {
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
