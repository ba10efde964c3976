//! Security keys and passkeys (WebAuthn) in headless Chromium, with the WebDriver virtual
//! authenticator standing in for the key (W3C WebAuthn §11; chromedriver implements it). The
//! browser really runs `navigator.credentials`, the authenticator really signs, and the server
//! really verifies (webauthn-rs); nothing is mocked between them.
//!
//! - A user registers a key at sign-in (enrolment required), names it, keeps the recovery
//!   codes, and signs in with it at the next challenge: the ID token says `hwk`.
//! - Another user's credential, presented by a browser that rewrote the page's options, is
//!   refused.
//! - A look-alike origin in front of the same data (the phishing case) gets answers the
//!   server refuses, at registration and at sign-in.
//! - In the security settings a user adds a second key and removes the first, proving the
//!   removal with a key; the removed credential is refused from then on.
//!
//! The server runs on `localhost` (`rp::spawn_on_localhost`): the RP id must be a host name,
//! and browsers allow WebAuthn without TLS only there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{
    assert_page_is_clean, continue_to, main_text, press_button, type_into, wait_for_title,
    wait_for_url, wait_until_loaded, WAIT,
};
use common::logins::required;
use common::rp::*;
use serde_json::{json, Value};
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;

const ENROLL: &str = "Set up two-step verification";
const CHALLENGE: &str = "Two-step verification";
const CODES: &str = "Save your recovery codes";
const SETTINGS: &str = "Security settings";

/// 2FA required for everyone, with authenticator apps and security keys.
fn keys_policy() -> Value {
    required(json!({"methods": ["totp", "webauthn"]}))
}

async fn integrator(users: &[&str]) -> Integrator {
    Integrator::start_on(spawn_on_localhost(|_| {}).await, keys_policy(), users).await
}

/// Waits for the page's key form (`create` or `get`).
async fn wait_for_key_form(c: &Client, mode: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(&format!("form[data-webauthn={mode}]")))
        .await
        .unwrap_or_else(|e| panic!("no key form ({mode}): {e}"));
}

/// The text of the page's alert, waiting for it.
async fn alert(c: &Client) -> String {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css("p[role=alert]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs `user` in with no factor yet and registers a key named `name` at the enrolment step;
/// returns the ID token's `amr`.
async fn register_at_sign_in(b: &Browser, i: &Integrator, user: &str, name: &str) -> Vec<String> {
    let req = i.authorize_for(user);
    let url = req.url.clone();
    let name = name.to_string();
    b.step(&format!("register-{user}"), |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        press_button(&c, "Use a security key or passkey").await;
        wait_for_key_form(&c, "create").await;
        assert_page_is_clean(b).await;
        type_into(&c, "key-name", &name).await;
        press_button(&c, "Register security key").await;
        wait_for_title(&c, CODES).await;
    })
    .await;
    let redirect = i.redirect.clone();
    let landed = b
        .step(&format!("codes-{user}"), |c| async move {
            continue_to(&c, &redirect).await
        })
        .await;
    let (amr, acr) = i.exchange_for(user, &landed, req).await;
    assert_eq!(acr, "urn:twofold:acr:2fa");
    amr
}

/// Starts `user`'s sign-in and waits for the challenge's key form. With `forge`, the browser
/// rewrites the page's options to ask for that credential (base64url id) instead, as a
/// tampered browser would; then it presses the button.
async fn answer_challenge(b: &Browser, i: &Integrator, user: &str, forge: Option<&str>) -> Request {
    let req = i.authorize_for(user);
    let url = req.url.clone();
    let forge = forge.map(String::from);
    b.step(&format!("challenge-{user}"), |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        wait_for_key_form(&c, "get").await;
        assert_clean_after_refusals(b).await;
        if let Some(id) = forge {
            c.execute(
                "const f = document.querySelector('form[data-webauthn]');\
                 const o = JSON.parse(f.dataset.options);\
                 o.publicKey.allowCredentials = [{type: 'public-key', id: arguments[0]}];\
                 f.dataset.options = JSON.stringify(o);",
                vec![json!(id)],
            )
            .await
            .unwrap();
        }
        press_button(&c, "Use security key").await;
    })
    .await;
    req
}

