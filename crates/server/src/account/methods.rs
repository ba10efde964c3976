//! The user's methods: the overview, adding one (the enrolment pieces of
//! [`crate::oidc_enroll`]), removing one with a fresh code, and changing the phone number of
//! a text-message method.

use super::proof::{describe, proof_form, provers_of, ProofForm, Sensitive, Shown};
use super::*;
use crate::oidc::Notice;
use crate::oidc_enroll::key_alert;
use crate::oidc_enroll::{
    first_code_form, recovery_codes_page, totp_steps, wait_time, Contact, ShownCodes, EMAIL, SMS,
};
use crate::signed_in::{csrf_refused, error_page, session_cookie, when, CsrfForm, CsrfOnly};
use crate::web::forms::{CodeForm, DestinationForm, FactorCodeForm, KeyForm};
use crate::web::keys::{key_form, key_name_field, refusal_text, KeyMode};
use crate::web::{escape, Csrf};
use axum::extract::{Form, Path};
use twofold_core::messaging::PhoneChangeState;
use twofold_core::model::FactorStatus;
use twofold_core::policy::Method;
use twofold_core::service::{AccountMethod, EnrollOptions, PhoneChangeView, SendReceipt};
use twofold_core::CoreError;

/// The overview's list of methods and what can be done with each (a list rather than a
/// table: it reads well on a phone).
fn methods_list(methods: &[AccountMethod]) -> String {
    if methods.is_empty() {
        return "<p>You have no sign-in method yet.</p>\n".into();
    }
    let items: String = methods
        .iter()
        .map(|m| {
            let f = &m.factor;
            let id = escape(&f.id);
            let state = match (f.status, f.locked) {
                (FactorStatus::Pending, _) => " (not confirmed yet)",
                (_, true) => " (locked)",
                _ => "",
            };
            let to = match (f.destination.as_deref(), f.label.as_deref()) {
                (Some(d), _) => format!(" to {}", escape(d)),
                (None, Some(name)) => format!(" “{}”", escape(name)),
                (None, None) => String::new(),
            };
            let mut actions = format!(
                "<a href=\"/account/methods/{id}/remove\" aria-label=\"Remove {what}\">Remove\
                 </a>",
                what = escape(&describe(m))
            );
            if f.kind == "sms" && f.status == FactorStatus::Active {
                actions.push_str(&format!(
                    " · <a href=\"/account/methods/{id}/phone\">Change the number</a>"
                ));
            }
            format!(
                "<li><strong>{kind}</strong>{to}{state}<br>\nAdded {added} · last used \
                 {used}<br>\n{actions}</li>\n",
                kind = method_name(&f.kind),
                added = escape(&when(f.created_at)),
                used = escape(&m.last_used_at.map(when).unwrap_or_else(|| "never".into())),
            )
        })
        .collect();
    format!("<ul class=\"items\">\n{items}</ul>\n")
}

/// The buttons that add a method, for the methods the organisation enables.
fn add_buttons(field: &str, enabled: &[Method]) -> String {
    let mut out = String::new();
    for m in enabled {
        out.push_str(&match m {
            Method::Totp => format!(
                "<form method=\"post\" action=\"/account/methods/totp\">\n{field}\n\
                 <button type=\"submit\">Add an authenticator app</button>\n</form>\n"
            ),
            Method::Sms => "<form method=\"get\" action=\"/account/methods/sms\">\n\
                            <button type=\"submit\" class=\"plain\">Add a phone for text \
                            messages</button>\n</form>\n"
                .into(),
            Method::Email => "<form method=\"get\" action=\"/account/methods/email\">\n\
                              <button type=\"submit\" class=\"plain\">Add an email \
                              address</button>\n</form>\n"
                .into(),
            Method::Webauthn => "<form method=\"get\" action=\"/account/methods/key\">\n\
                                 <button type=\"submit\" class=\"plain\">Add a security key \
                                 or passkey</button>\n</form>\n"
                .into(),
        });
    }
    if out.is_empty() {
        out.push_str("<p>Your organisation has not enabled a method to add.</p>\n");
    }
    out
}

/// The methods the organisation enables that this server can offer (security keys need a
/// relying party).
async fn enabled_methods(s: &AppState, acc: &Account) -> Result<Vec<Method>, CoreError> {
    let mut methods = s
        .core
        .get_policy(&acc.who.actor, acc.slug())
        .await?
        .0
        .methods;
    methods.retain(|m| *m != Method::Webauthn || s.core.security_keys_available());
    Ok(methods)
}

