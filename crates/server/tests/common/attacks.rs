//! Helpers of the attack suite (`tests/attacks*.rs`, SECURITY.md's list): raw answers to
//! compare byte for byte, every code-taking endpoint set up with one valid code, and the whole
//! audit trail.

use super::logins::*;
use super::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const ALICE_PHONE: &str = "+447700900123";
pub const NEW_PHONE: &str = "+447700900999";
pub const ALICE_MAIL: &str = "alice@example.com";
/// The address of alice's email factor (not her notice address, so codes and notices part).
pub const ALICE_CODES: &str = "alice.codes@example.com";

/// An answer as the caller sees it: status, the headers that could tell answers apart (not
/// the date nor the request id), and the body's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

pub async fn raw(app: &TestApp, key: &str, path: &str, body: &Value) -> Raw {
    raw_text(app, key, path, &body.to_string()).await
}

/// POSTs `body` as it is (duplicate keys, huge bodies) with a JSON content type.
pub async fn raw_text(app: &TestApp, key: &str, path: &str, body: &str) -> Raw {
    raw_call(app, Method::POST, key, path, Some(body)).await
}

/// Any request, with `body` sent as it is (as JSON) when given.
pub async fn raw_call(
    app: &TestApp,
    method: Method,
    key: &str,
    path: &str,
    body: Option<&str>,
) -> Raw {
    // A server may answer a huge body with 413 before reading it and close the connection;
    // the client then sometimes sees the reset instead of the answer, so it asks again.
    let mut tries = 0;
    let resp = loop {
        let mut req = app
            .client
            .request(method.clone(), format!("{}{path}", app.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        match req.send().await {
            Ok(resp) => break resp,
            Err(e) if tries < 5 && (e.is_request() || e.is_connect()) => tries += 1,
            Err(e) => panic!("{path}: {e}"),
        }
    };
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "x-request-id"))
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    let body = resp.text().await.unwrap();
    Raw {
        status,
        headers,
        body,
    }
}

/// A code other than `code`: six digits, or a recovery code's shape.
pub fn a_wrong(code: &str) -> String {
    if code.contains('-') {
        return "abcd-efgh-jkmn-pqrs".into();
    }
    format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000)
}

/// An id of the same shape as `id` that names nothing (its last character changed).
pub fn unknown_like(id: &str) -> String {
    let (head, last) = id.split_at(id.len() - 1);
    format!("{head}{}", if last == "a" { "b" } else { "a" })
}

/// Whether `code` appears in `text` as a number of its own (not inside a longer one).
pub fn contains_number(text: &str, code: &str) -> bool {
    text.match_indices(code).any(|(i, _)| {
        let b = text.as_bytes();
        let before = i > 0 && b[i - 1].is_ascii_digit();
        let after = b.get(i + code.len()).is_some_and(u8::is_ascii_digit);
        !before && !after
    })
}

/// Every audit event `query` selects, newest first, across pages.
pub async fn all_audit(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (s, page) = app
            .get(
                &format!("/v1/tenants/acme/audit?{query}&limit=500{cursor}"),
                key,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{page}");
        out.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return out,
        }
    }
}

/// How many of `events` have each reason.
pub fn reasons(events: &[Value]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for ev in events {
        let r = match (&ev["outcome"], &ev["reason"]) {
            (o, Value::Null) => o.as_str().unwrap_or("?").to_string(),
            (_, r) => r.as_str().unwrap_or("?").to_string(),
        };
        *m.entry(r).or_default() += 1;
    }
    m
}

/// Alice's SMS factor (active), with the notice of its addition consumed.
pub async fn active_sms(app: &TestApp, key: &str) -> String {
    active_channel(
        app,
        key,
        "sms",
        json!({ "phone": ALICE_PHONE }),
        ALICE_PHONE,
    )
    .await
}

/// Alice's email factor (active) at `ALICE_CODES`.
pub async fn active_email(app: &TestApp, key: &str) -> String {
    active_channel(
        app,
        key,
        "email",
        json!({ "email": ALICE_CODES }),
        ALICE_CODES,
    )
    .await
}

