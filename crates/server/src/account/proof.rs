//! The fresh second factor the sensitive changes ask for: a code from one of the user's
//! active methods (sent on request for a text message or email, bound to the one change it
//! confirms), or one of their recovery codes. The core judges it in the change's own
//! transaction; this module renders the fields and sends the codes.

use super::*;
use crate::oidc::Notice;
use crate::signed_in::{csrf_refused, error_page};
use crate::web::keys::{key_form, KeyMode};
use crate::web::{escape, Csrf};
use axum::extract::Form;
use serde::Deserialize;
use twofold_core::model::FactorStatus;
use twofold_core::service::{AccountMethod, CodeFor, KeyCeremony, Proof};
use twofold_core::CoreError;

/// A change that needs a fresh code.
pub(super) enum Sensitive {
    /// Removing this method (by factor id).
    Remove(String),
    RecoveryCodes,
    SignOutEverywhere,
}

impl Sensitive {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "recovery_codes" => Some(Self::RecoveryCodes),
            "sign_out_everywhere" => Some(Self::SignOutEverywhere),
            _ => s
                .strip_prefix("remove:")
                .map(|id| Self::Remove(id.to_string())),
        }
    }

    /// What a key's proof of this change is bound to in `acc`'s session.
    pub fn binding(&self, acc: &Account) -> String {
        acc.who.proof_binding(&self.value())
    }

    fn value(&self) -> String {
        match self {
            Self::Remove(id) => format!("remove:{id}"),
            Self::RecoveryCodes => "recovery_codes".into(),
            Self::SignOutEverywhere => "sign_out_everywhere".into(),
        }
    }

    fn code_for(&self) -> CodeFor<'_> {
        match self {
            Self::Remove(id) => CodeFor::Disable(id),
            Self::RecoveryCodes => CodeFor::RecoveryCodes,
            Self::SignOutEverywhere => CodeFor::SignOutEverywhere,
        }
    }
}

/// How a page asking for a fresh code is shown: its status, the notice above the form (a
/// code sent, a code refused) and the method to preselect.
pub(super) struct Shown {
    pub status: StatusCode,
    pub notice: Notice,
    pub chosen: Option<String>,
}

impl Shown {
    pub fn fresh() -> Self {
        Self {
            status: StatusCode::OK,
            notice: Notice::None,
            chosen: None,
        }
    }

    /// The code did not prove it: the same form again, with the method that was tried.
    pub fn refused(form: &ProofForm) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            notice: if form.prover == "key" {
                Notice::KeyRefused
            } else {
                Notice::Refused
            },
            chosen: Some(form.prover.clone()),
        }
    }
}

/// What can prove a change: the user's methods, and a ceremony for their security keys when
/// they have one.
pub(super) struct Provers {
    pub methods: Vec<AccountMethod>,
    pub key: Option<KeyCeremony>,
}

/// The user's methods and, if one of them is an active security key, a fresh ceremony for it
/// bound to `what`.
pub(super) async fn provers_of(
    s: &AppState,
    acc: &Account,
    what: &Sensitive,
) -> Result<Provers, CoreError> {
    let methods = s.core.account_methods(&acc.who).await?;
    let has_key = methods
        .iter()
        .any(|m| m.factor.kind == KEY_KIND && m.factor.status == FactorStatus::Active);
    let key = if has_key {
        s.core
            .account_proof_ceremony(&acc.who, &what.value())
            .await?
    } else {
        None
    };
    Ok(Provers { methods, key })
}

/// The user's active methods that take a code: what the code field can be proved with.
fn code_provers(methods: &[AccountMethod]) -> Vec<&AccountMethod> {
    methods
        .iter()
        .filter(|m| m.factor.status == FactorStatus::Active && m.factor.kind != KEY_KIND)
        .collect()
}

/// "Text message to •••23", "Authenticator app", "Security key “Blue YubiKey”".
pub(super) fn describe(m: &AccountMethod) -> String {
    match (&m.factor.destination, &m.factor.label) {
        (Some(to), _) => format!("{} to {to}", method_name(&m.factor.kind)),
        (None, Some(name)) => format!("{} “{name}”", method_name(&m.factor.kind)),
        (None, None) => method_name(&m.factor.kind).to_string(),
    }
}

