//! The OpenID Connect provider over HTTP (OIDC Core 1.0, Discovery 1.0, RFC 6749, RFC 7636):
//! discovery, the JWKS, the authorization endpoint, the token endpoint, and the hosted
//! challenge pages the browser sees between the two (the enrolment pages are in
//! [`crate::oidc_enroll`]).
//!
//! The logic is in `twofold_core::service::oidc`; this module parses, sets cookies and renders.
//! Cookies (all from [`crate::web::cookie`], path `/oidc`):
//! - `tf_login`: the pending login's token, SameSite=Lax because the integrator's redirect to
//!   `/oidc/authorize` is a cross-site top-level navigation; it lives as long as the pending
//!   login and is useless once that completes (INV-04).
//! - `tf_device`: the remembered-device token, when the user ticked "remember this device".
//! - `tf_csrf`: the double-submit CSRF token of the forms ([`crate::web::Csrf`]).
//!
//! Errors follow RFC 6749 §4.1.2.1: sent back to the client only when its redirect URI is
//! registered for it; otherwise a page, so an open redirect is impossible.

use crate::extract::Meta;
use crate::pages::client_meta;
use crate::state::AppState;
pub(crate) use crate::web::forms::{CsrfOnly, FactorForm, KeyForm};
use crate::web::keys::{allow_own_scripts, key_form, KeyMode};
use crate::web::{csp_with_form_action, escape, page, read_cookie, CookieFactory, Csrf, SameSite};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use twofold_core::oidc::{ACR_1FA, ACR_2FA, ACR_REMEMBERED};
use twofold_core::service::oidc::{
    AuthorizeError, AuthorizeRequest, Authorized, HostedStep, HostedView, TokenError, TokenRequest,
};
use twofold_core::service::KeyCeremony;
use twofold_core::{CoreError, RequestMeta};

pub(crate) const LOGIN_COOKIE: &str = "tf_login";
const DEVICE_COOKIE: &str = "tf_device";
pub(crate) const COOKIE_PATH: &str = "/oidc";

pub fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route("/oidc/authorize", get(authorize))
        .route("/oidc/challenge", get(challenge))
        .route("/oidc/challenge/verify", post(verify))
        .route("/oidc/challenge/key", post(key_verify))
        .route("/oidc/challenge/send", post(send_code))
        .route("/oidc/challenge/recover", get(recover_form).post(recover))
        .route("/oidc/challenge/cancel", post(cancel))
        .merge(crate::oidc_enroll::routes());
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oidc/jwks", get(jwks))
        .route("/oidc/token", post(token))
        .merge(crate::web::hardened(pages))
}

/// Adds a `Set-Cookie` (several may be set on one response).
fn set_cookie(resp: &mut Response, cookie: Option<HeaderValue>) {
    if let Some(v) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

fn cookie(s: &AppState, name: &str, value: &str, max_age_secs: i64) -> Option<HeaderValue> {
    CookieFactory::of(s).build(
        name,
        value,
        COOKIE_PATH,
        max_age_secs.max(0) as u64,
        SameSite::Lax,
    )
}

/// The page's forms post to this origin, and the verify and recover POSTs redirect to the
/// client: Chromium checks `form-action` on that redirect, so the client's origin is allowed
/// too (CSP Level 3).
pub(crate) fn allow_redirect_to(resp: &mut Response, origin: &str) {
    let scripts = resp
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("script-src"));
    if let Some(csp) = csp_with_form_action(&[origin]) {
        resp.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    // A page that runs the key script keeps running it.
    if scripts {
        allow_own_scripts(resp);
    }
}

// ------------------------------------------------------------ discovery and keys

async fn discovery(State(s): State<AppState>) -> Response {
    let iss = s.core.oidc_issuer();
    let doc = serde_json::json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/oidc/authorize"),
        "token_endpoint": format!("{iss}/oidc/token"),
        "jwks_uri": format!("{iss}/oidc/jwks"),
        "scopes_supported": ["openid"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "sid"],
        "acr_values_supported": [ACR_2FA, ACR_REMEMBERED, ACR_1FA],
        "authorization_response_iss_parameter_supported": true,
        "claims_parameter_supported": false,
        "request_parameter_supported": false,
    });
    axum::Json(doc).into_response()
}

async fn jwks(State(s): State<AppState>) -> Response {
    match s.core.oidc_jwks().await {
        Ok(doc) => axum::Json(doc).into_response(),
        Err(e) => crate::error::ApiError::from(e).into_response(),
    }
}

