//! Waiting and checking in headless Chromium (`twofold_testkit::browser`), shared by the
//! browser tests: waits poll a condition through WebDriver (never a fixed sleep) and give up
//! after 20 s, and every page must pass the harness's page checks.

use std::time::Duration;
use twofold_testkit::browser::fantoccini::{Client, Locator};
use twofold_testkit::browser::Browser;

/// How long a browser wait polls before the step fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Waits for a page whose `<h1>` is `title`, and checks that it is the document title too.
pub async fn wait_for_title(c: &Client, title: &str) {
    let xpath = format!("//h1[normalize-space()=\"{title}\"]");
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no page titled {title:?}: {e}"));
    assert_eq!(c.title().await.unwrap(), title);
}

/// Waits until the browser is at a URL that starts with `prefix` (a redirect to another
/// origin, where there is no element of ours to wait for); returns that URL.
pub async fn wait_for_url(c: &Client, prefix: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let url = c.current_url().await.unwrap().to_string();
        if url.starts_with(prefix) {
            return url;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still at {url}, waiting for {prefix}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every page must pass the script-checkable accessibility and layout basics and log no error,
/// once it has loaded everything it links (a print stylesheet loads last).
pub async fn assert_page_is_clean(b: &Browser) {
    wait_until_loaded(b.client()).await;
    assert_eq!(b.page_problems().await, Vec::<String>::new());
    assert_eq!(b.console_errors(), Vec::<String>::new());
}

/// Waits until the document and everything it loads are in (`readyState` is `complete`).
pub async fn wait_until_loaded(c: &Client) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let state = c
            .execute("return document.readyState;", vec![])
            .await
            .unwrap();
        if state == "complete" {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page is still {state} after {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Clicks the button named `name`.
pub async fn press_button(c: &Client, name: &str) {
    let xpath = format!("//button[normalize-space()=\"{name}\"]");
    c.find(Locator::XPath(&xpath))
        .await
        .unwrap_or_else(|e| panic!("no button {name:?}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Follows the recovery codes page's "continue" link back to the client at `redirect`;
/// returns the URL the browser landed on.
pub async fn continue_to(c: &Client, redirect: &str) -> String {
    c.find(Locator::Css("a.continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_url(c, redirect).await
}

/// Replaces the text of the field with id `id` by `text`.
pub async fn type_into(c: &Client, id: &str, text: &str) {
    let field = c.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// On the challenge page: types `code` into the labelled field, optionally ticks "remember
/// this device", presses Verify.
pub async fn submit_code(c: &Client, code: &str, remember: bool) {
    type_into(c, "code", code).await;
    if remember {
        let tick = c.find(Locator::Id("remember")).await.unwrap();
        tick.click().await.unwrap();
        assert!(tick.is_selected().await.unwrap());
    }
    press_button(c, "Verify").await;
}

/// On the enrolment page: types the app's code and turns two-step verification on.
pub async fn submit_enrol_code(c: &Client, code: &str) {
    type_into(c, "code", code).await;
    press_button(c, "Turn on two-step verification").await;
}

/// The text of the page's `<main>`.
#[allow(dead_code)]
pub async fn main_text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
