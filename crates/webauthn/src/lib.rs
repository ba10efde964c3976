//! Security keys and passkeys as a second factor, over webauthn-rs.
//!
//! The rest of Twofold sees WebAuthn as JSON in and out: the options a page hands to
//! `navigator.credentials`, the ceremony state the store keeps meanwhile, the credential a
//! factor row holds (sealed), and the browser's answer. What webauthn-rs checks (challenge,
//! origin, RP id hash, user presence, signature, signature counter, credential in the allowed
//! list) it checks; this crate adds nothing to that and removes nothing. Its errors come out
//! as stable reasons for audit rows and answers.
//!
//! Why the "security key" ceremonies of webauthn-rs rather than its "passkey" ones: here the
//! key is a second factor after a password, so user verification (a PIN or a fingerprint) is
//! asked for where the authenticator can, but not required: a plain U2F-era key still works.
//! Synced passkeys work all the same (they answer these ceremonies too); the answer says
//! whether the credential may live on more than one device (`backup_eligible`), which is what
//! tells a hardware-bound key (`amr` `hwk`) from a software one (`swk`).

use webauthn_rs::prelude::{
    AuthenticationResult, CredentialID, PublicKeyCredential, RegisterPublicKeyCredential,
    SecurityKey, SecurityKeyAuthentication, SecurityKeyRegistration, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

/// Why a ceremony failed, as a short stable string (audit reasons, error codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The answer is not WebAuthn JSON of the expected shape.
    #[error("malformed_response")]
    Malformed,
    /// Signed for another origin: the page was not ours (phishing), or the config is wrong.
    #[error("origin_mismatch")]
    OriginMismatch,
    /// The authenticator scoped the credential to another relying party id.
    #[error("rp_id_mismatch")]
    RpIdMismatch,
    /// The answer is for another challenge (a replayed or stale answer).
    #[error("challenge_mismatch")]
    ChallengeMismatch,
    /// A credential that was not offered: another user's, or one since removed.
    #[error("unknown_credential")]
    UnknownCredential,
    /// The signature does not verify against the registered public key.
    #[error("bad_signature")]
    BadSignature,
    /// The signature counter did not move forward: the key may have been cloned.
    #[error("possible_clone")]
    PossibleClone,
    /// The authenticator did not report a user's presence.
    #[error("user_not_present")]
    UserNotPresent,
    /// Anything else the library refused (attestation, algorithm, extensions, ...).
    #[error("invalid_response")]
    Invalid,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed_response",
            Refusal::OriginMismatch => "origin_mismatch",
            Refusal::RpIdMismatch => "rp_id_mismatch",
            Refusal::ChallengeMismatch => "challenge_mismatch",
            Refusal::UnknownCredential => "unknown_credential",
            Refusal::BadSignature => "bad_signature",
            Refusal::PossibleClone => "possible_clone",
            Refusal::UserNotPresent => "user_not_present",
            Refusal::Invalid => "invalid_response",
        }
    }

    fn of(e: WebauthnError) -> Self {
        match e {
            WebauthnError::ParseJSONFailure(_)
            | WebauthnError::ParseBase64Failure(_)
            | WebauthnError::ParseCBORFailure(_)
            | WebauthnError::InvalidClientDataType => Refusal::Malformed,
            WebauthnError::InvalidRPOrigin | WebauthnError::CredentialCrossOrigin => {
                Refusal::OriginMismatch
            }
            WebauthnError::InvalidRPIDHash => Refusal::RpIdMismatch,
            WebauthnError::MismatchedChallenge => Refusal::ChallengeMismatch,
            WebauthnError::CredentialNotFound => Refusal::UnknownCredential,
            WebauthnError::AuthenticationFailure => Refusal::BadSignature,
            WebauthnError::CredentialPossibleCompromise => Refusal::PossibleClone,
            WebauthnError::UserNotPresent => Refusal::UserNotPresent,
            _ => Refusal::Invalid,
        }
    }
}

/// A setting that cannot make a relying party; the message says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("webauthn: {0}")]
pub struct ConfigError(String);