/// The overview with `notice` (HTML) on top.
async fn overview_page(s: &AppState, acc: &Account, status: StatusCode, notice: &str) -> Response {
    let methods = match s.core.account_methods(&acc.who).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let enabled = match enabled_methods(s, acc).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    account_page(s, acc, status, "Security settings", |field| {
        format!(
            "{notice}<h2>Your sign-in methods</h2>\n{table}\
             <p class=\"hint\">Removing a method, changing your phone number, new recovery \
             codes and signing out everywhere ask for a fresh code first.</p>\n\
             <h2>Add a method</h2>\n{add}\
             <h2>More</h2>\n<ul>\n\
             <li><a href=\"/account/recovery\">Recovery codes</a></li>\n\
             <li><a href=\"/account/devices\">Trusted devices</a></li>\n\
             <li><a href=\"/account/sessions\">Sessions and signing out everywhere</a></li>\n\
             </ul>",
            table = methods_list(&methods),
            add = add_buttons(field, &enabled),
        )
    })
}

/// `GET /account`
pub(super) async fn overview(State(s): St, acc: Account) -> Response {
    overview_page(&s, &acc, StatusCode::OK, "").await
}

// ------------------------------------------------------------ adding a method

const ADD_TITLE: &str = "Add a sign-in method";
const ADD_BUTTON: &str = "Add this method";

