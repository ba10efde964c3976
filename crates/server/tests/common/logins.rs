//! The login helpers shared by the login tests and the multi-node tests: tenant `acme` with
//! an admin, a policy confirmed by the admin's emailed code, the login decision, its second
//! step and session introspection.

use super::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

pub fn err(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// Tenant `acme` with admin `boss` (boss@example.com) and user `alice` (confirmed TOTP).
pub async fn setup(app: &TestApp) -> Enrolled {
    let e = app.enrolled("acme").await;
    // Admins are appointed by an operator (or confirmed by an existing admin).
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users",
            &app.operator_key,
            json!({"external_id": "boss", "email": "boss@example.com", "is_admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    e
}

/// Boss proposes `policy`; returns the proposal's confirmation path and the emailed code.
pub async fn propose(app: &TestApp, e: &Enrolled, policy: Value) -> (String, String) {
    let (s, p) = app
        .post(
            "/v1/tenants/acme/policy/proposals",
            &e.key,
            json!({"admin": "boss", "policy": policy}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let code = app.next_code("boss@example.com").await;
    let id = p["id"].as_str().unwrap();
    (
        format!("/v1/tenants/acme/policy/proposals/{id}/confirm"),
        code,
    )
}

/// Proposes `policy` as boss and confirms it with the emailed code.
pub async fn set_policy(app: &TestApp, e: &Enrolled, policy: Value) {
    let (path, code) = propose(app, e, policy).await;
    let (s, c) = app.post(&path, &e.key, json!({"code": code})).await;
    assert_eq!(
        (s, c["confirmed"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{c}"
    );
    notice_with(app, "boss@example.com", "settings were changed").await;
}

/// The next notice to `to` that says `what` (admins also hear of each proposal).
pub async fn notice_with(app: &TestApp, to: &str, what: &str) -> DevMessage {
    app.next_message_where(to, |m| m.code().is_none() && m.text.contains(what))
        .await
}

pub fn required(extra: Value) -> Value {
    let mut p = json!({
        "methods": ["totp", "sms", "email"],
        "enforcement": {"mode": "required_for_all"},
        "mandatory_from": null,
        "reminder_days": 14,
        "remember_device_days": 30,
        "sso_exempt": true,
        "revoke_sessions_after_hours": 24,
        "skip_hours": 24,
        "clients": [{"id": "web", "supports_2fa": true}, {"id": "imap", "supports_2fa": false}]
    });
    for (k, v) in extra.as_object().unwrap() {
        p[k] = v.clone();
    }
    p
}

pub async fn login(app: &TestApp, e: &Enrolled, user: &str, extra: Value) -> Value {
    let mut body = json!({"user": user, "primary": "password", "ip": "203.0.113.7"});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, d) = app.post("/v1/tenants/acme/logins", &e.key, body).await;
    assert_eq!(s, StatusCode::OK, "{d}");
    d
}

pub async fn step(app: &TestApp, e: &Enrolled, pending: &Value, code: &str, extra: Value) -> Value {
    let mut body = json!({"pending_token": pending["pending"]["token"], "code": code});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let (s, r) = app
        .post("/v1/tenants/acme/logins/verify", &e.key, body)
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}

pub async fn introspect(app: &TestApp, e: &Enrolled, token: &Value) -> Value {
    let (s, r) = app
        .post(
            "/v1/tenants/acme/sessions/introspect",
            &e.key,
            json!({"token": token}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    r
}
