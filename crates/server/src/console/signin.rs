//! Entering and leaving the console: the integrator's login hint or the operator's link
//! starts the hosted second step; the callback turns its code into the console session.

use super::*;
use axum::extract::Query;
use serde::Deserialize;
use twofold_core::service::console::{ConsoleStart, LINK_TTL_MS};

#[derive(Deserialize)]
pub(super) struct SsoQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    login_hint_token: String,
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// The hosted pages take over: their login cookie (path `/oidc`, as they set it) and ours
/// with the state and verifier the callback checks.
fn go_to_second_step(s: &AppState, start: ConsoleStart) -> Response {
    let to = if start.enroll {
        "/oidc/enroll"
    } else {
        "/oidc/challenge"
    };
    let mut resp = crate::oidc::login_cookie_and_go(s, &start.login, to);
    set_cookie(
        &mut resp,
        cookie(
            s,
            START_COOKIE,
            &format!("{}.{}", start.state, start.verifier),
            LINK_TTL_MS / 1000,
        ),
    );
    resp
}

fn started(s: &AppState, r: Result<ConsoleStart, CoreError>) -> Response {
    match r {
        Ok(start) => go_to_second_step(s, start),
        Err(CoreError::Forbidden(why)) => crate::web::page(
            StatusCode::FORBIDDEN,
            "You cannot open the console",
            &format!("<p>{}.</p>", escape(why)),
        ),
        Err(e) => error_page(&e),
    }
}

/// `GET /console/sso?client_id&login_hint_token`: sent by the integrator for a signed-in
/// admin (the same hint `/oidc/authorize` takes).
pub(super) async fn sso(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<SsoQuery>,
) -> Response {
    let meta = client_meta(&s, meta, &headers);
    let r = s
        .core
        .console_from_hint(
            &meta,
            &q.client_id,
            &q.login_hint_token,
            user_agent(&headers),
        )
        .await;
    started(&s, r)
}

#[derive(Deserialize)]
pub(super) struct LinkQuery {
    #[serde(default)]
    link: String,
}

/// `GET /console/start?link=…`: an operator's one-time link (`twofold console link`).
pub(super) async fn link(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<LinkQuery>,
) -> Response {
    let meta = client_meta(&s, meta, &headers);
    let r = s
        .core
        .console_from_link(&meta, &q.link, user_agent(&headers))
        .await;
    started(&s, r)
}

#[derive(Deserialize)]
pub(super) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /console/callback?code&state`: the state must be the one this browser started with
/// (no one can sign an admin into a console session of theirs), and the code is spent with
/// the browser's PKCE verifier.
pub(super) async fn callback(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut resp = callback_inner(&s, meta, &headers, q).await;
    set_cookie(&mut resp, clear_cookie(&s, START_COOKIE));
    resp
}

async fn callback_inner(
    s: &AppState,
    meta: RequestMeta,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    if q.error.is_some() {
        return crate::web::page(
            StatusCode::OK,
            "Sign-in cancelled",
            "<p>You cancelled the console sign-in. Nothing was changed.</p>",
        );
    }
    let started = read_cookie(headers, START_COOKIE).and_then(|v| v.split_once('.'));
    let (Some((state, verifier)), Some(code), Some(got_state)) = (started, q.code, q.state) else {
        return restart_page();
    };
    if !twofold_crypto::ct_eq(state.as_bytes(), got_state.as_bytes()) {
        return restart_page();
    }
    let meta = client_meta(s, meta, headers);
    match s.core.console_exchange(&meta, &code, verifier).await {
        Ok(session) => {
            let mut resp = super::see_other("/console");
            let ttl = (session.expires_at - s.core.now()).max(0) / 1000;
            set_cookie(&mut resp, cookie(s, SESSION_COOKIE, &session.token, ttl));
            resp
        }
        Err(CoreError::Conflict { .. }) => restart_page(),
        Err(e) => error_page(&e),
    }
}

fn restart_page() -> Response {
    crate::web::page(
        StatusCode::BAD_REQUEST,
        "This console sign-in cannot go on",
        "<p>It was started in another browser, completed already, or it expired. Open the \
         admin console again from your application, or ask for a new console link.</p>",
    )
}

/// A form whose only field is its CSRF token (sign out, reset, show a vault code).
#[derive(Deserialize)]
pub(super) struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

impl CsrfOnly {
    pub(super) fn valid(&self, headers: &HeaderMap) -> bool {
        Csrf::verify(headers, &self.csrf)
    }
}

/// `POST /console/sign-out`.
pub(super) async fn sign_out(
    State(s): State<AppState>,
    admin: Admin,
    axum::extract::Form(form): axum::extract::Form<CsrfOnly>,
) -> Response {
    if !form.valid(&admin.headers) {
        return csrf_refused();
    }
    if let Err(e) = s.core.console_sign_out(&admin.meta, &admin.who).await {
        return error_page(&e);
    }
    let mut resp = crate::web::page(
        StatusCode::OK,
        "Signed out",
        "<p>You are signed out of the admin console.</p>",
    );
    set_cookie(&mut resp, clear_cookie(&s, SESSION_COOKIE));
    resp
}