/// `POST /account/methods/totp`: a new pending authenticator app; its QR code and key are
/// shown this once.
pub(super) async fn add_totp(State(s): St, acc: Account, Form(f): Form<CsrfOnly>) -> Response {
    if !f.valid(&acc.headers) {
        return csrf_refused();
    }
    match enabled_methods(&s, &acc).await {
        Ok(m) if m.contains(&Method::Totp) => {}
        Ok(_) => {
            return error_page(&CoreError::Forbidden(
                "your organisation does not use this method",
            ))
        }
        Err(e) => return error_page(&e),
    }
    let enrolment = match s
        .core
        .enroll_totp(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            EnrollOptions::default(),
        )
        .await
    {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    account_page(&s, &acc, StatusCode::OK, ADD_TITLE, |field| {
        format!(
            "{steps}{form}",
            steps = totp_steps(&enrolment),
            form = first_code_form(
                field,
                "/account/methods/confirm",
                &enrolment.factor.id,
                "the app",
                ADD_BUTTON
            ),
        )
    })
}

/// The page that registers a security key: a name, then the browser's prompt. `alert` (HTML)
/// goes above the form.
async fn key_page(s: &AppState, acc: &Account, status: StatusCode, alert: &str) -> Response {
    let ceremony = match s.core.account_key_ceremony(&acc.who).await {
        Ok(c) => c,
        Err(e) => return error_page(&e),
    };
    account_page(s, acc, status, ADD_TITLE, |field| {
        format!(
            "{alert}<p>Insert or hold your security key near the device, or use a passkey on \
             your phone or computer, when your browser asks.</p>\n{}",
            key_form(
                "/account/methods/key",
                KeyMode::Register,
                &ceremony,
                field,
                &key_name_field(),
                "Register security key",
            )
        )
    })
}

/// `GET /account/methods/key`
pub(super) async fn key_form_page(State(s): St, acc: Account) -> Response {
    key_page(&s, &acc, StatusCode::OK, "").await
}

/// `POST /account/methods/key`: the new key's answer registers it (active at once: the answer
/// proves the key is here); the user is told by email, with a link that removes it.
pub(super) async fn add_key(State(s): St, acc: Account, Form(f): Form<KeyForm>) -> Response {
    if !f.valid(&acc.headers) {
        return csrf_refused();
    }
    match s
        .core
        .account_add_key(&acc.who, &acc.meta, &f.ceremony, &f.response, &f.name)
        .await
    {
        Ok(Ok((_, None))) => {
            let note = super::note("The security key was added.");
            overview_page(&s, &acc, StatusCode::OK, &note).await
        }
        // The key is the user's only method: its recovery codes, this once.
        Ok(Ok((_, Some(codes)))) => recovery_codes_page(
            &s,
            &ShownCodes {
                tenant_name: &acc.who.tenant.name,
                codes: &codes.codes,
                done: "The security key was added.",
                next: (
                    "/account",
                    "I have saved them: back to your security settings",
                ),
            },
        ),
        Ok(Err(refusal)) => {
            let alert = key_alert(refusal_text(refusal));
            key_page(&s, &acc, StatusCode::UNAUTHORIZED, &alert).await
        }
        Err(CoreError::Invalid { message, .. }) => {
            let alert = key_alert(&format!("The name {message}."));
            key_page(&s, &acc, StatusCode::UNPROCESSABLE_ENTITY, &alert).await
        }
        Err(e @ CoreError::Conflict { .. }) => {
            let alert = key_alert(&e.to_string());
            key_page(&s, &acc, StatusCode::CONFLICT, &alert).await
        }
        Err(e) => error_page(&e),
    }
}

/// The number or address form (after a refusal: what was typed, and why).
fn contact_page(
    s: &AppState,
    acc: &Account,
    status: StatusCode,
    c: &Contact,
    typed: &str,
    error: Option<&str>,
) -> Response {
    let action = match c.kind {
        twofold_core::service::ContactKind::Sms => "/account/methods/sms",
        twofold_core::service::ContactKind::Email => "/account/methods/email",
    };
    account_page(s, acc, status, ADD_TITLE, |field| {
        c.form(field, action, typed, error, "Send a code")
    })
}

async fn contact_form(s: AppState, acc: Account, c: &Contact) -> Response {
    match enabled_methods(&s, &acc).await {
        Ok(m) if m.contains(&c.method) => contact_page(&s, &acc, StatusCode::OK, c, "", None),
        Ok(_) => see_overview(),
        Err(e) => error_page(&e),
    }
}

fn see_overview() -> Response {
    crate::signed_in::see_other("/account")
}

/// `GET /account/methods/sms`
pub(super) async fn sms_form(State(s): St, acc: Account) -> Response {
    contact_form(s, acc, &SMS).await
}

/// `GET /account/methods/email`
pub(super) async fn email_form(State(s): St, acc: Account) -> Response {
    contact_form(s, acc, &EMAIL).await
}

/// The page where the code sent to a new phone or address is typed.
fn code_page(
    s: &AppState,
    acc: &Account,
    status: StatusCode,
    factor_id: &str,
    kind: &str,
    notice: Notice,
) -> Response {
    let c = if kind == "sms" { &SMS } else { &EMAIL };
    account_page(s, acc, status, ADD_TITLE, |field| {
        format!(
            "{notice}{form}<form method=\"post\" action=\"/account/methods/resend\">\n{field}\n\
             <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
             <button type=\"submit\" class=\"plain\">Send a new code</button>\n</form>\n",
            notice = notice.html(),
            form = first_code_form(
                field,
                "/account/methods/confirm",
                factor_id,
                c.from,
                ADD_BUTTON
            ),
            id = escape(factor_id),
        )
    })
}

async fn add_contact(s: AppState, acc: Account, f: DestinationForm, c: &Contact) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    match enabled_methods(&s, &acc).await {
        Ok(m) if m.contains(&c.method) => {}
        Ok(_) => return see_overview(),
        Err(e) => return error_page(&e),
    }
    let typed = f.destination.trim();
    let added = s
        .core
        .enroll_contact(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            c.kind,
            &c.destination(typed),
        )
        .await;
    let refused = |status, why: &str| contact_page(&s, &acc, status, c, typed, Some(why));
    match added {
        Ok((factor, receipt)) => {
            let notice = Notice::after_send(&s, Ok(receipt)).unwrap_or(Notice::None);
            code_page(&s, &acc, StatusCode::OK, &factor.id, &factor.kind, notice)
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
        Err(e) => error_page(&e),
    }
}

/// `POST /account/methods/sms`
pub(super) async fn add_sms(
    State(s): St,
    acc: Account,
    Form(f): Form<DestinationForm>,
) -> Response {
    add_contact(s, acc, f, &SMS).await
}

/// `POST /account/methods/email`
pub(super) async fn add_email(
    State(s): St,
    acc: Account,
    Form(f): Form<DestinationForm>,
) -> Response {
    add_contact(s, acc, f, &EMAIL).await
}

/// One of the user's own pending methods (anyone else's, or an active one: not found).
async fn own_pending(s: &AppState, acc: &Account, id: &str) -> Result<AccountMethod, CoreError> {
    s.core
        .account_methods(&acc.who)
        .await?
        .into_iter()
        .find(|m| m.factor.id == id && m.factor.status == FactorStatus::Pending)
        .ok_or(CoreError::NotFound("factor"))
}

/// `POST /account/methods/resend`: the new phone's or address's code again (cooldown and
/// caps apply).
pub(super) async fn resend(State(s): St, acc: Account, Form(f): Form<FactorCodeForm>) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    let pending = match own_pending(&s, &acc, &f.factor_id).await {
        Ok(m) if m.factor.kind != "totp" => m,
        Ok(_) => return error_page(&CoreError::NotFound("factor")),
        Err(e) => return error_page(&e),
    };
    let sent = s
        .core
        .send_code(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            &f.factor_id,
            twofold_core::service::CodeFor::SignIn,
        )
        .await;
    match Notice::after_send(&s, sent) {
        Ok(n) => code_page(
            &s,
            &acc,
            StatusCode::OK,
            &f.factor_id,
            &pending.factor.kind,
            n,
        ),
        Err(e) => error_page(&e),
    }
}

