//! The admin console in headless Chromium (issue #6): an operator mints a one-time console
//! link with the CLI, the admin opens it, passes the hosted second step with the code of their
//! authenticator app (`oathtool`), makes two-step verification mandatory for everyone, and
//! confirms with the code emailed to them, read from a real SMTP server (aiosmtpd). Then the
//! rollout shows who is pending, and the pages pass the harness's checks on a desktop and on
//! a phone. Failing steps keep a screenshot under `target/browser-failures/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{assert_page_is_clean, main_text, press_button, type_into, wait_for_title};
use common::process::twofold_with_env;
use common::rp::oathtool;
use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::time::Duration;
use twofold_delivery::{EmailTransportKind, SmtpSecurity};
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;
use twofold_testkit::{SinkOptions, SmtpSink};

/// A server whose `public_url` is its own address, sending mail to `sink` over SMTP.
async fn spawn_with_mail(sink: &SmtpSink) -> TestApp {
    let port = twofold_testkit::free_port();
    let smtp = sink.port;
    spawn_app_with(move |c| {
        c.listen = format!("127.0.0.1:{port}").parse().unwrap();
        c.public_url = Some(format!("http://127.0.0.1:{port}"));
        c.email.transport = EmailTransportKind::Smtp;
        c.email.host = Some("127.0.0.1".into());
        c.email.port = Some(smtp);
        c.email.security = SmtpSecurity::None;
        c.email.from_address = Some("security@twofold.test".into());
        c.delivery.poll_interval_ms = 50;
    })
    .await
}

