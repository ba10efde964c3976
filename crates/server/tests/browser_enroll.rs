//! Enrolment at sign-in on the hosted pages, in headless Chromium: the countdown and its
//! "Later" (the browser lands on the client, whose ID token says password only), the deadline
//! crossed, then an enrolment by email that the user cannot put off (a mistyped number and a
//! wrong code on the way), the recovery codes with their download link, print stylesheet and
//! Print button, and "Cancel sign-in" on an enrolment page. The integrator is the test (the
//! `openidconnect` crate as relying party, see `common::rp`); codes sent by email are read from
//! the development outbox. Failing steps keep a screenshot and the page source under
//! `target/browser-failures/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::chromium::{
    assert_page_is_clean, continue_to, press_button, type_into, wait_for_title, wait_for_url,
    wait_until_loaded, WAIT,
};
use common::logins::required;
use common::rp::*;
use common::START_MS;
use serde_json::json;
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;

const ENROLL: &str = "Set up two-step verification";
const ACR_1FA: &str = "urn:twofold:acr:1fa";
const ACR_2FA: &str = "urn:twofold:acr:2fa";
const DAY_MS: i64 = 86_400_000;

async fn buttons(c: &Client) -> Vec<String> {
    let mut out = Vec::new();
    for b in c.find_all(Locator::Css("button")).await.unwrap() {
        if b.is_displayed().await.unwrap() {
            out.push(b.text().await.unwrap());
        }
    }
    out
}

/// `(id of the focused element, text of its label, its aria-invalid)`.
async fn focused_field(c: &Client) -> (String, String, Option<String>) {
    let v = c
        .execute(
            "const f = document.activeElement;\
             return [f.id, f.labels && f.labels.length ? f.labels[0].innerText.trim() : '',\
                     f.getAttribute('aria-invalid')];",
            vec![],
        )
        .await
        .unwrap();
    (
        v[0].as_str().unwrap().to_string(),
        v[1].as_str().unwrap().to_string(),
        v[2].as_str().map(String::from),
    )
}

/// The page checks of a page that answers with `status` (a refused form): Chromium logs the
/// status as a failed load; nothing else may be wrong.
async fn assert_refused_page_is_clean(b: &Browser, status: &str) {
    assert_eq!(b.page_problems().await, Vec::<String>::new());
    let errors = b.console_errors();
    assert!(
        !errors.is_empty() && errors.iter().all(|e| e.contains(status)),
        "{errors:?}"
    );
}

/// Waits for an element of the next page (the enrolment pages share their title).
async fn wait_for(c: &Client, css: &str) {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"));
}

