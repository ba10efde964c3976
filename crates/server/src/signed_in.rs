//! What the admin console and the account pages share: the way in through the hosted second
//! step (`twofold_core::service::hosted_session`), their session cookie, the extractor that
//! checks it on every request, the page with navigation, and the error pages. An [`Area`]
//! says which of the two (its [`Audience`], cookies and wording).
//!
//! Cookies (from [`crate::web::CookieFactory`], path the area's, SameSite=Strict):
//! - `tf_console` / `tf_account`: the session's token (a session row that dies with the user's
//!   credential generation, sign-out everywhere and revocation);
//! - `tf_console_start` / `tf_account_start`: state and PKCE verifier of a sign-in in progress;
//! - `tf_csrf`: the forms' double-submit token.
//!
//! A missing or dead session, or one of the other area, gets the area's "signed out" page
//! (401), never anyone's data.

use crate::extract::Meta;
use crate::pages::client_meta;
use crate::state::AppState;
use crate::web::{escape, read_cookie, CookieFactory, Csrf, SameSite};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::marker::PhantomData;
use twofold_core::service::hosted_session::{Audience, SignInStart, SignedIn, LINK_TTL_MS};
use twofold_core::{CoreError, RequestMeta};

/// One of Twofold's own signed-in areas.
pub(crate) trait Area: Send + Sync + 'static {
    const AUDIENCE: Audience;
    const SESSION_COOKIE: &'static str;
    const START_COOKIE: &'static str;
    /// "the admin console", "your security settings": for the pages' sentences.
    const NAME: &'static str;
    /// What to do to come back, after "You are signed out of …".
    const COME_BACK: &'static str;
    /// The `class` of its navigation (the stylesheet's layout for it).
    const NAV_CLASS: &'static str;
    /// Its navigation: path and label.
    const LINKS: &'static [(&'static str, &'static str)];
}

fn path<A: Area>() -> &'static str {
    A::AUDIENCE.path()
}

/// The signed-in user of a request to area `A`, with the request's facts for audit rows.
pub(crate) struct Visitor<A> {
    pub who: SignedIn,
    pub meta: RequestMeta,
    pub headers: HeaderMap,
    area: PhantomData<A>,
}

impl<A> Visitor<A> {
    pub(crate) fn slug(&self) -> &str {
        &self.who.tenant.slug
    }
}

/// A request without a live session of the area.
pub(crate) struct SignedOut(Response);

impl IntoResponse for SignedOut {
    fn into_response(self) -> Response {
        self.0
    }
}

impl<A: Area> FromRequestParts<AppState> for Visitor<A> {
    type Rejection = SignedOut;

    async fn from_request_parts(parts: &mut Parts, s: &AppState) -> Result<Self, SignedOut> {
        let meta = match Meta::from_request_parts(parts, s).await {
            Ok(Meta(meta)) => meta,
            Err(_) => RequestMeta::default(),
        };
        let headers = parts.headers.clone();
        let token = read_cookie(&headers, A::SESSION_COOKIE).unwrap_or("");
        match s.core.signed_in(A::AUDIENCE, token).await {
            Ok(Some(who)) => Ok(Visitor {
                who,
                meta: client_meta(s, meta, &headers),
                headers,
                area: PhantomData,
            }),
            Ok(None) => Err(SignedOut(signed_out_page::<A>(s, StatusCode::UNAUTHORIZED))),
            Err(e) => Err(SignedOut(error_page(&e))),
        }
    }
}

/// "You are signed out of …", with the way back; 401 for a request that needed a session,
/// 200 after a sign-out.
pub(crate) fn signed_out_page<A: Area>(s: &AppState, status: StatusCode) -> Response {
    let mut resp = crate::web::page(
        status,
        &format!("You are signed out of {}", A::NAME),
        &format!(
            "<p>Your session ended (or it never started). {}</p>",
            A::COME_BACK
        ),
    );
    set_cookie(&mut resp, clear_cookie::<A>(s, A::SESSION_COOKIE));
    resp
}