// ------------------------------------------------------------ pages

pub(crate) fn core_error_page(e: &CoreError) -> Response {
    match e {
        CoreError::Conflict {
            code: "invalid_login_token",
            ..
        } => page(
            StatusCode::BAD_REQUEST,
            "This sign-in has ended",
            "<p>It was completed, cancelled or it expired. Go back to the application and \
             sign in again.</p>",
        ),
        CoreError::Unavailable => page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Please try again in a minute",
            "<p>The service is busy.</p>",
        ),
        CoreError::TooMany { .. } => page(
            StatusCode::TOO_MANY_REQUESTS,
            "Please wait a moment",
            "<p>There were too many attempts. Wait a little, then try again.</p>",
        ),
        // Something the browser sent does not fit this sign-in (a method switched off
        // meanwhile, a factor that is not the user's): a 4xx, never a 500.
        CoreError::Conflict { .. } | CoreError::Invalid { .. } | CoreError::NotFound(_) => page(
            StatusCode::BAD_REQUEST,
            "This sign-in cannot go on",
            "<p>Go back to the application and sign in again.</p>",
        ),
        _ => {
            tracing::error!(error = %e, "hosted sign-in page failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "<p>Please go back to the application and sign in again.</p>",
            )
        }
    }
}

/// A 303 to `location` (absolute or path): the browser follows it with a GET.
pub(crate) fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            resp
        }
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "This request cannot be sent back",
            "<p>Go back to the application and sign in again.</p>",
        ),
    }
}

/// A page that explains, then a link back to the client carrying the OAuth error.
pub(crate) fn back_page(status: StatusCode, title: &str, text: &str, back: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p>{}</p>\n<p><a href=\"{}\">Return to the application</a></p>",
            escape(text),
            escape(back)
        ),
    )
}

pub(crate) fn clear(s: &AppState, resp: &mut Response, name: &str) {
    set_cookie(
        resp,
        CookieFactory::of(s).clear(name, COOKIE_PATH, SameSite::Lax),
    );
}

/// Query and form parameters as pairs, each name at most once (RFC 6749 §3.1: "Request and
/// response parameters MUST NOT be included more than once"); `None` if one repeats.
fn single(pairs: Vec<(String, String)>) -> Option<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for (k, v) in pairs {
        if out.insert(k, v).is_some() {
            return None;
        }
    }
    Some(out)
}

async fn authorize(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let Some(mut q) = single(pairs) else {
        return page(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            "<p>A parameter was repeated. Go back to the application and try again.</p>",
        );
    };
    let meta = client_meta(&s, meta, &headers);
    let req = AuthorizeRequest {
        client_id: q.remove("client_id").unwrap_or_default(),
        redirect_uri: q.remove("redirect_uri").unwrap_or_default(),
        response_type: q.remove("response_type"),
        scope: q.remove("scope"),
        state: q.remove("state"),
        nonce: q.remove("nonce"),
        code_challenge: q.remove("code_challenge"),
        code_challenge_method: q.remove("code_challenge_method"),
        login_hint_token: q.remove("login_hint_token"),
        device_token: read_cookie(&headers, DEVICE_COOKIE).map(String::from),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(String::from),
    };
    match s.core.oidc_authorize(&meta, req).await {
        Ok(Authorized::Redirect(to)) => see_other(&to),
        Ok(Authorized::Challenge(pending)) => login_cookie_and_go(&s, &pending, "/oidc/challenge"),
        Ok(Authorized::Enroll(pending)) => login_cookie_and_go(&s, &pending, "/oidc/enroll"),
        Ok(Authorized::Denied { back, reason }) => {
            let text = match reason.as_str() {
                "locked" => {
                    "Two-step verification is locked for your account after too many \
                             wrong codes. Contact your administrator."
                }
                "client_unsupported" => {
                    "This application cannot be used while two-step \
                                           verification is required for you."
                }
                _ => "Your organisation's settings do not allow this sign-in.",
            };
            back_page(StatusCode::FORBIDDEN, "You cannot sign in", text, &back)
        }
        Err(AuthorizeError::Back(to)) => see_other(&to),
        Err(AuthorizeError::Untrusted(why)) => page(
            StatusCode::BAD_REQUEST,
            "This sign-in request is not valid",
            &format!(
                "<p>The application that sent you here is not registered for this redirect \
                 ({}). Go back to the application and try again, or tell its support.</p>",
                escape(why)
            ),
        ),
        Err(AuthorizeError::Core(e)) => core_error_page(&e),
    }
}