/// The page checks, where the browser's log may hold the 401s of refused answers before.
async fn assert_clean_after_refusals(b: &Browser) {
    wait_until_loaded(b.client()).await;
    assert_eq!(b.page_problems().await, Vec::<String>::new());
    let errors = b.console_errors();
    assert!(
        errors.iter().all(|e| e.contains("(Unauthorized)")),
        "{errors:?}"
    );
}

/// Signs `user` in with their key; returns the ID token's `amr`.
async fn sign_in_with_key(b: &Browser, i: &Integrator, user: &str) -> Vec<String> {
    let req = answer_challenge(b, i, user, None).await;
    let redirect = i.redirect.clone();
    let landed = b
        .step(&format!("landed-{user}"), |c| async move {
            wait_for_url(&c, &redirect).await
        })
        .await;
    i.exchange_for(user, &landed, req).await.0
}

/// Starts `user`'s challenge and lets the key answer, but keeps the filled form from going
/// out; then posts that one answer `n` times at once with the browser's cookies (a replay by
/// someone who captured it). Returns the statuses: 303 for a sign-in, else the refusal's.
async fn replay_answer(b: &Browser, i: &Integrator, user: &str, n: usize) -> Vec<u16> {
    let req = i.authorize_for(user);
    let url = req.url.clone();
    let (form, cookie) = b
        .step(&format!("capture-{user}"), |c| async move {
            c.goto(&url).await.unwrap();
            wait_for_key_form(&c, "get").await;
            c.execute(
                "HTMLFormElement.prototype.submit = function () {\
                   window.captured = new URLSearchParams(new FormData(this)).toString(); };",
                vec![],
            )
            .await
            .unwrap();
            press_button(&c, "Use security key").await;
            let deadline = tokio::time::Instant::now() + WAIT;
            let form = loop {
                let v = c
                    .execute("return window.captured || null;", vec![])
                    .await
                    .unwrap();
                if let Some(f) = v.as_str() {
                    break f.to_string();
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the key never answered"
                );
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            };
            let cookies: Vec<String> = c
                .get_all_cookies()
                .await
                .unwrap()
                .iter()
                .map(|k| format!("{}={}", k.name(), k.value()))
                .collect();
            (form, cookies.join("; "))
        })
        .await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = || {
        http.post(format!("{}/oidc/challenge/key", i.app.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &cookie)
            .body(form.clone())
            .send()
    };
    let answers = futures_util::future::join_all((0..n).map(|_| post())).await;
    answers
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect()
}

/// The refusal page after a key's answer: the key form again, with the one notice.
async fn assert_key_refused(b: &Browser, step: &str) {
    b.step(step, |c| async move {
        assert_alert(&c, "That security key was not accepted").await;
        wait_for_key_form(&c, "get").await;
    })
    .await;
}

/// Asserts a denied audit row of `action` for `user` with `reason`.
async fn assert_denied(i: &Integrator, action: &str, user: &str, reason: &str) {
    let rows = i
        .app
        .audit_of("acme", &i.e.key, &format!("action={action}&limit=50"))
        .await;
    let found = rows
        .iter()
        .any(|e| e["outcome"] == "denied" && e["user"] == user && e["reason"] == reason);
    assert!(found, "no denied {action} of {user} for {reason}: {rows:?}");
}

/// `user`'s factors as the integrator lists them.
async fn factors_of(i: &Integrator, user: &str) -> Value {
    let path = format!("/v1/tenants/acme/users/{user}/factors");
    i.app.get(&path, &i.e.key).await.1["factors"].clone()
}

/// Waits for the page's alert and checks how it starts.
async fn assert_alert(c: &Client, starts: &str) {
    let text = alert(c).await;
    assert!(text.starts_with(starts), "{text}");
}

#[tokio::test]
async fn a_key_registered_at_sign_in_signs_the_user_in_and_its_counter_moves() {
    let i = integrator(&["bob"]).await;
    let browser = Browser::start().await;
    let b = &browser;
    let key = b.add_virtual_authenticator(json!({}));

    let amr = register_at_sign_in(b, &i, "bob", "Blue key").await;
    assert_eq!(amr, ["pwd", "hwk"]);
    let creds = b.authenticator_credentials(&key);
    assert_eq!(creds.len(), 1, "{creds:?}");
    assert_eq!(creds[0]["rpId"], "localhost");

    // The factor lists as a named security key; the credential itself never leaves.
    let factors = factors_of(&i, "bob").await;
    let f = &factors[0];
    assert_eq!(
        (&f["kind"], &f["label"], &f["status"]),
        (&json!("webauthn"), &json!("Blue key"), &json!("active"))
    );
    assert!(!factors.to_string().contains("public"), "{factors}");

    let before = creds[0]["signCount"].as_u64().unwrap();
    assert_eq!(sign_in_with_key(b, &i, "bob").await, ["pwd", "hwk"]);
    let after = b.authenticator_credentials(&key)[0]["signCount"]
        .as_u64()
        .unwrap();
    assert!(after > before, "{before} -> {after}");
    // A second sign-in works with the stored counter moved on (an unmoved one would be a
    // clone and lock the key).
    assert_eq!(sign_in_with_key(b, &i, "bob").await, ["pwd", "hwk"]);

    // One answer posted 8 times at once signs in once: the ceremony is spent in the
    // transaction that accepts it.
    let statuses = replay_answer(b, &i, "bob", 8).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 303).count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 303 || (400..500).contains(s)),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_cloned_key_whose_counter_goes_back_is_locked() {
    let i = integrator(&["bob"]).await;
    let browser = Browser::start().await;
    let b = &browser;
    let key = b.add_virtual_authenticator(json!({}));
    register_at_sign_in(b, &i, "bob", "").await;
    let snapshot = b.authenticator_credentials(&key).remove(0);
    sign_in_with_key(b, &i, "bob").await;
    sign_in_with_key(b, &i, "bob").await;

    // The copy taken two sign-ins ago answers with an older counter.
    b.remove_virtual_authenticator(&key);
    let clone = b.add_virtual_authenticator(json!({}));
    b.add_authenticator_credential(&clone, &snapshot);
    answer_challenge(b, &i, "bob", None).await;
    b.step("clone-refused", |c| async move {
        assert_alert(&c, "That security key was not accepted").await;
    })
    .await;
    assert_denied(&i, "login.verify", "bob", "possible_clone").await;
    let factors = factors_of(&i, "bob").await;
    assert_eq!(factors[0]["locked"], true, "{factors}");
}

