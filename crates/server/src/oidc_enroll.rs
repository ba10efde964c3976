//! The hosted enrolment pages of a sign-in over OpenID Connect: a user who has no second
//! factor yet sets one up before the login completes (`enroll_required`), or, before the
//! organisation's deadline or under an optional policy (`enroll_offered`), may put it off.
//!
//! ```text
//!   /oidc/enroll ── offered: countdown, "Set up now" / "Later" ("Not now" when optional)
//!        │ required (no "Later")       │ set up now            │ later (POST) ──▶ client, 1FA
//!        ▼                             ▼
//!   /oidc/enroll/methods: authenticator app first, then SMS, then email (those enabled)
//!        │ app (POST: a new key)       │ SMS / email: number or address (POST: code sent)
//!        ▼                             ▼
//!   QR code and key, first code     the code, "Send a new code" (cooldown shown)
//!        └──────────── right code ─────┘──▶ recovery codes (download, print) ──▶ client
//! ```
//!
//! Every page offers "Cancel sign-in" (the client hears `access_denied`). What is offered is
//! the core's answer for this login now (`hosted_enroll_view`), and every POST is judged again
//! by the core: a "Later" forged after the deadline gets a page saying enrolment is mandatory.
//! The logic is in `twofold_core::service::oidc`; this module parses and renders, on the
//! cookies, CSRF check and error pages of [`crate::oidc`].

use crate::extract::Meta;
use crate::oidc::FactorForm;
use crate::oidc::{
    allow_redirect_to, cancel, clear, core_error_page, csrf_refused, kind_label, login_token,
    posted, see_other, signing_in, CsrfOnly, Notice, COOKIE_PATH, LOGIN_COOKIE,
};
use crate::state::AppState;
use crate::web::forms::{DestinationForm, FactorCodeForm, KeyForm};
use crate::web::keys::{key_form, key_name_field, refusal_text, KeyMode};
use crate::web::{
    csp_with_own_scripts, escape, page, page_with_head, print_support_head, CookieFactory, Csrf,
};
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use twofold_core::policy::{Method, Postpone};
use twofold_core::service::notices::human_utc;
use twofold_core::service::oidc::{HostedEnrollView, HostedFactor, HostedStep};
use twofold_core::service::{ContactKind, KeyRefused, Proof};
use twofold_core::CoreError;
use twofold_core::RequestMeta;
use twofold_webauthn::Refusal;

/// The enrolment pages' routes (the caller hardens them with the other hosted pages).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/oidc/enroll", get(enroll_start))
        .route("/oidc/enroll/methods", get(methods))
        .route("/oidc/enroll/later", post(later))
        .route("/oidc/enroll/totp", post(enroll_totp))
        .route("/oidc/enroll/sms", get(sms_form).post(sms_enroll))
        .route("/oidc/enroll/email", get(email_form).post(email_enroll))
        .route("/oidc/enroll/resend", post(resend))
        .route("/oidc/enroll/confirm", post(enroll_confirm))
        .route("/oidc/enroll/key", get(key_form_page).post(key_enroll))
        .route("/oidc/enroll/key/send", post(key_step_up_send))
        .route("/oidc/enroll/cancel", post(cancel))
}

const ENROLL_TITLE: &str = "Set up two-step verification";

/// "Signing in to <app> (<organisation>)." for the enrolment pages.
fn enroll_intro(view: &HostedEnrollView) -> String {
    signing_in(&view.client_app, &view.tenant_name)
}

/// `class="plain"` (a button that reads as a link) for secondary actions.
fn class(plain: bool) -> &'static str {
    if plain {
        " class=\"plain\""
    } else {
        ""
    }
}

/// The "set up an authenticator app" button (again, after a wrong code: a fresh key).
fn enroll_button(field: &str, label: &str, plain: bool) -> String {
    format!(
        "<form method=\"post\" action=\"/oidc/enroll/totp\">\n{field}\n\
         <button type=\"submit\"{class}>{label}</button>\n</form>\n",
        class = class(plain)
    )
}

/// The form that confirms the new factor with its first code; `from` says where the code
/// comes from ("the app", "the text message", "the email").
fn enroll_code_form(field: &str, factor_id: &str, from: &str) -> String {
    first_code_form(
        field,
        "/oidc/enroll/confirm",
        factor_id,
        from,
        "Turn on two-step verification",
    )
}

/// A form that posts a new factor's first code to `action` (also the account pages').
pub(crate) fn first_code_form(
    field: &str,
    action: &str,
    factor_id: &str,
    from: &str,
    button: &str,
) -> String {
    format!(
        "<form method=\"post\" action=\"{action}\">\n{field}\n\
         <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
         <label for=\"code\">Code from {from}</label>\n\
         <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
         inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus>\n\
         <button type=\"submit\">{button}</button>\n</form>\n",
        id = escape(factor_id),
    )
}

