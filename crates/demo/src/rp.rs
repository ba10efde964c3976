//! The demo app as an OpenID Connect relying party of Twofold, done by hand in the open so a
//! reader sees every step an integrator takes (any OIDC client library does the same):
//!
//! 1. discovery (`/.well-known/openid-configuration`, OIDC Discovery 1.0 §4);
//! 2. after its own password check, a login hint: an HS256 JWT signed with the client secret,
//!    `iss` = client id, `aud` = Twofold's issuer, `sub`, `primary`, `exp` within 2 minutes, a
//!    unique `jti`;
//! 3. the authorization request (RFC 6749 §4.1.1) with `state`, `nonce` and PKCE S256
//!    (RFC 7636 §4.2);
//! 4. at the callback, the code exchanged at the token endpoint (client_secret_post, the PKCE
//!    verifier), and the ID token verified (OIDC Core §3.1.3.7): ES256 signature by a key of
//!    Twofold's JWKS, `iss`, `aud`, `exp`, and the `nonce` of this browser's request.

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a login hint is valid: Twofold accepts at most 2 minutes.
const HINT_TTL_SECS: u64 = 60;

/// Why talking to Twofold failed.
#[derive(Debug, thiserror::Error)]
pub enum RpError {
    /// Twofold could not be reached or answered something unusable.
    #[error("Twofold is unreachable or answered unexpectedly: {0}")]
    Upstream(String),
    /// The token endpoint refused the code (used, expired, or not ours).
    #[error("the sign-in was refused: {0}")]
    Refused(String),
    /// The ID token did not verify.
    #[error("the ID token is not valid: {0}")]
    BadToken(String),
}

#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Twofold as this client knows it.
#[derive(Clone)]
pub struct RelyingParty {
    http: reqwest::Client,
    discovery: Discovery,
    client_id: String,
    /// Signs login hints and authenticates this client at the token endpoint.
    client_secret: String,
    redirect_uri: String,
}

/// What one browser's sign-in must bring back to the callback (kept in its cookie).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
}

impl Pending {
    pub fn new() -> Self {
        Self {
            state: twofold_crypto::random_token(16),
            nonce: twofold_crypto::random_token(16),
            // 43 characters of the unreserved set, as RFC 7636 §4.1 asks.
            verifier: twofold_crypto::random_token(32),
        }
    }

    /// The cookie value: three URL-safe base64 tokens, which hold no `.`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.state, self.nonce, self.verifier)
    }

    pub fn decode(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let (state, nonce, verifier) = (parts.next()?, parts.next()?, parts.next()?);
        let ok = |p: &str| !p.is_empty() && p.len() <= 128;
        (parts.next().is_none() && ok(state) && ok(nonce) && ok(verifier)).then(|| Self {
            state: state.into(),
            nonce: nonce.into(),
            verifier: verifier.into(),
        })
    }
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

/// The verified ID token's claims the demo shows.
#[derive(Debug, Clone, Deserialize)]
pub struct Identity {
    pub sub: String,
    #[serde(default)]
    pub amr: Vec<String>,
    #[serde(default)]
    pub acr: Option<String>,
    #[serde(default)]
    pub auth_time: Option<i64>,
    #[serde(default)]
    nonce: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    id_token: String,
}

#[derive(Deserialize)]
struct TokenRefusal {
    error: String,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn upstream(e: impl std::fmt::Display) -> RpError {
    RpError::Upstream(e.to_string())
}

impl RelyingParty {
    /// Reads Twofold's discovery document at `issuer`, which must name that same issuer.
    pub async fn discover(
        issuer: &str,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
    ) -> Result<Self, RpError> {
        // Never follow a redirect: every endpoint is named by the discovery document.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(upstream)?;
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(upstream)?
            .json()
            .await
            .map_err(upstream)?;
        if discovery.issuer != issuer.trim_end_matches('/') {
            return Err(RpError::Upstream(format!(
                "the discovery document names issuer {}, not {issuer}",
                discovery.issuer
            )));
        }
        Ok(Self {
            http,
            discovery,
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: redirect_uri.into(),
        })
    }

