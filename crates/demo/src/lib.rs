//! The demo "SaaS app" of `twofold demo`: Demo Corp's sign-in page, which checks its users'
//! passwords itself and sends them through Twofold's hosted second step over OpenID Connect
//! (see [`rp`]), an account page showing what the verified ID token says, and a Mailbox page
//! listing the newest messages of Twofold's development outbox, so codes sent by email or
//! text message can be read in the browser.
//!
//! It talks to Twofold only over HTTP, as any integrator does: nothing here reaches into the
//! server. The pages are server-rendered without script, under a strict CSP (no inline script
//! or style; forms post to this app, whose answers may redirect to Twofold), readable on a
//! phone, and every form carries a double-submit CSRF token.
//!
//! Cookies (HttpOnly; `Secure` when the app's URL is https):
//! - `demo_flow`: `state`, `nonce` and the PKCE verifier of the sign-in in progress,
//!   SameSite=Lax so it comes back on Twofold's redirect to `/callback`;
//! - `demo_session`: a random token naming a signed-in session held in memory;
//! - `demo_csrf`: the CSRF token, SameSite=Strict.

pub mod data;
pub mod rp;

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use rp::{Pending, RelyingParty, RpError};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use twofold_delivery::dev_outbox::{self, DevChannel};
use twofold_delivery::templates::escape_html as escape;

const FLOW_COOKIE: &str = "demo_flow";
const SESSION_COOKIE: &str = "demo_session";
const CSRF_COOKIE: &str = "demo_csrf";
/// How long a started sign-in may take (Twofold's pending login lives 10 minutes).
const FLOW_TTL: Duration = Duration::from_secs(15 * 60);
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Messages the Mailbox shows, newest first.
const MAILBOX_SIZE: usize = 20;
const DEMO_CSS: &str = include_str!("demo.css");

/// What the demo app needs to know.
pub struct DemoConfig {
    /// Twofold's issuer: its public URL, e.g. `http://127.0.0.1:8080`.
    pub issuer: String,
    /// This app's own URL, e.g. `http://127.0.0.1:8081`; its redirect URI is
    /// `<app_url>/callback`.
    pub app_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Twofold's development outbox (`<data_dir>/dev-outbox`), shown by the Mailbox.
    pub outbox: PathBuf,
    /// The stylesheet to start from: Twofold's own, so both apps look alike.
    pub stylesheet: &'static str,
}

/// Why the demo app could not start.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Rp(#[from] RpError),
    #[error("the issuer URL {0} is not an http(s) URL")]
    Issuer(String),
}

/// A signed-in browser, from its verified ID token.
struct Session {
    identity: rp::Identity,
    since: Instant,
}

struct Inner {
    rp: RelyingParty,
    outbox: PathBuf,
    stylesheet: String,
    csp: HeaderValue,
    secure_cookies: bool,
    sessions: Mutex<HashMap<String, Session>>,
}

/// The demo app; [`DemoApp::router`] serves it.
#[derive(Clone)]
pub struct DemoApp(Arc<Inner>);