/// What the user may say instead of setting up now: "Later" before a deadline, "Not now"
/// when the organisation makes two-step verification optional; nothing once it is mandatory.
fn later_button(field: &str, view: &HostedEnrollView) -> String {
    let label = match view.postpone {
        Postpone::Never => return String::new(),
        Postpone::Optional => "Not now",
        Postpone::Until { .. } => "Later",
    };
    format!(
        "<form method=\"post\" action=\"/oidc/enroll/later\">\n{field}\n\
         <button type=\"submit\" class=\"plain\">{label}</button>\n</form>\n"
    )
}

/// The way out of every enrolment page: the login ends and the client hears `access_denied`.
fn cancel_button(field: &str) -> String {
    format!(
        "<form method=\"post\" action=\"/oidc/enroll/cancel\">\n{field}\n\
         <button type=\"submit\" class=\"plain\">Cancel sign-in</button>\n</form>"
    )
}

/// A link back to the method chooser, when there is another method to choose.
fn other_methods_link(view: &HostedEnrollView) -> &'static str {
    if view.methods.len() > 1 {
        "<p><a href=\"/oidc/enroll/methods\">Choose another method</a></p>\n"
    } else {
        ""
    }
}

/// An enrolment page: CSRF cookie attached, `body(csrf_field)` inside the layout. "Later"
/// answers its POST with a redirect to the client, so the client's origin is a `form-action`.
fn enroll_page(
    s: &AppState,
    status: StatusCode,
    view: &HostedEnrollView,
    body: impl FnOnce(&str) -> String,
) -> Response {
    let csrf = Csrf::issue(&CookieFactory::of(s), COOKIE_PATH);
    let mut resp = page(status, ENROLL_TITLE, &body(&csrf.field()));
    csrf.attach(&mut resp);
    allow_redirect_to(&mut resp, &view.redirect_origin);
    resp
}

/// "in 3 days", "in 1 day", "today": when two-step verification becomes mandatory.
fn in_days(days: i64) -> String {
    match days {
        0 => "today".into(),
        1 => "in 1 day".into(),
        n => format!("in {n} days"),
    }
}

/// `GET /oidc/enroll`: before the deadline (or under an optional policy) the countdown with
/// "Set up now" and "Later"; once enrolment is mandatory, the method chooser itself. Setting
/// up happens on a button (a POST with its CSRF token), so reloading or prefetching the page
/// creates nothing.
async fn enroll_start(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let view = match s.core.hosted_enroll_view(login_token(&headers)).await {
        Ok(v) => v,
        Err(e) => return core_error_page(&e),
    };
    let why = match view.postpone {
        Postpone::Never => return methods_page(&s, StatusCode::OK, &view, ""),
        Postpone::Until { deadline, days } => format!(
            "<p class=\"note\">Two-step verification becomes mandatory for your organisation \
             {} (from {}).</p>\n<p>From then on you sign in with your password and a code from \
             your phone. You can set it up now, or later until that day.</p>\n",
            in_days(days),
            human_utc(deadline)
        ),
        Postpone::Optional => "<p>Your organisation offers two-step verification: you sign in \
                               with your password and a code from your phone, so a stolen \
                               password alone is not enough.</p>\n"
            .into(),
    };
    enroll_page(&s, StatusCode::OK, &view, |field| {
        format!(
            "{intro}{why}\
             <form method=\"get\" action=\"/oidc/enroll/methods\">\n\
             <button type=\"submit\">Set up now</button>\n</form>\n{later}{cancel}",
            intro = enroll_intro(&view),
            later = later_button(field, &view),
            cancel = cancel_button(field),
        )
    })
}

/// `GET /oidc/enroll/methods`: the method chooser.
async fn methods(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match s.core.hosted_enroll_view(login_token(&headers)).await {
        Ok(view) => methods_page(&s, StatusCode::OK, &view, ""),
        Err(e) => core_error_page(&e),
    }
}

