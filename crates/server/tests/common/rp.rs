//! The integrator's side of a hosted sign-in, shared by the reqwest tests (tests/oidc.rs) and
//! the Chromium tests (tests/browser_signin.rs): a server whose issuer is its own address, a
//! registered client, signed login hints, the `openidconnect` crate as the relying party, and
//! codes from `oathtool` (an independent TOTP implementation).

use super::logins::{required, set_policy, setup};
use super::oidc::{Browser, Page};
use super::{spawn_app_with, Enrolled, TestApp};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, TokenResponse,
};
use reqwest::StatusCode;
use serde_json::{json, Value};

pub const REDIRECT: &str = "http://localhost:3000/callback";

/// The code an authenticator app holding `secret` shows at `at_secs`.
pub fn oathtool(secret: &[u8], at_secs: u64) -> String {
    oathtool_b32(&twofold_otp::base32::encode(secret), at_secs)
}

/// The same for a key as a person reads it off a page (base32, spaces allowed).
pub fn oathtool_b32(key: &str, at_secs: u64) -> String {
    let b32: String = key.split_whitespace().collect();
    let out = std::process::Command::new("oathtool")
        .args(["--totp", "-b", &b32, "-N", &format!("@{at_secs}")])
        .output()
        .expect("oathtool is installed by scripts/test.sh");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A server whose `public_url` (the issuer) is its own address, so discovery matches.
pub async fn spawn() -> TestApp {
    spawn_with(|_| {}).await
}

/// The same with more settings (an SMS provider, say).
pub async fn spawn_with(tweak: impl FnOnce(&mut twofold_server::Config)) -> TestApp {
    let port = twofold_testkit::free_port();
    spawn_app_with(|c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
        tweak(c);
    })
    .await
}

/// A server the browser reaches as `http://localhost:<port>` (issuer and pages): security
/// keys need a host name for their RP id, and browsers allow WebAuthn without TLS only on
/// `localhost`. `tweak` may set more (a `[webauthn]` section, say).
#[allow(dead_code)]
pub async fn spawn_on_localhost(tweak: impl FnOnce(&mut twofold_server::Config)) -> TestApp {
    let mut app = spawn_with(|c| {
        c.public_url = Some(format!("http://localhost:{}", c.listen.port()));
        tweak(c);
    })
    .await;
    app.base = app.base.replace("127.0.0.1", "localhost");
    app
}

/// Tenant acme (user alice with TOTP, admin boss), 2FA required, remember-device 30 days,
/// client app `web` registered for OIDC; returns the enrolment and the client secret.
pub async fn acme(app: &TestApp) -> (Enrolled, String) {
    let e = setup(app).await;
    set_policy(app, &e, required(json!({}))).await;
    let secret = register(app, "acme", &e.key, "web").await;
    (e, secret)
}

pub async fn register(app: &TestApp, tenant: &str, key: &str, client_app: &str) -> String {
    register_to(app, tenant, key, client_app, REDIRECT).await
}