impl DemoApp {
    /// Discovers Twofold at `config.issuer` (it must be up).
    pub async fn new(config: DemoConfig) -> Result<Self, DemoError> {
        let redirect_uri = redirect_uri(&config.app_url);
        let rp = RelyingParty::discover(
            &config.issuer,
            &config.client_id,
            &config.client_secret,
            &redirect_uri,
        )
        .await?;
        let twofold = reqwest::Url::parse(&config.issuer)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .map(|u| u.origin().ascii_serialization())
            .ok_or_else(|| DemoError::Issuer(config.issuer.clone()))?;
        // Forms post here; the sign-in and console answers redirect to Twofold, and Chromium
        // checks form-action on those redirects too.
        let csp = HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; \
             form-action 'self' {twofold}; frame-ancestors 'none'; base-uri 'none'"
        ))
        .map_err(|_| DemoError::Issuer(config.issuer.clone()))?;
        Ok(Self(Arc::new(Inner {
            rp,
            outbox: config.outbox,
            stylesheet: format!("{}\n{DEMO_CSS}", config.stylesheet),
            csp,
            secure_cookies: config.app_url.starts_with("https://"),
            sessions: Mutex::new(HashMap::new()),
        })))
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(sign_in_page))
            .route("/login", post(login))
            .route("/callback", get(callback))
            .route("/account", get(account))
            .route("/logout", post(logout))
            .route("/console", post(console))
            .route("/mailbox", get(mailbox))
            .route("/style.css", get(stylesheet))
            .fallback(not_found)
            .layer(axum::middleware::map_response_with_state(
                self.clone(),
                harden,
            ))
            .with_state(self.clone())
    }

    fn cookie(&self, name: &str, value: &str, max_age: Duration, same_site: &str) -> HeaderValue {
        let secure = if self.0.secure_cookies {
            "; Secure"
        } else {
            ""
        };
        // Values are URL-safe base64 tokens: always a valid header.
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
            max_age.as_secs()
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    fn clear_cookie(&self, name: &str) -> HeaderValue {
        self.cookie(name, "", Duration::ZERO, "Lax")
    }

    fn session(&self, headers: &HeaderMap) -> Option<rp::Identity> {
        let token = read_cookie(headers, SESSION_COOKIE)?;
        let sessions = self.0.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(token)
            .filter(|s| s.since.elapsed() < SESSION_TTL)
            .map(|s| s.identity.clone())
    }

    /// Keeps `identity` as a new session; returns its token. Expired sessions go on the way.
    fn start_session(&self, identity: rp::Identity) -> String {
        let token = twofold_crypto::random_token(32);
        let mut sessions = self.0.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.retain(|_, s| s.since.elapsed() < SESSION_TTL);
        sessions.insert(
            token.clone(),
            Session {
                identity,
                since: Instant::now(),
            },
        );
        token
    }
}

/// The redirect URI registered for the demo app at `app_url`.
pub fn redirect_uri(app_url: &str) -> String {
    format!("{}/callback", app_url.trim_end_matches('/'))
}

/// The security headers of every answer: the CSP, no framing, no sniffing, no referrer (the
/// callback's URL holds a code), nothing cached (pages carry tokens and codes).
async fn harden(State(app): State<DemoApp>, mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, app.0.csp.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

// ------------------------------------------------------------------------------- pages

/// A whole page: the demo's header (outside `<main>`), then `title` as the `<h1>` and `body`
/// (already escaped HTML).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"/style.css\">\n\
         <link rel=\"icon\" href=\"data:,\">\n</head>\n<body>\n\
         <header>\n<nav class=\"demo-nav\" aria-label=\"Demo app\">\n\
         <strong>{org} (demo app)</strong>\n<a href=\"/\">Sign in</a>\n\
         <a href=\"/mailbox\">Mailbox</a>\n</nav>\n</header>\n\
         <main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
        org = escape(data::TENANT_NAME),
    );
    let mut resp = (status, html).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

/// A page that explains what went wrong and offers to start again.
fn problem(status: StatusCode, title: &str, text: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p>\n<p><a href=\"/\">Sign in again</a></p>",
            escape(text)
        ),
    )
}

fn see_other(location: &str) -> Response {
    match HeaderValue::from_str(location) {
        Ok(v) => {
            let mut resp = StatusCode::SEE_OTHER.into_response();
            resp.headers_mut().insert(header::LOCATION, v);
            resp
        }
        Err(_) => problem(
            StatusCode::BAD_GATEWAY,
            "Something went wrong",
            "Twofold's address cannot be used in a redirect.",
        ),
    }
}

fn add_cookie(resp: &mut Response, cookie: HeaderValue) {
    resp.headers_mut().append(header::SET_COOKIE, cookie);
}

/// The CSRF token for this browser's forms: the one its cookie holds, or a new one (then the
/// cookie is set with the page).
fn csrf(app: &DemoApp, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match read_cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
        Some(t) => (t.to_string(), None),
        None => {
            let t = twofold_crypto::random_token(32);
            let cookie = app.cookie(CSRF_COOKIE, &t, SESSION_TTL, "Strict");
            (t, Some(cookie))
        }
    }
}

fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        escape(token)
    )
}

/// A form post is ours when its token matches the cookie's (double submit).
fn csrf_ok(headers: &HeaderMap, posted: &str) -> bool {
    read_cookie(headers, CSRF_COOKIE).is_some_and(|c| {
        !posted.is_empty() && twofold_crypto::ct_eq(c.as_bytes(), posted.as_bytes())
    })
}

fn csrf_refused() -> Response {
    problem(
        StatusCode::FORBIDDEN,
        "This form has expired",
        "Reload the page and try again.",
    )
}

/// The sign-in form, with the demo accounts beside it.
fn sign_in_form(app: &DemoApp, headers: &HeaderMap, status: StatusCode, refused: bool) -> Response {
    let (token, set) = csrf(app, headers);
    let error = if refused {
        "<p class=\"error\" role=\"alert\">Wrong user name or password.</p>\n"
    } else {
        ""
    };
    let accounts: Vec<String> = data::USERS
        .iter()
        .map(|u| {
            format!(
                "<li><strong>{}</strong>, password <code>{}</code>: {}.</li>",
                escape(u.name),
                escape(u.password),
                escape(u.story)
            )
        })
        .collect();
    let body = format!(
        "<p>This app checks your password itself, then hands the second step to Twofold.</p>\n\
         {error}<form method=\"post\" action=\"/login\">\n{field}\n\
         <label for=\"username\">User name</label>\n\
         <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" \
         autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"64\" required autofocus>\n\
         <label for=\"password\">Password</label>\n\
         <input type=\"password\" id=\"password\" name=\"password\" \
         autocomplete=\"current-password\" maxlength=\"128\" required>\n\
         <button type=\"submit\">Sign in</button>\n</form>\n\
         <section class=\"what\" aria-labelledby=\"accounts\">\n\
         <h2 id=\"accounts\">Demo accounts</h2>\n<ul class=\"accounts\">\n{accounts}\n</ul>\n\
         <p>Codes sent by email or text message arrive in the <a href=\"/mailbox\" \
         target=\"_blank\" rel=\"noopener\">Mailbox (opens in a new tab)</a>.</p>\n</section>",
        field = csrf_field(&token),
        accounts = accounts.join("\n"),
    );
    let mut resp = page(status, "Sign in", &body);
    if let Some(c) = set {
        add_cookie(&mut resp, c);
    }
    resp
}

async fn sign_in_page(State(app): State<DemoApp>, headers: HeaderMap) -> Response {
    sign_in_form(&app, &headers, StatusCode::OK, false)
}

/// No `Debug`: it holds a password.
#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The integrator's own first factor: the password, checked here. Then the browser goes to
/// Twofold with a signed login hint, and this sign-in's state, nonce and PKCE verifier wait
/// in its cookie.
async fn login(
    State(app): State<DemoApp>,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return problem(
            StatusCode::BAD_REQUEST,
            "This sign-in form is not valid",
            "Send the form from the sign-in page.",
        );
    };
    if !csrf_ok(&headers, &form.csrf) {
        return csrf_refused();
    }
    // An unknown name costs the same comparison as a known one, and gets the same answer.
    let user = data::user(form.username.trim());
    let expected = user.map(|u| u.password).unwrap_or("\u{0}no such user\u{0}");
    let matches = twofold_crypto::ct_eq(form.password.as_bytes(), expected.as_bytes());
    let Some(user) = user.filter(|_| matches) else {
        return sign_in_form(&app, &headers, StatusCode::UNAUTHORIZED, true);
    };
    let pending = Pending::new();
    match app.0.rp.authorization_url(user.name, &pending) {
        Ok(url) => {
            let mut resp = see_other(&url);
            add_cookie(
                &mut resp,
                app.cookie(FLOW_COOKIE, &pending.encode(), FLOW_TTL, "Lax"),
            );
            resp
        }
        Err(e) => upstream_problem(&e),
    }
}

