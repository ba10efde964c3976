//! The security-key forms (WebAuthn), shared by the sign-in, enrolment and account pages.
//!
//! A key form is an ordinary form with its CSRF token, the ceremony's id and an empty
//! `response` field; `/assets/webauthn.js` asks the browser for the key's answer, fills the
//! field and submits. The script is a file from this origin: the pages that carry a key form
//! allow `script-src 'self'` and nothing inline ([`allow_own_scripts`]).

use super::{escape, WEBAUTHN_SCRIPT};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use twofold_core::service::{KeyCeremony, KeyRefused, MAX_KEY_NAME_CHARS};
use twofold_webauthn::Refusal;

/// What marks a body as holding a key form (see [`super::page_with_head`]). The quote
/// matters: escaped text (a key's name, an organisation's) never holds a bare `"`, so no
/// user-chosen text can switch the page's scripts on.
pub const KEY_FORM_MARK: &str = " data-webauthn=\"";

/// What the ceremony does in the browser.
#[derive(Debug, Clone, Copy)]
pub enum KeyMode {
    /// `navigator.credentials.create`: a new key.
    Register,
    /// `navigator.credentials.get`: an existing key signs.
    SignIn,
}

/// The `<head>` line that loads the key script.
pub fn key_script_head() -> String {
    format!(
        "<script src=\"{}\" defer></script>\n",
        WEBAUTHN_SCRIPT.href()
    )
}

/// Lets the page run scripts from this origin, keeping the rest of its CSP (a `form-action`
/// for the client's origin, say): still nothing inline.
pub fn allow_own_scripts(resp: &mut Response) {
    let h = resp.headers_mut();
    let current = h
        .get(header::CONTENT_SECURITY_POLICY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or(super::CSP)
        .to_string();
    if current.contains("script-src") {
        return;
    }
    let csp = current.replacen(
        "default-src 'none';",
        "default-src 'none'; script-src 'self';",
        1,
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
}

/// A form running `ceremony` that posts to `action`; `fields` (trusted HTML: a name input, a
/// "remember" box) go before the button labelled `button`.
pub fn key_form(
    action: &str,
    mode: KeyMode,
    ceremony: &KeyCeremony,
    csrf_field: &str,
    fields: &str,
    button: &str,
) -> String {
    let mode = match mode {
        KeyMode::Register => "create",
        KeyMode::SignIn => "get",
    };
    format!(
        "<form method=\"post\" action=\"{action}\"{KEY_FORM_MARK}{mode}\" \
         data-options=\"{options}\">\n{csrf_field}\n\
         <input type=\"hidden\" name=\"ceremony\" value=\"{id}\">\n\
         <input type=\"hidden\" name=\"response\" value=\"\">\n\
         {fields}<button type=\"submit\">{button}</button>\n\
         <p class=\"hint key-status\" role=\"status\" aria-live=\"polite\"></p>\n\
         <noscript><p class=\"hint\">Security keys need JavaScript in this browser.</p>\
         </noscript>\n</form>\n",
        action = escape(action),
        options = escape(&ceremony.options),
        id = escape(&ceremony.id),
        button = escape(button),
    )
}

/// The field that names a new key.
pub fn key_name_field() -> String {
    format!(
        "<label for=\"key-name\">Name this key</label>\n\
         <input type=\"text\" id=\"key-name\" name=\"name\" maxlength=\"{MAX_KEY_NAME_CHARS}\" \
         placeholder=\"e.g. Blue YubiKey\" autocomplete=\"off\">\n\
         <p class=\"hint\">So you can tell your keys apart later.</p>\n"
    )
}

/// What a user is told when a key was not registered: what to try, not the internals.
pub fn refusal_text(r: KeyRefused) -> &'static str {
    let r = match r {
        KeyRefused::Answer(r) => r,
        KeyRefused::Proof => {
            return "That code did not work. Check it and try again, or use a recovery code."
        }
    };
    match r {
        Refusal::Malformed | Refusal::UserNotPresent => {
            "Your security key did not answer. Try again, and touch the key when it blinks."
        }
        Refusal::ChallengeMismatch => {
            "That request is no longer valid (it was used or took too long). Try again."
        }
        Refusal::OriginMismatch | Refusal::RpIdMismatch => {
            "Your browser answered for another website. Open this page from its real \
             address and try again."
        }
        _ => "That security key was not accepted. Try another key or another way.",
    }
}
