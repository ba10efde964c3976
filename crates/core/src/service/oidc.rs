//! The OpenID Connect provider behind the hosted second step (issue #6): client registration,
//! the signing key, the authorization request with its signed login hint, the hosted
//! challenge's second step, and the code-for-ID-token exchange.
//!
//! The flow, as a state diagram of one browser's login:
//!
//! ```text
//!   /oidc/authorize ──hint bad / replayed──▶ error back to the client
//!        │ hint ok (jti spent)
//!        ▼
//!   login decision ──allow──────────────▶ code ──▶ redirect back
//!        │ challenge                           ▲
//!        ▼                                     │ right code / recovery code: login
//!   hosted login (cookie = pending token) ─────┘ completed, session and code in one tx
//!        │ deny / cancel
//!        ▼
//!   page, then error=access_denied back to the client
//!
//!   login decision ──enroll required / offered──▶ hosted login (cookie)
//!        │ offered, before the deadline (or optional)        │ cancel
//!        ├──"later" / "not now"──▶ skip remembered, login    ▼
//!        │   completed, 1FA session and code in one tx    error=access_denied back
//!        ▼                              ──▶ redirect back
//!   TOTP, SMS or email enrolment (a code sent to the phone or address, resendable)
//!        ──first right code──▶ factor active, login completed, session, recovery codes and
//!        code in one tx ──▶ recovery codes shown once ──▶ redirect back
//! ```
//!
//! Whether "later" is offered, and the days counted down, are read from the policy at each
//! page and each POST (INV-10): once the deadline passes, the same login may only enrol.
//!
//! The browser's cookie is the pending login's own token (`tfl_…`, stored only as a keyed
//! hash), so everything INV-04 says about pending tokens holds for it: it completes that one
//! login once and is never a session. The hosted login row only adds what the authorization
//! request asked for (client, redirect URI, state, nonce, PKCE challenge). An authorization
//! code is minted in the transaction that completes the login and is spent by one conditional
//! update; a second use revokes the session the login minted (RFC 6749 §4.1.2).

use super::login::SecondStep;
use super::*;
use crate::login::PendingLogin;
use crate::oidc::*;
use crate::policy::{Decision, Method, Postpone};
use crate::service::{ContactKind, IssuedToken, LoginRequest, SendReceipt, StepOutcome};
use jsonwebtoken::{Algorithm as JwtAlg, DecodingKey, EncodingKey, Header, Validation};

const CODE_PREFIX: &str = "tfc";

/// The one refusal for a browser cookie that names no live hosted login.
fn invalid_login() -> CoreError {
    CoreError::conflict(
        "invalid_login_token",
        "this sign-in is over or expired: start again from the application",
    )
}

/// A client as registered or rotated: the secret is shown this once. No `Debug`.
#[derive(Clone)]
pub struct IssuedClient {
    pub client: OidcClientView,
    pub client_secret: String,
}

/// `?` on core, store and crypto errors inside the provider's functions: they become the
/// `Core` variant (a 503 or 500, never an OAuth error the client could act on).
macro_rules! core_errors_into {
    ($t:ident) => {
        impl From<CoreError> for $t {
            fn from(e: CoreError) -> Self {
                $t::Core(e)
            }
        }
        impl From<StoreError> for $t {
            fn from(e: StoreError) -> Self {
                $t::Core(e.into())
            }
        }
        impl From<twofold_crypto::CryptoError> for $t {
            fn from(e: twofold_crypto::CryptoError) -> Self {
                $t::Core(e.into())
            }
        }
    };
}

/// The parameters of an authorization request (OIDC Core §3.1.2.1), as the browser sent them.
/// No `Debug`: the hint is a bearer credential until its `jti` is spent.
#[derive(Clone, Default)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub login_hint_token: Option<String>,
    /// The browser's remembered-device cookie, if any.
    pub device_token: Option<String>,
    pub user_agent: Option<String>,
}

/// What the browser is sent on to. No `Debug`: URLs carry codes, the challenge a token.
pub enum Authorized {
    /// Back to the client with a code (the policy or a remembered device let the user in).
    Redirect(String),
    /// The hosted challenge, bound to this pending login (the browser's cookie).
    Challenge(IssuedToken),
    /// The login is refused: a page that says so, then back with `error=access_denied`.
    Denied { back: String, reason: String },
    /// Enrolment at login (`enroll_required` or `enroll_offered`), bound to this pending
    /// login (the browser's cookie) like the challenge.
    Enroll(IssuedToken),
}

/// An authorization request that cannot go on.
pub enum AuthorizeError {
    /// The client or its redirect URI is not trusted: the browser must not be sent there.
    Untrusted(&'static str),
    /// An OAuth error to send back to the trusted redirect URI (with `state`).
    Back(String),
    /// The store is busy or failed: a page.
    Core(CoreError),
}

core_errors_into!(AuthorizeError);

/// Why a login hint cannot start a login (the audit row has the detail).
pub(super) enum HintRefused {
    /// Bad signature, claims, audience or expiry.
    Invalid,
    /// Its `jti` was spent already.
    Replayed,
    Core(CoreError),
}

core_errors_into!(HintRefused);

/// One of the user's methods the hosted challenge offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostedFactor {
    pub id: String,
    /// `totp`, `sms` or `email`.
    pub kind: String,
    /// The masked number or address of an SMS or email factor.
    pub destination: Option<String>,
}

/// What the hosted challenge page shows.
#[derive(Debug, Clone)]
pub struct HostedView {
    pub tenant_name: String,
    pub client_app: String,
    /// The factors that take a code, authenticator apps first (SECURITY.md: SMS is
    /// restricted).
    pub factors: Vec<HostedFactor>,
    /// The user has a usable security key: the page offers it first (it resists phishing).
    pub keys: bool,
    /// "Remember this device" lifetime, when the tenant offers it.
    pub remember_days: Option<u32>,
    pub recovery_codes_left: bool,
    /// `scheme://host[:port]` of the redirect URI the login goes back to (the pages' CSP
    /// must let their forms' redirects go there).
    pub redirect_origin: String,
}