/// A core error as a page: the client's mistakes are 4xx with what to do next.
pub(crate) fn error_page(e: &CoreError) -> Response {
    let (status, title, text) = match e {
        CoreError::NotFound(what) => (
            StatusCode::NOT_FOUND,
            "Not found",
            format!("There is no such {what} here."),
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
            tracing::error!(error = %e, "signed-in page failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "Please try again; if it keeps failing, tell your administrator.".into(),
            )
        }
    };
    crate::web::page(status, title, &format!("<p>{}</p>", escape(&text)))
}

pub(crate) fn csrf_refused() -> Response {
    crate::web::page(
        StatusCode::FORBIDDEN,
        "Please go back and try again",
        "<p>This form did not come from the page we showed you (or it is too old). Reload the \
         page and try again.</p>",
    )
}

/// A page of the area: the navigation (current page marked, sign-out button), then `body`;
/// a CSRF token for its forms is attached (`body` gets the hidden field for each form).
pub(crate) fn area_page<A: Area>(
    s: &AppState,
    v: &Visitor<A>,
    status: StatusCode,
    title: &str,
    body: impl FnOnce(&str) -> String,
) -> Response {
    let csrf = Csrf::reuse_or_issue(&CookieFactory::of(s), &v.headers, path::<A>());
    let field = csrf.field();
    let nav: Vec<String> = A::LINKS
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
        "<nav class=\"{class}\" aria-label=\"{name}\"><p>{org} · signed in as \
         <strong>{who}</strong></p>\n<ul>{nav}</ul>\n\
         <form method=\"post\" action=\"{path}/sign-out\">{field}\
         <button type=\"submit\" class=\"plain\">Sign out</button></form></nav>\n{body}",
        class = A::NAV_CLASS,
        name = escape(A::NAME),
        org = escape(&v.who.tenant.name),
        who = escape(&v.who.user.external_id),
        nav = nav.join(""),
        path = path::<A>(),
        body = body(&field),
    );
    let mut resp = crate::web::page(status, title, &html);
    csrf.attach(&mut resp);
    resp
}