/// The methods the tenant enables, the authenticator app first; the first is the main
/// button. `alert` (HTML) goes above them.
fn methods_page(
    s: &AppState,
    status: StatusCode,
    view: &HostedEnrollView,
    alert: &str,
) -> Response {
    enroll_page(s, status, view, |field| {
        let mut body = format!(
            "{}{alert}<p>Protect your account with a second step: each time you sign in, you \
             also enter a code. Choose how you get it.</p>\n",
            enroll_intro(view)
        );
        for (i, method) in view.methods.iter().enumerate() {
            let plain = i > 0;
            body.push_str(&match method {
                Method::Totp => format!(
                    "{}<p class=\"hint\">Recommended. You need an authenticator app on your \
                     phone, for example FreeOTP, Aegis, Google Authenticator or Microsoft \
                     Authenticator.</p>\n",
                    enroll_button(field, "Set up an authenticator app", plain)
                ),
                Method::Sms => format!(
                    "<form method=\"get\" action=\"/oidc/enroll/sms\">\n<button type=\"submit\"\
                     {}>Get codes by text message</button>\n</form>\n",
                    class(plain)
                ),
                Method::Email => format!(
                    "<form method=\"get\" action=\"/oidc/enroll/email\">\n<button \
                     type=\"submit\"{}>Get codes by email</button>\n</form>\n\
                     <p class=\"hint\">Email is the least safe choice: anyone who can read \
                     your mail can sign in with your password.</p>\n",
                    class(plain)
                ),
                Method::Webauthn => format!(
                    "<form method=\"get\" action=\"/oidc/enroll/key\">\n<button \
                     type=\"submit\"{}>Use a security key or passkey</button>\n</form>\n\
                     <p class=\"hint\">The safest choice: a key cannot be tricked into \
                     signing in on a fake site. You need a USB or NFC security key, or a \
                     passkey on your phone or computer.</p>\n",
                    class(plain)
                ),
            });
        }
        if view.methods.is_empty() {
            body.push_str(
                "<p>Your organisation has not enabled a method yet. Contact your \
                 administrator.</p>\n",
            );
        }
        body.push_str(&later_button(field, view));
        body.push_str(&cancel_button(field));
        body
    })
}

/// `POST /oidc/enroll/later`: "Later" / "Not now". The core checks again that the user may
/// postpone now (INV-10); a refusal (the deadline passed meanwhile, or a forged form) is the
/// method chooser with a 403 and the reason.
async fn later(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let Some((meta, token)) = posted(&s, meta, &headers, &form.csrf) else {
        return csrf_refused();
    };
    match s.core.hosted_skip(&meta, token).await {
        Ok(redirect) => {
            let mut resp = see_other(&redirect);
            clear(&s, &mut resp, LOGIN_COOKIE);
            resp
        }
        Err(CoreError::Conflict {
            code: "skip_not_allowed",
            ..
        }) => match s.core.hosted_enroll_view(token).await {
            Ok(view) => methods_page(
                &s,
                StatusCode::FORBIDDEN,
                &view,
                "<p class=\"error\" role=\"alert\">Two-step verification is mandatory for your \
                 organisation now: set it up to sign in.</p>\n",
            ),
            Err(e) => core_error_page(&e),
        },
        Err(e) => core_error_page(&e),
    }
}