#[tokio::test]
async fn the_countdown_offers_later_until_the_deadline_then_the_user_enrols_by_email() {
    let deadline = START_MS + 10 * DAY_MS;
    let i = Integrator::start(required(json!({"mandatory_from": deadline})), &["bob"]).await;
    let browser = Browser::start().await;
    let b = &browser;

    let req = i.authorize_for("bob");
    let url = req.url.clone();
    b.step("countdown", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        assert_page_is_clean(b).await;
        let note = c
            .find(Locator::Css("p.note"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            note.starts_with(
                "Two-step verification becomes mandatory for your organisation in 10 days"
            ),
            "{note}"
        );
        assert_eq!(
            buttons(&c).await,
            vec!["Set up now", "Later", "Cancel sign-in"]
        );
        press_button(&c, "Later").await;
    })
    .await;
    let redirect = i.redirect.clone();
    let landed = b
        .step(
            "later",
            |c| async move { wait_for_url(&c, &redirect).await },
        )
        .await;
    let (amr, acr) = i.exchange_for("bob", &landed, req).await;
    assert_eq!((amr, acr.as_str()), (vec!["pwd".to_string()], ACR_1FA));

    // The deadline passes. The clock is the test's `ManualClock`, given to the server through
    // `Application::build_with_clock`; the `twofold` binary always runs on the system clock,
    // so no production build can move it.
    i.app.clock.set_ms(deadline + 60_000);
    let req = i.authorize_for("bob");
    let url = req.url.clone();
    b.step("must-enrol", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        assert_page_is_clean(b).await;
        // No countdown and no "Later": the methods, the authenticator app first.
        assert!(c.find(Locator::Css("p.note")).await.is_err());
        assert_eq!(
            buttons(&c).await,
            vec![
                "Set up an authenticator app",
                "Get codes by text message",
                "Get codes by email",
                "Cancel sign-in"
            ]
        );
        press_button(&c, "Get codes by text message").await;
        wait_for(&c, "input#destination[type=tel]").await;
        assert_eq!(
            focused_field(&c).await,
            ("destination".into(), "Mobile phone number".into(), None)
        );
        assert_page_is_clean(b).await;
        type_into(&c, "destination", "12345").await;
        press_button(&c, "Send a code").await;
    })
    .await;

    b.step("bad-number", |c| async move {
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
            .starts_with("That is not a phone number"));
        // The field is back with what was typed, focused, labelled and marked invalid.
        assert_eq!(
            focused_field(&c).await,
            (
                "destination".into(),
                "Mobile phone number".into(),
                Some("true".into())
            )
        );
        let typed = c.find(Locator::Id("destination")).await.unwrap();
        assert_eq!(typed.prop("value").await.unwrap().as_deref(), Some("12345"));
        assert_refused_page_is_clean(b, "400").await;
        // Email instead.
        c.find(Locator::LinkText("Choose another method"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_for(&c, "form[action='/oidc/enroll/email']").await;
        press_button(&c, "Get codes by email").await;
        wait_for(&c, "input#destination[type=email]").await;
        assert_eq!(
            focused_field(&c).await,
            ("destination".into(), "Email address".into(), None)
        );
        type_into(&c, "destination", "bob@example.com").await;
        press_button(&c, "Send a code").await;
        let sent = c
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.note[role=status]"))
            .await
            .unwrap();
        assert!(sent
            .text()
            .await
            .unwrap()
            .starts_with("We sent a code to b"));
        assert_eq!(
            focused_field(&c).await,
            ("code".into(), "Code from the email".into(), None)
        );
        assert_page_is_clean(b).await;
    })
    .await;

    let code = i.app.next_code("bob@example.com").await;
    let wrong = if code == "000000" { "111111" } else { "000000" };
    b.step("wrong-code", |c| async move {
        type_into(&c, "code", wrong).await;
        press_button(&c, "Turn on two-step verification").await;
        c.wait()
            .at_most(WAIT)
            .for_element(Locator::Css("p.error[role=alert]"))
            .await
            .unwrap();
        assert_eq!(
            focused_field(&c).await,
            ("code".into(), "Code from the email".into(), None)
        );
        assert_refused_page_is_clean(b, "401").await;
    })
    .await;

    let codes = b
        .step("right-code", |c| async move {
            type_into(&c, "code", &code).await;
            press_button(&c, "Turn on two-step verification").await;
            wait_for_title(&c, "Save your recovery codes").await;
            wait_until_loaded(&c).await;
            assert_page_is_clean(b).await;
            let mut codes = Vec::new();
            for li in c.find_all(Locator::Css("ul.codes code")).await.unwrap() {
                codes.push(li.text().await.unwrap());
            }
            codes
        })
        .await;
    assert!(codes.len() >= 8, "{codes:?}");

    let expected = codes.clone();
    b.step("download-and-print", |c| async move {
        // The download: a text file named after the organisation, holding every code.
        let link = c.find(Locator::Css("a.download")).await.unwrap();
        assert_eq!(
            link.attr("download").await.unwrap().as_deref(),
            Some("acme-inc-recovery-codes.txt")
        );
        let href = link.attr("href").await.unwrap().unwrap();
        let text = percent_encoding::percent_decode_str(
            href.strip_prefix("data:text/plain;charset=utf-8,").unwrap(),
        )
        .decode_utf8()
        .unwrap()
        .into_owned();
        assert!(
            expected.iter().all(|code| text.contains(code.as_str())),
            "{text}"
        );
        // The Print button: shown by the page's script (the CSP let it run), and it prints.
        let print = c.find(Locator::Id("print")).await.unwrap();
        assert!(
            print.is_displayed().await.unwrap(),
            "the script did not show the button"
        );
        c.execute(
            "window.print = () => { document.body.dataset.printed = 'yes'; };",
            vec![],
        )
        .await
        .unwrap();
        print.click().await.unwrap();
        let printed = c
            .execute("return document.body.dataset.printed || '';", vec![])
            .await
            .unwrap();
        assert_eq!(printed, "yes");
        // On paper: the codes and nothing else.
        b.emulate_media("print").await;
        let visible = c
            .execute(
                "return [...document.querySelectorAll('main > *')]\
                 .filter(e => getComputedStyle(e).display !== 'none')\
                 .map(e => e.tagName.toLowerCase() + '.' + e.className);",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(visible, json!(["section.printable"]));
        b.emulate_media("").await;
        assert!(print.is_displayed().await.unwrap());
        assert_eq!(b.console_errors(), Vec::<String>::new());
    })
    .await;

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
        (vec!["pwd".to_string(), "email".to_string()], ACR_2FA)
    );
}

#[tokio::test]
async fn cancel_on_an_enrolment_page_sends_access_denied_back_to_the_client_on_a_phone() {
    let i = Integrator::start(required(json!({})), &["carol"]).await;
    let browser = Browser::phone().await;
    let b = &browser;
    let req = i.authorize_for("carol");
    let url = req.url.clone();
    b.step("email-form", |c| async move {
        c.goto(&url).await.unwrap();
        wait_for_title(&c, ENROLL).await;
        assert_page_is_clean(b).await;
        press_button(&c, "Get codes by email").await;
        wait_for(&c, "input#destination[type=email]").await;
        assert_page_is_clean(b).await;
        press_button(&c, "Cancel sign-in").await;
        wait_for_title(&c, "Sign-in cancelled").await;
        assert_page_is_clean(b).await;
        c.find(Locator::LinkText("Return to the application"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    })
    .await;
    let redirect = i.redirect.clone();
    let landed = b
        .step("back", |c| async move { wait_for_url(&c, &redirect).await })
        .await;
    let url = reqwest::Url::parse(&landed).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("error").as_deref(), Some("access_denied"));
    assert_eq!(param("state").as_deref(), Some(req.state.secret().as_str()));
    assert_eq!(param("code"), None);

    // The login is over: its cookie opens nothing, and the audit log says who ended it.
    let enroll = format!("{}/oidc/enroll", i.app.base);
    b.step("ended", |c| async move {
        c.goto(&enroll).await.unwrap();
        wait_for_title(&c, "This sign-in has ended").await;
    })
    .await;
    let audit = i.app.audit(&i.e, "action=oidc.hosted.cancel").await;
    assert_eq!(
        (audit[0]["outcome"].as_str(), audit[0]["reason"].as_str()),
        (Some("denied"), Some("enroll_required")),
        "{audit:?}"
    );
}