/// `POST /account/methods/confirm`: the new method's first code turns it on (and, if it is
/// the user's first, shows their recovery codes once).
pub(super) async fn confirm(State(s): St, acc: Account, Form(f): Form<FactorCodeForm>) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    let pending = match own_pending(&s, &acc, &f.factor_id).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let confirmed = s
        .core
        .confirm_factor(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            &f.factor_id,
            f.code.trim(),
        )
        .await;
    let kind = pending.factor.kind.as_str();
    match confirmed {
        Ok((v, codes)) if v.is_accepted() => {
            let added = format!("{} added.", describe(&pending));
            match codes {
                Some(codes) => recovery_codes_page(
                    &s,
                    &ShownCodes {
                        tenant_name: &acc.who.tenant.name,
                        codes: &codes.codes,
                        done: &added,
                        next: (
                            "/account",
                            "I have saved them: back to your security settings",
                        ),
                    },
                ),
                None => overview_page(&s, &acc, StatusCode::OK, &super::note(&added)).await,
            }
        }
        // A code that is not even digits is a wrong code too.
        Ok(_) | Err(CoreError::Invalid { .. }) if kind != "totp" => code_page(
            &s,
            &acc,
            StatusCode::UNAUTHORIZED,
            &f.factor_id,
            kind,
            Notice::Refused,
        ),
        Ok(_) | Err(CoreError::Invalid { .. }) => {
            account_page(&s, &acc, StatusCode::UNAUTHORIZED, ADD_TITLE, |field| {
                format!(
                    "{}{}<p>Lost the key?</p>\n<form method=\"post\" \
                     action=\"/account/methods/totp\">\n{field}\n<button type=\"submit\" \
                     class=\"plain\">Start again with a new key</button>\n</form>\n",
                    Notice::Refused.html(),
                    first_code_form(
                        field,
                        "/account/methods/confirm",
                        &f.factor_id,
                        "the app",
                        ADD_BUTTON
                    ),
                )
            })
        }
        Err(e) => error_page(&e),
    }
}

// ------------------------------------------------------------ removing a method