/// The key in groups of four (`JBSW Y3DP …`), easier to type into an app than one run.
pub(crate) fn key_groups(secret: &str) -> String {
    secret
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `POST /oidc/enroll/totp`: a new pending factor; the page shows its QR code and its key
/// once (the key is sealed in the store and never shown again).
async fn enroll_totp(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<CsrfOnly>,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let enrolment = match s.core.hosted_enroll_totp(&meta, token).await {
        Ok(e) => e,
        Err(e) => return core_error_page(&e),
    };
    enroll_page(&s, StatusCode::OK, &view, |field| {
        format!(
            "{intro}{steps}{form}{other}{cancel}",
            intro = enroll_intro(&view),
            steps = totp_steps(&enrolment),
            form = enroll_code_form(field, &enrolment.factor.id, "the app"),
            other = other_methods_link(&view),
            cancel = cancel_button(field),
        )
    })
}

/// How to add a new authenticator app: its QR code, its key in groups, then the first code
/// (the form follows). The key is shown this once.
pub(crate) fn totp_steps(enrolment: &twofold_core::service::Enrollment) -> String {
    use base64::Engine;
    let qr = base64::engine::general_purpose::STANDARD.encode(enrolment.qr_svg.as_bytes());
    format!(
        "<ol>\n<li>Open your authenticator app and add an account.</li>\n\
         <li>Scan this QR code:\n<img class=\"qr\" src=\"data:image/svg+xml;base64,{qr}\" \
         alt=\"QR code of your key (the key is written out below)\" width=\"200\" \
         height=\"200\"></li>\n\
         <li>Or, if you cannot scan, type this key:\n<code class=\"key\">{key}</code></li>\n\
         <li>Enter the 6-digit code the app shows.</li>\n</ol>\n",
        key = escape(&key_groups(&enrolment.secret)),
    )
}

// ------------------------------------------------------------ SMS and email

/// How the pages name and ask for a phone number or an email address (the account pages
/// too).
pub(crate) struct Contact {
    pub(crate) kind: ContactKind,
    pub(crate) method: Method,
    path: &'static str,
    label: &'static str,
    hint: &'static str,
    input: &'static str,
    /// "the text message" / "the email": where the code comes from.
    pub(crate) from: &'static str,
    /// What to say when the core cannot parse what was typed.
    malformed: &'static str,
}

impl Contact {
    /// The phone number or address as typed, for the core's parser.
    pub(crate) fn destination(&self, typed: &str) -> String {
        match self.kind {
            ContactKind::Sms => typed_phone(typed),
            ContactKind::Email => typed.to_string(),
        }
    }

    /// What to tell a person whose number or address the core refused (`Invalid` on the
    /// `phone` or `email` field): the parser's own words ("must be …") are for integrators, a
    /// person gets an example; other refusals (a country the tenant does not send to) say
    /// what they say.
    pub(crate) fn refusal(&self, message: &str) -> String {
        if message.starts_with("must") {
            self.malformed.to_string()
        } else {
            format!("That cannot be used: {}.", message.trim_end_matches('.'))
        }
    }

    /// The number or address form posting to `action`; after a refusal, with what was typed
    /// and why (`error`, plain text, announced and tied to the field).
    pub(crate) fn form(
        &self,
        field: &str,
        action: &str,
        typed: &str,
        error: Option<&str>,
        button: &str,
    ) -> String {
        let (alert, invalid, described) = match error {
            Some(e) => (
                format!(
                    "<p class=\"error\" role=\"alert\" id=\"destination-error\">{}</p>\n",
                    escape(e)
                ),
                " aria-invalid=\"true\"",
                "destination-hint destination-error",
            ),
            None => (String::new(), "", "destination-hint"),
        };
        format!(
            "{alert}<form method=\"post\" action=\"{action}\">\n{field}\n\
             <label for=\"destination\">{label}</label>\n\
             <p class=\"hint\" id=\"destination-hint\">{hint}</p>\n\
             <input {input} id=\"destination\" name=\"destination\" value=\"{typed}\" \
             maxlength=\"254\" aria-describedby=\"{described}\"{invalid} required autofocus>\n\
             <button type=\"submit\">{button}</button>\n</form>\n",
            label = self.label,
            hint = escape(self.hint),
            input = self.input,
            typed = escape(typed),
        )
    }
}

pub(crate) const SMS: Contact = Contact {
    kind: ContactKind::Sms,
    method: Method::Sms,
    path: "/oidc/enroll/sms",
    label: "Mobile phone number",
    hint: "With + and your country code, for example +44 7700 900123. We send a code by text \
           message each time you sign in.",
    input: "type=\"tel\" autocomplete=\"tel\" inputmode=\"tel\"",
    from: "the text message",
    malformed: "That is not a phone number we can send to. Enter it with + and the country \
                code, for example +44 7700 900123.",
};

pub(crate) const EMAIL: Contact = Contact {
    kind: ContactKind::Email,
    method: Method::Email,
    path: "/oidc/enroll/email",
    label: "Email address",
    hint: "We send a code to this address each time you sign in.",
    input: "type=\"email\" autocomplete=\"email\" autocapitalize=\"none\" spellcheck=\"false\"",
    from: "the email",
    malformed: "That is not an email address we can send to. Check it: it looks like \
                name@example.com.",
};

/// The number or address form of the enrolment at sign-in.
fn contact_page(
    s: &AppState,
    status: StatusCode,
    view: &HostedEnrollView,
    c: &Contact,
    typed: &str,
    error: Option<&str>,
) -> Response {
    enroll_page(s, status, view, |field| {
        format!(
            "{intro}{form}{other}{cancel}",
            intro = enroll_intro(view),
            form = c.form(field, c.path, typed, error, "Send a code"),
            other = other_methods_link(view),
            cancel = cancel_button(field),
        )
    })
}

/// The number or address form, for a method the tenant enables (else back to the chooser).
async fn contact_form(s: AppState, headers: HeaderMap, c: &Contact) -> Response {
    match s.core.hosted_enroll_view(login_token(&headers)).await {
        Ok(view) if view.methods.contains(&c.method) => {
            contact_page(&s, StatusCode::OK, &view, c, "", None)
        }
        Ok(_) => see_other("/oidc/enroll/methods"),
        Err(e) => core_error_page(&e),
    }
}

/// `GET /oidc/enroll/sms`
async fn sms_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    contact_form(s, headers, &SMS).await
}

/// `GET /oidc/enroll/email`
async fn email_form(State(s): State<AppState>, headers: HeaderMap) -> Response {
    contact_form(s, headers, &EMAIL).await
}