/// Who we are to authenticators: the RP id keys are scoped to, and the origins whose pages may
/// run ceremonies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelyingPartyConfig {
    /// A registrable domain that every origin is on (`example.com` for
    /// `https://2fa.example.com`). Keys registered under it work only under it: changing it
    /// later strands every registered key.
    pub rp_id: String,
    /// Full origins (`https://2fa.example.com`, a port if not the default) of the hosted pages.
    pub origins: Vec<String>,
    /// The name authenticators may show while registering.
    pub name: String,
}

/// The relying party, built once at start-up.
pub struct RelyingParty {
    webauthn: Webauthn,
    config: RelyingPartyConfig,
}

impl std::fmt::Debug for RelyingParty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelyingParty")
            .field("config", &self.config)
            .finish()
    }
}

/// A ceremony for the browser: `options` goes to the page (it is what
/// `navigator.credentials.create` or `.get` takes, in its JSON form); `state` stays with us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    pub options: String,
    pub state: String,
}

/// A key that just registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub credential_id: Vec<u8>,
    /// The credential to keep (sealed) on the factor: public key, counter, flags.
    pub credential: String,
    /// May live on more than one device (a synced passkey).
    pub backup_eligible: bool,
}

/// A sign-in (or fresh proof) that verified.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub credential_id: Vec<u8>,
    pub user_verified: bool,
    pub backup_eligible: bool,
    result: AuthenticationResult,
}

impl Assertion {
    /// The `amr` value (RFC 8176) of this proof: `hwk` for a key bound to its hardware, `swk`
    /// for one that may be copied between devices (a synced passkey).
    pub fn amr(&self) -> &'static str {
        if self.backup_eligible {
            "swk"
        } else {
            "hwk"
        }
    }

    /// The answer's signature counter did not move past the one `credential` (as stored now)
    /// holds: the library compares with the counter its ceremony state was made from, which
    /// an older ceremony answered later would let through. Counters that stay 0 (many
    /// passkeys keep none) are not a sign of anything.
    pub fn counter_regressed(&self, credential: &str) -> bool {
        let stored = serde_json::from_str::<serde_json::Value>(credential)
            .ok()
            .and_then(|v| v["cred"]["counter"].as_u64())
            .unwrap_or(0);
        let now = u64::from(self.result.counter());
        (now > 0 || stored > 0) && now <= stored
    }

    /// The stored credential with this answer's signature counter and backup state, or
    /// `None` when nothing changed (or the credential is not the one that answered).
    pub fn updated(&self, credential: &str) -> Option<String> {
        let mut key: SecurityKey = serde_json::from_str(credential).ok()?;
        match key.update_credential(&self.result) {
            Some(true) => serde_json::to_string(&key).ok(),
            _ => None,
        }
    }
}

impl RelyingParty {
    pub fn new(config: RelyingPartyConfig) -> Result<Self, ConfigError> {
        let bad = |m: String| ConfigError(m);
        let mut origins = config.origins.iter().map(|o| {
            let url = Url::parse(o).map_err(|e| bad(format!("origin {o:?} is not a URL: {e}")))?;
            let path_ok = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !path_ok || !matches!(url.scheme(), "https" | "http") {
                return Err(bad(format!(
                    "origin {o:?} must be scheme://host[:port] only, like https://2fa.example.com"
                )));
            }
            if url.scheme() == "http" && url.host_str() != Some("localhost") {
                return Err(bad(format!(
                    "origin {o:?}: browsers run WebAuthn only on https (or http://localhost)"
                )));
            }
            Ok(url)
        });
        let first = origins
            .next()
            .ok_or_else(|| bad("no origin configured".into()))??;
        let rest: Vec<Url> = origins.collect::<Result<_, _>>()?;
        let mut builder = WebauthnBuilder::new(&config.rp_id, &first).map_err(|_| {
            bad(format!(
                "rp_id {:?} must be the host of {first} or a parent domain of it",
                config.rp_id
            ))
        })?;
        for o in &rest {
            let on_rp = o
                .domain()
                .is_some_and(|d| d == config.rp_id || d.ends_with(&format!(".{}", config.rp_id)));
            if !on_rp {
                return Err(bad(format!(
                    "origin {o} is not on rp_id {:?}: keys could not be used there",
                    config.rp_id
                )));
            }
            builder = builder.append_allowed_origin(o);
        }
        let webauthn = builder
            .rp_name(&config.name)
            .timeout(std::time::Duration::from_secs(60))
            .build()
            .map_err(|e| bad(format!("cannot build the relying party: {e}")))?;
        Ok(Self { webauthn, config })
    }