#[tokio::test]
async fn another_users_credential_is_refused() {
    let i = integrator(&["bob", "carol"]).await;
    let browser = Browser::start().await;
    let b = &browser;
    let key = b.add_virtual_authenticator(json!({}));
    register_at_sign_in(b, &i, "bob", "Bob's key").await;
    let bobs = b.authenticator_credentials(&key)[0]["credentialId"]
        .as_str()
        .unwrap()
        .to_string();
    register_at_sign_in(b, &i, "carol", "Carol's key").await;

    // Carol's challenge, answered with Bob's credential (the same authenticator holds both,
    // and the tampered page asks for Bob's): signed, but not carol's, so refused.
    answer_challenge(b, &i, "carol", Some(&bobs)).await;
    assert_key_refused(b, "other-user").await;
    assert_denied(&i, "webauthn.refused", "carol", "unknown_credential").await;
    // Carol's own key still works.
    assert_eq!(sign_in_with_key(b, &i, "carol").await, ["pwd", "hwk"]);
}

#[tokio::test]
async fn answers_made_on_another_origin_are_refused() {
    // The real server, where bob registers his key.
    let i = integrator(&["bob", "dave"]).await;
    let browser = Browser::start().await;
    let b = &browser;
    b.add_virtual_authenticator(json!({}));
    register_at_sign_in(b, &i, "bob", "").await;

    // A look-alike: the same data and issuer, served on another port (another origin), while
    // only the real origin is configured. The browser signs for the page it is on.
    let real = i.app.base.clone();
    let phish = common::spawn_app_at_with(i.app.data_path.clone(), |c| {
        c.public_url = Some(real.clone());
        c.webauthn.origins = vec![real.clone()];
    })
    .await;
    let phish_base = phish.base.replace("127.0.0.1", "localhost");
    let moved = |req: &Request| req.url.replacen(&real, &phish_base, 1);

    let req = i.authorize_for("bob");
    let url = moved(&req);
    b.step("phished-challenge", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        wait_for_key_form(&c, "get").await;
        press_button(&c, "Use security key").await;
    })
    .await;
    assert_key_refused(b, "phished-refused").await;
    assert_denied(&i, "webauthn.refused", "bob", "origin_mismatch").await;

    // Registering there fails the same way: the key would be scoped to the wrong page.
    let req = i.authorize_for("dave");
    let url = moved(&req);
    b.step("phished-registration", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        press_button(&c, "Use a security key or passkey").await;
        wait_for_key_form(&c, "create").await;
        press_button(&c, "Register security key").await;
        assert_alert(&c, "Your browser answered for another website").await;
    })
    .await;
    assert_denied(&i, "factor.enrol", "dave", "origin_mismatch").await;
    let factors = factors_of(&i, "dave").await;
    assert_eq!(factors, json!([]));
}