/// The page where the code sent to a phone or address is typed, with "Send a new code".
fn code_page(
    s: &AppState,
    status: StatusCode,
    view: &HostedEnrollView,
    factor: &HostedFactor,
    notice: Notice,
) -> Response {
    let from = if factor.kind == "sms" {
        SMS.from
    } else {
        EMAIL.from
    };
    let to = factor.destination.as_deref().unwrap_or("you");
    enroll_page(s, status, view, |field| {
        format!(
            "{intro}{notice}<p>Enter the code we sent by {kind} to {to}.</p>\n{form}\
             <form method=\"post\" action=\"/oidc/enroll/resend\">\n{field}\n\
             <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
             <button type=\"submit\" class=\"plain\">Send a new code</button>\n</form>\n\
             {other}{cancel}",
            intro = enroll_intro(view),
            notice = notice.html(),
            kind = kind_label(&factor.kind),
            to = escape(to),
            form = enroll_code_form(field, &factor.id, from),
            id = escape(&factor.id),
            other = other_methods_link(view),
            cancel = cancel_button(field),
        )
    })
}

/// "40 seconds", "5 minutes": how long to wait, rounded up.
pub(crate) fn wait_time(ms: i64) -> String {
    let secs = (ms.max(1000) + 999) / 1000;
    if secs == 1 {
        "1 second".into()
    } else if secs < 120 {
        format!("{secs} seconds")
    } else {
        format!("{} minutes", (secs + 59) / 60)
    }
}

/// A number as people type it (`+44 7700 900123`, `+1 (415) 555-0123`) without its
/// separators, for the core's E.164 parser; the API takes E.164 only, the page takes people.
fn typed_phone(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')' | '/')))
        .collect()
}

/// No `Debug`: it holds a phone number or an email address.
/// What every enrolment form POST starts with: the CSRF pair and the login cookie
/// ([`posted`]), then the enrolment view of that login; `Err` is the page to answer with.
async fn enrolling<'h>(
    s: &AppState,
    meta: RequestMeta,
    headers: &'h HeaderMap,
    csrf: &str,
) -> Result<(RequestMeta, &'h str, HostedEnrollView), Response> {
    let Some((meta, token)) = posted(s, meta, headers, csrf) else {
        return Err(csrf_refused());
    };
    match s.core.hosted_enroll_view(token).await {
        Ok(view) => Ok((meta, token, view)),
        Err(e) => Err(core_error_page(&e)),
    }
}

/// `POST /oidc/enroll/sms` or `…/email`: a pending factor and a code sent to it, then the
/// code page; a number or address the core refuses, or a sending cap, shows the form again.
async fn contact_enroll(
    s: AppState,
    meta: twofold_core::RequestMeta,
    headers: HeaderMap,
    form: DestinationForm,
    c: &Contact,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let typed = form.destination.trim();
    let destination = c.destination(typed);
    let refused = |status, why: &str| contact_page(&s, status, &view, c, typed, Some(why));
    match s
        .core
        .hosted_enroll_contact(&meta, token, c.kind, &destination)
        .await
    {
        Ok((factor, receipt)) => {
            let shown = HostedFactor {
                id: factor.id,
                kind: c.kind.as_str().to_string(),
                destination: Some(receipt.destination.clone()),
            };
            let notice = Notice::after_send(&s, Ok(receipt)).unwrap_or(Notice::None);
            code_page(&s, StatusCode::OK, &view, &shown, notice)
        }
        Err(CoreError::Invalid {
            field: "phone" | "email",
            message,
        }) => refused(StatusCode::BAD_REQUEST, &c.refusal(&message)),
        Err(CoreError::TooMany { retry_after_ms, .. }) => refused(
            StatusCode::TOO_MANY_REQUESTS,
            &format!(
                "Too many codes were sent. Try again in {}.",
                wait_time(retry_after_ms)
            ),
        ),
        Err(e) => core_error_page(&e),
    }
}

async fn sms_enroll(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<DestinationForm>,
) -> Response {
    contact_enroll(s, meta, headers, form, &SMS).await
}

async fn email_enroll(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<DestinationForm>,
) -> Response {
    contact_enroll(s, meta, headers, form, &EMAIL).await
}

/// `POST /oidc/enroll/resend`: the enrolment code again, under the core's cooldown and caps
/// (the page says how long to wait).
async fn resend(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<FactorForm>,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let contact = view
        .pending
        .iter()
        .find(|f| f.id == form.factor_id && f.kind != "totp");
    let Some(factor) = contact else {
        return core_error_page(&CoreError::NotFound("factor"));
    };
    let sent = s
        .core
        .hosted_enroll_resend(&meta, token, &form.factor_id)
        .await;
    match Notice::after_send(&s, sent) {
        Ok(notice) => code_page(&s, StatusCode::OK, &view, factor, notice),
        Err(e) => core_error_page(&e),
    }
}

