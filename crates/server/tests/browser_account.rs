//! The account pages (issue #6) in headless Chromium at phone size: alice opens her security
//! settings from the integrator's link (the test signs the login hint), passes the hosted
//! challenge with her authenticator app (`oathtool`), adds a second authenticator app by
//! reading its key from the page, and removes the old one with a fresh code from the new one.
//! Every page passes the harness's page checks. Failing steps keep a screenshot and the page
//! source under `target/browser-failures/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{assert_page_is_clean, wait_for_title, WAIT};
use common::rp::*;
use serde_json::{json, Value};
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;

const CHALLENGE: &str = "Two-step verification";
const SETTINGS: &str = "Security settings";

async fn press_button(c: &Client, name: &str) {
    let xpath = format!("//button[normalize-space()=\"{name}\"]");
    c.find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no button {name:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn type_code(c: &Client, code: &str) {
    c.find(Locator::Id("code"))
        .await
        .unwrap()
        .send_keys(code)
        .await
        .unwrap();
}

/// The page's status note (`p.note[role=status]`).
async fn note(c: &Client) -> String {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p.note[role=status]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_user_adds_an_authenticator_app_and_removes_the_old_one_on_a_phone() {
    let app = spawn().await;
    let (alice, secret) = acme(&app).await;
    app.advance_secs(30);
    let hint = hint_with(&app, &secret, json!({ "sub": "alice" }));
    let url = format!(
        "{}/account/sso?client_id=acme.web&login_hint_token={hint}",
        app.base
    );
    let browser = Browser::phone().await;
    let b = &browser;

    let code = oathtool(&alice.secret, app.now_secs());
    b.step("sign-in", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        assert_page_is_clean(b).await;
        type_code(&c, &code).await;
        press_button(&c, "Verify").await;
        wait_for_title(&c, SETTINGS).await;
        assert_page_is_clean(b).await;
    })
    .await;

    app.advance_secs(30);
    let key = b
        .step("add-app", |c| async move {
            press_button(&c, "Add an authenticator app").await;
            wait_for_title(&c, "Add a sign-in method").await;
            assert_page_is_clean(b).await;
            c.find(Locator::Css("code.key"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
        .await;
    let first = oathtool_b32(&key, app.now_secs());
    b.step("confirm-app", |c| async move {
        type_code(&c, &first).await;
        press_button(&c, "Add this method").await;
        wait_for_title(&c, SETTINGS).await;
        assert!(note(&c).await.contains("Authenticator app added"));
        assert_page_is_clean(b).await;
    })
    .await;
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &alice.key)
        .await;
    let active: Vec<&Value> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "active")
        .collect();
    assert_eq!(active.len(), 2, "{list}");

    // The old app goes, proven by a fresh code from the new one (preselected: the newest).
    app.advance_secs(30);
    let old = alice.factor_id.clone();
    let fresh = oathtool_b32(&key, app.now_secs());
    b.step("remove-old", |c| async move {
        let link = format!("a[href=\"/account/methods/{old}/remove\"]");
        c.find(Locator::Css(&link))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for_title(&c, "Remove a sign-in method").await;
        assert_page_is_clean(b).await;
        type_code(&c, &fresh).await;
        press_button(&c, "Remove it").await;
        wait_for_title(&c, SETTINGS).await;
        assert!(note(&c).await.contains("The method was removed"));
        assert_page_is_clean(b).await;
    })
    .await;
    let (_, list) = app
        .get("/v1/tenants/acme/users/alice/factors", &alice.key)
        .await;
    let ids: Vec<&str> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{list}");
    assert_ne!(ids[0], alice.factor_id);
}