/// The fields of a form that needs a fresh code (inside the change's own `<form>`), then its
/// submit button labelled `button`, then the "send me a code" buttons for the methods that
/// receive codes (forms of their own, so they follow the change's form).
pub(super) fn proof_form(
    field: &str,
    action: &str,
    what: &Sensitive,
    provers: &Provers,
    shown: &Shown,
    button: &str,
) -> String {
    let key = provers
        .key
        .as_ref()
        .map(|k| {
            format!(
                "<h3>With your security key</h3>\n{}<h3>Or with a code</h3>\n",
                key_form(
                    action,
                    KeyMode::SignIn,
                    k,
                    field,
                    "<input type=\"hidden\" name=\"prover\" value=\"key\">\n",
                    button,
                )
            )
        })
        .unwrap_or_default();
    let provers = code_provers(&provers.methods);
    let options: String = provers
        .iter()
        .map(|m| {
            let selected = if shown.chosen.as_deref() == Some(m.factor.id.as_str()) {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{}\"{selected}>{}</option>",
                escape(&m.factor.id),
                escape(&describe(m))
            )
        })
        .collect();
    let recovery_selected = if shown.chosen.as_deref() == Some("recovery") {
        " selected"
    } else {
        ""
    };
    let sends: String = provers
        .iter()
        .filter(|m| m.factor.kind != "totp")
        .map(|m| {
            format!(
                "<form method=\"post\" action=\"/account/send-code\">\n{field}\n\
                 <input type=\"hidden\" name=\"factor_id\" value=\"{id}\">\n\
                 <input type=\"hidden\" name=\"for\" value=\"{what}\">\n\
                 <button type=\"submit\" class=\"plain\">Send a code by {how}</button>\n\
                 </form>\n",
                id = escape(&m.factor.id),
                what = escape(&what.value()),
                how = escape(&describe(m).to_lowercase()),
            )
        })
        .collect();
    format!(
        "{notice}{key}<form method=\"post\" action=\"{action}\">\n{field}\n<fieldset>\n\
         <legend>Confirm it is you</legend>\n\
         <label for=\"prover\">Where your code comes from</label>\n\
         <select id=\"prover\" name=\"prover\">{options}<option value=\"recovery\"\
         {recovery_selected}>One of my recovery codes</option></select>\n\
         <label for=\"code\">Code</label>\n\
         <p class=\"hint\" id=\"code-hint\">The code your app shows now, a code we send you \
         (ask for it below), or one of your recovery codes.</p>\n\
         <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
         autocapitalize=\"none\" spellcheck=\"false\" maxlength=\"40\" \
         aria-describedby=\"code-hint\" required>\n</fieldset>\n\
         <button type=\"submit\">{button}</button>\n</form>\n{sends}",
        notice = shown.notice.html(),
        action = escape(action),
        button = escape(button),
    )
}

/// No `Debug`: it holds a code.
#[derive(Deserialize)]
pub(super) struct ProofForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    prover: String,
    #[serde(default)]
    code: String,
    /// A security key's ceremony and answer, when `prover` is `key`.
    #[serde(default)]
    ceremony: String,
    #[serde(default)]
    response: String,
}

impl ProofForm {
    pub fn valid(&self, acc: &Account) -> bool {
        Csrf::verify(&acc.headers, &self.csrf)
    }

    /// The proof as the core takes it: a recovery code, a security key's answer (to a
    /// ceremony made for `binding`, see [`Sensitive::binding`]), or a code of the chosen
    /// method.
    pub fn proof<'a>(&'a self, binding: &'a str) -> Proof<'a> {
        let code = self.code.trim();
        match self.prover.as_str() {
            "recovery" => Proof::Recovery(code),
            "key" => Proof::Key {
                ceremony: &self.ceremony,
                response: &self.response,
                binding,
            },
            id => Proof::Code {
                code,
                factor_id: Some(id),
            },
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    factor_id: String,
    #[serde(default, rename = "for")]
    what: String,
}

/// `POST /account/send-code`: a code for one sensitive change, by text message or email to
/// one of the user's active methods (the core's cooldown and caps apply), then that change's
/// page again with the method chosen.
pub(super) async fn send_code(State(s): St, acc: Account, Form(f): Form<SendForm>) -> Response {
    if !Csrf::verify(&acc.headers, &f.csrf) {
        return csrf_refused();
    }
    let Some(what) = Sensitive::parse(&f.what) else {
        return error_page(&CoreError::NotFound("change"));
    };
    let sent = s
        .core
        .send_code(
            &acc.who.actor,
            &acc.meta,
            acc.slug(),
            &acc.who.user.external_id,
            &f.factor_id,
            what.code_for(),
        )
        .await;
    if let Err(e @ CoreError::NotFound(_)) = &sent {
        return error_page(e);
    }
    let shown = match Notice::after_send(&s, sent) {
        Ok(notice) => Shown {
            status: StatusCode::OK,
            notice,
            chosen: Some(f.factor_id.clone()),
        },
        Err(e) => return error_page(&e),
    };
    match what {
        Sensitive::Remove(id) => super::methods::remove_page(&s, &acc, &id, shown).await,
        Sensitive::RecoveryCodes => super::security::recovery_page(&s, &acc, shown).await,
        Sensitive::SignOutEverywhere => super::security::sessions_page(&s, &acc, shown).await,
    }
}