    pub fn config(&self) -> &RelyingPartyConfig {
        &self.config
    }

    /// Asks the browser for a new key. `user_handle` identifies the user to the authenticator
    /// (stable per user, revealing nothing); `exclude` are the user's keys already registered,
    /// so the same key is not added twice.
    pub fn start_registration(
        &self,
        user_handle: [u8; 16],
        user_name: &str,
        display_name: &str,
        exclude: Vec<Vec<u8>>,
    ) -> Result<Ceremony, Refusal> {
        let exclude: Vec<CredentialID> = exclude.into_iter().map(CredentialID::from).collect();
        let (options, state) = self
            .webauthn
            .start_securitykey_registration(
                Uuid::from_bytes(user_handle),
                user_name,
                display_name,
                (!exclude.is_empty()).then_some(exclude),
                None,
                None,
            )
            .map_err(Refusal::of)?;
        let mut options = serde_json::to_value(&options).map_err(|_| Refusal::Invalid)?;
        // Chromium refuses credProtect "userVerificationRequired" on a credential that is not
        // discoverable ("Requested protection policy is inconsistent ... with other requested
        // parameters", NotSupportedError), and webauthn-rs asks for it here without enforcing
        // it; left out, nothing is lost (it protects only discoverable credentials).
        if let Some(ext) = options["publicKey"]["extensions"].as_object_mut() {
            ext.remove("credentialProtectionPolicy");
            ext.remove("enforceCredentialProtectionPolicy");
        }
        ceremony(&options, &state)
    }

    pub fn finish_registration(&self, response: &str, state: &str) -> Result<NewKey, Refusal> {
        let response: RegisterPublicKeyCredential =
            serde_json::from_str(response).map_err(|_| Refusal::Malformed)?;
        let state: SecurityKeyRegistration =
            serde_json::from_str(state).map_err(|_| Refusal::Invalid)?;
        let key = self
            .webauthn
            .finish_securitykey_registration(&response, &state)
            .map_err(Refusal::of)?;
        let credential = serde_json::to_string(&key).map_err(|_| Refusal::Invalid)?;
        // SecurityKey keeps its flags private; its serialised form carries them.
        let backup_eligible = serde_json::from_str::<serde_json::Value>(&credential)
            .ok()
            .and_then(|v| v["cred"]["backup_eligible"].as_bool())
            .unwrap_or(true);
        Ok(NewKey {
            credential_id: key.cred_id().to_vec(),
            credential,
            backup_eligible,
        })
    }

    /// Asks the browser to sign with one of `credentials` (the user's stored keys). A stored
    /// credential that does not parse is left out rather than failing the whole step.
    pub fn start_authentication(&self, credentials: &[String]) -> Result<Ceremony, Refusal> {
        let keys: Vec<SecurityKey> = credentials
            .iter()
            .filter_map(|c| serde_json::from_str(c).ok())
            .collect();
        if keys.is_empty() {
            return Err(Refusal::UnknownCredential);
        }
        let (options, state) = self
            .webauthn
            .start_securitykey_authentication(&keys)
            .map_err(Refusal::of)?;
        ceremony(&options, &state)
    }

    pub fn finish_authentication(&self, response: &str, state: &str) -> Result<Assertion, Refusal> {
        let response: PublicKeyCredential =
            serde_json::from_str(response).map_err(|_| Refusal::Malformed)?;
        let state: SecurityKeyAuthentication =
            serde_json::from_str(state).map_err(|_| Refusal::Invalid)?;
        let result = self
            .webauthn
            .finish_securitykey_authentication(&response, &state)
            .map_err(Refusal::of)?;
        Ok(Assertion {
            credential_id: result.cred_id().to_vec(),
            user_verified: result.user_verified(),
            backup_eligible: result.backup_eligible(),
            result,
        })
    }
}