/// `POST /oidc/enroll/confirm`: the first code turns the factor on and completes the login;
/// the recovery codes are shown this once, then a link goes back to the client with its
/// authorization code. A wrong code asks again for the same factor.
async fn enroll_confirm(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<FactorCodeForm>,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let step = s
        .core
        .hosted_enroll_confirm(&meta, token, &form.factor_id, form.code.trim())
        .await;
    match step {
        Ok((HostedStep::Done { redirect, .. }, codes)) => {
            let codes = codes.map(|c| c.codes).unwrap_or_default();
            enrolled(
                &s,
                &view,
                &redirect,
                Some(&codes),
                "Two-step verification is on for your account.",
            )
        }
        Ok((HostedStep::Rejected, _)) => {
            let contact = view
                .pending
                .iter()
                .find(|f| f.id == form.factor_id && f.kind != "totp");
            if let Some(factor) = contact {
                return code_page(&s, StatusCode::UNAUTHORIZED, &view, factor, Notice::Refused);
            }
            enroll_page(&s, StatusCode::UNAUTHORIZED, &view, |field| {
                format!(
                    "{}<p class=\"error\" role=\"alert\">That code did not work. Check the time \
                     on your phone and enter the code the app shows now.</p>\n{}\
                     <p>Lost the key?</p>\n{}{}{}",
                    enroll_intro(&view),
                    enroll_code_form(field, &form.factor_id, "the app"),
                    enroll_button(field, "Start again with a new key", true),
                    other_methods_link(&view),
                    cancel_button(field),
                )
            })
        }
        Err(e) => core_error_page(&e),
    }
}

// ------------------------------------------------------------ security keys

/// The page that registers a security key: a name, then the browser's prompt. `alert` (HTML)
/// goes above the form.
async fn key_page(
    s: &AppState,
    status: StatusCode,
    token: &str,
    view: &HostedEnrollView,
    alert: &str,
) -> Response {
    let ceremony = match s.core.hosted_enroll_key_ceremony(token).await {
        Ok(c) => c,
        Err(e) => return core_error_page(&e),
    };
    let csrf = Csrf::issue(&CookieFactory::of(s), COOKIE_PATH);
    let field = csrf.field();
    let body = format!(
        "{intro}{alert}<p>Insert or hold your security key near the device, or use a passkey \
         on your phone or computer, when your browser asks.</p>\n{form}{sends}{other}{cancel}",
        intro = enroll_intro(view),
        form = key_form(
            "/oidc/enroll/key",
            KeyMode::Register,
            &ceremony,
            &field,
            &format!("{}{}", step_up_fields(view), key_name_field()),
            "Register security key",
        ),
        sends = step_up_sends(&field, view),
        other = other_methods_link(view),
        cancel = cancel_button(&field),
    );
    let mut resp = page(status, ENROLL_TITLE, &body);
    csrf.attach(&mut resp);
    allow_redirect_to(&mut resp, &view.redirect_origin);
    resp
}

/// For a user whose methods no longer count: which of them (or a recovery code) proves it is
/// them, and its code, inside the key form.
fn step_up_fields(view: &HostedEnrollView) -> String {
    if view.step_up.is_empty() {
        return String::new();
    }
    let options: String = view
        .step_up
        .iter()
        .map(|f| {
            let what = match &f.destination {
                Some(d) => format!("Code by {} to {d}", kind_label(&f.kind)),
                None => format!("Code from your {}", kind_label(&f.kind)),
            };
            format!(
                "<option value=\"{}\">{}</option>",
                escape(&f.id),
                escape(&what)
            )
        })
        .collect();
    format!(
        "<fieldset>\n<legend>First confirm it is you</legend>\n\
         <p class=\"hint\">Your organisation now asks for a security key; your current method \
         proves it is you while you add one.</p>\n\
         <label for=\"prover\">With</label>\n<select id=\"prover\" name=\"prover\">{options}\
         <option value=\"recovery\">One of my recovery codes</option></select>\n\
         <label for=\"code\">Code</label>\n\
         <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
         autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"40\" required>\n</fieldset>\n"
    )
}

/// "Send me a code" for the step-up methods that receive codes (forms of their own).
fn step_up_sends(field: &str, view: &HostedEnrollView) -> String {
    view.step_up
        .iter()
        .filter(|f| f.kind != "totp")
        .map(|f| {
            format!(
                "<form method=\"post\" action=\"/oidc/enroll/key/send\">\n{field}\n\
                 <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
                 <button type=\"submit\" class=\"plain\">Send a code by {how}</button>\n</form>\n",
                id = escape(&f.id),
                how = kind_label(&f.kind),
            )
        })
        .collect()
}

/// `POST /oidc/enroll/key/send`: a step-up code to one of the user's methods, then the key
/// page again with what happened.
async fn key_step_up_send(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<FactorForm>,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let sent = s
        .core
        .hosted_enroll_step_up_send(&meta, token, &form.factor_id)
        .await;
    match Notice::after_send(&s, sent) {
        Ok(notice) => key_page(&s, StatusCode::OK, token, &view, &notice.html()).await,
        Err(e) => core_error_page(&e),
    }
}