impl From<&Factor> for HostedFactor {
    /// A factor as a page may show it: its number or address masked.
    fn from(f: &Factor) -> Self {
        Self {
            id: f.id.clone(),
            kind: f.kind.clone(),
            destination: f
                .destination
                .as_deref()
                .map(|d| notices::mask_destination(&f.kind, d)),
        }
    }
}

/// What the hosted enrolment pages show.
#[derive(Debug, Clone)]
pub struct HostedEnrollView {
    pub tenant_name: String,
    pub client_app: String,
    /// The methods the tenant enables, the authenticator app first (SECURITY.md: SMS is
    /// restricted, email the weakest).
    pub methods: Vec<Method>,
    /// Whether, and until when, the user may postpone enrolling, as of now.
    pub postpone: Postpone,
    /// The factors this user is setting up (pending), to ask for the right code again.
    pub pending: Vec<HostedFactor>,
    /// The user's active methods that no longer count (a profile that now needs a security
    /// key): registering the key needs a code from one of them (or a recovery code) first.
    pub step_up: Vec<HostedFactor>,
    /// `scheme://host[:port]` of the redirect URI ("later" redirects there after a POST).
    pub redirect_origin: String,
}

/// The result of a second step on the hosted pages. No `Debug`: it holds tokens.
pub enum HostedStep {
    /// Back to the client with a code; with a remembered-device token if one was asked for.
    Done {
        redirect: String,
        device: Option<IssuedToken>,
    },
    /// Wrong, replayed, throttled or locked: one answer (INV-11).
    Rejected,
}

/// The token endpoint's request (RFC 6749 §4.1.3) with the client's credentials from
/// `client_secret_basic` or `client_secret_post`. No `Debug`: secrets.
#[derive(Clone, Default)]
pub struct TokenRequest {
    pub grant_type: Option<String>,
    pub code: Option<String>,
    pub redirect_uri: Option<String>,
    pub code_verifier: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
}

/// The token endpoint's answer. No `Debug`: tokens.
pub struct TokenResponse {
    pub id_token: String,
    /// OAuth requires an access token; Twofold has no resource behind it (no userinfo
    /// endpoint), so it is random and stored nowhere.
    pub access_token: String,
    pub expires_in: i64,
}

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub enum TokenError {
    InvalidClient,
    InvalidGrant,
    InvalidRequest(&'static str),
    UnsupportedGrantType,
    Core(CoreError),
}

core_errors_into!(TokenError);

#[derive(serde::Serialize)]
struct IdTokenClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: i64,
    iat: i64,
    auth_time: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    amr: Vec<String>,
    acr: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

fn b64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `application/x-www-form-urlencoded` for one query value.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The redirect URI with these parameters added to its query.
pub fn with_params(uri: &str, params: &[(&str, Option<&str>)]) -> String {
    let mut out = uri.to_string();
    let mut sep = if uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        if let Some(v) = v {
            out.push(sep);
            out.push_str(k);
            out.push('=');
            out.push_str(&form_encode(v));
            sep = '&';
        }
    }
    out
}

/// The P-256 public point of a PKCS#8 key as JWK `x` and `y`.
fn public_xy(pkcs8: &[u8]) -> Result<(String, String), CoreError> {
    use ring::signature::KeyPair;
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|_| CoreError::Internal("the stored OIDC signing key does not parse".into()))?;
    // Uncompressed SEC1 point: 0x04 || x || y.
    let point = pair.public_key().as_ref();
    if point.len() != 65 || point[0] != 4 {
        return Err(CoreError::Internal("unexpected P-256 public key".into()));
    }
    Ok((b64url(&point[1..33]), b64url(&point[33..])))
}

impl Twofold {
    /// The issuer: `public_url` without a trailing slash.
    pub fn oidc_issuer(&self) -> String {
        self.config.public_url.trim_end_matches('/').to_string()
    }

    // ------------------------------------------------------------ clients

    fn seal_client_secret(
        &self,
        tenant_id: i64,
        client_id: &str,
    ) -> Result<(String, Vec<u8>), CoreError> {
        let secret = twofold_crypto::random_token(32);
        let sealed = self.keyring.seal(
            secret.as_bytes(),
            &OidcClient::seal_owner(tenant_id, client_id),
        )?;
        Ok((secret, sealed))
    }

    async fn client_of_tenant(
        &self,
        tenant: &Tenant,
        client_id: &str,
    ) -> Result<OidcClient, CoreError> {
        self.store
            .oidc_client(client_id)
            .await?
            .filter(|c| c.tenant_id == tenant.id)
            .ok_or(CoreError::NotFound("oidc_client"))
    }

