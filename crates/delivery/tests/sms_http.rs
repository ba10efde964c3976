#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SMS providers against a local HTTP server that checks the protocol: Twilio's form fields,
//! basic auth and idempotency header; the webhook's JSON body and HMAC signature (recomputed
//! here independently); and how each status is classified.

mod common;

use base64::Engine;
use common::MockHttp;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;
use std::sync::Arc;
use twofold_delivery::{
    Secret, SendError, Sms, SmsConfig, SmsProvider, SmsTransport, TwilioConfig, WebhookConfig,
};

fn sms(id: &str) -> Sms {
    Sms {
        message_id: format!("{id}@twofold"),
        to: "+447700900123".into(),
        body: "482913 is your Acme & Co code to sign in. Never share it.".into(),
        tenant_slug: "acme".into(),
    }
}

fn twilio(base_url: &str, messaging_service: bool) -> Arc<dyn SmsTransport> {
    let config = SmsConfig {
        provider: SmsProvider::Twilio,
        twilio: TwilioConfig {
            base_url: base_url.into(),
            account_sid: Some("AC0123456789abcdef".into()),
            auth_token: Some(Secret::new("tw-auth-token")),
            from: (!messaging_service).then(|| "+15005550006".into()),
            messaging_service_sid: messaging_service.then(|| "MG99".into()),
        },
        timeout_secs: 5,
        ..Default::default()
    };
    config.build(Path::new("/nonexistent")).unwrap()
}

const WEBHOOK_SECRET: &str = "a-long-random-shared-secret-for-tests";

fn webhook(url: &str) -> Arc<dyn SmsTransport> {
    let config = SmsConfig {
        provider: SmsProvider::Webhook,
        webhook: WebhookConfig {
            url: Some(url.into()),
            secret: Some(Secret::new(WEBHOOK_SECRET)),
        },
        timeout_secs: 5,
        ..Default::default()
    };
    config.build(Path::new("/nonexistent")).unwrap()
}

#[tokio::test]
async fn twilio_request_follows_the_messages_api() {
    let server = MockHttp::start().await;
    let t = twilio(&server.base_url, false);
    t.send(&sms("tw1")).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(
        r.path,
        "/2010-04-01/Accounts/AC0123456789abcdef/Messages.json"
    );
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC0123456789abcdef:tw-auth-token")
    );
    assert_eq!(r.header("authorization"), Some(expected_auth));
    assert_eq!(
        r.header("i-twilio-idempotency-token").as_deref(),
        Some("tw1@twofold")
    );
    assert_eq!(r.form_value("To").as_deref(), Some("+447700900123"));
    assert_eq!(r.form_value("From").as_deref(), Some("+15005550006"));
    assert_eq!(
        r.form_value("Body").as_deref(),
        Some("482913 is your Acme & Co code to sign in. Never share it.")
    );
    assert_eq!(r.form_value("MessagingServiceSid"), None);
}

#[tokio::test]
async fn twilio_with_a_messaging_service_sends_its_sid_instead_of_from() {
    let server = MockHttp::start().await;
    twilio(&server.base_url, true)
        .send(&sms("tw2"))
        .await
        .unwrap();
    let r = &server.requests()[0];
    assert_eq!(r.form_value("MessagingServiceSid").as_deref(), Some("MG99"));
    assert_eq!(r.form_value("From"), None);
}

#[tokio::test]
async fn twilio_statuses_are_classified() {
    let server = MockHttp::start().await;
    let t = twilio(&server.base_url, false);
    server.answer(
        429,
        r#"{"code":20429,"message":"Too Many Requests","status":429}"#,
    );
    server.answer(500, "upstream exploded");
    server.answer(503, "");
    server.answer(
        400,
        r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#,
    );
    server.answer(
        401,
        r#"{"code":20003,"message":"Authenticate","status":401}"#,
    );

    for want in ["429", "500", "503"] {
        match t.send(&sms("tw3")).await {
            Err(SendError::Transient(m)) => assert!(m.contains(want), "{m}"),
            other => panic!("{want}: expected transient, got {other:?}"),
        }
    }
    match t.send(&sms("tw3")).await {
        Err(SendError::Permanent(m)) => {
            assert!(m.contains("21211"), "{m}");
            assert!(
                m.contains("The 'To' number is not a valid phone number."),
                "Twilio's own message is kept: {m}"
            );
        }
        other => panic!("expected permanent, got {other:?}"),
    }
    match t.send(&sms("tw3")).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("Authenticate"), "{m}"),
        other => panic!("expected permanent, got {other:?}"),
    }
    // Every retry carried the same idempotency token.
    assert!(server
        .requests()
        .iter()
        .all(|r| r.header("i-twilio-idempotency-token").as_deref() == Some("tw3@twofold")));
}

#[tokio::test]
async fn unreachable_provider_is_transient() {
    let port = common::free_port();
    let t = twilio(&format!("http://127.0.0.1:{port}"), false);
    assert!(matches!(
        t.send(&sms("down")).await,
        Err(SendError::Transient(_))
    ));
    let w = webhook(&format!("http://127.0.0.1:{port}/sms"));
    assert!(matches!(
        w.send(&sms("down")).await,
        Err(SendError::Transient(_))
    ));
}

#[tokio::test]
async fn webhook_request_is_signed_json() {
    let server = MockHttp::start().await;
    let w = webhook(&format!("{}/hooks/sms", server.base_url));
    w.send(&sms("wh1")).await.unwrap();
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/sms");
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(r.header("idempotency-key").as_deref(), Some("wh1@twofold"));

    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "message_id": "wh1@twofold",
            "to": "+447700900123",
            "body": "482913 is your Acme & Co code to sign in. Never share it.",
            "tenant": "acme",
        })
    );

    // Verify as a receiver would, following the module documentation.
    let ts = r.header("x-twofold-timestamp").unwrap();
    let ts_num: u64 = ts.parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts_num) < 300, "timestamp is the current time");
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        r.header("x-twofold-signature"),
        Some(format!("v1={expected}"))
    );

    // A tampered body no longer matches.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(WEBHOOK_SECRET.as_bytes()).unwrap();
    mac.update(format!("{ts}.").as_bytes());
    mac.update(&r.body[..r.body.len() - 1]);
    assert!(mac.verify_slice(&hex_decode(&expected)).is_err());
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[tokio::test]
async fn webhook_statuses_are_classified() {
    let server = MockHttp::start().await;
    let w = webhook(&format!("{}/sms", server.base_url));
    server.answer(429, "slow down");
    server.answer(502, "bad gateway");
    server.answer(400, "unknown number");
    server.answer(302, "");
    server.answer(200, "ok");
    assert!(matches!(
        w.send(&sms("a")).await,
        Err(SendError::Transient(_))
    ));
    assert!(matches!(
        w.send(&sms("a")).await,
        Err(SendError::Transient(_))
    ));
    match w.send(&sms("a")).await {
        Err(SendError::Permanent(m)) => assert!(m.contains("unknown number"), "{m}"),
        other => panic!("expected permanent, got {other:?}"),
    }
    // A redirect is not followed: a POST must not silently become a GET elsewhere.
    assert!(matches!(
        w.send(&sms("a")).await,
        Err(SendError::Permanent(_))
    ));
    w.send(&sms("a")).await.unwrap();
    assert_eq!(server.requests().len(), 5);
}
