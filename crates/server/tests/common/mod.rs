//! Test kit: each test gets its own server on port 0, its own data directory and a clock it
//! controls, plus an operator key.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod attacks;
pub mod chromium;
pub mod console;
pub mod logins;
pub mod oidc;
pub mod process;
pub mod rp;

use reqwest::{Client, Method, Response, StatusCode};
use serde_json::{json, Value};
use std::sync::Arc;
use twofold_core::ports::ManualClock;
use twofold_core::service::RequestMeta;
use twofold_core::Actor;
use twofold_otp::{uri::KeyUri, OtpParams};
use twofold_server::{Application, Config};

/// 2026-11-26T00:00:00Z, aligned to a 30 s step.
pub const START_MS: i64 = 1_795_651_200_000;

pub struct TestApp {
    pub base: String,
    pub client: Client,
    pub clock: Arc<ManualClock>,
    pub operator_key: String,
    pub data_dir: tempfile::TempDir,
    /// The server's data directory (its development outbox is under it).
    pub data_path: std::path::PathBuf,
    /// Development-outbox files already handed out by `next_message`.
    seen: std::sync::Mutex<std::collections::HashSet<std::path::PathBuf>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A message the server delivered to its development outbox (an `.eml` or SMS `.txt` file),
/// and every message under a folder of it, oldest first.
pub use twofold_delivery::dev_outbox::{read_all as dev_messages, DevMessage};

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let data_dir = tempfile::tempdir().unwrap();
    let path = data_dir.path().join("data");
    spawn(data_dir, path, tweak).await
}

/// A second server on an existing data directory, as another node would be.
pub async fn spawn_app_at(data: std::path::PathBuf) -> TestApp {
    spawn_app_at_with(data, |_| {}).await
}

/// The same, with settings (e.g. the server restarted with another mail server).
pub async fn spawn_app_at_with(
    data: std::path::PathBuf,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    spawn(tempfile::tempdir().unwrap(), data, tweak).await
}

async fn spawn(
    data_dir: tempfile::TempDir,
    path: std::path::PathBuf,
    tweak: impl FnOnce(&mut Config),
) -> TestApp {
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: path,
        ..Config::default()
    };
    tweak(&mut config);
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("error")
        .try_init();
    let clock = Arc::new(ManualClock::new(START_MS));
    let app = Application::build_with_clock(&config, clock.clone())
        .await
        .unwrap();
    let operator_key = app
        .state()
        .core
        .create_api_key(&Actor::Cli, &RequestMeta::default(), None, "tests")
        .await
        .unwrap()
        .token;
    let base = format!("http://{}", app.local_addr());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    TestApp {
        base,
        client: Client::new(),
        clock,
        operator_key,
        data_dir,
        data_path: config.data_dir.clone(),
        seen: Default::default(),
        shutdown: Some(tx),
    }
}

/// A tenant with one user who has a confirmed TOTP factor.
pub struct Enrolled {
    pub tenant: String,
    pub key: String,
    pub user: String,
    pub factor_id: String,
    pub secret: Vec<u8>,
    pub params: OtpParams,
    pub enrolment: Value,
    /// Given when this was the user's first factor.
    pub recovery_codes: Vec<String>,
}

impl TestApp {
    pub fn outbox_dir(&self) -> std::path::PathBuf {
        self.data_path.join("dev-outbox")
    }