/// `GET /oidc/enroll/key`: the key registration page.
async fn key_form_page(State(s): State<AppState>, headers: HeaderMap) -> Response {
    let token = login_token(&headers);
    match s.core.hosted_enroll_view(token).await {
        Ok(view) => key_page(&s, StatusCode::OK, token, &view, "").await,
        Err(e) => core_error_page(&e),
    }
}

/// `POST /oidc/enroll/key`: the new key's answer registers it and completes the login; the
/// recovery codes are shown this once when it is the user's first method. A refused answer
/// shows the page again with what to try.
async fn key_enroll(
    State(s): State<AppState>,
    Meta(meta): Meta,
    headers: HeaderMap,
    Form(form): Form<KeyForm>,
) -> Response {
    let (meta, token, view) = match enrolling(&s, meta, &headers, &form.csrf).await {
        Ok(x) => x,
        Err(page) => return page,
    };
    let code = form.code.trim();
    let step_up = match form.prover.as_str() {
        "" => None,
        "recovery" => Some(Proof::Recovery(code)),
        id => Some(Proof::Code {
            code,
            factor_id: Some(id),
        }),
    };
    let answer = (
        form.ceremony.as_str(),
        form.response.as_str(),
        form.name.as_str(),
    );
    let step = s
        .core
        .hosted_enroll_key(&meta, token, answer, step_up)
        .await;
    match step {
        Ok((Ok(HostedStep::Done { redirect, .. }), codes)) => {
            let codes = codes.map(|c| c.codes);
            let done = "Your security key is registered: two-step verification is on.";
            enrolled(&s, &view, &redirect, codes.as_deref(), done)
        }
        Ok((Ok(HostedStep::Rejected), _)) => {
            key_page(
                &s,
                StatusCode::UNAUTHORIZED,
                token,
                &view,
                &key_alert(refusal_text(KeyRefused::Answer(Refusal::Invalid))),
            )
            .await
        }
        Ok((Err(refusal), _)) => {
            let alert = key_alert(refusal_text(refusal));
            key_page(&s, StatusCode::UNAUTHORIZED, token, &view, &alert).await
        }
        Err(CoreError::Invalid { field, message }) => {
            let what = if field == "name" { "The name " } else { "" };
            let alert = key_alert(&format!("{what}{message}."));
            key_page(&s, StatusCode::UNPROCESSABLE_ENTITY, token, &view, &alert).await
        }
        Err(
            e @ CoreError::Conflict {
                code: "credential_registered",
                ..
            },
        ) => {
            let alert = key_alert(&e.to_string());
            key_page(&s, StatusCode::CONFLICT, token, &view, &alert).await
        }
        Err(e) => core_error_page(&e),
    }
}

/// The end of an enrolment at sign-in: the recovery codes this once (`done` says what
/// happened), then a link back to the client at `redirect`; straight back when the user had
/// their codes already (a key added to a profile that needs one). The login cookie goes.
fn enrolled(
    s: &AppState,
    view: &HostedEnrollView,
    redirect: &str,
    codes: Option<&[String]>,
    done: &str,
) -> Response {
    let mut resp = match codes {
        None => see_other(redirect),
        Some(codes) => recovery_codes_page(
            s,
            &ShownCodes {
                tenant_name: &view.tenant_name,
                codes,
                done,
                next: (
                    redirect,
                    &format!("I have saved them: continue to {}", view.client_app),
                ),
            },
        ),
    };
    clear(s, &mut resp, LOGIN_COOKIE);
    resp
}

/// An alert paragraph above a key form.
pub(crate) fn key_alert(text: &str) -> String {
    format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(text))
}

// ------------------------------------------------------------ recovery codes

/// The organisation's name as a file name part: `Acme Inc.` → `acme-inc`.
fn file_stem(name: &str) -> String {
    let mut stem = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.is_empty() && !stem.ends_with('-') {
            stem.push('-');
        }
    }
    let stem = stem.trim_end_matches('-');
    if stem.is_empty() {
        "twofold".into()
    } else {
        stem.chars().take(60).collect()
    }
}

/// The codes as a text file, for the page's download link (a `data:` URL: the codes never
/// travel again, and no server route keeps them), and its file name.
fn codes_file(tenant_name: &str, codes: &[String], now: i64) -> (String, String) {
    use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
    let text = format!(
        "Recovery codes for two-step verification\r\n\
         Organisation: {}\r\nCreated: {}\r\n\r\n\
         If you lose your phone, each code signs you in once. Keep them somewhere safe.\r\n\r\n\
         {}\r\n",
        tenant_name,
        human_utc(now),
        codes.join("\r\n")
    );
    (
        format!(
            "data:text/plain;charset=utf-8,{}",
            utf8_percent_encode(&text, NON_ALPHANUMERIC)
        ),
        format!("{}-recovery-codes.txt", file_stem(tenant_name)),
    )
}