/// A 303 to a path of ours (the browser follows with a GET).
pub(crate) fn see_other(location: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

fn cookie<A: Area>(
    s: &AppState,
    name: &str,
    value: &str,
    max_age_secs: i64,
) -> Option<HeaderValue> {
    CookieFactory::of(s).build(
        name,
        value,
        path::<A>(),
        max_age_secs.max(0) as u64,
        SameSite::Strict,
    )
}

fn clear_cookie<A: Area>(s: &AppState, name: &str) -> Option<HeaderValue> {
    CookieFactory::of(s).clear(name, path::<A>(), SameSite::Strict)
}

pub(crate) fn set_cookie(resp: &mut Response, value: Option<HeaderValue>) {
    if let Some(v) = value {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The area's session cookie with a (new) session token, e.g. after a change that renewed
/// the session.
pub(crate) fn session_cookie<A: Area>(
    s: &AppState,
    resp: &mut Response,
    session: &twofold_core::service::IssuedToken,
) {
    let ttl = (session.expires_at - s.core.now()).max(0) / 1000;
    set_cookie(resp, cookie::<A>(s, A::SESSION_COOKIE, &session.token, ttl));
}

/// UTC `YYYY-MM-DD HH:MM` of Unix milliseconds, for tables.
pub(crate) fn when(ms: i64) -> String {
    twofold_core::service::notices::human_utc(ms)
}

pub(crate) use crate::web::forms::{CsrfForm, CsrfOnly};

// ------------------------------------------------------------ the way in and out

#[derive(Deserialize)]
pub(crate) struct SsoQuery {
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    login_hint_token: String,
}

pub(crate) fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// The hosted pages take over: their login cookie (path `/oidc`, as they set it) and ours
/// with the state and verifier the callback checks.
fn go_to_second_step<A: Area>(s: &AppState, start: SignInStart) -> Response {
    let to = if start.enroll {
        "/oidc/enroll"
    } else {
        "/oidc/challenge"
    };
    let mut resp = crate::oidc::login_cookie_and_go(s, &start.login, to);
    set_cookie(
        &mut resp,
        cookie::<A>(
            s,
            A::START_COOKIE,
            &format!("{}.{}", start.state, start.verifier),
            LINK_TTL_MS / 1000,
        ),
    );
    resp
}

/// A started sign-in goes to the second step; a refusal says so, and nothing about why.
pub(crate) fn started<A: Area>(s: &AppState, r: Result<SignInStart, CoreError>) -> Response {
    match r {
        Ok(start) => go_to_second_step::<A>(s, start),
        Err(CoreError::Forbidden(why)) => crate::web::page(
            StatusCode::FORBIDDEN,
            &format!("You cannot open {}", A::NAME),
            &format!("<p>{}.</p>", escape(why)),
        ),
        Err(e) => error_page(&e),
    }
}

/// `GET {area}/sso?client_id&login_hint_token`: sent by the integrator for a user it has
/// signed in (the same hint `/oidc/authorize` takes).
pub(crate) async fn sso<A: Area>(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<SsoQuery>,
) -> Response {
    let meta = client_meta(&s, meta, &headers);
    let r = s
        .core
        .sign_in_from_hint(
            A::AUDIENCE,
            &meta,
            &q.client_id,
            &q.login_hint_token,
            user_agent(&headers),
        )
        .await;
    started::<A>(&s, r)
}

#[derive(Deserialize)]
pub(crate) struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET {area}/callback?code&state`: the state must be the one this browser started with (no
/// one can sign a user into a session of theirs), and the code is spent with the browser's
/// PKCE verifier.
pub(crate) async fn callback<A: Area>(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let mut resp = callback_inner::<A>(&s, meta, &headers, q).await;
    set_cookie(&mut resp, clear_cookie::<A>(&s, A::START_COOKIE));
    resp
}

async fn callback_inner<A: Area>(
    s: &AppState,
    meta: RequestMeta,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Response {
    if q.error.is_some() {
        return crate::web::page(
            StatusCode::OK,
            "Sign-in cancelled",
            &format!(
                "<p>You cancelled the sign-in to {}. Nothing was changed.</p>",
                A::NAME
            ),
        );
    }
    let started = read_cookie(headers, A::START_COOKIE).and_then(|v| v.split_once('.'));
    let (Some((state, verifier)), Some(code), Some(got_state)) = (started, q.code, q.state) else {
        return restart_page::<A>();
    };
    if !twofold_crypto::ct_eq(state.as_bytes(), got_state.as_bytes()) {
        return restart_page::<A>();
    }
    let meta = client_meta(s, meta, headers);
    match s
        .core
        .sign_in_exchange(A::AUDIENCE, &meta, &code, verifier)
        .await
    {
        Ok(session) => {
            let mut resp = see_other(path::<A>());
            session_cookie::<A>(s, &mut resp, &session);
            resp
        }
        Err(CoreError::Conflict { .. }) => restart_page::<A>(),
        Err(e) => error_page(&e),
    }
}

fn restart_page<A: Area>() -> Response {
    crate::web::page(
        StatusCode::BAD_REQUEST,
        "This sign-in cannot go on",
        &format!(
            "<p>It was started in another browser, completed already, or it expired. {}</p>",
            A::COME_BACK
        ),
    )
}

/// `POST {area}/sign-out`.
pub(crate) async fn sign_out<A: Area>(
    State(s): State<AppState>,
    v: Visitor<A>,
    axum::extract::Form(form): axum::extract::Form<CsrfOnly>,
) -> Response {
    if !form.valid(&v.headers) {
        return csrf_refused();
    }
    if let Err(e) = s.core.sign_out_of(&v.meta, &v.who).await {
        return error_page(&e);
    }
    signed_out_page::<A>(&s, StatusCode::OK)
}
