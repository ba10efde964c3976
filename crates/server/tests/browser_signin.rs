//! The hosted sign-in (issue #6) in headless Chromium: the test is the integrator (client
//! registered through the API, login hint signed with its secret, authorization URL with PKCE
//! and nonce from the `openidconnect` crate, code exchanged and ID token verified by the same
//! crate), Chromium is the user's browser, `oathtool` is the user's authenticator app. The
//! client's redirect URI is a local HTTP server, so the page the browser lands on loads.
//!
//! What only a real browser proves: the cookies (SameSite=Lax, path `/oidc`) come back on the
//! cross-origin redirect and the form posts; `autofocus` and labels; the CSP `form-action` of
//! the challenge page lets the 303 after the POST go on to the client's origin (Chromium
//! enforces `form-action` on redirects); the page fits a phone. Failing steps keep a
//! screenshot and the page source under `target/browser-failures/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{
    assert_page_is_clean, continue_to, press_button, submit_code, submit_enrol_code,
    wait_for_title, wait_for_url, WAIT,
};
use common::logins::required;
use common::rp::*;
use serde_json::json;
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;

const CHALLENGE: &str = "Two-step verification";
const ACR_2FA: &str = "urn:twofold:acr:2fa";
const ENROLL: &str = "Set up two-step verification";

/// A code that is not `right` (same length, every digit different).
fn wrong_code(right: &str) -> String {
    right
        .chars()
        .map(|d| char::from(b'0' + (d.to_digit(10).unwrap() as u8 + 1) % 10))
        .collect()
}

/// `(id of the focused element, text of the label of the code field)`.
async fn focus_and_label(c: &Client) -> (String, String) {
    let v = c
        .execute(
            "const f = document.getElementById('code');\
             return [document.activeElement.id, f.labels[0].innerText.trim()];",
            vec![],
        )
        .await
        .unwrap();
    (
        v[0].as_str().unwrap().to_string(),
        v[1].as_str().unwrap().to_string(),
    )
}

/// The page checks of a page that refused a code: the answer is a 401, which Chromium logs
/// as a failed load; nothing else may be wrong.
async fn assert_refused_page_is_clean(b: &Browser) {
    assert_eq!(b.page_problems().await, Vec::<String>::new());
    let errors = b.console_errors();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains("401")),
        "{errors:?}"
    );
}

#[tokio::test]
async fn a_user_signs_in_with_a_code_in_chromium_and_the_remembered_device_skips_it_next_time() {
    let i = Integrator::start(required(json!({})), &[]).await;
    let browser = Browser::start().await;
    let b = &browser;

    let req = i.authorize_for("alice");
    let url = req.url.clone();
    b.step("challenge", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        assert_page_is_clean(b).await;
        // The code field has the keyboard focus and its visible label.
        assert_eq!(
            focus_and_label(&c).await,
            ("code".to_string(), "Verification code".to_string())
        );
    })
    .await;

    let wrong = wrong_code(&i.right_code());
    b.step("wrong-code", |c| async move {
        submit_code(&c, &wrong, false).await;
        let alert = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.error[role=alert]"))
            .await
            .unwrap();
        assert!(alert
            .text()
            .await
            .unwrap()
            .contains("That code did not work"));
        assert_eq!(c.title().await.unwrap(), CHALLENGE);
        // The field is back, empty, focused and labelled, ready for the next try.
        assert_eq!(
            focus_and_label(&c).await,
            ("code".to_string(), "Verification code".to_string())
        );
        // The stylesheet styles the OIDC pages' classes: the alert's tinted box, the
        // secondary "Cancel sign-in" as an underlined link-like button, the checkbox row.
        let style = c
            .execute(
                "const s = q => getComputedStyle(document.querySelector(q));\
                 return [s('p.error').backgroundColor, s('button.plain').backgroundColor,\
                         s('button.plain').textDecorationLine, s('label.check').display];",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(
            style,
            json!([
                "rgb(253, 236, 238)",
                "rgb(255, 255, 255)",
                "underline",
                "flex"
            ])
        );
        let field = c.find(Locator::Id("code")).await.unwrap();
        assert_eq!(field.prop("value").await.unwrap().as_deref(), Some(""));
        assert_refused_page_is_clean(b).await;
    })
    .await;

    let right = i.right_code();
    let redirect = i.redirect.clone();
    let landed = b
        .step("right-code-remembered", |c| async move {
            submit_code(&c, &right, true).await;
            // The POST's 303 goes to the client's origin: allowed by the page's form-action.
            wait_for_url(&c, &redirect).await
        })
        .await;
    let (amr, acr) = i.exchange_for("alice", &landed, req).await;
    assert_eq!(
        (amr, acr.as_str()),
        (vec!["pwd".into(), "otp".into()], ACR_2FA)
    );

    // The next sign-in in the same browser: the remembered device skips the code, the browser
    // goes straight back to the client.
    i.app.advance_secs(60);
    let req = i.authorize_for("alice");
    let (url, redirect) = (req.url.clone(), i.redirect.clone());
    let landed = b
        .step("remembered", |c| async move {
            c.goto(&url).await.unwrap();
            wait_for_url(&c, &redirect).await
        })
        .await;
    let (_, acr) = i.exchange_for("alice", &landed, req).await;
    assert_eq!(acr, "urn:twofold:acr:remembered-device");
}