/// The login cookie for `pending`, and a 303 to the hosted page that goes on with it.
pub(crate) fn login_cookie_and_go(
    s: &AppState,
    pending: &twofold_core::service::IssuedToken,
    to: &str,
) -> Response {
    let mut resp = see_other(to);
    let ttl = (pending.expires_at - s.core.now()).max(0) / 1000;
    set_cookie(&mut resp, cookie(s, LOGIN_COOKIE, &pending.token, ttl));
    resp
}

/// The page's notice above the form.
pub(crate) enum Notice {
    None,
    /// Wrong, replayed, throttled or locked: one message (INV-11).
    Refused,
    /// A security key's answer was not accepted: one message, whatever the reason.
    KeyRefused,
    Sent {
        destination: String,
        wait_secs: i64,
    },
    Wait {
        secs: i64,
    },
}

impl Notice {
    /// The notice as HTML (empty for none): a refusal is an alert, the rest a status.
    pub(crate) fn html(&self) -> String {
        match self {
            Notice::None => String::new(),
            Notice::Refused => "<p class=\"error\" role=\"alert\">That code did not work. \
                                Check it and try again, or ask for a new one.</p>\n"
                .into(),
            Notice::KeyRefused => "<p class=\"error\" role=\"alert\">That security key was \
                                   not accepted. Try again, use another key, or choose another \
                                   way.</p>\n"
                .into(),
            Notice::Sent {
                destination,
                wait_secs,
            } => format!(
                "<p class=\"note\" role=\"status\">We sent a code to {}. You can ask for \
                 another in {wait_secs} seconds.</p>\n",
                escape(destination)
            ),
            Notice::Wait { secs } => format!(
                "<p class=\"note\" role=\"status\">A code was sent recently. You can ask for \
                 another in {secs} seconds.</p>\n"
            ),
        }
    }

    /// What to show after "send a code": sent (with the cooldown), or wait (the cooldown or a
    /// cap the core enforces). `Err`: the error to show as a page instead (the login is over,
    /// or the store failed); anything else the browser sent that does not fit shows no notice.
    pub(crate) fn after_send(
        s: &AppState,
        sent: Result<twofold_core::service::SendReceipt, CoreError>,
    ) -> Result<Notice, CoreError> {
        match sent {
            Ok(receipt) => Ok(Notice::Sent {
                destination: receipt.destination,
                wait_secs: ((receipt.resend_at - s.core.now()).max(0) + 999) / 1000,
            }),
            Err(CoreError::TooMany { retry_after_ms, .. }) => Ok(Notice::Wait {
                secs: (retry_after_ms.max(0) + 999) / 1000,
            }),
            Err(
                e @ CoreError::Conflict {
                    code: "invalid_login_token",
                    ..
                },
            ) => Err(e),
            Err(CoreError::NotFound(_))
            | Err(CoreError::Invalid { .. })
            | Err(CoreError::Conflict { .. }) => Ok(Notice::None),
            Err(e) => Err(e),
        }
    }
}

/// "Signing in to <app> (<organisation>)." at the top of every hosted page of a login.
pub(crate) fn signing_in(client_app: &str, tenant_name: &str) -> String {
    format!(
        "<p>Signing in to <strong>{}</strong> ({}).</p>\n",
        escape(client_app),
        escape(tenant_name)
    )
}

pub(crate) fn login_token(headers: &HeaderMap) -> &str {
    read_cookie(headers, LOGIN_COOKIE).unwrap_or("")
}

pub(crate) fn kind_label(kind: &str) -> &'static str {
    match kind {
        "totp" => "authenticator app",
        "sms" => "text message",
        _ => "email",
    }
}

/// The value of `?method=` that chooses the security key.
const KEY_METHOD: &str = "key";