fn upstream_problem(e: &RpError) -> Response {
    tracing::warn!(error = %e, "demo app: Twofold step failed");
    match e {
        RpError::Refused(_) => problem(
            StatusCode::BAD_REQUEST,
            "This sign-in was refused",
            "Twofold did not accept it: it was used already, it expired, or it belongs to \
             another sign-in.",
        ),
        RpError::BadToken(_) => problem(
            StatusCode::BAD_GATEWAY,
            "This sign-in could not be verified",
            "The answer from Twofold did not verify.",
        ),
        RpError::Upstream(_) => problem(
            StatusCode::BAD_GATEWAY,
            "Twofold is not answering",
            "Is `twofold demo` still running? Try again in a moment.",
        ),
    }
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

/// Twofold sends the browser back here: the state must be this browser's, the code is
/// exchanged and the ID token verified, and the browser is signed in.
async fn callback(
    State(app): State<DemoApp>,
    headers: HeaderMap,
    query: Result<Query<CallbackQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let mut resp = finish(&app, &headers, query.ok().map(|Query(q)| q)).await;
    // The flow cookie is spent whatever happened: a sign-in is tried once.
    add_cookie(&mut resp, app.clear_cookie(FLOW_COOKIE));
    resp
}

async fn finish(app: &DemoApp, headers: &HeaderMap, q: Option<CallbackQuery>) -> Response {
    let unverified = || {
        problem(
            StatusCode::BAD_REQUEST,
            "This sign-in could not be verified",
            "It was started in another browser or tab, or it expired.",
        )
    };
    let Some(q) = q else {
        return unverified();
    };
    let pending = read_cookie(headers, FLOW_COOKIE).and_then(Pending::decode);
    let same_state = match (&pending, &q.state) {
        (Some(p), Some(s)) => twofold_crypto::ct_eq(p.state.as_bytes(), s.as_bytes()),
        _ => false,
    };
    let Some(pending) = pending.filter(|_| same_state) else {
        return unverified();
    };
    // RFC 9207: the answer names the issuer it comes from.
    if q.iss.as_deref().is_some_and(|iss| iss != app.0.rp.issuer()) {
        return unverified();
    }
    if let Some(error) = q.error {
        let text = match error.as_str() {
            "access_denied" => "The sign-in was cancelled or not allowed.".to_string(),
            other => format!("Twofold answered: {other}."),
        };
        return problem(StatusCode::FORBIDDEN, "You are not signed in", &text);
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return unverified();
    };
    match app.0.rp.finish(&code, &pending).await {
        Ok(identity) => {
            let token = app.start_session(identity);
            let mut resp = see_other("/account");
            add_cookie(
                &mut resp,
                app.cookie(SESSION_COOKIE, &token, SESSION_TTL, "Lax"),
            );
            resp
        }
        Err(e) => upstream_problem(&e),
    }
}

/// What each `amr` value means (OIDC amr values as Twofold issues them).
fn method_name(amr: &str) -> &str {
    match amr {
        "pwd" => "password",
        "otp" => "authenticator app",
        "sms" => "code by text message",
        "email" => "code by email",
        "rcode" => "recovery code",
        other => other,
    }
}

async fn account(State(app): State<DemoApp>, headers: HeaderMap) -> Response {
    let Some(me) = app.session(&headers) else {
        return see_other("/");
    };
    let (token, set) = csrf(&app, &headers);
    let field = csrf_field(&token);
    let methods: Vec<String> = me
        .amr
        .iter()
        .map(|m| format!("<code>{}</code> ({})", escape(m), escape(method_name(m))))
        .collect();
    let at = me
        .auth_time
        .map(|t| twofold_core::service::notices::human_utc(t.saturating_mul(1000)))
        .unwrap_or_else(|| "unknown".into());
    let admin = data::user(&me.sub).is_some_and(|u| u.admin);
    let console = if admin {
        format!(
            "<form method=\"post\" action=\"/console\">\n{field}\n\
             <button type=\"submit\">Admin console</button>\n</form>\n"
        )
    } else {
        String::new()
    };
    let body = format!(
        "<p class=\"note\" role=\"status\">Twofold verified your second step; this app checked \
         the ID token it signed.</p>\n\
         <dl class=\"claims\">\n<dt>Signed in with (<code>amr</code>)</dt><dd id=\"amr\">{methods}</dd>\n\
         <dt>Assurance (<code>acr</code>)</dt><dd id=\"acr\"><code>{acr}</code></dd>\n\
         <dt>Second step at (<code>auth_time</code>)</dt><dd>{at}</dd>\n</dl>\n\
         <div class=\"actions\">\n{console}<form method=\"post\" action=\"/logout\">\n{field}\n\
         <button type=\"submit\" class=\"plain\">Sign out</button>\n</form>\n</div>",
        methods = methods.join(", "),
        acr = escape(me.acr.as_deref().unwrap_or("none")),
        at = escape(&at),
    );
    let mut resp = page(StatusCode::OK, &format!("Signed in as {}", me.sub), &body);
    if let Some(c) = set {
        add_cookie(&mut resp, c);
    }
    resp
}

/// A form whose only field is its CSRF token.
#[derive(Deserialize)]
struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(app): State<DemoApp>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let posted = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf_ok(&headers, &posted) {
        return csrf_refused();
    }
    if let Some(token) = read_cookie(&headers, SESSION_COOKIE) {
        let mut sessions = app.0.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.remove(token);
    }
    let mut resp = see_other("/");
    add_cookie(&mut resp, app.clear_cookie(SESSION_COOKIE));
    resp
}