/// The credential id a browser's answer claims (its `rawId`), before anything is verified:
/// to find which of the user's keys it names.
pub fn claimed_credential_id(response: &str) -> Option<Vec<u8>> {
    let response: PublicKeyCredential = serde_json::from_str(response).ok()?;
    Some(response.raw_id.to_vec())
}

fn ceremony(
    options: &impl serde::Serialize,
    state: &impl serde::Serialize,
) -> Result<Ceremony, Refusal> {
    Ok(Ceremony {
        options: serde_json::to_string(options).map_err(|_| Refusal::Invalid)?,
        state: serde_json::to_string(state).map_err(|_| Refusal::Invalid)?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rp(rp_id: &str, origins: &[&str]) -> Result<RelyingParty, ConfigError> {
        RelyingParty::new(RelyingPartyConfig {
            rp_id: rp_id.into(),
            origins: origins.iter().map(|o| o.to_string()).collect(),
            name: "Twofold".into(),
        })
    }

    #[test]
    fn config_must_put_every_origin_on_the_rp_id() {
        assert!(rp("example.com", &["https://2fa.example.com"]).is_ok());
        assert!(rp("localhost", &["http://localhost:8080"]).is_ok());
        let cases = [
            (
                "example.com",
                vec!["https://2fa.example.org"],
                "parent domain",
            ),
            (
                "example.com",
                vec!["https://2fa.example.com", "https://evil.org"],
                "not on rp_id",
            ),
            (
                "example.com",
                vec!["http://2fa.example.com"],
                "only on https",
            ),
            (
                "example.com",
                vec!["https://2fa.example.com/login"],
                "scheme://host",
            ),
            ("example.com", vec!["not a url"], "not a URL"),
            ("example.com", vec![], "no origin"),
        ];
        for (rp_id, origins, says) in cases {
            let err = rp(rp_id, &origins).unwrap_err().to_string();
            assert!(err.contains(says), "{origins:?}: {err}");
        }
    }

    #[test]
    fn registration_options_carry_rp_challenge_and_exclusions() {
        let rp = rp("example.com", &["https://2fa.example.com"]).unwrap();
        let c = rp
            .start_registration([7; 16], "alice", "Alice", vec![vec![1, 2, 3]])
            .unwrap();
        let o: serde_json::Value = serde_json::from_str(&c.options).unwrap();
        let pk = &o["publicKey"];
        assert_eq!(pk["rp"]["id"], "example.com");
        assert_eq!(pk["user"]["name"], "alice");
        assert!(pk["challenge"].as_str().unwrap().len() >= 43, "{pk}");
        assert_eq!(pk["excludeCredentials"][0]["id"], "AQID");
        // What Chromium refuses for a credential that is not discoverable is not asked for.
        assert!(
            pk["extensions"].get("credentialProtectionPolicy").is_none(),
            "{pk}"
        );
        assert_eq!(pk["authenticatorSelection"]["residentKey"], "discouraged");
        // Two ceremonies never share a challenge.
        let d = rp
            .start_registration([7; 16], "alice", "Alice", vec![])
            .unwrap();
        assert_ne!(c.state, d.state);
    }

    #[test]
    fn answers_that_are_not_webauthn_are_malformed() {
        let rp = rp("example.com", &["https://2fa.example.com"]).unwrap();
        let c = rp
            .start_registration([7; 16], "alice", "Alice", vec![])
            .unwrap();
        for bad in ["", "{}", "[]", r#"{"id":1}"#, "null"] {
            assert_eq!(
                rp.finish_registration(bad, &c.state),
                Err(Refusal::Malformed)
            );
            assert!(matches!(
                rp.finish_authentication(bad, &c.state),
                Err(Refusal::Malformed)
            ));
        }
        assert_eq!(claimed_credential_id("{}"), None);
    }

    #[test]
    fn authentication_needs_a_stored_credential() {
        let rp = rp("example.com", &["https://2fa.example.com"]).unwrap();
        assert_eq!(
            rp.start_authentication(&["not json".into()]).unwrap_err(),
            Refusal::UnknownCredential
        );
    }
}