/// The page that removes one of the user's methods: a fresh code for an active one, just a
/// button for one not confirmed yet.
pub(super) async fn remove_page(s: &AppState, acc: &Account, id: &str, shown: Shown) -> Response {
    let provers = match provers_of(s, acc, &Sensitive::Remove(id.to_string())).await {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let Some(target) = provers.methods.iter().find(|m| m.factor.id == id) else {
        return error_page(&CoreError::NotFound("method"));
    };
    let action = format!("/account/methods/{id}/remove");
    account_page(s, acc, shown.status, "Remove a sign-in method", |field| {
        let what = format!(
            "<p>Remove <strong>{}</strong>?</p>\n",
            escape(&describe(target))
        );
        if target.factor.status == FactorStatus::Pending {
            return format!(
                "{what}<form method=\"post\" action=\"{}\">\n{field}\n\
                 <button type=\"submit\">Remove it</button>\n</form>\n",
                escape(&action)
            );
        }
        format!(
            "{what}<p>You will no longer be able to sign in with it. Every other session \
             and trusted device is signed out; this one stays.</p>\n{}",
            proof_form(
                field,
                &action,
                &Sensitive::Remove(id.to_string()),
                &provers,
                &shown,
                "Remove it"
            )
        )
    })
}

/// `GET /account/methods/{factor}/remove`
pub(super) async fn remove_form(State(s): St, acc: Account, Path(id): Path<String>) -> Response {
    remove_page(&s, &acc, &id, Shown::fresh()).await
}

/// `POST /account/methods/{factor}/remove`: removed only with a fresh code (the core's check,
/// in the removal's transaction); the session carries over to the user's new generation.
pub(super) async fn remove(
    State(s): St,
    acc: Account,
    Path(id): Path<String>,
    Form(f): Form<ProofForm>,
) -> Response {
    if !f.valid(&acc) {
        return csrf_refused();
    }
    let binding = Sensitive::Remove(id.clone()).binding(&acc);
    match s
        .core
        .account_remove_method(&acc.who, &acc.meta, &id, f.proof(&binding))
        .await
    {
        Ok((v, renewed)) if v.is_accepted() => {
            let mut acc = acc;
            let mut cookie = None;
            if let Some(session) = renewed {
                // The old token died with the removal: this page is drawn for the new one.
                match s
                    .core
                    .signed_in(AccountArea::AUDIENCE, &session.token)
                    .await
                {
                    Ok(Some(who)) => acc.who = who,
                    Ok(None) => {
                        return crate::signed_in::signed_out_page::<AccountArea>(&s, StatusCode::OK)
                    }
                    Err(e) => return error_page(&e),
                }
                cookie = Some(session);
            }
            let mut resp = overview_page(
                &s,
                &acc,
                StatusCode::OK,
                &super::note("The method was removed."),
            )
            .await;
            if let Some(session) = cookie {
                session_cookie::<AccountArea>(&s, &mut resp, &session);
            }
            resp
        }
        // A code that is not even digits, or a method that is not the user's, proves
        // nothing either.
        Ok(_) | Err(CoreError::Invalid { .. }) => {
            remove_page(&s, &acc, &id, Shown::refused(&f)).await
        }
        Err(e) => error_page(&e),
    }
}

// ------------------------------------------------------------ changing the phone number

const PHONE_TITLE: &str = "Change your phone number";

/// `GET /account/methods/{factor}/phone`: the new number.
pub(super) async fn phone_form(State(s): St, acc: Account, Path(id): Path<String>) -> Response {
    phone_number_page(&s, &acc, &id, StatusCode::OK, "", None).await
}

async fn phone_number_page(
    s: &AppState,
    acc: &Account,
    id: &str,
    status: StatusCode,
    typed: &str,
    error: Option<&str>,
) -> Response {
    let methods = match s.core.account_methods(&acc.who).await {
        Ok(m) => m,
        Err(e) => return error_page(&e),
    };
    let Some(target) = methods
        .iter()
        .find(|m| m.factor.id == id && m.factor.kind == "sms")
    else {
        return error_page(&CoreError::NotFound("method"));
    };
    let action = format!("/account/methods/{id}/phone");
    account_page(s, acc, status, PHONE_TITLE, |field| {
        format!(
            "<p>Text-message codes go to {} now. We send a code to that number first, then \
             one to the new number.</p>\n{}",
            escape(target.factor.destination.as_deref().unwrap_or("")),
            SMS.form(
                field,
                &action,
                typed,
                error,
                "Send a code to my current number"
            )
        )
    })
}

/// The page of the phone change's current step: the code sent to the old number, then the
/// one sent to the new number.
fn phone_step_page(
    s: &AppState,
    acc: &Account,
    status: StatusCode,
    change: &PhoneChangeView,
    notice: Notice,
) -> Response {
    let base = format!(
        "/account/methods/{}/phone/{}",
        escape(&change.factor_id),
        escape(&change.id)
    );
    let step = if change.state == PhoneChangeState::AwaitingOld {
        "Enter the code we sent to your current number.".to_string()
    } else {
        format!(
            "Your current number agreed. Now enter the code we sent to the new number, {}.",
            change.new_phone
        )
    };
    account_page(s, acc, status, PHONE_TITLE, |field| {
        format!(
            "{notice}<p>{step}</p>\n<form method=\"post\" action=\"{base}\">\n{field}\n\
             <label for=\"code\">Code from the text message</label>\n\
             <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
             inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus>\n\
             <button type=\"submit\">Continue</button>\n</form>\n\
             <form method=\"post\" action=\"{base}/resend\">\n{field}\n\
             <button type=\"submit\" class=\"plain\">Send a new code</button>\n</form>\n",
            notice = notice.html(),
            step = escape(&step),
        )
    })
}

fn sent(s: &AppState, receipt: Option<SendReceipt>) -> Notice {
    receipt
        .and_then(|r| Notice::after_send(s, Ok(r)).ok())
        .unwrap_or(Notice::None)
}

/// `POST /account/methods/{factor}/phone`: starts the change; a code goes to the old number.
pub(super) async fn phone_start(
    State(s): St,
    acc: Account,
    Path(id): Path<String>,
    Form(f): Form<DestinationForm>,
) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    let typed = f.destination.trim();
    let started = s
        .core
        .start_phone_change(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            &id,
            &SMS.destination(typed),
        )
        .await;
    match started {
        Ok((change, receipt)) => {
            let notice = sent(&s, Some(receipt));
            phone_step_page(&s, &acc, StatusCode::OK, &change, notice)
        }
        Err(CoreError::Invalid {
            field: field @ ("phone" | "new_phone"),
            message,
        }) => {
            let why = if field == "phone" {
                SMS.refusal(&message)
            } else {
                format!("That is the number you have already ({message}).")
            };
            phone_number_page(&s, &acc, &id, StatusCode::BAD_REQUEST, typed, Some(&why)).await
        }
        Err(CoreError::TooMany { retry_after_ms, .. }) => {
            let why = format!(
                "Too many codes were sent. Try again in {}.",
                wait_time(retry_after_ms)
            );
            phone_number_page(
                &s,
                &acc,
                &id,
                StatusCode::TOO_MANY_REQUESTS,
                typed,
                Some(&why),
            )
            .await
        }
        Err(e) => error_page(&e),
    }
}