/// Recovery codes to show this once.
pub(crate) struct ShownCodes<'a> {
    pub tenant_name: &'a str,
    pub codes: &'a [String],
    /// What just happened, in a sentence ("Two-step verification is on for your account.").
    pub done: &'a str,
    /// Where to go on (URL) and the link's words.
    pub next: (&'a str, &'a str),
}

/// The recovery codes, shown this once, with a download link and print support (a print
/// stylesheet keeps only the codes; a Print button appears where script runs), then on: at
/// the end of an enrolment, or after new codes on the account pages.
pub(crate) fn recovery_codes_page(s: &AppState, shown: &ShownCodes) -> Response {
    let items: Vec<String> = shown
        .codes
        .iter()
        .map(|c| format!("<li><code>{}</code></li>", escape(c)))
        .collect();
    let (href, filename) = codes_file(shown.tenant_name, shown.codes, s.core.now());
    let mut resp = page_with_head(
        StatusCode::OK,
        "Save your recovery codes",
        &print_support_head(),
        &format!(
            "<p class=\"note\" role=\"status\">{done}</p>\n\
             <p>If you lose your phone, each of these codes signs you in once. Download them \
             or print them and keep them somewhere safe: they are shown only now.</p>\n\
             <section class=\"printable\" aria-labelledby=\"codes-title\">\n\
             <h2 id=\"codes-title\">Recovery codes for {org}</h2>\n\
             <ul class=\"codes\">\n{items}\n</ul>\n</section>\n\
             <p><a class=\"download\" href=\"{href}\" download=\"{filename}\">Download the \
             codes (text file)</a></p>\n\
             <p><button type=\"button\" id=\"print\" class=\"plain\" hidden>Print the \
             codes</button></p>\n\
             <p><a class=\"continue\" href=\"{next}\">{label}</a></p>",
            done = escape(shown.done),
            org = escape(shown.tenant_name),
            items = items.join("\n"),
            href = escape(&href),
            filename = escape(&filename),
            next = escape(shown.next.0),
            label = escape(shown.next.1),
        ),
    );
    resp.headers_mut()
        .insert(header::CONTENT_SECURITY_POLICY, csp_with_own_scripts());
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_countdown_says_today_1_day_and_n_days() {
        assert_eq!(in_days(0), "today");
        assert_eq!(in_days(1), "in 1 day");
        assert_eq!(in_days(2), "in 2 days");
        assert_eq!(in_days(14), "in 14 days");
    }

    #[test]
    fn waits_are_rounded_up_to_seconds_then_minutes() {
        assert_eq!(wait_time(0), "1 second");
        assert_eq!(wait_time(29_001), "30 seconds");
        assert_eq!(wait_time(119_000), "119 seconds");
        assert_eq!(wait_time(120_000), "2 minutes");
        assert_eq!(wait_time(3_500_000), "59 minutes");
    }

    #[test]
    fn typed_numbers_lose_their_separators_only() {
        assert_eq!(typed_phone("+44 7700 900123"), "+447700900123");
        assert_eq!(typed_phone("+1 (415) 555-0123"), "+14155550123");
        assert_eq!(typed_phone("+49\u{a0}30.1234/5678"), "+493012345678");
        // Anything else stays for the core's parser to refuse.
        assert_eq!(typed_phone("0044 77x"), "004477x");
    }

    #[test]
    fn the_download_names_the_organisation_and_holds_every_code() {
        let view = HostedEnrollView {
            tenant_name: "Acme Inc. (EU)".into(),
            client_app: "web".into(),
            methods: vec![Method::Totp],
            postpone: Postpone::Never,
            pending: Vec::new(),
            step_up: Vec::new(),
            redirect_origin: "https://app.example".into(),
        };
        let codes = vec!["abcd-efgh".to_string(), "ijkl-mnop".to_string()];
        let (href, name) = codes_file(&view.tenant_name, &codes, 1_795_651_200_000);
        assert_eq!(name, "acme-inc-eu-recovery-codes.txt");
        let body = href.strip_prefix("data:text/plain;charset=utf-8,").unwrap();
        let text = percent_encoding::percent_decode_str(body)
            .decode_utf8()
            .unwrap();
        assert!(text.contains("Organisation: Acme Inc. (EU)"), "{text}");
        assert!(text.contains("Created: 2026-11-26 00:00 UTC"), "{text}");
        assert!(text.ends_with("abcd-efgh\r\nijkl-mnop\r\n"), "{text}");
        // Nothing in the URL could end the attribute or the URL early.
        assert!(!body.contains(|c: char| "\"'<> #&".contains(c)), "{body}");
        assert_eq!(file_stem("***"), "twofold");
    }
}