    pub fn issuer(&self) -> &str {
        &self.discovery.issuer
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// A login hint naming `user`, who has just passed the password check.
    pub fn login_hint(&self, user: &str) -> Result<String, RpError> {
        let claims = serde_json::json!({
            "iss": self.client_id,
            "aud": self.discovery.issuer,
            "sub": user,
            "primary": "password",
            "exp": now_secs() + HINT_TTL_SECS,
            "jti": twofold_crypto::random_token(16),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(self.client_secret.as_bytes()),
        )
        .map_err(upstream)
    }

    /// Where to send the browser for `user`'s second step.
    pub fn authorization_url(&self, user: &str, pending: &Pending) -> Result<String, RpError> {
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(pending.verifier.as_bytes()));
        let hint = self.login_hint(user)?;
        let url = reqwest::Url::parse_with_params(
            &self.discovery.authorization_endpoint,
            [
                ("response_type", "code"),
                ("scope", "openid"),
                ("client_id", self.client_id.as_str()),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("state", pending.state.as_str()),
                ("nonce", pending.nonce.as_str()),
                ("code_challenge", challenge.as_str()),
                ("code_challenge_method", "S256"),
                ("login_hint_token", hint.as_str()),
            ],
        )
        .map_err(upstream)?;
        Ok(url.into())
    }

    /// Twofold's admin console for `user` (an administrator), entered with a login hint.
    pub fn console_url(&self, user: &str) -> Result<String, RpError> {
        let hint = self.login_hint(user)?;
        let url = reqwest::Url::parse_with_params(
            &format!("{}/console/sso", self.discovery.issuer),
            [
                ("client_id", self.client_id.as_str()),
                ("login_hint_token", hint.as_str()),
            ],
        )
        .map_err(upstream)?;
        Ok(url.into())
    }

    /// Exchanges `code` for an ID token and verifies it against `pending`'s nonce.
    pub async fn finish(&self, code: &str, pending: &Pending) -> Result<Identity, RpError> {
        let resp = self
            .http
            .post(&self.discovery.token_endpoint)
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", self.redirect_uri.as_str()),
                ("code_verifier", pending.verifier.as_str()),
                ("client_id", self.client_id.as_str()),
                ("client_secret", self.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(upstream)?;
        let status = resp.status();
        if status.is_client_error() {
            let why = resp
                .json::<TokenRefusal>()
                .await
                .map(|r| r.error)
                .unwrap_or_else(|_| status.to_string());
            return Err(RpError::Refused(why));
        }
        let answer: TokenAnswer = resp
            .error_for_status()
            .map_err(upstream)?
            .json()
            .await
            .map_err(upstream)?;
        self.verify(&answer.id_token, &pending.nonce).await
    }

    async fn verify(&self, id_token: &str, nonce: &str) -> Result<Identity, RpError> {
        use jsonwebtoken::{jwk::JwkSet, Algorithm, DecodingKey, Validation};
        let bad = |e: &dyn std::fmt::Display| RpError::BadToken(e.to_string());
        let header = jsonwebtoken::decode_header(id_token).map_err(|e| bad(&e))?;
        let jwks: JwkSet = self
            .http
            .get(&self.discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(upstream)?
            .json()
            .await
            .map_err(upstream)?;
        let jwk = header
            .kid
            .as_deref()
            .and_then(|kid| jwks.find(kid))
            .ok_or_else(|| bad(&"no key of the JWKS has its kid"))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e))?;
        // Only ES256, whatever the header claims: no `none`, no HS256 with a public key.
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[self.discovery.issuer.as_str()]);
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let identity = jsonwebtoken::decode::<Identity>(id_token, &key, &validation)
            .map_err(|e| bad(&e))?
            .claims;
        let same_nonce = identity
            .nonce
            .as_deref()
            .is_some_and(|n| twofold_crypto::ct_eq(n.as_bytes(), nonce.as_bytes()));
        if !same_nonce {
            return Err(bad(&"its nonce is not this browser's"));
        }
        Ok(identity)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn pending_round_trips_through_its_cookie_and_refuses_garbage() {
        let p = Pending::new();
        assert_eq!(Pending::decode(&p.encode()), Some(p.clone()));
        assert!(p.verifier.len() >= 43);
        for bad in ["", "a.b", "a.b.c.d", "..", "a..c", &"x".repeat(200)] {
            assert_eq!(Pending::decode(bad), None, "{bad}");
        }
    }
}