/// `POST /account/methods/{factor}/phone/{change}`: the current step's code. The old
/// number's earns the new number its code; the new number's swaps them, and the session
/// carries over to the user's new generation.
pub(super) async fn phone_confirm(
    State(s): St,
    acc: Account,
    Path((id, change_id)): Path<(String, String)>,
    Form(f): Form<CodeForm>,
) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    let step = s
        .core
        .account_confirm_phone_change(&acc.who, &acc.meta, (&id, &change_id), f.code.trim())
        .await;
    let step = match step {
        Err(CoreError::Invalid { field: "code", .. }) => s
            .core
            .phone_change(
                &acc.who.actor,
                acc.slug(),
                &acc.who.user.external_id,
                &id,
                &change_id,
            )
            .await
            .map(|view| {
                (
                    twofold_core::service::Verdict::Rejected(
                        twofold_core::ports::RejectReason::WrongCode,
                    ),
                    view,
                    None,
                    None,
                )
            }),
        other => other,
    };
    match step {
        Ok((_, view, _, Some(session))) => {
            let mut acc = acc;
            match s
                .core
                .signed_in(AccountArea::AUDIENCE, &session.token)
                .await
            {
                Ok(Some(who)) => acc.who = who,
                Ok(None) => {
                    return crate::signed_in::signed_out_page::<AccountArea>(&s, StatusCode::OK)
                }
                Err(e) => return error_page(&e),
            }
            let done = format!("Text-message codes now go to {}.", view.new_phone);
            let mut resp = overview_page(&s, &acc, StatusCode::OK, &super::note(&done)).await;
            session_cookie::<AccountArea>(&s, &mut resp, &session);
            resp
        }
        Ok((v, view, receipt, None)) if v.is_accepted() => {
            phone_step_page(&s, &acc, StatusCode::OK, &view, sent(&s, receipt))
        }
        Ok((_, view, _, None)) => {
            phone_step_page(&s, &acc, StatusCode::UNAUTHORIZED, &view, Notice::Refused)
        }
        Err(e) => error_page(&e),
    }
}

/// `POST /account/methods/{factor}/phone/{change}/resend`: the current step's code again.
pub(super) async fn phone_resend(
    State(s): St,
    acc: Account,
    Path((id, change_id)): Path<(String, String)>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !f.valid(&acc.headers) {
        return csrf_refused();
    }
    let (actor, slug, ext) = (&acc.who.actor, acc.slug(), &acc.who.user.external_id);
    let view = match s.core.phone_change(actor, slug, ext, &id, &change_id).await {
        Ok(v) => v,
        Err(e) => return error_page(&e),
    };
    let sent = s
        .core
        .resend_phone_change_code(actor, &acc.meta, slug, ext, &id, &change_id)
        .await;
    match Notice::after_send(&s, sent) {
        Ok(n) => phone_step_page(&s, &acc, StatusCode::OK, &view, n),
        Err(e) => error_page(&e),
    }
}