/// The challenge page: the security key first when the user has one (it resists phishing),
/// else the chosen (or first) factor that takes a code; the other ways as links. `key` is
/// the ceremony for the key form, when that is what the page shows.
fn challenge_page(
    s: &AppState,
    view: &HostedView,
    chosen: Option<&str>,
    notice: Notice,
    key: Option<&KeyCeremony>,
) -> Response {
    let csrf = Csrf::issue(&CookieFactory::of(s), COOKIE_PATH);
    let field = csrf.field();
    let key = key.filter(|_| shows_key(view, chosen));
    let factor = chosen
        .and_then(|id| view.factors.iter().find(|f| f.id == id))
        .or(view.factors.first())
        .filter(|_| key.is_none());
    let mut body = signing_in(&view.client_app, &view.tenant_name);
    body.push_str(&notice.html());
    let remember = view
        .remember_days
        .map(|d| {
            format!(
                "<label class=\"check\" for=\"remember\"><input type=\"checkbox\" \
                 id=\"remember\" name=\"remember\" value=\"1\"> Remember this device for \
                 {d} days</label>\n"
            )
        })
        .unwrap_or_default();
    if let Some(k) = key {
        body.push_str("<p>Use your security key (or passkey) to confirm it is you.</p>\n");
        body.push_str(&key_form(
            "/oidc/challenge/key",
            KeyMode::SignIn,
            k,
            &field,
            &remember,
            "Use security key",
        ));
    } else if let Some(f) = factor {
        let hint = match f.kind.as_str() {
            "totp" => "Enter the 6-digit code from your authenticator app.".to_string(),
            _ => format!(
                "Enter the code we send by {} to {}.",
                kind_label(&f.kind),
                f.destination.as_deref().unwrap_or("you")
            ),
        };
        body.push_str(&format!("<p>{}</p>\n", escape(&hint)));
        if f.kind != "totp" {
            let label = if matches!(notice, Notice::Sent { .. } | Notice::Wait { .. }) {
                "Send a new code"
            } else {
                "Send a code"
            };
            body.push_str(&format!(
                "<form method=\"post\" action=\"/oidc/challenge/send\">\n\
                 {field}\n\
                 <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
                 <button type=\"submit\" class=\"plain\">{label}</button>\n</form>\n",
                id = escape(&f.id),
            ));
        }
        body.push_str(&format!(
            "<form method=\"post\" action=\"/oidc/challenge/verify\">\n\
             {field}\n\
             <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
             <label for=\"code\">Verification code</label>\n\
             <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
             inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus>\n\
             {remember}<button type=\"submit\">Verify</button>\n</form>\n",
            id = escape(&f.id),
        ));
    } else {
        body.push_str("<p>You have no method to receive a code here.</p>\n");
    }
    let mut links: Vec<String> = Vec::new();
    if view.keys && key.is_none() {
        links.push(format!(
            "<li><a href=\"/oidc/challenge?method={KEY_METHOD}\">Use your security key</a></li>"
        ));
    }
    links.extend(
        view.factors
            .iter()
            .filter(|o| Some(o.id.as_str()) != factor.map(|f| f.id.as_str()))
            .map(|o| {
                let what = match &o.destination {
                    Some(d) => format!("Use {} ({})", d, kind_label(&o.kind)),
                    None => format!("Use your {}", kind_label(&o.kind)),
                };
                format!(
                    "<li><a href=\"/oidc/challenge?method={}\">{}</a></li>",
                    escape(&o.id),
                    escape(&what)
                )
            }),
    );
    if view.recovery_codes_left {
        links.push("<li><a href=\"/oidc/challenge/recover\">Use a recovery code</a></li>".into());
    }
    if !links.is_empty() {
        body.push_str(&format!(
            "<nav aria-label=\"Other ways to sign in\"><p>Other ways to sign in:</p>\n<ul>\n{}\n\
             </ul></nav>\n",
            links.join("\n")
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"/oidc/challenge/cancel\">\n\
         {field}\n\
         <button type=\"submit\" class=\"plain\">Cancel sign-in</button>\n</form>"
    ));
    let status = match notice {
        Notice::Refused | Notice::KeyRefused => StatusCode::UNAUTHORIZED,
        _ => StatusCode::OK,
    };
    let mut resp = page(status, "Two-step verification", &body);
    csrf.attach(&mut resp);
    allow_redirect_to(&mut resp, &view.redirect_origin);
    resp
}

/// The page shows the key form: the user has a key, and chose it or chose nothing else.
fn shows_key(view: &HostedView, chosen: Option<&str>) -> bool {
    view.keys && (chosen.is_none_or(|c| c == KEY_METHOD || !view.factors.iter().any(|f| f.id == c)))
}

/// The challenge page for the login behind `token`, with a fresh key ceremony when the page
/// shows the key form.
async fn challenge_response(
    s: &AppState,
    token: &str,
    chosen: Option<&str>,
    notice: Notice,
) -> Response {
    let view = match s.core.hosted_view(token).await {
        Ok(v) => v,
        Err(e) => return core_error_page(&e),
    };
    let key = if shows_key(&view, chosen) {
        match s.core.hosted_key_ceremony(token).await {
            Ok(k) => k,
            Err(e) => return core_error_page(&e),
        }
    } else {
        None
    };
    challenge_page(s, &view, chosen, notice, key.as_ref())
}

#[derive(Deserialize)]
struct ChallengeQuery {
    method: Option<String>,
}

async fn challenge(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ChallengeQuery>,
) -> Response {
    challenge_response(&s, login_token(&headers), q.method.as_deref(), Notice::None).await
}

/// What every form POST of a hosted login starts with: its CSRF pair checked (`None`: answer
/// with [`csrf_refused`]), then the end user's request facts and the login cookie's token.
pub(crate) fn posted<'h>(
    s: &AppState,
    meta: RequestMeta,
    headers: &'h HeaderMap,
    csrf: &str,
) -> Option<(RequestMeta, &'h str)> {
    Csrf::verify(headers, csrf).then(|| (client_meta(s, meta, headers), login_token(headers)))
}

