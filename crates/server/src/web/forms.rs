//! The form bodies the pages post, each defined once: every form carries its CSRF token
//! (checked with [`CsrfForm::valid`]) and a few named fields. None derives `Debug`: they hold
//! codes, numbers and addresses.

use super::Csrf;
use axum::http::HeaderMap;
use serde::Deserialize;

/// A form whose only field is its CSRF token (cancel, sign out, revoke, show a vault code).
#[derive(Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    pub csrf: String,
}

/// A code typed into a form (an emailed confirmation, a phone change's step).
#[derive(Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub code: String,
}

/// One of the user's factors named (send a code, resend an enrolment code).
#[derive(Deserialize)]
pub struct FactorForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub factor_id: String,
}

/// A pending factor's first code.
#[derive(Deserialize)]
pub struct FactorCodeForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub factor_id: String,
    #[serde(default)]
    pub code: String,
}

/// A phone number or an email address typed into a form.
#[derive(Deserialize)]
pub struct DestinationForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub destination: String,
}

/// A security key's answer (`response`, WebAuthn JSON) to the ceremony `ceremony`, with the
/// name of a new key or the "remember this device" box of a sign-in.
#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    pub csrf: String,
    #[serde(default)]
    pub ceremony: String,
    #[serde(default)]
    pub response: String,
    #[serde(default)]
    pub name: String,
    pub remember: Option<String>,
    /// The step-up before a key is added beside methods that no longer count: which of them
    /// (a factor id, or `recovery`) and its code.
    #[serde(default)]
    pub prover: String,
    #[serde(default)]
    pub code: String,
}

/// The CSRF check every form POST starts with.
pub trait CsrfForm {
    fn csrf(&self) -> &str;

    /// The request carries the CSRF cookie and this form echoes it ([`Csrf::verify`]).
    fn valid(&self, headers: &HeaderMap) -> bool {
        Csrf::verify(headers, self.csrf())
    }
}

macro_rules! forms {
    ($($t:ty),*) => {$(
        impl CsrfForm for $t {
            fn csrf(&self) -> &str {
                &self.csrf
            }
        }
    )*};
}

forms!(
    CsrfOnly,
    CodeForm,
    FactorForm,
    FactorCodeForm,
    DestinationForm,
    KeyForm
);
