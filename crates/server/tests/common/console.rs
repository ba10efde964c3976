//! The admin console's test helpers: an organisation with an admin who has an authenticator
//! app, and their browser signed in to the console through the hosted second step.

use super::oidc::{Browser, Page};
use super::rp::{acme, hint_with, spawn};
use super::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// Tenant acme from `rp::acme` (alice with TOTP, 2FA required, client `acme.web`), and the
/// admin boss with a confirmed authenticator app of their own.
pub struct Org {
    pub app: TestApp,
    pub alice: Enrolled,
    pub boss: Enrolled,
    pub secret: String,
}

pub async fn org() -> Org {
    org_on(spawn().await).await
}

/// [`org`] on a server of the caller's (e.g. `rp::spawn_on_localhost`).
pub async fn org_on(app: TestApp) -> Org {
    let (alice, secret) = acme(&app).await;
    let mut boss = app.pending("acme", &alice.key, "boss").await;
    let code = app.code_at_offset(&boss.secret, &boss.params, 0);
    let (s, body) = app.confirm(&boss, &code).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    boss.recovery_codes = vec![];
    app.advance_secs(30);
    Org {
        app,
        alice,
        boss,
        secret,
    }
}

impl Org {
    pub fn sso_url(&self, user: &str) -> String {
        let hint = hint_with(&self.app, &self.secret, json!({ "sub": user }));
        format!("/console/sso?client_id=acme.web&login_hint_token={hint}")
    }

    /// Boss's browser through the hosted challenge into the console: returns it signed in.
    pub async fn signed_in(&self) -> Browser {
        let b = Browser::new(&self.app);
        let first = b.get(&self.sso_url("boss")).await;
        assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
        assert_eq!(first.location.as_deref(), Some("/oidc/challenge"));
        let challenge = b.get("/oidc/challenge").await;
        assert_eq!(challenge.status, StatusCode::OK, "{}", challenge.body);
        assert!(
            challenge.body.contains("the admin console"),
            "{}",
            challenge.body
        );
        // The console never remembers a device, even when asked by a forged field.
        assert!(!challenge.body.contains("Remember this device"));
        let code = self.boss_code();
        let back = b.verify(&challenge, &code, true).await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        assert!(b.cookie("tf_device").is_none());
        let callback = back.location.unwrap();
        assert!(
            callback.starts_with(&format!("{}/console/callback?code=", self.app.base)),
            "{callback}"
        );
        let landed = b.get(&callback).await;
        assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
        assert_eq!(landed.location.as_deref(), Some("/console"));
        self.app.advance_secs(30);
        b
    }

    pub fn boss_code(&self) -> String {
        self.app
            .code_at_offset(&self.boss.secret, &self.boss.params, 0)
    }

    pub async fn policy(&self) -> Value {
        let (s, p) = self
            .app
            .get("/v1/tenants/acme/policy", &self.alice.key)
            .await;
        assert_eq!(s, StatusCode::OK, "{p}");
        p
    }
}

/// A console form's POST with the page's CSRF token.
pub async fn submit(b: &Browser, page: &Page, to: &str, fields: &[(&str, &str)]) -> Page {
    let csrf = page.csrf();
    let mut form = vec![("csrf", csrf.as_str())];
    form.extend_from_slice(fields);
    b.post(to, &form).await
}

pub async fn alice_factors(o: &Org) -> usize {
    let (_, f) = o
        .app
        .get("/v1/tenants/acme/users/alice/factors", &o.alice.key)
        .await;
    f["factors"].as_array().unwrap().len()
}