#[tokio::test]
async fn the_challenge_page_fits_a_phone_and_passes_the_page_checks() {
    let i = Integrator::start(required(json!({})), &[]).await;
    let browser = Browser::phone().await;
    let b = &browser;
    let req = i.authorize_for("alice");
    let url = req.url.clone();
    b.step("challenge", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        assert_page_is_clean(b).await;
    })
    .await;
    let wrong = wrong_code(&i.right_code());
    b.step("wrong-code", |c| async move {
        submit_code(&c, &wrong, false).await;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.error[role=alert]"))
            .await
            .unwrap();
        assert_refused_page_is_clean(b).await;
    })
    .await;
    let (right, redirect) = (i.right_code(), i.redirect.clone());
    let landed = b
        .step("right-code", |c| async move {
            submit_code(&c, &right, false).await;
            wait_for_url(&c, &redirect).await
        })
        .await;
    let (amr, acr) = i.exchange_for("alice", &landed, req).await;
    assert_eq!(
        (amr, acr.as_str()),
        (vec!["pwd".into(), "otp".into()], ACR_2FA)
    );
}

#[tokio::test]
async fn a_user_without_a_factor_enrols_an_app_at_sign_in_on_a_phone_and_gets_recovery_codes() {
    let i = Integrator::start(required(json!({})), &[]).await;
    i.app.user("acme", &i.e.key, "bob").await;
    let req =
        i.rp.authorize(&hint_with(&i.app, &i.secret, json!({"sub": "bob"})));
    let browser = Browser::phone().await;
    let b = &browser;

    let url = req.url.clone();
    b.step("asked-to-enrol", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        assert_page_is_clean(b).await;
        press_button(&c, "Set up an authenticator app").await;
    })
    .await;

    let key = b
        .step("qr-and-key", |c| async move {
            let key = c
                .wait()
                .at_most(WAIT)
                .for_element(Locator::Css("code.key"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            assert_page_is_clean(b).await;
            // The QR code is an image from a data: URL, allowed by the CSP's img-src, and it
            // decoded (an image the browser refused has no natural size).
            let qr = c
                .execute(
                    "const q = document.querySelector('img.qr');\
                     return [q.src.slice(0, 26), q.complete && q.naturalWidth > 0, q.alt];",
                    vec![],
                )
                .await
                .unwrap();
            assert_eq!(qr[0], "data:image/svg+xml;base64,");
            assert_eq!(qr[1], true, "the QR image did not load");
            assert!(qr[2].as_str().unwrap().starts_with("QR code"));
            key
        })
        .await;
    // Readable groups of four: 32 base32 characters for a 160-bit key.
    let groups: Vec<&str> = key.split(' ').collect();
    assert!(
        groups.len() >= 8 && groups.iter().all(|g| g.len() <= 4),
        "{key:?}"
    );

    let wrong = wrong_code(&oathtool_b32(&key, i.app.now_secs()));
    b.step("wrong-code", |c| async move {
        submit_enrol_code(&c, &wrong).await;
        let alert = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.error[role=alert]"))
            .await
            .unwrap();
        assert!(alert
            .text()
            .await
            .unwrap()
            .contains("That code did not work"));
        assert_refused_page_is_clean(b).await;
    })
    .await;

    let right = oathtool_b32(&key, i.app.now_secs());
    let codes = b
        .step("right-code", |c| async move {
            submit_enrol_code(&c, &right).await;
            wait_for_title(&c, "Save your recovery codes").await;
            assert_page_is_clean(b).await;
            let mut codes = Vec::new();
            for li in c.find_all(Locator::Css("ul.codes code")).await.unwrap() {
                codes.push(li.text().await.unwrap());
            }
            codes
        })
        .await;
    assert!(codes.len() >= 8, "{codes:?}");

    // Saving the codes takes a while: the code waiting behind "continue" lives 10 minutes.
    i.app.advance_secs(5 * 60);
    let redirect = i.redirect.clone();
    let landed = b
        .step(
            "continue",
            |c| async move { continue_to(&c, &redirect).await },
        )
        .await;
    let (amr, acr) = i.exchange_for("bob", &landed, req).await;
    assert_eq!(
        (amr, acr.as_str()),
        (vec!["pwd".into(), "otp".into()], ACR_2FA)
    );

    // Bob's authenticator app is his active factor now, and a code of his recovery codes is
    // one the server counts.
    let (_, list) = i
        .app
        .get("/v1/tenants/acme/users/bob/factors", &i.e.key)
        .await;
    let active: Vec<_> = list["factors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "active")
        .map(|f| f["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(active, vec!["totp"], "{list}");
    let (_, status) = i
        .app
        .get("/v1/tenants/acme/users/bob/recovery-codes", &i.e.key)
        .await;
    assert_eq!(status["remaining"], codes.len(), "{status}");
}