#[tokio::test]
async fn a_second_key_is_added_in_the_settings_and_the_removed_first_one_is_refused() {
    let i = integrator(&["carol"]).await;
    let browser = Browser::phone().await;
    let b = &browser;
    let key = b.add_virtual_authenticator(json!({}));
    register_at_sign_in(b, &i, "carol", "Carol's key").await;
    let first = b.authenticator_credentials(&key).remove(0);
    let first_id = first["credentialId"].as_str().unwrap().to_string();

    // The security settings, entered through the hosted second step with the key.
    let hint = hint_with(&i.app, &i.secret, json!({ "sub": "carol" }));
    let url = format!(
        "{}/account/sso?client_id=acme.web&login_hint_token={hint}",
        i.app.base
    );
    b.step("settings", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, CHALLENGE).await;
        wait_for_key_form(&c, "get").await;
        press_button(&c, "Use security key").await;
        wait_for_title(&c, SETTINGS).await;
        assert_page_is_clean(b).await;
    })
    .await;
    // The second key is another authenticator (one key refuses to register twice for the
    // same user: the page excludes the credentials the user has).
    b.remove_virtual_authenticator(&key);
    let spare = b.add_virtual_authenticator(json!({}));
    b.step("add-spare", |c| async move {
        press_button(&c, "Add a security key or passkey").await;
        wait_for_key_form(&c, "create").await;
        assert_page_is_clean(b).await;
        type_into(&c, "key-name", "Spare key").await;
        press_button(&c, "Register security key").await;
        wait_for_title(&c, SETTINGS).await;
        let note = c.find(Locator::Css("p.note[role=status]")).await.unwrap();
        assert_eq!(note.text().await.unwrap(), "The security key was added.");
        let body = main_text(&c).await;
        assert!(body.contains("Security key “Carol's key”"), "{body}");
        assert!(body.contains("Security key “Spare key”"), "{body}");
    })
    .await;
    assert_eq!(b.authenticator_credentials(&spare).len(), 1);

    // The first key goes, proven by a key (the page's key form comes first).
    let factors = factors_of(&i, "carol").await;
    let old = factors
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["label"] == "Carol's key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A key's answer made for another change (new recovery codes) does not remove a key:
    // the page's form is pointed at the removal, and the removal is refused.
    let recovery = format!("{}/account/recovery", i.app.base);
    let elsewhere = format!("/account/methods/{old}/remove");
    b.step("proof-for-another-change", |c| async move {
        c.goto(&recovery).await.unwrap();
        wait_for_key_form(&c, "get").await;
        c.execute(
            "document.querySelector('form[data-webauthn]').action = arguments[0];",
            vec![json!(elsewhere)],
        )
        .await
        .unwrap();
        press_button(&c, "Make new recovery codes").await;
        wait_for_title(&c, "Remove a sign-in method").await;
        assert_alert(&c, "That security key was not accepted").await;
    })
    .await;
    assert_eq!(factors_of(&i, "carol").await.as_array().unwrap().len(), 2);
    let remove = format!("{}/account/methods/{old}/remove", i.app.base);
    b.step("remove-first", |c| async move {
        c.goto(&remove).await.unwrap();
        wait_for_title(&c, "Remove a sign-in method").await;
        wait_for_key_form(&c, "get").await;
        assert_clean_after_refusals(b).await;
        press_button(&c, "Remove it").await;
        wait_for_title(&c, SETTINGS).await;
        let note = c.find(Locator::Css("p.note[role=status]")).await.unwrap();
        assert_eq!(note.text().await.unwrap(), "The method was removed.");
    })
    .await;
    let factors = factors_of(&i, "carol").await;
    let labels: Vec<&Value> = factors
        .as_array()
        .unwrap()
        .iter()
        .map(|f| &f["label"])
        .collect();
    assert_eq!(labels, [&json!("Spare key")]);

    // A browser that still holds the removed credential, asked for it by a tampered page,
    // signs with it; the server refuses it. The spare key signs in.
    b.add_authenticator_credential(&spare, &first);
    answer_challenge(b, &i, "carol", Some(&first_id)).await;
    assert_key_refused(b, "removed-refused").await;
    assert_denied(&i, "webauthn.refused", "carol", "unknown_credential").await;
    assert_eq!(sign_in_with_key(b, &i, "carol").await, ["pwd", "hwk"]);
}