    /// Waits (up to 10 s) for the oldest message to `to` not handed out yet that matches.
    pub async fn next_message_where(
        &self,
        to: &str,
        want: impl Fn(&DevMessage) -> bool,
    ) -> DevMessage {
        for _ in 0..200 {
            let found = dev_messages(&self.outbox_dir())
                .into_iter()
                .find(|m| m.to == to && want(m) && !self.seen.lock().unwrap().contains(&m.path));
            if let Some(m) = found {
                self.seen.lock().unwrap().insert(m.path.clone());
                return m;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let all: Vec<String> = dev_messages(&self.outbox_dir())
            .iter()
            .map(|m| format!("{} {:?}", m.to, m.subject))
            .collect();
        panic!("no new message to {to} arrived in 10 s; outbox has {all:?}");
    }

    pub async fn next_message(&self, to: &str) -> DevMessage {
        self.next_message_where(to, |_| true).await
    }

    /// The next message to `to` that carries a code; returns the code.
    pub async fn next_code(&self, to: &str) -> String {
        let m = self.next_message_where(to, |m| m.code().is_some()).await;
        m.code().unwrap()
    }

    /// The next security notice to `to` (a message without a code).
    pub async fn next_notice(&self, to: &str) -> DevMessage {
        self.next_message_where(to, |m| {
            m.code().is_none() && m.text.contains("verification settings")
        })
        .await
    }

    pub async fn audit_of(&self, tenant: &str, key: &str, query: &str) -> Vec<Value> {
        let (s, body) = self
            .get(&format!("/v1/tenants/{tenant}/audit?{query}"), key)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    pub fn now_secs(&self) -> u64 {
        use twofold_core::ports::Clock;
        (self.clock.now_ms() / 1000) as u64
    }

    pub fn advance_secs(&self, s: i64) {
        self.clock.advance_ms(s * 1000);
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        split(resp).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn get(&self, path: &str, key: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(key), None).await
    }

    /// Creates a tenant; returns its tenant-scoped key.
    pub async fn tenant(&self, slug: &str) -> String {
        let (s, body) = self
            .post(
                "/v1/tenants",
                &self.operator_key,
                json!({"slug": slug, "name": format!("{slug} Inc")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        body["api_key"]["token"].as_str().unwrap().to_string()
    }

    pub async fn user(&self, tenant: &str, key: &str, ext: &str) {
        let (s, body) = self
            .post(
                &format!("/v1/tenants/{tenant}/users"),
                key,
                json!({"external_id": ext, "email": format!("{ext}@example.com")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
    }

    /// Enrols a pending factor; returns (factor id, secret, params, body).
    pub async fn enrol(
        &self,
        tenant: &str,
        key: &str,
        user: &str,
        body: Value,
    ) -> (String, Vec<u8>, OtpParams, Value) {
        let (s, e) = self
            .post(
                &format!("/v1/tenants/{tenant}/users/{user}/factors/totp"),
                key,
                body,
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{e}");
        let uri = KeyUri::parse(e["otpauth_uri"].as_str().unwrap()).unwrap();
        assert_eq!(
            twofold_otp::base32::decode(e["secret"].as_str().unwrap()).unwrap(),
            uri.secret
        );
        (
            e["factor_id"].as_str().unwrap().to_string(),
            uri.secret.clone(),
            uri.params(),
            e,
        )
    }

    pub fn code_at_offset(&self, secret: &[u8], params: &OtpParams, steps: i64) -> String {
        let t = self.now_secs() as i64 + steps * params.period as i64;
        twofold_otp::totp_at_time(secret, t as u64, params)
    }

    pub async fn confirm(&self, e: &Enrolled, code: &str) -> (StatusCode, Value) {
        self.post(
            &format!(
                "/v1/tenants/{}/users/{}/factors/{}/confirm",
                e.tenant, e.user, e.factor_id
            ),
            &e.key,
            json!({ "code": code }),
        )
        .await
    }

    pub async fn verify(&self, e: &Enrolled, code: &str) -> (StatusCode, Value) {
        self.post(
            &format!("/v1/tenants/{}/users/{}/verify", e.tenant, e.user),
            &e.key,
            json!({ "code": code }),
        )
        .await
    }

    /// Enrols an SMS or email factor (`kind`) for `e`'s user and confirms it with the code
    /// sent to `destination`; returns the factor id.
    pub async fn active_contact(&self, e: &Enrolled, kind: &str, destination: &str) -> String {
        let field = if kind == "sms" { "phone" } else { "email" };
        let (s, f) = self
            .post(
                &format!("/v1/tenants/{}/users/{}/factors/{kind}", e.tenant, e.user),
                &e.key,
                json!({ field: destination }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{f}");
        let id = f["factor"]["id"].as_str().unwrap().to_string();
        let code = self.next_code(destination).await;
        let (s, c) = self
            .post(
                &format!(
                    "/v1/tenants/{}/users/{}/factors/{id}/confirm",
                    e.tenant, e.user
                ),
                &e.key,
                json!({ "code": code }),
            )
            .await;
        assert_eq!(
            (s, c["confirmed"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{c}"
        );
        id
    }

    /// A fresh pending factor for an existing user.
    pub async fn pending(&self, tenant: &str, key: &str, user: &str) -> Enrolled {
        let (factor_id, secret, params, enrolment) = self.enrol(tenant, key, user, json!({})).await;
        Enrolled {
            tenant: tenant.into(),
            key: key.into(),
            user: user.into(),
            factor_id,
            secret,
            params,
            enrolment,
            recovery_codes: Vec::new(),
        }
    }

    /// A tenant `slug` with user `alice` holding a confirmed default TOTP factor. The clock is
    /// moved one step on, so the confirmation code's step is spent and the next is fresh.
    pub async fn enrolled(&self, slug: &str) -> Enrolled {
        let key = self.tenant(slug).await;
        self.user(slug, &key, "alice").await;
        let mut e = self.pending(slug, &key, "alice").await;
        let code = self.code_at_offset(&e.secret, &e.params, 0);
        let (s, body) = self.confirm(&e, &code).await;
        assert_eq!(
            (s, body["confirmed"].as_bool()),
            (StatusCode::OK, Some(true)),
            "{body}"
        );
        e.recovery_codes = body["recovery_codes"]
            .as_array()
            .expect("a first factor comes with recovery codes")
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect();
        assert_eq!(e.recovery_codes.len(), 10);
        self.advance_secs(30);
        e
    }

    pub async fn audit(&self, e: &Enrolled, query: &str) -> Vec<Value> {
        let (s, body) = self
            .get(&format!("/v1/tenants/{}/audit?{query}", e.tenant), &e.key)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        body["events"].as_array().unwrap().clone()
    }

    /// `[outcome, reason]` of each audit event `query` selects, newest first.
    pub async fn audit_outcomes(&self, e: &Enrolled, query: &str) -> Vec<Value> {
        self.audit(e, query)
            .await
            .iter()
            .map(|ev| json!([ev["outcome"], ev["reason"]]))
            .collect()
    }
}

pub async fn split(resp: Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}
