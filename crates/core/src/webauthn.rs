//! Security keys and passkeys (WebAuthn) as a second factor: the server-side half of a
//! ceremony, kept in the store between the page that asks the browser and the form that
//! brings the answer back.
//!
//! webauthn-rs insists the ceremony state stay server-side ("failure to do so may open you to
//! replay attacks"): a state round-tripped through the browser could be answered twice. Here
//! it is a row that is spent by one conditional update in the transaction that completes the
//! step, bound to the user and to the login or session it was made for.

/// How long a browser has to answer a ceremony: the WebAuthn `timeout` we ask for (60 s) with
/// room for a user fetching their key from a drawer.
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;

/// What a ceremony is for: an answer counts only for the purpose it was asked for, so an
/// assertion made to sign in cannot stand as the fresh proof for removing a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CeremonyPurpose {
    /// The challenge step of a sign-in.
    SignIn,
    /// Registering a new key.
    Register,
    /// A fresh second factor for a sensitive change on the account pages.
    Proof,
}

impl CeremonyPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            CeremonyPurpose::SignIn => "sign_in",
            CeremonyPurpose::Register => "register",
            CeremonyPurpose::Proof => "proof",
        }
    }
}

/// A WebAuthn ceremony waiting for the browser's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebauthnChallenge {
    /// `wac_` and random characters: the page carries it back in a hidden field.
    pub id: String,
    pub tenant_id: i64,
    pub user_id: i64,
    /// [`CeremonyPurpose::as_str`].
    pub purpose: String,
    /// What the ceremony belongs to (the pending login's id, the hosted login's id or the
    /// account session's id): a challenge made for one cannot finish another.
    pub binding: String,
    /// webauthn-rs's ceremony state, as JSON.
    pub state: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}
