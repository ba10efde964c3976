//! Messages leaving the server for real: SMTP to a real mail server process (aiosmtpd) across
//! an outage and a restart, and SMS to a local server speaking Twilio's Messages API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::Duration;
use twofold_delivery::{EmailTransportKind, Secret, SmsProvider, SmtpSecurity};
use twofold_server::Config;
use twofold_testkit::{free_port, MockHttp, SinkOptions, SmtpSink};

fn smtp_to(port: u16) -> impl FnOnce(&mut Config) {
    move |c: &mut Config| {
        c.email.transport = EmailTransportKind::Smtp;
        c.email.host = Some("127.0.0.1".into());
        c.email.port = Some(port);
        c.email.security = SmtpSecurity::None;
        c.email.from_address = Some("security@twofold.test".into());
        c.email.timeout_secs = 5;
        c.delivery.poll_interval_ms = 50;
    }
}

async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    for _ in 0..200 {
        if let Some(v) = f() {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 6)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_survives_a_mail_server_outage_and_a_restart_and_arrives_once() {
    let port = free_port();
    let mut first = spawn_app_with(smtp_to(port)).await;
    let key = first.tenant("acme").await;
    first.user("acme", &key, "alice").await;
    let (s, enrolled) = first
        .post(
            "/v1/tenants/acme/users/alice/factors/email",
            &key,
            json!({"email": "alice@example.com"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{enrolled}");
    let factor = enrolled["factor"]["id"].as_str().unwrap().to_string();
    let (s, _) = first
        .post("/v1/tenants/acme/users/alice/invite", &key, json!({}))
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);

    // Nobody listens on the mail port: both messages are tried, kept and rescheduled.
    let tried = wait_for("two failed attempts", || {
        let page = futures_block(first.get("/v1/tenants/acme/outbox", &key));
        let m = page["messages"].as_array()?.clone();
        (m.len() == 2
            && m.iter()
                .all(|m| m["attempts"] == 1 && m["last_error"].is_string()))
        .then_some(m)
    })
    .await;
    assert!(tried.iter().all(|m| m["status"] == "pending"), "{tried:?}");
    let data = first.data_path.clone();
    // Keep the data directory when the first server goes.
    let _keep = std::mem::replace(&mut first.data_dir, tempfile::tempdir().unwrap());
    drop(first);

    // The server restarts; the mail server comes back on the same port.
    let second = spawn_app_at_with(data, smtp_to(port)).await;
    let sink = SmtpSink::start(SinkOptions {
        port,
        ..Default::default()
    })
    .await;
    second.advance_secs(60);
    let received = wait_for("both messages", || {
        let r = sink.received();
        (r.len() >= 2).then_some(r)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received_again = sink.received();
    assert_eq!(received_again.len(), 2, "no duplicates: {received_again:?}");
    let ids: HashSet<&str> = received
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    let (_, page) = second
        .get("/v1/tenants/acme/outbox?status=sent", &key)
        .await;
    let sent_ids: HashSet<String> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("<{}>", m["message_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sent_ids,
        ids.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        "the Message-ID is the outbox's stable id"
    );

    // The code that travelled over SMTP confirms the factor on the restarted server.
    let code_mail = received
        .iter()
        .find(|m| m["subject"].as_str().unwrap().contains("code"))
        .unwrap_or_else(|| panic!("no code mail in {received:?}"));
    assert_eq!(code_mail["from_address"], "security@twofold.test");
    assert_eq!(code_mail["from_name"], "acme Inc");
    assert!(
        code_mail["html"].as_str().unwrap().contains("<"),
        "an HTML part"
    );
    let code = code_in(code_mail["text"].as_str().unwrap());
    let (s, body) = second
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
            &key,
            json!({"code": code}),
        )
        .await;
    assert_eq!(
        (s, body["confirmed"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    sink.stop().await;
}

/// Runs a future to completion from inside a synchronous closure of an async test.
fn futures_block<F: std::future::Future<Output = (StatusCode, Value)>>(f: F) -> Value {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_goes_to_a_twilio_compatible_provider_and_is_retried_after_429() {
    let provider = MockHttp::start().await;
    provider.answer(429, r#"{"code": 20429, "message": "Too Many Requests"}"#);
    let base = provider.base_url.clone();
    let app = spawn_app_with(move |c| {
        c.sms.provider = SmsProvider::Twilio;
        c.sms.twilio.base_url = base;
        c.sms.twilio.account_sid = Some("AC0123456789".into());
        c.sms.twilio.auth_token = Some(Secret::new("token-xyz"));
        c.sms.twilio.from = Some("+15005550006".into());
        c.delivery.poll_interval_ms = 50;
    })
    .await;
    let key = app.tenant("acme").await;
    app.user("acme", &key, "alice").await;
    let (s, enrolled) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &key,
            json!({"phone": "+447700900123"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{enrolled}");
    wait_for("the first attempt", || {
        (provider.requests().len() == 1).then_some(())
    })
    .await;
    // Rate limited: retried after the backoff, with the same idempotency key.
    app.advance_secs(60);
    let requests = wait_for("the retry", || {
        let r = provider.requests();
        (r.len() == 2).then_some(r)
    })
    .await;
    for r in &requests {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/2010-04-01/Accounts/AC0123456789/Messages.json");
        assert_eq!(r.form_value("To").as_deref(), Some("+447700900123"));
        assert_eq!(r.form_value("From").as_deref(), Some("+15005550006"));
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode("AC0123456789:token-xyz");
        assert_eq!(r.header("authorization"), Some(format!("Basic {basic}")));
    }
    let token = requests[0].header("i-twilio-idempotency-token").unwrap();
    assert_eq!(
        requests[1].header("i-twilio-idempotency-token"),
        Some(token)
    );
    let code = code_in(&requests[1].form_value("Body").unwrap());
    let factor = enrolled["factor"]["id"].as_str().unwrap();
    let (_, body) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{factor}/confirm"),
            &key,
            json!({"code": code}),
        )
        .await;
    assert_eq!(body["confirmed"], true);
    // The code SMS and the "method added" email (development mailbox) both went out.
    wait_for("the outbox to drain", || {
        let stats = futures_block(app.get("/v1/tenants/acme/outbox/stats", &key));
        (stats["sent"] == 2 && stats["pending"] == 0 && stats["failed"] == 0).then_some(())
    })
    .await;
    assert_eq!(
        provider.requests().len(),
        2,
        "the email did not go to the SMS provider"
    );
}