pub(crate) fn csrf_refused() -> Response {
    page(
        StatusCode::FORBIDDEN,
        "Please go back and try again",
        "<p>This form did not come from the page we showed you (or it is too old). Go back \
         to the application and sign in again.</p>",
    )
}

/// The form of the challenge. No `Debug`: it holds a code.
#[derive(Deserialize)]
struct VerifyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    code: String,
    factor_id: Option<String>,
    remember: Option<String>,
}

/// After an accepted second step: back to the client with the code; the login cookie goes,
/// the remembered-device cookie comes if one was minted.
fn done(s: &AppState, step: HostedStep) -> Option<Response> {
    let HostedStep::Done { redirect, device } = step else {
        return None;
    };
    let mut resp = see_other(&redirect);
    clear(s, &mut resp, LOGIN_COOKIE);
    if let Some(d) = device {
        let ttl = (d.expires_at - s.core.now()).max(0) / 1000;
        set_cookie(&mut resp, cookie(s, DEVICE_COOKIE, &d.token, ttl));
    }
    Some(resp)
}

async fn verify(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<VerifyForm>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    let factor = form.factor_id.as_deref().filter(|f| !f.is_empty());
    let remember = form.remember.as_deref() == Some("1");
    match s
        .core
        .hosted_verify(&meta, token, form.code.trim(), factor, remember)
        .await
    {
        Ok(step) => match done(&s, step) {
            Some(resp) => resp,
            None => refused_page(&s, token, factor).await,
        },
        Err(e) => core_error_page(&e),
    }
}

async fn refused_page(s: &AppState, token: &str, factor: Option<&str>) -> Response {
    challenge_response(s, token, factor, Notice::Refused).await
}

/// `POST /oidc/challenge/key`: a security key's answer. Accepted: back to the client, as
/// after a code. Anything else: the key form again with the one refusal notice.
async fn key_verify(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    let remember = form.remember.as_deref() == Some("1");
    match s
        .core
        .hosted_key_verify(&meta, token, &form.ceremony, &form.response, remember)
        .await
    {
        Ok(step) => match done(&s, step) {
            Some(resp) => resp,
            None => challenge_response(&s, token, Some(KEY_METHOD), Notice::KeyRefused).await,
        },
        Err(e) => core_error_page(&e),
    }
}

async fn send_code(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<FactorForm>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    let view = match s.core.hosted_view(token).await {
        Ok(v) => v,
        Err(e) => return core_error_page(&e),
    };
    let sent = s.core.hosted_send_code(&meta, token, &form.factor_id).await;
    let notice = match Notice::after_send(&s, sent) {
        Ok(n) => n,
        Err(e) => return core_error_page(&e),
    };
    challenge_page(&s, &view, Some(&form.factor_id), notice, None)
}

fn recover_page(s: &AppState, view: &HostedView, refused: bool) -> Response {
    let csrf = Csrf::issue(&CookieFactory::of(s), COOKIE_PATH);
    let field = csrf.field();
    let alert = if refused {
        "<p class=\"error\" role=\"alert\">That recovery code did not work. Check it and try \
         again.</p>\n"
    } else {
        ""
    };
    let body = format!(
        "{alert}<p>Enter one of the recovery codes you saved when you set up two-step \
         verification. Each code works once.</p>\n\
         <form method=\"post\" action=\"/oidc/challenge/recover\">\n\
         {field}\n\
         <label for=\"recovery_code\">Recovery code</label>\n\
         <input type=\"text\" id=\"recovery_code\" name=\"recovery_code\" autocomplete=\"off\" \
         autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"64\" required autofocus>\n\
         <button type=\"submit\">Verify</button>\n</form>\n\
         <p><a href=\"/oidc/challenge\">Use another method</a></p>"
    );
    let status = if refused {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut resp = page(status, "Use a recovery code", &body);
    csrf.attach(&mut resp);
    allow_redirect_to(&mut resp, &view.redirect_origin);
    resp
}

async fn recover_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match s.core.hosted_view(login_token(&headers)).await {
        Ok(view) => recover_page(&s, &view, false),
        Err(e) => core_error_page(&e),
    }
}