/// The newest code mailed to `to` that was not in `seen`, waiting for the mail server.
async fn mailed_code(sink: &SmtpSink, to: &str, seen: usize) -> String {
    for _ in 0..200 {
        let mine: Vec<Value> = sink
            .received()
            .into_iter()
            .filter(|m| m["to"].as_str().unwrap_or("").contains(to))
            .collect();
        if let Some(text) = mine.iter().skip(seen).find_map(|m| {
            let text = m["text"].as_str()?;
            text.split(|c: char| !c.is_ascii_digit())
                .find(|w| w.len() == 6)
                .map(String::from)
        }) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no code mailed to {to}: {:?}", sink.received());
}

async fn click(c: &Client, xpath: &str) {
    c.find(Locator::XPath(xpath))
        .await
        .unwrap_or_else(|e| panic!("no {xpath}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Tenant acme with `users` and the admin boss (an authenticator app confirmed a step ago),
/// and an operator's one-time console link for boss: `(app, tenant key, boss, link)`.
async fn boss_with_a_link(sink: &SmtpSink, users: &[&str]) -> (TestApp, String, Enrolled, String) {
    let app = spawn_with_mail(sink).await;
    let key = app.tenant("acme").await;
    let (s, body) = app
        .post(
            "/v1/tenants/acme/users",
            &app.operator_key,
            json!({"external_id": "boss", "email": "boss@example.com", "is_admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    for user in users {
        app.user("acme", &key, user).await;
    }
    let boss = app.pending("acme", &key, "boss").await;
    let (s, body) = app
        .confirm(&boss, &app.code_at_offset(&boss.secret, &boss.params, 0))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    app.advance_secs(30);
    let out = twofold_with_env(
        &app.data_path,
        &["console", "link", "--tenant", "acme", "--admin", "boss"],
        &[("TWOFOLD_PUBLIC_URL", &app.base)],
    );
    assert!(out.status.success(), "{out:?}");
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    (app, key, boss, link)
}

#[tokio::test]
async fn an_admin_makes_2fa_mandatory_in_chromium_confirming_with_the_mailed_code() {
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let (app, key, boss, link) = boss_with_a_link(&sink, &["alice", "bob"]).await;
    // boss's "a method was added" notice went out over SMTP too.
    let notices = sink.received().len();

    let browser = Browser::start().await;
    let b = &browser;
    let code = oathtool(&boss.secret, app.now_secs());
    b.step("second-step", |c| async move {
        c.goto(&link).await.unwrap();
        wait_for_title(&c, "Two-step verification").await;
        assert_page_is_clean(b).await;
        let text = main_text(&c).await;
        assert!(text.contains("the admin console"), "{text}");
        assert!(!text.contains("Remember this device"), "{text}");
        type_into(&c, "code", &code).await;
        press_button(&c, "Verify").await;
        wait_for_title(&c, "Overview").await;
        assert_page_is_clean(b).await;
    })
    .await;

    let at = app.base.clone();
    b.step("settings", |c| async move {
        click(&c, "//nav//a[normalize-space()='Settings']").await;
        wait_for_title(&c, "Settings").await;
        assert_page_is_clean(b).await;
        assert_eq!(
            c.current_url().await.unwrap().as_str(),
            format!("{at}/console/settings")
        );
        click(&c, "//input[@name='mode' and @value='required_for_all']").await;
        click(
            &c,
            "//button[normalize-space()='Review and confirm by email']",
        )
        .await;
        wait_for_title(&c, "Confirm the change").await;
        assert_page_is_clean(b).await;
        let text = main_text(&c).await;
        assert!(text.contains("required for everyone"), "{text}");
    })
    .await;
    let (_, before) = app.get("/v1/tenants/acme/policy", &key).await;
    assert_eq!(before["policy"]["enforcement"]["mode"], "off", "{before}");

    let mailed = mailed_code(&sink, "boss@example.com", notices).await;
    b.step("confirm", |c| async move {
        type_into(&c, "code", &mailed).await;
        press_button(&c, "Apply the change").await;
        wait_for_title(&c, "Change applied").await;
        assert_page_is_clean(b).await;
    })
    .await;
    let (_, after) = app.get("/v1/tenants/acme/policy", &key).await;
    assert_eq!(
        after["policy"]["enforcement"]["mode"], "required_for_all",
        "{after}"
    );

    b.step("rollout", |c| async move {
        click(&c, "//nav//a[normalize-space()='Overview']").await;
        wait_for_title(&c, "Overview").await;
        assert_page_is_clean(b).await;
        let chart = c
            .find(Locator::Css("figure.chart svg[role=img]"))
            .await
            .unwrap();
        assert_eq!(
            chart.attr("aria-label").await.unwrap().as_deref(),
            Some("1 of 3 users enrolled")
        );
        click(&c, "//a[normalize-space()='See who is overdue']").await;
        wait_for_title(&c, "Users").await;
        assert_page_is_clean(b).await;
        let rows = c.find_all(Locator::Css("tbody tr")).await.unwrap();
        let mut users = Vec::new();
        for r in rows {
            users.push(
                r.find(Locator::Css("td"))
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap(),
            );
        }
        assert_eq!(users, vec!["alice", "bob"]);
    })
    .await;
}

#[tokio::test]
async fn the_console_fits_a_phone() {
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let (app, _, boss, link) = boss_with_a_link(&sink, &[]).await;
    let browser = Browser::phone().await;
    let b = &browser;
    let code = oathtool(&boss.secret, app.now_secs());
    b.step("sign-in", |c| async move {
        c.goto(&link).await.unwrap();
        wait_for_title(&c, "Two-step verification").await;
        type_into(&c, "code", &code).await;
        press_button(&c, "Verify").await;
        wait_for_title(&c, "Overview").await;
    })
    .await;
    for (name, title) in [
        ("Overview", "Overview"),
        ("Settings", "Settings"),
        ("Users", "Users"),
        ("Audit log", "Audit log"),
        ("Messages", "Messages"),
        ("Vault", "Vault"),
    ] {
        b.step(name, |c| async move {
            click(&c, &format!("//nav//a[normalize-space()='{name}']")).await;
            wait_for_title(&c, title).await;
            assert_page_is_clean(b).await;
        })
        .await;
    }
    b.step("sign-out", |c| async move {
        press_button(&c, "Sign out").await;
        wait_for_title(&c, "You are signed out of the admin console").await;
        c.goto(&format!(
            "{}/console",
            c.current_url()
                .await
                .unwrap()
                .origin()
                .ascii_serialization()
        ))
        .await
        .unwrap();
        wait_for_title(&c, "You are signed out of the admin console").await;
    })
    .await;
}
