//! The attacks of SECURITY.md through the hosted pages: the challenge reached over OpenID
//! Connect takes codes too, so replays (parallel, and across logins) and restarted logins must
//! fail there exactly as they do on the API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::oidc::{Browser, Page};
use common::rp::*;
use reqwest::StatusCode;

/// `n` browsers, each with its own hosted login of alice waiting at the challenge.
async fn challenges(
    app: &common::TestApp,
    rp: &Rp,
    secret: &str,
    n: usize,
) -> Vec<(Browser, Page, Request)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let b = Browser::new(app);
        let req = rp.authorize(&hint(app, secret));
        let page = b.open_challenge(&req.url).await;
        out.push((b, page, req));
    }
    out
}

fn signed_in(p: &Page) -> bool {
    p.status == StatusCode::SEE_OTHER && p.param("code").is_some()
}

/// One code typed into 50 waiting logins at once, and into 2 and 5: exactly one login gets
/// through each time; the others get the wrong-code page (INV-01, INV-11).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_code_in_parallel_hosted_logins_signs_in_exactly_once() {
    for n in [2, 5, 50] {
        // A server per round: the refused replays count as failures (INV-03) and would
        // throttle the next round's right code.
        let app = spawn().await;
        let (e, secret) = acme(&app).await;
        let rp = Rp::discover(&app, "acme.web", &secret).await;
        let logins = challenges(&app, &rp, &secret, n).await;
        let code = oathtool(&e.secret, app.now_secs());
        let answers = futures_util::future::join_all(
            logins
                .iter()
                .map(|(b, page, _)| b.verify(page, &code, false)),
        )
        .await;
        let wins = answers.iter().filter(|p| signed_in(p)).count();
        assert_eq!(wins, 1, "{n} parallel logins with one code");
        for p in answers.iter().filter(|p| !signed_in(p)) {
            assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
        }
        // The winner's code is a real sign-in; the replayed code stays refused afterwards.
        let (i, _) = answers
            .iter()
            .enumerate()
            .find(|(_, p)| signed_in(p))
            .unwrap();
        code_of(&app, &answers[i], &logins[i].2);
        let (b, page, _) = &challenges(&app, &rp, &secret, 1).await[0];
        let replay = b.verify(page, &code, false).await;
        assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{}", replay.body);
    }
}

/// "AuthQuake" on the hosted pages: starting a new login after every wrong code gives no fresh
/// attempts. After five wrong codes spread over five logins, even the right code is refused in
/// a sixth, with the wrong-code page, until the backoff ends (INV-03).
#[tokio::test]
async fn restarting_hosted_logins_gives_no_fresh_attempts() {
    let app = spawn().await;
    let (e, secret) = acme(&app).await;
    let rp = Rp::discover(&app, "acme.web", &secret).await;
    let mut wrong_page = None;
    for (b, page, _) in challenges(&app, &rp, &secret, 5).await {
        let p = b.verify(&page, "000000", false).await;
        assert_eq!(p.status, StatusCode::UNAUTHORIZED, "{}", p.body);
        wrong_page = Some(p.body.replace(&p.csrf(), "TOKEN"));
    }
    let (b, page, _) = &challenges(&app, &rp, &secret, 1).await[0];
    let right = oathtool(&e.secret, app.now_secs());
    let refused = b.verify(page, &right, false).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);
    assert_eq!(
        Some(refused.body.replace(&refused.csrf(), "TOKEN")),
        wrong_page,
        "a throttled right code gets the wrong code's page"
    );
    let audit = app.audit(&e, "action=login.verify").await;
    assert_eq!(audit[0]["reason"], "throttled", "{:?}", audit[0]);
    // After the backoff a new login signs in with the next code.
    app.advance_secs(15 * 60);
    let (b, page, req) = &challenges(&app, &rp, &secret, 1).await[0];
    let back = b
        .verify(page, &oathtool(&e.secret, app.now_secs()), false)
        .await;
    code_of(&app, &back, req);
}