    /// Registers one of the tenant's client apps for the hosted login: its redirect URIs and a
    /// new secret, returned this once.
    pub async fn create_oidc_client(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        app_id: &str,
        redirect_uris: &[String],
    ) -> Result<IssuedClient, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let redirect_uris = validate_redirect_uris(redirect_uris)?;
        let (policy, _) = self.policy_of(&tenant).await?;
        // `@…` names Twofold's own clients (the console, the account pages).
        if app_id.starts_with('@') || policy.client(app_id).is_none() {
            return Err(CoreError::Invalid {
                field: "client_app",
                message: "is not a client app registered in the tenant's settings".into(),
            });
        }
        let id = OidcClient::client_id(&tenant.slug, app_id);
        let (secret, sealed_secret) = self.seal_client_secret(tenant.id, &id)?;
        let now = self.now();
        let client = OidcClient {
            id: id.clone(),
            tenant_id: tenant.id,
            app_id: app_id.to_string(),
            redirect_uris,
            sealed_secret,
            created_at: now,
            secret_at: now,
        };
        let mut audit = self.audit(actor, meta, "oidc_client.create", Some(tenant.id));
        audit.reason = Some(id);
        self.store
            .apply(vec![Effect::InsertOidcClient(client.clone())], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("oidc_client_exists") => CoreError::conflict(
                    "oidc_client_exists",
                    "this client app is registered already: change its redirect URIs or \
                     rotate its secret instead",
                ),
                e => e.into(),
            })?;
        Ok(IssuedClient {
            client: OidcClientView::from(&client),
            client_secret: secret,
        })
    }

    pub async fn list_oidc_clients(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<OidcClientView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        Ok(self
            .store
            .oidc_clients(tenant.id)
            .await?
            .iter()
            .map(OidcClientView::from)
            .collect())
    }

    pub async fn set_oidc_redirect_uris(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        client_id: &str,
        redirect_uris: &[String],
    ) -> Result<OidcClientView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let redirect_uris = validate_redirect_uris(redirect_uris)?;
        let mut client = self.client_of_tenant(&tenant, client_id).await?;
        let mut audit = self.audit(actor, meta, "oidc_client.redirect_uris", Some(tenant.id));
        audit.reason = Some(client.id.clone());
        self.store
            .apply(
                vec![Effect::SetOidcRedirectUris {
                    id: client.id.clone(),
                    tenant_id: tenant.id,
                    redirect_uris: redirect_uris.clone(),
                }],
                audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("oidc_client"),
                e => e.into(),
            })?;
        client.redirect_uris = redirect_uris;
        Ok(OidcClientView::from(&client))
    }

    /// A new secret; the old one stops working at once (hints it signed are refused).
    pub async fn rotate_oidc_secret(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        client_id: &str,
    ) -> Result<IssuedClient, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let mut client = self.client_of_tenant(&tenant, client_id).await?;
        let (secret, sealed_secret) = self.seal_client_secret(tenant.id, &client.id)?;
        let now = self.now();
        let mut audit = self.audit(actor, meta, "oidc_client.rotate_secret", Some(tenant.id));
        audit.reason = Some(client.id.clone());
        self.store
            .apply(
                vec![Effect::SetOidcSecret {
                    id: client.id.clone(),
                    tenant_id: tenant.id,
                    sealed_secret,
                    at: now,
                }],
                audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("oidc_client"),
                e => e.into(),
            })?;
        client.secret_at = now;
        Ok(IssuedClient {
            client: OidcClientView::from(&client),
            client_secret: secret,
        })
    }

    pub async fn delete_oidc_client(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        client_id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let client = self.client_of_tenant(&tenant, client_id).await?;
        let mut audit = self.audit(actor, meta, "oidc_client.delete", Some(tenant.id));
        audit.reason = Some(client.id.clone());
        self.store
            .apply(
                vec![Effect::DeleteOidcClient {
                    id: client.id,
                    tenant_id: tenant.id,
                }],
                audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("oidc_client"),
                e => e.into(),
            })
    }

    // ------------------------------------------------------------ signing keys

    /// Every stored signing key, creating the first on first use. Two nodes racing here both
    /// insert a key; both are published and the oldest signs, so every node agrees.
    async fn signing_keys(&self) -> Result<Vec<SigningKey>, CoreError> {
        let keys = self.store.signing_keys().await?;
        if !keys.is_empty() {
            return Ok(keys);
        }
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &rng,
        )
        .map_err(|_| CoreError::Internal("cannot generate a P-256 key".into()))?;
        let (x, y) = public_xy(pkcs8.as_ref())?;
        // RFC 7638 thumbprint: members in lexicographic order, no whitespace.
        let jwk = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = b64url(&<sha2::Sha256 as sha2::Digest>::digest(jwk.as_bytes()));
        let key = SigningKey {
            sealed_key: self
                .keyring
                .seal(pkcs8.as_ref(), &SigningKey::seal_owner(&kid))?,
            kid,
            created_at: self.now(),
        };
        let mut audit = self.audit(
            &Actor::System,
            &RequestMeta::default(),
            "oidc.signing_key.create",
            None,
        );
        audit.reason = Some(key.kid.clone());
        match self
            .store
            .apply(vec![Effect::InsertSigningKey(key)], audit)
            .await
        {
            Ok(()) | Err(StoreError::Conflict("signing_key_exists")) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(self.store.signing_keys().await?)
    }

    fn unseal_signing_key(&self, key: &SigningKey) -> Result<Zeroizing<Vec<u8>>, CoreError> {
        Ok(Zeroizing::new(self.keyring.unseal(
            &key.sealed_key,
            &SigningKey::seal_owner(&key.kid),
        )?))
    }

    /// The JSON Web Key Set of the provider's public keys (RFC 7517).
    pub async fn oidc_jwks(&self) -> Result<serde_json::Value, CoreError> {
        let mut keys = Vec::new();
        for key in self.signing_keys().await? {
            let (x, y) = public_xy(&self.unseal_signing_key(&key)?)?;
            keys.push(serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": x, "y": y,
                "use": "sig", "alg": "ES256", "kid": key.kid,
            }));
        }
        Ok(serde_json::json!({ "keys": keys }))
    }

    // ------------------------------------------------------------ authorization request

    /// The client behind a client id and the tenant it belongs to, if the redirect URI is one
    /// of its own, byte for byte: only then may the browser be sent back with an error.
    async fn trusted_client(
        &self,
        client_id: &str,
        redirect_uri: &str,
    ) -> Result<(Tenant, OidcClient), AuthorizeError> {
        if OidcClient::split_id(client_id).is_none() {
            return Err(AuthorizeError::Untrusted("unknown_client"));
        }
        let client = self
            .store
            .oidc_client(client_id)
            .await?
            .ok_or(AuthorizeError::Untrusted("unknown_client"))?;
        if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err(AuthorizeError::Untrusted("redirect_uri_not_registered"));
        }
        let tenant = self
            .store
            .tenant_by_id(client.tenant_id)
            .await?
            .ok_or(AuthorizeError::Untrusted("unknown_client"))?;
        Ok((tenant, client))
    }

    /// Checks a login hint: HS256 under the client's secret (no other algorithm), then the
    /// claims at the injected clock's time.
    fn check_login_hint(
        &self,
        client: &OidcClient,
        token: &str,
        now: i64,
    ) -> Result<HintClaims, HintError> {
        if token.len() > 4096 {
            return Err(HintError::Malformed);
        }
        let secret = self
            .keyring
            .unseal(
                &client.sealed_secret,
                &OidcClient::seal_owner(client.tenant_id, &client.id),
            )
            .map(Zeroizing::new)
            .map_err(|_| HintError::BadSignature)?;
        let mut validation = Validation::new(JwtAlg::HS256);
        // Time and audience are checked by `check_hint` against the injected clock.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<HintClaims>(
            token,
            &DecodingKey::from_secret(&secret),
            &validation,
        )
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature
            | jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => HintError::BadSignature,
            _ => HintError::Malformed,
        })?;
        check_hint(&data.claims, &client.id, &self.oidc_issuer(), now / 1000)?;
        Ok(data.claims)
    }

    /// Checks a login hint and spends its `jti` (audited either way): the claims of a hint
    /// that may start one login, once.
    pub(super) async fn spend_hint(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant: &Tenant,
        client: &OidcClient,
        hint: &str,
        now: i64,
    ) -> Result<HintClaims, HintRefused> {
        let refused = |why: &str| {
            let mut audit = self.audit(actor, meta, "oidc.authorize", Some(tenant.id));
            audit.outcome = "denied".into();
            audit.reason = Some(why.into());
            audit
        };
        let claims = match self.check_login_hint(client, hint, now) {
            Ok(c) => c,
            Err(why) => {
                self.store.append_audit(refused(why.as_str())).await?;
                return Err(HintRefused::Invalid);
            }
        };
        let mut audit = self.audit(actor, meta, "oidc.hint", Some(tenant.id));
        audit.reason = Some(claims.jti.chars().take(64).collect());
        let spent = self
            .store
            .apply(
                vec![Effect::UseHintJti {
                    client_id: client.id.clone(),
                    jti: claims.jti.clone(),
                    tenant_id: tenant.id,
                    expires_at: claims.exp.saturating_mul(1000),
                }],
                audit,
            )
            .await;
        match spent {
            Ok(()) => Ok(claims),
            Err(StoreError::Conflict("hint_replayed")) => {
                self.store.append_audit(refused("hint_replayed")).await?;
                Err(HintRefused::Replayed)
            }
            Err(e) => Err(HintRefused::Core(e.into())),
        }
    }

    /// The authorization endpoint: checks the client, the request and the login hint, spends
    /// the hint's `jti`, runs the login decision for the hinted user, and says where the
    /// browser goes next.
    pub async fn oidc_authorize(
        &self,
        meta: &RequestMeta,
        req: AuthorizeRequest,
    ) -> Result<Authorized, AuthorizeError> {
        let (tenant, client) = self
            .trusted_client(&req.client_id, &req.redirect_uri)
            .await?;
        let back = |error: &str, description: &str| {
            AuthorizeError::Back(with_params(
                &req.redirect_uri,
                &[
                    ("error", Some(error)),
                    ("error_description", Some(description)),
                    ("state", req.state.as_deref()),
                    ("iss", Some(&self.oidc_issuer())),
                ],
            ))
        };
        if req.response_type.as_deref() != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let scopes = req.scope.as_deref().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == "openid") {
            return Err(back("invalid_scope", "the openid scope is required"));
        }
        let too_long = |v: &Option<String>| v.as_ref().is_some_and(|v| v.len() > 512);
        if too_long(&req.state) || too_long(&req.nonce) {
            return Err(back(
                "invalid_request",
                "state and nonce are at most 512 characters",
            ));
        }
        let challenge = match (
            req.code_challenge.as_deref(),
            req.code_challenge_method.as_deref(),
        ) {
            (Some(c), Some("S256")) if valid_challenge(c) => c.to_string(),
            _ => {
                return Err(back(
                    "invalid_request",
                    "PKCE with code_challenge_method=S256 is required",
                ))
            }
        };
        let actor = Actor::Hosted {
            tenant_id: tenant.id,
            client_id: client.id.clone(),
        };
        let now = self.now();
        let Some(hint) = req.login_hint_token.as_deref() else {
            return Err(back("invalid_request", "login_hint_token is required"));
        };
        let claims = match self
            .spend_hint(&actor, meta, &tenant, &client, hint, now)
            .await
        {
            Ok(c) => c,
            Err(HintRefused::Invalid) => {
                return Err(back("invalid_request", "the login_hint_token is not valid"))
            }
            Err(HintRefused::Replayed) => {
                return Err(back(
                    "invalid_request",
                    "the login_hint_token was used already",
                ))
            }
            Err(HintRefused::Core(e)) => return Err(AuthorizeError::Core(e)),
        };
        let login = LoginRequest {
            user: claims.sub.clone(),
            primary: claims.primary.clone(),
            client_id: Some(client.app_id.clone()),
            ip: meta.client_ip.clone(),
            user_agent: req.user_agent.clone(),
            device_token: req.device_token.clone(),
            ..LoginRequest::default()
        };
        let outcome = match self.decide_login(&actor, meta, &tenant.slug, login).await {
            Ok(o) => o,
            Err(CoreError::NotFound(_)) => {
                return Err(back("access_denied", "the user cannot sign in here"))
            }
            Err(CoreError::Invalid { field, .. }) => {
                let text = match field {
                    "primary" => "the hint's primary must be password or sso",
                    "client_id" => "the client app is no longer in the tenant's settings",
                    _ => "the login hint names an invalid user",
                };
                return Err(back("invalid_request", text));
            }
            Err(e) => return Err(AuthorizeError::Core(e)),
        };
        let hosted = HostedLogin {
            login_id: String::new(),
            tenant_id: tenant.id,
            client_id: client.id.clone(),
            redirect_uri: req.redirect_uri.clone(),
            state: req.state.clone(),
            nonce: req.nonce.clone(),
            code_challenge: challenge,
            created_at: now,
            expires_at: now,
        };
        let denied = |reason: &str| Authorized::Denied {
            back: with_params(
                &req.redirect_uri,
                &[
                    ("error", Some("access_denied")),
                    ("error_description", Some(reason)),
                    ("state", req.state.as_deref()),
                    ("iss", Some(&self.oidc_issuer())),
                ],
            ),
            reason: reason.to_string(),
        };
        match (&outcome.decision, outcome.pending, outcome.session) {
            (Decision::Allow { .. }, _, Some(session)) => {
                let user = self.user_in(&tenant, &claims.sub).await?;
                let remembered = matches!(
                    outcome.decision,
                    Decision::Allow {
                        reason: crate::policy::AllowReason::TrustedDevice
                    }
                );
                let amr = if remembered {
                    format!("{},device", primary_amr(&claims.primary))
                } else {
                    primary_amr(&claims.primary).to_string()
                };
                let (code, effect) = self.auth_code_effect(
                    &hosted,
                    &user,
                    &amr,
                    false,
                    Some(&session.id),
                    now,
                    CODE_TTL_MS,
                );
                let mut audit = self.audit(&actor, meta, "oidc.code", Some(tenant.id));
                audit.user_id = Some(user.id);
                audit.reason = Some(client.id.clone());
                self.store.apply(vec![effect], audit).await?;
                Ok(Authorized::Redirect(self.code_redirect(&hosted, &code)))
            }
            (Decision::Challenge { .. }, Some(pending), _) => {
                let login_id = pending.id.clone();
                let row = HostedLogin {
                    login_id,
                    expires_at: pending.expires_at,
                    ..hosted
                };
                let mut audit = self.audit(&actor, meta, "oidc.hosted.start", Some(tenant.id));
                audit.reason = Some(row.login_id.clone());
                self.store
                    .apply(vec![Effect::InsertHostedLogin(row)], audit)
                    .await?;
                Ok(Authorized::Challenge(pending))
            }
            (Decision::Deny { reason }, _, _) => Ok(denied(reason.as_str())),
            (
                Decision::EnrollRequired { .. } | Decision::EnrollOffered { .. },
                Some(pending),
                _,
            ) => {
                let row = HostedLogin {
                    login_id: pending.id.clone(),
                    expires_at: pending.expires_at,
                    ..hosted
                };
                let mut audit = self.audit(&actor, meta, "oidc.hosted.enroll", Some(tenant.id));
                audit.reason = Some(row.login_id.clone());
                self.store
                    .apply(vec![Effect::InsertHostedLogin(row)], audit)
                    .await?;
                Ok(Authorized::Enroll(pending))
            }
            _ => Err(AuthorizeError::Core(CoreError::Internal(
                "a login decision without its token".into(),
            ))),
        }
    }

    /// A fresh authorization code bound to the hosted request and the login's user, valid for
    /// `ttl_ms`, and the effect that stores its hash.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn auth_code_effect(
        &self,
        hosted: &HostedLogin,
        user: &User,
        amr: &str,
        second_factor: bool,
        session_id: Option<&str>,
        now: i64,
        ttl_ms: i64,
    ) -> (String, Effect) {
        let (code, code_hash) = self.mint_token(CODE_PREFIX);
        let row = AuthCode {
            code_hash,
            tenant_id: hosted.tenant_id,
            client_id: hosted.client_id.clone(),
            redirect_uri: hosted.redirect_uri.clone(),
            code_challenge: hosted.code_challenge.clone(),
            nonce: hosted.nonce.clone(),
            user_id: user.id,
            subject: user.external_id.clone(),
            amr: amr.to_string(),
            acr: acr_of(second_factor, amr).to_string(),
            auth_time: now,
            session_id: session_id.map(String::from),
            created_at: now,
            expires_at: now + ttl_ms,
            used_at: None,
        };
        (code, Effect::InsertAuthCode(row))
    }

    /// The `extra` of a second step on the hosted pages: the authorization code, minted in
    /// the transaction that completes the login (amr from the step), written to `out`.
    pub(super) fn code_minter<'a>(
        &'a self,
        hosted: &'a HostedLogin,
        user: &'a User,
        now: i64,
        out: &'a mut String,
    ) -> impl FnOnce(&str, &str) -> Vec<Effect> + 'a {
        move |session_id, amr| {
            let (code, effect) =
                self.auth_code_effect(hosted, user, amr, true, Some(session_id), now, CODE_TTL_MS);
            *out = code;
            vec![effect]
        }
    }

    fn code_redirect(&self, hosted: &HostedLogin, code: &str) -> String {
        with_params(
            &hosted.redirect_uri,
            &[
                ("code", Some(code)),
                ("state", hosted.state.as_deref()),
                ("iss", Some(&self.oidc_issuer())),
            ],
        )
    }

    // ------------------------------------------------------------ the hosted challenge

    /// The hosted login behind a browser's cookie: its tenant, the challenged pending login,
    /// its user and the authorization request. Anything else (unknown, completed, expired, a
    /// login the integrator started over the API) is the one generic refusal.
    pub(super) async fn hosted_of(
        &self,
        token: &str,
    ) -> Result<(Tenant, PendingLogin, User, HostedLogin), CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (login, user) = self
            .challenged_login(&tenant, token)
            .await
            .map_err(|_| invalid_login())?;
        Ok((tenant, login, user, hosted))
    }

    /// The tenant and hosted login behind a browser's cookie, whatever the login waits for.
    pub(super) async fn hosted_login_of(
        &self,
        token: &str,
    ) -> Result<(Tenant, HostedLogin), CoreError> {
        let invalid = invalid_login;
        if !token.starts_with("tfl_") || token.len() > 100 {
            return Err(invalid());
        }
        let probe = self
            .store
            .pending_login(&self.token_hash("tfl", token))
            .await?
            .ok_or_else(invalid)?;
        let tenant = self
            .store
            .tenant_by_id(probe.tenant_id)
            .await?
            .ok_or_else(invalid)?;
        let hosted = self
            .store
            .hosted_login(&probe.id)
            .await?
            .filter(|h| h.tenant_id == tenant.id)
            .ok_or_else(invalid)?;
        Ok((tenant, hosted))
    }

    pub(super) fn hosted_actor(hosted: &HostedLogin) -> Actor {
        Actor::Hosted {
            tenant_id: hosted.tenant_id,
            client_id: hosted.client_id.clone(),
        }
    }

    /// What the challenge page offers this login's user: their active factors whose method
    /// the tenant enables, authenticator apps first.
    pub async fn hosted_view(&self, token: &str) -> Result<HostedView, CoreError> {
        let (tenant, _, user, hosted) = self.hosted_of(token).await?;
        let (policy, _) = self.policy_of(&tenant).await?;
        let all = self.store.factors_of(user.id).await?;
        let keys = self.security_keys_available()
            && all.iter().any(|f| {
                f.kind == Method::Webauthn.as_str()
                    && f.status == FactorStatus::Active
                    && policy
                        .allowed_methods(user.profile.as_deref(), self.now())
                        .contains(&Method::Webauthn)
            });
        let mut factors: Vec<HostedFactor> = all
            .iter()
            .filter(|f| f.status == FactorStatus::Active && f.kind != Method::Webauthn.as_str())
            .filter(|f| {
                let allowed = policy.allowed_methods(user.profile.as_deref(), self.now());
                Method::parse(&f.kind).is_some_and(|m| allowed.contains(&m))
            })
            .map(HostedFactor::from)
            .collect();
        factors.sort_by_key(|f| (f.kind != "totp", f.kind != "sms"));
        let console = super::hosted_session::Audience::of_login(&hosted).is_some();
        Ok(HostedView {
            tenant_name: tenant.name.clone(),
            client_app: app_name(&hosted),
            factors,
            keys,
            // The console always asks for a second factor.
            remember_days: policy
                .remember_device_days
                .filter(|_| user.frozen_at.is_none() && !console),
            recovery_codes_left: self.store.recovery_codes_left(user.id).await? > 0,
            redirect_origin: origin_of(&hosted.redirect_uri),
        })
    }

    /// "Send me a code" on the hosted challenge: the core's cooldown and caps apply.
    pub async fn hosted_send_code(
        &self,
        meta: &RequestMeta,
        token: &str,
        factor_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let (tenant, _, _, hosted) = self.hosted_of(token).await?;
        self.login_send_code(
            &Self::hosted_actor(&hosted),
            meta,
            &tenant.slug,
            token,
            factor_id,
        )
        .await
    }

    pub(super) fn hosted_done(
        &self,
        hosted: &HostedLogin,
        code: &str,
        outcome: StepOutcome,
    ) -> HostedStep {
        if outcome.verdict.is_accepted() {
            HostedStep::Done {
                redirect: self.code_redirect(hosted, code),
                device: outcome.device,
            }
        } else {
            HostedStep::Rejected
        }
    }

    /// A code typed on the hosted challenge. The authorization code is minted in the
    /// transaction that consumes the typed code, and exists only if it commits.
    pub async fn hosted_verify(
        &self,
        meta: &RequestMeta,
        token: &str,
        code: &str,
        factor_id: Option<&str>,
        remember_device: bool,
    ) -> Result<HostedStep, CoreError> {
        let (tenant, login, user, hosted) = self.hosted_of(token).await?;
        let remember_device =
            remember_device && super::hosted_session::Audience::of_login(&hosted).is_none();
        // A code that does not parse is a wrong code, with the same answer (INV-11).
        let Ok(code) = OtpCode::parse(code) else {
            return Ok(HostedStep::Rejected);
        };
        let now = self.now();
        let mut auth_code = String::new();
        let step = SecondStep {
            tenant: &tenant,
            login: &login,
            user: &user,
        };
        let outcome = self
            .verify_step(
                &Self::hosted_actor(&hosted),
                meta,
                step,
                &code,
                factor_id,
                remember_device,
                None,
                self.code_minter(&hosted, &user, now, &mut auth_code),
            )
            .await;
        match outcome {
            Ok(o) => Ok(self.hosted_done(&hosted, &auth_code, o)),
            // A factor that is not the user's (or not enabled) and a throttled answer look
            // like a wrong code.
            Err(CoreError::NotFound(_)) | Err(CoreError::Invalid { .. }) => {
                Ok(HostedStep::Rejected)
            }
            Err(e) => Err(e),
        }
    }

    /// A recovery code typed on the hosted challenge (the phone is lost, or every factor is
    /// locked); as [`Self::hosted_verify`].
    pub async fn hosted_recover(
        &self,
        meta: &RequestMeta,
        token: &str,
        recovery_code: &str,
    ) -> Result<HostedStep, CoreError> {
        let (tenant, login, user, hosted) = self.hosted_of(token).await?;
        let now = self.now();
        let mut auth_code = String::new();
        let step = SecondStep {
            tenant: &tenant,
            login: &login,
            user: &user,
        };
        let outcome = self
            .recover_step(
                &Self::hosted_actor(&hosted),
                meta,
                step,
                recovery_code,
                self.code_minter(&hosted, &user, now, &mut auth_code),
            )
            .await;
        match outcome {
            Ok(o) => Ok(self.hosted_done(&hosted, &auth_code, o)),
            Err(CoreError::Invalid { .. }) => Ok(HostedStep::Rejected),
            Err(e) => Err(e),
        }
    }

    /// "Cancel" on the hosted challenge or enrolment pages: the pending login ends here
    /// (audited, with what it waited for) and the client hears `access_denied`.
    pub async fn hosted_cancel(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<String, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (login, user) = self.pending_login_for(&tenant, token).await?;
        let now = self.now();
        let mut audit = self.audit(
            &Self::hosted_actor(&hosted),
            meta,
            "oidc.hosted.cancel",
            Some(tenant.id),
        );
        audit.user_id = Some(user.id);
        audit.outcome = "denied".into();
        audit.reason = Some(login.decision.clone());
        self.store
            .apply(
                vec![Effect::CompleteLogin {
                    login_id: login.id.clone(),
                    at: now,
                }],
                audit,
            )
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => invalid_login(),
                e => e.into(),
            })?;
        Ok(with_params(
            &hosted.redirect_uri,
            &[
                ("error", Some("access_denied")),
                ("error_description", Some("the user cancelled the sign-in")),
                ("state", hosted.state.as_deref()),
                ("iss", Some(&self.oidc_issuer())),
            ],
        ))
    }

    // ------------------------------------------------------------ enrolment at login

    /// What the hosted enrolment pages show for a live login that waits for an enrolment:
    /// who signs in where, the methods the tenant enables, and whether "later" is allowed now
    /// (the rule `login_skip` enforces, from the policy as it is now: INV-10).
    pub async fn hosted_enroll_view(&self, token: &str) -> Result<HostedEnrollView, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (login, user) = self.pending_login_for(&tenant, token).await?;
        if !matches!(
            login.decision.as_str(),
            "enroll_required" | "enroll_offered"
        ) {
            return Err(CoreError::conflict(
                "not_an_enrolment",
                "this login is not waiting for an enrolment",
            ));
        }
        let (policy, _) = self.policy_of(&tenant).await?;
        let mut methods = policy.allowed_methods(user.profile.as_deref(), self.now());
        methods.retain(|m| *m != Method::Webauthn || self.security_keys_available());
        methods.sort();
        methods.dedup();
        let postpone = if login.decision == "enroll_offered" {
            crate::policy::postpone(&policy, user.profile.as_deref(), self.now())
        } else {
            Postpone::Never
        };
        let factors = self.store.factors_of(user.id).await?;
        let shown = |status: FactorStatus| -> Vec<HostedFactor> {
            factors
                .iter()
                .filter(|f| f.status == status)
                .map(HostedFactor::from)
                .collect()
        };
        let pending = shown(FactorStatus::Pending);
        // At an enrolment, active factors are only ever ones that no longer count.
        let step_up = shown(FactorStatus::Active);
        Ok(HostedEnrollView {
            tenant_name: tenant.name.clone(),
            client_app: app_name(&hosted),
            methods,
            postpone,
            pending,
            step_up,
            redirect_origin: origin_of(&hosted.redirect_uri),
        })
    }

    /// "Later" (or "Not now") on the hosted enrolment page: `login_skip`'s rules and audit
    /// row, and the authorization code minted in the same transaction, with the first factor
    /// as its only `amr` and the 1FA `acr`. Returns the redirect back to the client.
    pub async fn hosted_skip(&self, meta: &RequestMeta, token: &str) -> Result<String, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (_, user) = self.pending_login_for(&tenant, token).await?;
        let now = self.now();
        let mut auth_code = String::new();
        self.skip_with(
            &Self::hosted_actor(&hosted),
            meta,
            &tenant.slug,
            token,
            |session_id, amr| {
                let (code, effect) = self.auth_code_effect(
                    &hosted,
                    &user,
                    amr,
                    false,
                    Some(session_id),
                    now,
                    CODE_TTL_MS,
                );
                auth_code = code;
                vec![effect]
            },
        )
        .await?;
        Ok(self.code_redirect(&hosted, &auth_code))
    }

    /// A phone number or email address for the hosted login's user, pending until the code
    /// sent to it comes back (`login_enroll_contact`'s rules: only at an enrolment, only a
    /// method the tenant enables, only for a user without an active factor).
    pub async fn hosted_enroll_contact(
        &self,
        meta: &RequestMeta,
        token: &str,
        kind: ContactKind,
        destination: &str,
    ) -> Result<(FactorView, SendReceipt), CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        self.login_enroll_contact(
            &Self::hosted_actor(&hosted),
            meta,
            &tenant.slug,
            token,
            kind,
            destination,
        )
        .await
    }

    /// "Send a new code" while enrolling a phone or address on the hosted pages.
    pub async fn hosted_enroll_resend(
        &self,
        meta: &RequestMeta,
        token: &str,
        factor_id: &str,
    ) -> Result<SendReceipt, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        self.login_enroll_resend(
            &Self::hosted_actor(&hosted),
            meta,
            &tenant.slug,
            token,
            factor_id,
        )
        .await
    }

    /// A new authenticator app for the hosted login's user, pending until its first code
    /// (only for a login whose decision was an enrolment and a user without an active
    /// factor: `login_enroll_totp`'s rules).
    pub async fn hosted_enroll_totp(
        &self,
        meta: &RequestMeta,
        token: &str,
    ) -> Result<Enrollment, CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        self.login_enroll_totp(
            &Self::hosted_actor(&hosted),
            meta,
            &tenant.slug,
            token,
            EnrollOptions::default(),
        )
        .await
    }

    /// The first code of the factor enrolled on the hosted pages: one transaction activates
    /// the factor, completes the login, mints the session, the recovery codes and the
    /// authorization code. A wrong code is [`HostedStep::Rejected`] (the factor stays
    /// pending and the page asks again).
    pub async fn hosted_enroll_confirm(
        &self,
        meta: &RequestMeta,
        token: &str,
        factor_id: &str,
        code: &str,
    ) -> Result<(HostedStep, Option<RecoveryCodes>), CoreError> {
        let (tenant, hosted) = self.hosted_login_of(token).await?;
        let (_, user) = self.pending_login_for(&tenant, token).await?;
        if OtpCode::parse(code).is_err() {
            return Ok((HostedStep::Rejected, None));
        }
        let now = self.now();
        let mut auth_code = String::new();
        let outcome = self
            .enroll_confirm_with(
                &Self::hosted_actor(&hosted),
                meta,
                &tenant.slug,
                token,
                factor_id,
                code,
                |session_id, amr| {
                    let (code, effect) = self.auth_code_effect(
                        &hosted,
                        &user,
                        amr,
                        true,
                        Some(session_id),
                        now,
                        ENROLL_CODE_TTL_MS,
                    );
                    auth_code = code;
                    vec![effect]
                },
            )
            .await;
        match outcome {
            Ok(mut o) => {
                let codes = o.recovery_codes.take();
                Ok((self.hosted_done(&hosted, &auth_code, o), codes))
            }
            Err(CoreError::NotFound(_)) | Err(CoreError::Invalid { .. }) => {
                Ok((HostedStep::Rejected, None))
            }
            Err(e) => Err(e),
        }
    }

    // ------------------------------------------------------------ token endpoint

    /// The client a token request authenticates as: its secret compared in constant time.
    async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<OidcClient, TokenError> {
        if OidcClient::split_id(client_id).is_none() || secret.len() > 256 {
            return Err(TokenError::InvalidClient);
        }
        let client = self
            .store
            .oidc_client(client_id)
            .await?
            .ok_or(TokenError::InvalidClient)?;
        let stored = Zeroizing::new(self.keyring.unseal(
            &client.sealed_secret,
            &OidcClient::seal_owner(client.tenant_id, &client.id),
        )?);
        if !twofold_crypto::ct_eq(&stored, secret.as_bytes()) {
            return Err(TokenError::InvalidClient);
        }
        Ok(client)
    }

    /// The token endpoint: a code is exchanged once, by the client it was issued to, with
    /// the same redirect URI and the PKCE verifier of its challenge, before it expires. A
    /// second exchange of a spent code revokes the session its login minted.
    pub async fn oidc_token(
        &self,
        meta: &RequestMeta,
        req: TokenRequest,
    ) -> Result<TokenResponse, TokenError> {
        let (Some(client_id), Some(secret)) =
            (req.client_id.as_deref(), req.client_secret.as_deref())
        else {
            return Err(TokenError::InvalidClient);
        };
        let client = self.authenticate_client(client_id, secret).await?;
        if req.grant_type.as_deref() != Some("authorization_code") {
            return Err(TokenError::UnsupportedGrantType);
        }
        let (Some(code), Some(redirect_uri), Some(verifier)) = (
            req.code.as_deref(),
            req.redirect_uri.as_deref(),
            req.code_verifier.as_deref(),
        ) else {
            return Err(TokenError::InvalidRequest(
                "code, redirect_uri and code_verifier are required",
            ));
        };
        let actor = Actor::Hosted {
            tenant_id: client.tenant_id,
            client_id: client.id.clone(),
        };
        let now = self.now();
        let row = self
            .spend_code(
                &actor,
                meta,
                client.tenant_id,
                &client.id,
                code,
                redirect_uri,
                verifier,
                now,
            )
            .await?;
        let id_token = self.id_token(&client, &row, now).await?;
        Ok(TokenResponse {
            id_token,
            access_token: twofold_crypto::random_token(32),
            expires_in: ID_TOKEN_TTL_SECS,
        })
    }

    /// Spends an authorization code issued to `client_id` for this redirect URI and PKCE
    /// verifier, before it expires (audited either way). A spent code presented again revokes
    /// the session its login minted.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn spend_code(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        tenant_id: i64,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        now: i64,
    ) -> Result<AuthCode, TokenError> {
        if !code.starts_with("tfc_") || code.len() > 100 {
            return Err(TokenError::InvalidGrant);
        }
        let hash = self.token_hash(CODE_PREFIX, code);
        let row = self
            .store
            .auth_code(&hash)
            .await?
            .filter(|c| c.client_id == client_id && c.tenant_id == tenant_id)
            .ok_or(TokenError::InvalidGrant)?;
        let mut audit = self.audit(actor, meta, "oidc.token", Some(tenant_id));
        audit.user_id = Some(row.user_id);
        let refuse = |audit: AuditRecord, reason: &str| {
            let mut audit = audit;
            audit.outcome = "denied".into();
            audit.reason = Some(reason.into());
            audit
        };
        if row.used_at.is_some() {
            self.revoke_replayed(&row, refuse(audit, "code_replayed"), now)
                .await?;
            return Err(TokenError::InvalidGrant);
        }
        let bad = if row.redirect_uri != redirect_uri {
            Some("redirect_uri_mismatch")
        } else if !pkce_matches(verifier, &row.code_challenge) {
            Some("pkce_mismatch")
        } else if now >= row.expires_at {
            Some("code_expired")
        } else {
            None
        };
        if let Some(reason) = bad {
            self.store.append_audit(refuse(audit, reason)).await?;
            return Err(TokenError::InvalidGrant);
        }
        audit.reason = Some(client_id.to_string());
        match self
            .store
            .apply(
                vec![Effect::UseAuthCode {
                    code_hash: hash,
                    at: now,
                }],
                audit.clone(),
            )
            .await
        {
            Ok(()) => Ok(row),
            // Spent by a parallel exchange between our read and our write: a replay too.
            Err(StoreError::Conflict("state_changed")) => {
                self.revoke_replayed(&row, refuse(audit, "code_replayed"), now)
                    .await?;
                Err(TokenError::InvalidGrant)
            }
            Err(e) => Err(TokenError::Core(e.into())),
        }
    }

    /// RFC 6749 §4.1.2: a code used twice revokes what it issued: the login's session.
    async fn revoke_replayed(
        &self,
        row: &AuthCode,
        audit: AuditRecord,
        now: i64,
    ) -> Result<(), CoreError> {
        let effects = row
            .session_id
            .iter()
            .map(|id| Effect::RevokeSession {
                id: id.clone(),
                user_id: row.user_id,
                at: now,
                reason: "oidc_code_replayed".into(),
            })
            .collect();
        match self.store.apply(effects, audit.clone()).await {
            Ok(()) => Ok(()),
            // Revoked already (by an earlier replay): the audit row still records this one.
            Err(StoreError::Conflict("state_changed")) => {
                Ok(self.store.append_audit(audit).await?)
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn id_token(
        &self,
        client: &OidcClient,
        row: &AuthCode,
        now: i64,
    ) -> Result<String, CoreError> {
        let keys = self.signing_keys().await?;
        let key = keys
            .first()
            .ok_or_else(|| CoreError::Internal("no OIDC signing key".into()))?;
        let der = self.unseal_signing_key(key)?;
        let issuer = self.oidc_issuer();
        let claims = IdTokenClaims {
            iss: &issuer,
            sub: &row.subject,
            aud: &client.id,
            exp: now / 1000 + ID_TOKEN_TTL_SECS,
            iat: now / 1000,
            auth_time: row.auth_time / 1000,
            nonce: row.nonce.as_deref(),
            amr: amr_of(&row.amr),
            acr: &row.acr,
            sid: row.session_id.as_deref(),
        };
        let mut header = Header::new(JwtAlg::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_der(&der))
            .map_err(|e| CoreError::Internal(format!("cannot sign an ID token: {e}")))
    }

    /// Deletes spent hint `jti`s, codes and hosted logins that expired a day ago or more.
    /// Deletes what the hosted pages leave behind once it is a day past its expiry: hint
    /// `jti`s, authorization codes, hosted logins and security-key ceremonies.
    pub async fn prune_oidc(&self) -> Result<u64, CoreError> {
        let before = self.now() - crate::policy::DAY_MS;
        let hosted = self.store.prune_oidc(before).await?;
        Ok(hosted + self.store.prune_webauthn_challenges(before).await?)
    }
}

/// `scheme://authority` of an absolute URI (registered redirect URIs are validated so).
fn origin_of(uri: &str) -> String {
    match uri.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?']).next().unwrap_or_default();
            format!("{scheme}://{authority}")
        }
        None => String::new(),
    }
}

/// The name the hosted pages show for the application being signed in to.
fn app_name(hosted: &HostedLogin) -> String {
    if let Some(own) = super::hosted_session::Audience::of_login(hosted) {
        return own.name().into();
    }
    match OidcClient::split_id(&hosted.client_id) {
        Some((_, app)) => app.to_string(),
        None => String::new(),
    }
}

fn primary_amr(primary: &str) -> &'static str {
    if primary == "sso" {
        "sso"
    } else {
        "pwd"
    }
}