/// Registers `tenant.client_app` for OIDC with `redirect` as its one redirect URI; returns
/// the client secret.
pub async fn register_to(
    app: &TestApp,
    tenant: &str,
    key: &str,
    client_app: &str,
    redirect: &str,
) -> String {
    let (s, body) = app
        .post(
            &format!("/v1/tenants/{tenant}/oidc/clients"),
            key,
            json!({"client_app": client_app, "redirect_uris": [redirect]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["client"]["client_id"],
        format!("{tenant}.{client_app}")
    );
    body["client_secret"].as_str().unwrap().to_string()
}

pub fn issuer(app: &TestApp) -> String {
    app.base.clone()
}

/// A login hint as the integrator's back end signs it.
pub fn hint_with(app: &TestApp, secret: &str, claims: Value) -> String {
    let mut c = json!({
        "iss": "acme.web",
        "aud": issuer(app),
        "sub": "alice",
        "primary": "password",
        "exp": app.now_secs() + 60,
        "jti": twofold_crypto::random_token(16),
    });
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &c,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

pub fn hint(app: &TestApp, secret: &str) -> String {
    hint_with(app, secret, json!({}))
}

/// The relying party: the `openidconnect` crate's client, configured by discovery.
pub struct Rp {
    pub client: CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    pub http: openidconnect::reqwest::Client,
}

/// One authorization request the relying party made.
pub struct Request {
    pub url: String,
    pub state: CsrfToken,
    pub nonce: Nonce,
    pub verifier: PkceCodeVerifier,
}

impl Rp {
    pub async fn discover(app: &TestApp, client_id: &str, secret: &str) -> Rp {
        Rp::discover_to(app, client_id, secret, REDIRECT).await
    }

    /// The relying party of a client whose redirect URI is `redirect`.
    pub async fn discover_to(app: &TestApp, client_id: &str, secret: &str, redirect: &str) -> Rp {
        // The crate insists on a client that does not follow redirects (SSRF).
        let http = openidconnect::reqwest::ClientBuilder::new()
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let metadata =
            CoreProviderMetadata::discover_async(IssuerUrl::new(issuer(app)).unwrap(), &http)
                .await
                .unwrap();
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(client_id.into()),
            Some(ClientSecret::new(secret.into())),
        )
        .set_redirect_uri(RedirectUrl::new(redirect.into()).unwrap());
        Rp { client, http }
    }

    pub fn authorize(&self, hint: &str) -> Request {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (url, state, nonce) = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge)
            .add_extra_param("login_hint_token", hint.to_string())
            .url();
        Request {
            url: url.to_string(),
            state,
            nonce,
            verifier,
        }
    }

    pub async fn exchange(
        &self,
        code: &str,
        verifier: PkceCodeVerifier,
    ) -> Result<openidconnect::core::CoreTokenResponse, String> {
        self.client
            .exchange_code(AuthorizationCode::new(code.into()))
            .unwrap()
            .set_pkce_verifier(verifier)
            .request_async(&self.http)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    /// The ID token's claims, verified (signature against the JWKS, issuer, audience, expiry
    /// at the server's test clock, nonce).
    pub fn claims(
        &self,
        app: &TestApp,
        tokens: &openidconnect::core::CoreTokenResponse,
        nonce: &Nonce,
    ) -> openidconnect::core::CoreIdTokenClaims {
        let now = app.now_secs() as i64;
        let verifier = self
            .client
            .id_token_verifier()
            .set_allowed_algs(vec![CoreJwsSigningAlgorithm::EcdsaP256Sha256])
            .set_time_fn(move || chrono::DateTime::from_timestamp(now, 0).unwrap());
        tokens
            .id_token()
            .expect("an ID token")
            .claims(&verifier, nonce)
            .unwrap()
            .clone()
    }
}

/// The ID token's `amr` values.
pub fn amr(claims: &openidconnect::core::CoreIdTokenClaims) -> Vec<String> {
    claims
        .auth_method_refs()
        .unwrap()
        .iter()
        .map(|a| a.to_string())
        .collect()
}

/// The redirect back to the client: its code, after checking `state` and `iss`.
pub fn code_of(app: &TestApp, back: &Page, req: &Request) -> String {
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    code_in(app, back.location.as_deref().unwrap(), REDIRECT, req)
}

/// The code in `url`, where the browser landed, after checking that it is the client's
/// `redirect` with the request's `state`, the `iss` of this server and no `error`.
pub fn code_in(app: &TestApp, url: &str, redirect: &str, req: &Request) -> String {
    assert!(url.starts_with(redirect), "{url}");
    let url = reqwest::Url::parse(url).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(req.state.secret().as_str()));
    assert_eq!(param("iss"), Some(issuer(app)));
    assert_eq!(param("error"), None, "{url}");
    param("code").unwrap()
}

/// A full sign-in with the authenticator app; returns the request and the code.
pub async fn sign_in(
    app: &TestApp,
    rp: &Rp,
    e: &Enrolled,
    b: &Browser,
    remember: bool,
) -> (Request, String) {
    let req = rp.authorize(&hint(app, &e.key_secret()));
    let page = b.open_challenge(&req.url).await;
    let back = b
        .verify(&page, &oathtool(&e.secret, app.now_secs()), remember)
        .await;
    let code = code_of(app, &back, &req);
    (req, code)
}

pub trait SecretOf {
    fn key_secret(&self) -> String;
}

/// Tests keep the client secret in the enrolment's `enrolment` JSON (see `with_secret`).
impl SecretOf for Enrolled {
    fn key_secret(&self) -> String {
        self.enrolment["oidc_secret"].as_str().unwrap().to_string()
    }
}

pub fn with_secret(mut e: Enrolled, secret: &str) -> Enrolled {
    e.enrolment["oidc_secret"] = json!(secret);
    e
}

pub async fn sessions(app: &TestApp, e: &Enrolled) -> Vec<Value> {
    let (s, body) = app
        .get("/v1/tenants/acme/users/alice/sessions", &e.key)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    body["sessions"].as_array().unwrap().clone()
}

/// The integrator of tenant acme in the Chromium tests: alice with an authenticator app and
/// the admin boss (`logins::setup`), `policy` confirmed, `users` created without a factor, and
/// client `acme.web` whose redirect URI is a local server's `/callback` (so the page the
/// browser lands on loads).
pub struct Integrator {
    pub app: TestApp,
    pub e: Enrolled,
    pub secret: String,
    pub rp: Rp,
    pub redirect: String,
    _callback: twofold_testkit::MockHttp,
}

impl Integrator {
    pub async fn start(policy: Value, users: &[&str]) -> Integrator {
        Self::start_on(spawn().await, policy, users).await
    }

    /// [`Self::start`] on a server of the caller's (e.g. [`spawn_on_localhost`]).
    pub async fn start_on(app: TestApp, policy: Value, users: &[&str]) -> Integrator {
        let e = setup(&app).await;
        set_policy(&app, &e, policy).await;
        for user in users {
            app.user("acme", &e.key, user).await;
        }
        let callback = twofold_testkit::MockHttp::start().await;
        let redirect = format!("{}/callback", callback.base_url);
        let secret = register_to(&app, "acme", &e.key, "web", &redirect).await;
        let rp = Rp::discover_to(&app, "acme.web", &secret, &redirect).await;
        Integrator {
            app,
            e,
            secret,
            rp,
            redirect,
            _callback: callback,
        }
    }

    /// A fresh authorization request for `user`, as the integrator makes after checking the
    /// password.
    pub fn authorize_for(&self, user: &str) -> Request {
        self.rp
            .authorize(&hint_with(&self.app, &self.secret, json!({ "sub": user })))
    }

    /// The code alice's authenticator app shows now.
    pub fn right_code(&self) -> String {
        oathtool(&self.e.secret, self.app.now_secs())
    }

    /// Exchanges the code the browser brought back and verifies `user`'s ID token; returns
    /// its `amr` and `acr`.
    pub async fn exchange_for(
        &self,
        user: &str,
        landed: &str,
        req: Request,
    ) -> (Vec<String>, String) {
        let code = code_in(&self.app, landed, &self.redirect, &req);
        let tokens = self.rp.exchange(&code, req.verifier).await.unwrap();
        let claims = self.rp.claims(&self.app, &tokens, &req.nonce);
        assert_eq!(claims.subject().as_str(), user);
        let acr = claims.auth_context_ref().unwrap().to_string();
        (amr(&claims), acr)
    }
}