#[tokio::test]
async fn a_synced_passkey_is_a_software_key_in_the_id_token() {
    let i = integrator(&["erin"]).await;
    let browser = Browser::start().await;
    let b = &browser;
    // A passkey of a password manager: its credential may be copied between devices.
    b.add_virtual_authenticator(json!({
        "transport": "internal",
        "defaultBackupEligibility": true,
        "defaultBackupState": true,
    }));
    assert_eq!(
        register_at_sign_in(b, &i, "erin", "Phone").await,
        ["pwd", "swk"]
    );
    assert_eq!(sign_in_with_key(b, &i, "erin").await, ["pwd", "swk"]);
}

#[tokio::test]
async fn an_admin_whose_app_no_longer_counts_adds_a_key_proven_by_the_app() {
    // From today only keys sign admins in; carl (profile admin) has an authenticator app.
    let app = spawn_on_localhost(|_| {}).await;
    let policy = required(json!({
        "methods": ["totp", "webauthn"],
        "phishing_resistant_profiles": ["admin"],
    }));
    let i = Integrator::start_on(app, policy, &[]).await;
    let (s, body) = i
        .app
        .post(
            "/v1/tenants/acme/users",
            &i.e.key,
            json!({"external_id": "carl", "profile": "admin", "email": "carl@example.com"}),
        )
        .await;
    assert!(s.is_success(), "{body}");
    let mut carl = i.app.pending("acme", &i.e.key, "carl").await;
    let code = i.app.code_at_offset(&carl.secret, &carl.params, 0);
    let (s, body) = i.app.confirm(&carl, &code).await;
    assert!(s.is_success(), "{body}");
    carl.recovery_codes.clear();
    i.app.advance_secs(30);
    let browser = Browser::start().await;
    let b = &browser;
    b.add_virtual_authenticator(json!({}));

    // His sign-in asks for a key, and adding one needs his app's code first: a wrong code
    // (with a real key's answer) adds nothing.
    let req = i.authorize_for("carl");
    let url = req.url.clone();
    b.step("wrong-step-up", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        press_button(&c, "Use a security key or passkey").await;
        wait_for_key_form(&c, "create").await;
        assert_page_is_clean(b).await;
        type_into(&c, "code", "000000").await;
        press_button(&c, "Register security key").await;
        assert_alert(&c, "That code did not work").await;
    })
    .await;
    assert_eq!(factors_of(&i, "carl").await.as_array().unwrap().len(), 1);

    let right = i.app.code_at_offset(&carl.secret, &carl.params, 0);
    let redirect = i.redirect.clone();
    let landed = b
        .step("step-up", |c| async move {
            wait_for_key_form(&c, "create").await;
            type_into(&c, "code", &right).await;
            type_into(&c, "key-name", "Admin key").await;
            press_button(&c, "Register security key").await;
            // He has his recovery codes already: straight back to the application.
            wait_for_url(&c, &redirect).await
        })
        .await;
    let (amr, _) = i.exchange_for("carl", &landed, req).await;
    assert_eq!(amr, ["pwd", "hwk"]);
    assert_eq!(factors_of(&i, "carl").await.as_array().unwrap().len(), 2);
    // From now on the key is what signs him in.
    assert_eq!(sign_in_with_key(b, &i, "carl").await, ["pwd", "hwk"]);
}