async fn active_channel(app: &TestApp, key: &str, kind: &str, body: Value, to: &str) -> String {
    let (s, r) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{kind}"),
            key,
            body,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let factor = r["factor"]["id"].as_str().unwrap().to_string();
    let code = app.next_code(to).await;
    let (_, c) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
            key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!(c["confirmed"], true, "{c}");
    app.next_notice(ALICE_MAIL).await;
    factor
}

/// Asks for a code on `factor` (with `body`, e.g. `{"for": "recovery_codes"}`), reads it at `to`.
pub async fn sent_code(app: &TestApp, key: &str, factor: &str, body: Value, to: &str) -> String {
    let (s, r) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/send-code"),
            key,
            body,
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    app.next_code(to).await
}

/// Another confirmed TOTP factor of alice; the clock moves a step so its code is spent.
pub async fn another_totp(app: &TestApp, e: &Enrolled) -> Enrolled {
    let f = app.pending("acme", &e.key, "alice").await;
    let (_, c) = app
        .confirm(&f, &app.code_at_offset(&f.secret, &f.params, 0))
        .await;
    assert_eq!(c["confirmed"], true, "{c}");
    app.advance_secs(30);
    f
}

/// A new challenge for alice; returns its pending token.
pub async fn pending_login(app: &TestApp, e: &Enrolled) -> String {
    let d = login(app, e, "alice", json!({})).await;
    assert_eq!(d["decision"], "challenge", "{d}");
    d["pending"]["token"].as_str().unwrap().to_string()
}

/// The second step of the login behind `pending` with `code`.
pub async fn step_of(app: &TestApp, e: &Enrolled, pending: &str, code: &str) -> Value {
    step(
        app,
        e,
        &json!({"pending": {"token": pending}}),
        code,
        json!({}),
    )
    .await
}

/// Requires 2FA for everyone, with an IMAP client that may have app passwords.
pub async fn require_2fa(app: &TestApp, e: &Enrolled) {
    set_policy(
        app,
        e,
        required(json!({
            "clients": [
                {"id": "web", "supports_2fa": true},
                {"id": "imap", "supports_2fa": false, "app_passwords": true}
            ]
        })),
    )
    .await;
}

/// Every endpoint that takes a code today.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeEndpoint {
    VerifyTotp,
    VerifySms,
    VerifyEmail,
    ConfirmTotp,
    ConfirmSms,
    ConfirmEmail,
    Resync,
    DisableWithCode,
    DisableWithRecoveryCode,
    PhoneChange,
    RegenerateRecoveryCodes,
    CreateAppPassword,
    LoginVerify,
    LoginRecover,
    LoginEnrollConfirm,
    ProposalConfirm,
    VaultExport,
}

/// Builds attempt `i` with a code: `(path, body)`.
pub type Attempt = Box<dyn Fn(usize, &str) -> (String, Value) + Send + Sync>;

/// One endpoint, ready: `attempt(i, code)` is the `i`-th request carrying `code` (parallel
/// attempts may need one login each), `code` is valid right now, `field` says success.
pub struct Armed {
    pub app: TestApp,
    pub e: Enrolled,
    pub code: String,
    pub field: &'static str,
    /// `(path, body)` of attempt `i` with a code.
    pub attempt: Attempt,
    /// The audit action that records a judgement of this endpoint.
    pub action: &'static str,
}

impl Armed {
    pub async fn send(&self, i: usize, code: &str) -> Raw {
        let (path, body) = (self.attempt)(i, code);
        raw(&self.app, &self.e.key, &path, &body).await
    }

    pub fn accepted(&self, r: &Raw) -> bool {
        r.status < 300 && r.json()[self.field] == true
    }
}

