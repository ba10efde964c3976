//! The browser of the hosted-page tests: reqwest with a cookie store, redirects looked at one
//! by one, forms read from the HTML; and a hosted sign-in for tests that only need its rows.

use super::*;
use reqwest::cookie::CookieStore;
use std::sync::Arc;

/// The user's browser: a cookie store, redirects looked at one by one.
pub struct Browser {
    pub http: reqwest::Client,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub base: String,
}

pub struct Page {
    pub status: StatusCode,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF token in {}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The value of a hidden or other input by name.
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&marker)?;
        let rest = &self.body[at + marker.len()..];
        Some(rest[..rest.find('"')?].to_string())
    }

    /// A query parameter of the redirect.
    pub fn param(&self, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(self.location.as_deref()?).ok()?;
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Browser {
    pub fn new(app: &TestApp) -> Browser {
        let jar = Arc::new(reqwest::cookie::Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            http,
            jar,
            base: app.base.clone(),
        }
    }

    async fn page(resp: reqwest::Response) -> Page {
        Page {
            status: resp.status(),
            location: resp
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_string()),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub fn url(&self, to: &str) -> String {
        if to.starts_with('/') {
            format!("{}{to}", self.base)
        } else {
            to.to_string()
        }
    }

    pub async fn get(&self, to: &str) -> Page {
        Self::page(self.http.get(self.url(to)).send().await.unwrap()).await
    }

    pub async fn post(&self, to: &str, form: &[(&str, &str)]) -> Page {
        Self::page(
            self.http
                .post(self.url(to))
                .form(form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// A cookie's value, as the browser would send it to the hosted pages.
    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookie_at("/oidc/challenge", name)
    }

    /// A cookie's value, as the browser would send it to `path`.
    pub fn cookie_at(&self, path: &str, name: &str) -> Option<String> {
        let url = reqwest::Url::parse(&format!("{}{path}", self.base)).unwrap();
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .unwrap()
            .split("; ")
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    /// Opens the authorization URL; returns the challenge page it leads to.
    pub async fn open_challenge(&self, url: &str) -> Page {
        let first = self.get(url).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        assert_eq!(first.location.as_deref(), Some("/oidc/challenge"));
        let page = self.get("/oidc/challenge").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        page
    }

    /// Types `code` into the challenge page and presses "Verify".
    pub async fn verify(&self, page: &Page, code: &str, remember: bool) -> Page {
        let csrf = page.csrf();
        let factor = page.input("factor_id").unwrap_or_default();
        let mut form = vec![
            ("csrf", csrf.as_str()),
            ("factor_id", factor.as_str()),
            ("code", code),
        ];
        if remember {
            form.push(("remember", "1"));
        }
        self.post("/oidc/challenge/verify", &form).await
    }
}

/// A login hint for `sub`, signed with the client's secret, for the server's issuer.
pub fn signed_hint(issuer: &str, client_id: &str, secret: &str, sub: &str, exp: u64) -> String {
    let claims = json!({
        "iss": client_id, "aud": issuer, "sub": sub, "primary": "password", "exp": exp,
        "jti": twofold_crypto::random_token(16),
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Starts a hosted sign-in of `e`'s user through client `client_id` (registered with
/// `redirect` as its redirect URI) and stops at the challenge page: the hint's jti, the
/// hosted login and, through the JWKS, the signing key are stored.
pub async fn start_hosted(
    app: &TestApp,
    client_id: &str,
    secret: &str,
    redirect: &str,
    e: &Enrolled,
) -> (Browser, Page) {
    let (_, doc) = app.get("/.well-known/openid-configuration", &e.key).await;
    let issuer = doc["issuer"].as_str().unwrap().to_string();
    let hint = signed_hint(&issuer, client_id, secret, &e.user, app.now_secs() + 60);
    let (_, jwks) = app.get("/oidc/jwks", &e.key).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1, "{jwks}");
    let url = reqwest::Url::parse_with_params(
        &format!("{}/oidc/authorize", app.base),
        &[
            ("response_type", "code"),
            ("scope", "openid"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("state", "st"),
            ("nonce", "nn"),
            // RFC 7636 Appendix B.
            (
                "code_challenge",
                "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            ),
            ("code_challenge_method", "S256"),
            ("login_hint_token", &hint),
        ],
    )
    .unwrap();
    let b = Browser::new(app);
    let page = b.open_challenge(url.as_str()).await;
    (b, page)
}