/// No `Debug`: it holds a recovery code.
#[derive(Deserialize)]
struct RecoverForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    recovery_code: String,
}

async fn recover(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<RecoverForm>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    let step = match s
        .core
        .hosted_recover(&meta, token, form.recovery_code.trim())
        .await
    {
        Ok(step) => step,
        Err(e) => return core_error_page(&e),
    };
    if let Some(resp) = done(&s, step) {
        return resp;
    }
    match s.core.hosted_view(token).await {
        Ok(view) => recover_page(&s, &view, true),
        Err(e) => core_error_page(&e),
    }
}

pub(crate) async fn cancel(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    match s.core.hosted_cancel(&meta, token).await {
        Ok(back) => {
            let mut resp = back_page(
                StatusCode::OK,
                "Sign-in cancelled",
                "You cancelled this sign-in. Nothing was changed.",
                &back,
            );
            clear(&s, &mut resp, LOGIN_COOKIE);
            resp
        }
        Err(e) => core_error_page(&e),
    }
}

// ------------------------------------------------------------ token endpoint

fn token_error(status: StatusCode, error: &str, description: &str, basic: bool) -> Response {
    let body = serde_json::json!({ "error": error, "error_description": description });
    let mut resp = (status, axum::Json(body)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if basic && status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"twofold\""),
        );
    }
    resp
}

/// `client_secret_basic`: `Basic base64(urlencode(id) ":" urlencode(secret))` (RFC 6749
/// §2.3.1). `Some(None)`: the header is there but malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok();
    let parsed = value
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            let decode = |s: &str| {
                percent_encoding::percent_decode_str(&s.replace('+', " "))
                    .decode_utf8()
                    .ok()
                    .map(|c| c.into_owned())
            };
            Some((decode(id)?, decode(secret)?))
        });
    Some(parsed)
}

async fn token(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(mut f) = form.ok().and_then(|Form(pairs)| single(pairs)) else {
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "send a form body (application/x-www-form-urlencoded), each parameter once",
            false,
        );
    };
    let basic = basic_credentials(&headers);
    let (client_id, client_secret) = match (basic.clone(), f.contains_key("client_secret")) {
        (Some(_), true) => {
            return token_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "authenticate the client one way only",
                false,
            )
        }
        (Some(None), false) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client authentication failed",
                true,
            )
        }
        (Some(Some((id, secret))), false) => {
            // A client_id in the body must name the same client.
            if f.get("client_id").is_some_and(|b| *b != id) {
                return token_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "client_id differs from the authenticated client",
                    false,
                );
            }
            (Some(id), Some(secret))
        }
        (None, _) => (f.remove("client_id"), f.remove("client_secret")),
    };
    let req = TokenRequest {
        grant_type: f.remove("grant_type"),
        code: f.remove("code"),
        redirect_uri: f.remove("redirect_uri"),
        code_verifier: f.remove("code_verifier"),
        client_id,
        client_secret,
    };
    let used_basic = basic.is_some();
    match s.core.oidc_token(&meta, req).await {
        Ok(t) => {
            let body = serde_json::json!({
                "access_token": t.access_token,
                "token_type": "Bearer",
                "expires_in": t.expires_in,
                "id_token": t.id_token,
            });
            let mut resp = axum::Json(body).into_response();
            let h = resp.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            resp
        }
        Err(TokenError::InvalidClient) => token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
            used_basic,
        ),
        Err(TokenError::InvalidGrant) => token_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the code is invalid, expired, used, or was issued for another request",
            false,
        ),
        Err(TokenError::InvalidRequest(why)) => {
            token_error(StatusCode::BAD_REQUEST, "invalid_request", why, false)
        }
        Err(TokenError::UnsupportedGrantType) => token_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only authorization_code is supported",
            false,
        ),
        Err(TokenError::Core(e)) => crate::error::ApiError::from(e).into_response(),
    }
}