/// A fresh server with `which` set up so that `code` is accepted by its first use, for
/// attempts `0..n` and one more (`n`), the check after them (one pending login each where the
/// endpoint takes one).
pub async fn arm(which: CodeEndpoint, n: usize) -> Armed {
    use CodeEndpoint::*;
    let app = spawn_app().await;
    let e = setup(&app).await;
    let key = e.key.clone();
    let totp = |app: &TestApp, e: &Enrolled| app.code_at_offset(&e.secret, &e.params, 0);
    let user = "/v1/tenants/acme/users/alice";
    let one = |path: String, field: &'static str, extra: Value| {
        Box::new(move |_: usize, code: &str| {
            let mut body = extra.clone();
            body[field] = json!(code);
            (path.clone(), body)
        }) as Attempt
    };
    let (code, field, attempt, action) = match which {
        VerifyTotp => (
            totp(&app, &e),
            "verified",
            one(format!("{user}/verify"), "code", json!({})),
            "totp.verify",
        ),
        VerifySms | VerifyEmail => {
            let (factor, to) = if which == VerifySms {
                (active_sms(&app, &key).await, ALICE_PHONE)
            } else {
                (active_email(&app, &key).await, ALICE_CODES)
            };
            let code = sent_code(&app, &key, &factor, json!({}), to).await;
            let action = if which == VerifySms {
                "sms.verify"
            } else {
                "email.verify"
            };
            let body = json!({ "factor_id": factor });
            (
                code,
                "verified",
                one(format!("{user}/verify"), "code", body),
                action,
            )
        }
        ConfirmTotp => {
            let p = app.pending("acme", &key, "alice").await;
            let path = format!("{user}/factors/{}/confirm", p.factor_id);
            (
                totp(&app, &p),
                "confirmed",
                one(path, "code", json!({})),
                "factor.confirm",
            )
        }
        ConfirmSms | ConfirmEmail => {
            let (kind, body, to) = if which == ConfirmSms {
                ("sms", json!({ "phone": ALICE_PHONE }), ALICE_PHONE)
            } else {
                ("email", json!({ "email": ALICE_CODES }), ALICE_CODES)
            };
            let (s, r) = app
                .post(&format!("{user}/factors/{kind}"), &key, body)
                .await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
            let path = format!(
                "{user}/factors/{}/confirm",
                r["factor"]["id"].as_str().unwrap()
            );
            let code = app.next_code(to).await;
            (
                code,
                "confirmed",
                one(path, "code", json!({})),
                "factor.confirm",
            )
        }
        Resync => {
            // The phone runs 5 steps ahead: two consecutive codes of that clock.
            let (c1, c2) = (
                app.code_at_offset(&e.secret, &e.params, 5),
                app.code_at_offset(&e.secret, &e.params, 6),
            );
            let path = format!("{user}/factors/{}/resync", e.factor_id);
            let not_c2 = a_wrong(&c2);
            let attempt = Box::new(move |_: usize, code: &str| {
                // `code` stands for the pair: the first code, or a wrong one.
                let second = if code == c1 { &c2 } else { &not_c2 };
                (path.clone(), json!({"code1": code, "code2": second}))
            });
            let code = app.code_at_offset(&e.secret, &e.params, 5);
            (code, "resynced", attempt as _, "totp.resync")
        }
        DisableWithCode | DisableWithRecoveryCode => {
            // The attempts try to remove two other factors with the same proof (a user has
            // few factors); the check after the race (attempt `n`) a third.
            let mut targets = Vec::new();
            for _ in 0..3 {
                targets.push(another_totp(&app, &e).await.factor_id);
            }
            let code_factor = e.factor_id.clone();
            let recovery = which == DisableWithRecoveryCode;
            let attempt = Box::new(move |i: usize, code: &str| {
                let target = if i == n { 2 } else { i % 2 };
                let path = format!("{user}/factors/{}/disable", targets[target]);
                let body = if recovery {
                    json!({ "recovery_code": code })
                } else {
                    json!({ "code": code, "code_factor_id": code_factor })
                };
                (path, body)
            });
            let code = if recovery {
                e.recovery_codes[0].clone()
            } else {
                totp(&app, &e)
            };
            (code, "disabled", attempt as _, "factor.disable")
        }
        PhoneChange => {
            let sms = active_sms(&app, &key).await;
            let base = format!("{user}/factors/{sms}/phone-change");
            let (s, r) = app
                .post(&base, &key, json!({ "new_phone": NEW_PHONE }))
                .await;
            assert_eq!(s, StatusCode::CREATED, "{r}");
            let path = format!("{base}/{}/confirm", r["change"]["id"].as_str().unwrap());
            let code = app.next_code(ALICE_PHONE).await;
            (
                code,
                "accepted",
                one(path, "code", json!({})),
                "phone_change.confirm",
            )
        }
        RegenerateRecoveryCodes => {
            let body = json!({ "code_factor_id": e.factor_id });
            let path = format!("{user}/recovery-codes");
            (
                totp(&app, &e),
                "verified",
                one(path, "code", body),
                "recovery.regenerate",
            )
        }
        CreateAppPassword => {
            require_2fa(&app, &e).await;
            let body = json!({ "client_id": "imap", "code_factor_id": e.factor_id });
            let path = format!("{user}/app-passwords");
            (
                totp(&app, &e),
                "verified",
                one(path, "code", body),
                "app_password.create",
            )
        }
        LoginVerify | LoginRecover => {
            require_2fa(&app, &e).await;
            let mut tokens = Vec::new();
            for _ in 0..=n {
                tokens.push(pending_login(&app, &e).await);
            }
            let (path, field, code) = if which == LoginVerify {
                ("/v1/tenants/acme/logins/verify", "code", totp(&app, &e))
            } else {
                (
                    "/v1/tenants/acme/logins/recover",
                    "recovery_code",
                    e.recovery_codes[0].clone(),
                )
            };
            let attempt = Box::new(move |i: usize, code: &str| {
                (
                    path.to_string(),
                    json!({"pending_token": tokens[i], field: code}),
                )
            });
            let action = if which == LoginVerify {
                "login.verify"
            } else {
                "login.recover"
            };
            (code, "verified", attempt as _, action)
        }
        LoginEnrollConfirm => {
            require_2fa(&app, &e).await;
            app.user("acme", &key, "bob").await;
            let d = login(&app, &e, "bob", json!({})).await;
            assert_eq!(d["decision"], "enroll_required", "{d}");
            let pending = d["pending"]["token"].clone();
            let (s, enrol) = app
                .post(
                    "/v1/tenants/acme/logins/enroll/totp",
                    &key,
                    json!({ "pending_token": pending }),
                )
                .await;
            assert_eq!(s, StatusCode::CREATED, "{enrol}");
            let uri =
                twofold_otp::uri::KeyUri::parse(enrol["otpauth_uri"].as_str().unwrap()).unwrap();
            let code = app.code_at_offset(&uri.secret, &uri.params(), 0);
            let body = json!({"pending_token": pending, "factor_id": enrol["factor_id"]});
            let path = "/v1/tenants/acme/logins/enroll/confirm".to_string();
            (code, "verified", one(path, "code", body), "factor.confirm")
        }
        ProposalConfirm => {
            let (path, code) = propose(&app, &e, required(json!({}))).await;
            (
                code,
                "confirmed",
                one(path, "code", json!({})),
                "proposal.confirm",
            )
        }
        VaultExport => {
            let entry = json!({"name": "gh", "owner": "boss", "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"});
            let (s, b) = app
                .post("/v1/tenants/acme/vault/entries", &key, entry)
                .await;
            assert_eq!(s, StatusCode::CREATED, "{b}");
            let path = "/v1/tenants/acme/vault/entries/gh/export";
            let (s, b) = app.post(path, &key, json!({"admin": "boss"})).await;
            assert_eq!(s, StatusCode::ACCEPTED, "{b}");
            let code = app.next_code("boss@example.com").await;
            (
                code,
                "exported",
                one(format!("{path}/confirm"), "code", json!({"admin": "boss"})),
                "vault.export.confirm",
            )
        }
    };
    Armed {
        app,
        e,
        code,
        field,
        attempt,
        action,
    }
}