/// An administrator goes to Twofold's admin console with a fresh login hint; the console asks
/// for their second factor again.
async fn console(
    State(app): State<DemoApp>,
    headers: HeaderMap,
    form: Result<Form<CsrfOnly>, FormRejection>,
) -> Response {
    let posted = form.map(|Form(f)| f.csrf).unwrap_or_default();
    if !csrf_ok(&headers, &posted) {
        return csrf_refused();
    }
    let Some(me) = app.session(&headers) else {
        return see_other("/");
    };
    if !data::user(&me.sub).is_some_and(|u| u.admin) {
        return problem(
            StatusCode::FORBIDDEN,
            "Administrators only",
            "Only an administrator of the organisation can open the admin console.",
        );
    }
    match app.0.rp.console_url(&me.sub) {
        Ok(url) => see_other(&url),
        Err(e) => upstream_problem(&e),
    }
}

/// The newest messages of Twofold's development outbox, newest first.
async fn mailbox(State(app): State<DemoApp>) -> Response {
    let outbox = app.0.outbox.clone();
    let messages = tokio::task::spawn_blocking(move || dev_outbox::read_all(&outbox))
        .await
        .unwrap_or_default();
    let items: Vec<String> = messages
        .iter()
        .rev()
        .take(MAILBOX_SIZE)
        .map(|m| {
            let (kind, subject) = match m.channel {
                DevChannel::Email => (
                    "Email",
                    m.subject
                        .as_deref()
                        .map(|s| format!("<p><strong>{}</strong></p>\n", escape(s)))
                        .unwrap_or_default(),
                ),
                DevChannel::Sms => ("Text message", String::new()),
            };
            let code = m
                .code()
                .map(|c| format!("<p>Code: <code class=\"key\">{}</code></p>\n", escape(&c)))
                .unwrap_or_default();
            format!(
                "<article class=\"message\">\n<h2>{kind} to {to}</h2>\n\
                 <p class=\"hint\">{at}</p>\n{subject}{code}<pre>{text}</pre>\n</article>",
                to = escape(&m.to),
                at = escape(&m.written_at),
                text = escape(m.text.trim()),
            )
        })
        .collect();
    let list = if items.is_empty() {
        "<p>No messages yet.</p>".to_string()
    } else {
        items.join("\n")
    };
    page(
        StatusCode::OK,
        "Mailbox",
        &format!(
            "<p>Twofold runs here without a mail server or SMS provider: it writes each email \
             and text message to a file in its data directory. These are the newest. \
             <a href=\"/mailbox\">Refresh</a></p>\n{list}"
        ),
    )
}

async fn stylesheet(State(app): State<DemoApp>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        app.0.stylesheet.clone(),
    )
        .into_response()
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>There is no such page. <a href=\"/\">Sign in</a></p>",
    )
}
