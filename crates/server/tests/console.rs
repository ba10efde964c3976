//! The admin console over HTTP (issue #6; the vault page of #7): the way in through the hosted
//! second step (integrator's login hint or the operator's one-time link), always with a
//! second factor; the session's cookie and its death; settings and resets applied only with
//! the code emailed to the acting admin; the audit, messages and vault pages; another
//! tenant's ids. The browser is reqwest with a cookie jar (`common::oidc::Browser`); the
//! Chromium run is in `browser_console.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::console::{alice_factors, org, submit};
use common::logins::{login, required, step};
use common::oidc::Browser;
use common::process::twofold_with_env;
use common::rp::hint_with;
use reqwest::StatusCode;
use serde_json::{json, Value};

#[tokio::test]
async fn admin_signs_in_with_a_second_factor_and_sees_the_rollout() {
    let o = org().await;
    let b = o.signed_in().await;
    let overview = b.get("/console").await;
    assert_eq!(overview.status, StatusCode::OK, "{}", overview.body);
    // alice is enrolled, boss too: both required users have set it up.
    assert!(overview.body.contains("100.0 %"), "{}", overview.body);
    assert!(overview
        .body
        .contains("aria-label=\"2 of 2 users enrolled\""));
    assert!(overview.body.contains("signed in as <strong>boss</strong>"));
    let csp = overview.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let set: Vec<_> = overview.headers.get_all("set-cookie").iter().collect();
    assert!(set.iter().all(|c| {
        let c = c.to_str().unwrap();
        c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Path=/console")
    }));
    let actions: Vec<String> = o
        .app
        .audit(&o.alice, "action=console.session")
        .await
        .iter()
        .map(|e| e["actor"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, vec!["admin:boss"]);
    // The login's own session was revoked: the console cookie is the only one left.
    let (_, sessions) = o
        .app
        .get("/v1/tenants/acme/users/boss/sessions", &o.alice.key)
        .await;
    let live: Vec<&Value> = sessions["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["active"] == true)
        .collect();
    assert_eq!(live.len(), 1, "{sessions}");
    assert_eq!(live[0]["client_id"], "@console");
    assert_eq!(live[0]["second_factor"], true);
}

#[tokio::test]
async fn non_admins_replayed_hints_and_foreign_states_do_not_open_it() {
    let o = org().await;
    // A user who is not an admin: refused, with nothing said about why.
    let b = Browser::new(&o.app);
    let refused = b.get(&o.sso_url("alice")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(b.cookie("tf_login").is_none());
    let denied = o.app.audit(&o.alice, "action=console.login").await;
    assert_eq!(
        (denied[0]["outcome"].as_str(), denied[0]["reason"].as_str()),
        (Some("denied"), Some("not_admin"))
    );
    // The same hint twice: the second is refused.
    let url = o.sso_url("boss");
    assert_eq!(b.get(&url).await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        Browser::new(&o.app).get(&url).await.status,
        StatusCode::FORBIDDEN
    );
    // A hint signed with another secret.
    let forged = hint_with(&o.app, "not-the-secret", json!({"sub": "boss"}));
    let p = b
        .get(&format!(
            "/console/sso?client_id=acme.web&login_hint_token={forged}"
        ))
        .await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);

    // An attacker's own completed sign-in cannot be planted in the victim's browser: the
    // victim has no matching state cookie.
    let attacker = Browser::new(&o.app);
    attacker.get(&o.sso_url("boss")).await;
    let challenge = attacker.get("/oidc/challenge").await;
    let back = attacker.verify(&challenge, &o.boss_code(), false).await;
    let callback = back.location.unwrap();
    let victim = Browser::new(&o.app);
    let planted = victim.get(&callback).await;
    assert_eq!(planted.status, StatusCode::BAD_REQUEST, "{}", planted.body);
    assert_eq!(
        victim.get("/console").await.status,
        StatusCode::UNAUTHORIZED
    );
    // A tampered state in the attacker's own browser fails too, and spends nothing.
    let tampered = callback.replace("state=", "state=x");
    assert_eq!(
        attacker.get(&tampered).await.status,
        StatusCode::BAD_REQUEST
    );

    // No cookie, or a session token that is not a console session: signed out.
    let nobody = Browser::new(&o.app);
    let p = nobody.get("/console/users").await;
    assert_eq!(p.status, StatusCode::UNAUTHORIZED);
    assert!(p.body.contains("signed out"), "{}", p.body);
    // boss's own session from an API login, with a second factor: still not a console one.
    o.app.advance_secs(30);
    let pending = login(&o.app, &o.alice, "boss", json!({})).await;
    let done = step(&o.app, &o.alice, &pending, &o.boss_code(), json!({})).await;
    let api_session = done["session"]["token"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/console", o.app.base))
        .header("cookie", format!("tf_console={api_session}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_admin_without_a_factor_enrols_first() {
    let o = org().await;
    let (s, body) = o
        .app
        .post(
            "/v1/tenants/acme/users",
            &o.app.operator_key,
            json!({"external_id": "chief", "email": "chief@example.com", "is_admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let b = Browser::new(&o.app);
    let first = b.get(&o.sso_url("chief")).await;
    assert_eq!(
        first.location.as_deref(),
        Some("/oidc/enroll"),
        "{}",
        first.body
    );
    let page = b.get("/oidc/enroll").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("the admin console"), "{}", page.body);
}

#[tokio::test]
async fn settings_apply_only_with_the_emailed_code() {
    let o = org().await;
    let b = o.signed_in().await;
    let before = o.policy().await;
    let form = b.get("/console/settings").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(
        form.body.contains("value=\"required_for_all\" checked"),
        "{}",
        form.body
    );
    let fields = [
        ("mode", "optional"),
        ("totp", "1"),
        ("email", "1"),
        ("mandatory_from", ""),
        ("reminder_days", "7"),
        ("remember_device_days", "14"),
    ];

    // Without the CSRF token: refused, nothing proposed.
    let p = b.post("/console/settings", &fields).await;
    assert_eq!(p.status, StatusCode::FORBIDDEN);
    // A bad number: the form again with the reason.
    let bad = submit(
        &b,
        &form,
        "/console/settings",
        &[("mode", "optional"), ("reminder_days", "soon")],
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains("reminder_days must be a whole number"),
        "{}",
        bad.body
    );

    let proposed = submit(&b, &form, "/console/settings", &fields).await;
    assert_eq!(proposed.status, StatusCode::SEE_OTHER, "{}", proposed.body);
    let confirm_at = proposed.location.unwrap();
    let confirm = b.get(&confirm_at).await;
    assert!(
        confirm.body.contains("optional for everyone"),
        "{}",
        confirm.body
    );
    let code = o.app.next_code("boss@example.com").await;
    assert_eq!(o.policy().await, before, "nothing changes before the code");

    let wrong = if code == "000000" { "111111" } else { "000000" };
    let refused = submit(&b, &confirm, &confirm_at, &[("code", wrong)]).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(o.policy().await, before);

    let applied = submit(&b, &confirm, &confirm_at, &[("code", &code)]).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert!(applied.body.contains("Change applied"));
    let after = o.policy().await;
    assert_eq!(
        after["policy"]["enforcement"]["mode"], "optional",
        "{after}"
    );
    assert_eq!(after["policy"]["remember_device_days"], 14);
    assert_eq!(after["policy"]["reminder_days"], 7);
    assert_eq!(after["policy"]["methods"], json!(["totp", "email"]));
    // The client apps were kept.
    assert_eq!(after["policy"]["clients"], before["policy"]["clients"]);
    // The code was single-use.
    let again = submit(&b, &confirm, &confirm_at, &[("code", &code)]).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    let rows = o.app.audit(&o.alice, "action=proposal.confirm").await;
    assert_eq!(rows[0]["actor"], "admin:boss");
}

#[tokio::test]
async fn a_reset_needs_the_code_and_removes_the_users_methods() {
    let o = org().await;
    let b = o.signed_in().await;
    let users = b.get("/console/users?status=enrolled").await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.body);
    assert!(
        users
            .body
            .contains("<td>alice</td><td>enrolled</td><td>totp</td>"),
        "{}",
        users.body
    );
    assert_eq!(
        b.get("/console/users?status=sideways").await.status,
        StatusCode::BAD_REQUEST
    );

    let proposed = submit(&b, &users, "/console/users/alice/reset", &[]).await;
    assert_eq!(proposed.status, StatusCode::SEE_OTHER, "{}", proposed.body);
    let confirm_at = proposed.location.unwrap();
    let confirm = b.get(&confirm_at).await;
    assert!(confirm
        .body
        .contains("reset two-step verification of alice"));
    assert_eq!(alice_factors(&o).await, 1);
    let code = o.app.next_code("boss@example.com").await;
    let applied = submit(&b, &confirm, &confirm_at, &[("code", &code)]).await;
    assert_eq!(applied.status, StatusCode::OK, "{}", applied.body);
    assert_eq!(alice_factors(&o).await, 0);
    let notice = common::logins::notice_with(&o.app, "alice@example.com", "switched off").await;
    assert!(
        notice
            .text
            .contains("boss, an administrator of your organisation"),
        "{}",
        notice.text
    );
    // Unknown users are a 404 page, not a proposal.
    let p = submit(&b, &users, "/console/users/nobody/reset", &[]).await;
    assert_eq!(p.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn another_tenants_proposal_is_not_found() {
    let o = org().await;
    let b = o.signed_in().await;
    // Tenant beta's admin proposes something; its id means nothing in acme's console.
    let beta = o.app.tenant("beta").await;
    let (s, _) = o
        .app
        .post(
            "/v1/tenants/beta/users",
            &o.app.operator_key,
            json!({"external_id": "root", "email": "root@beta.test", "is_admin": true}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, p) = o
        .app
        .post(
            "/v1/tenants/beta/policy/proposals",
            &beta,
            json!({"admin": "root", "policy": required(json!({}))}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{p}");
    let code = o.app.next_code("root@beta.test").await;
    let path = format!("/console/confirm/{}", p["id"].as_str().unwrap());
    let page = b.get(&path).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let any = b.get("/console/users").await;
    let posted = submit(&b, &any, &path, &[("code", &code)]).await;
    assert_eq!(posted.status, StatusCode::NOT_FOUND);
    let (_, beta_policy) = o.app.get("/v1/tenants/beta/policy", &beta).await;
    assert_ne!(
        beta_policy["policy"]["enforcement"]["mode"],
        "required_for_all"
    );
}

#[tokio::test]
async fn the_session_ends_with_sign_out_and_with_sign_out_everywhere() {
    let o = org().await;
    let b = o.signed_in().await;
    let page = b.get("/console/audit").await;
    assert_eq!(page.status, StatusCode::OK);
    let out = submit(&b, &page, "/console/sign-out", &[]).await;
    assert_eq!(out.status, StatusCode::OK, "{}", out.body);
    assert_eq!(b.get("/console").await.status, StatusCode::UNAUTHORIZED);

    let b = o.signed_in().await;
    assert_eq!(b.get("/console").await.status, StatusCode::OK);
    let (s, body) = o
        .app
        .post(
            "/v1/tenants/acme/users/boss/sign-out-everywhere",
            &o.alice.key,
            json!({}),
        )
        .await;
    assert!(s.is_success(), "{s} {body}");
    assert_eq!(b.get("/console").await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn audit_filters_messages_and_the_vaults_live_codes() {
    let o = org().await;
    let b = o.signed_in().await;
    let audit = b.get("/console/audit?action=console.session").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert_eq!(
        audit.body.matches("<td>console.session</td>").count(),
        1,
        "{}",
        audit.body
    );
    assert!(!audit.body.contains("<td>login.decide</td>"));
    let by_user = b.get("/console/audit?user=alice").await;
    assert!(by_user.body.contains("<td>alice</td>"));
    assert!(!by_user.body.contains("<td>boss</td>"), "{}", by_user.body);
    assert_eq!(
        b.get("/console/audit?user=nobody").await.status,
        StatusCode::NOT_FOUND
    );

    let messages = b.get("/console/messages").await;
    assert_eq!(
        messages.status,
        StatusCode::NOT_FOUND,
        "the page is /console/outbox"
    );
    let outbox = b.get("/console/outbox").await;
    assert_eq!(outbox.status, StatusCode::OK, "{}", outbox.body);
    assert!(outbox.body.contains("Sent: "), "{}", outbox.body);
    assert!(outbox.body.contains("<td>email</td>"), "{}", outbox.body);

    let secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    let (s, body) = o
        .app
        .post(
            "/v1/tenants/acme/vault/entries",
            &o.alice.key,
            json!({"name": "github", "owner": "robot", "owner_kind": "service", "secret": secret, "issuer": "GitHub"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let vault = b.get("/console/vault").await;
    assert_eq!(vault.status, StatusCode::OK);
    assert!(
        vault.body.contains("<td>github</td><td>GitHub</td>"),
        "{}",
        vault.body
    );
    assert!(!vault.body.contains(secret));
    let shown = submit(&b, &vault, "/console/vault/github/code", &[]).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.body);
    let expected = common::rp::oathtool_b32(secret, o.app.now_secs());
    assert!(
        shown
            .body
            .contains(&format!("<code class=\"key\">{expected}</code>")),
        "{}",
        shown.body
    );
    let rows = o.app.audit(&o.alice, "action=vault.code").await;
    assert_eq!(rows[0]["actor"], "admin:boss");
    let forged = b.post("/console/vault/github/code", &[("csrf", "x")]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn an_operators_console_link_works_once() {
    let o = org().await;
    let link = |admin: &str| {
        twofold_with_env(
            &o.app.data_path,
            &["console", "link", "--tenant", "acme", "--admin", admin],
            &[("TWOFOLD_PUBLIC_URL", &o.app.base)],
        )
    };
    let not_admin = link("alice");
    assert!(!not_admin.status.success());
    assert!(String::from_utf8_lossy(&not_admin.stderr).contains("is not an admin"));
    let out = link("boss");
    assert!(out.status.success(), "{out:?}");
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        url.starts_with(&format!("{}/console/start?link=", o.app.base)),
        "{url}"
    );

    let b = Browser::new(&o.app);
    let first = b.get(&url).await;
    assert_eq!(
        first.location.as_deref(),
        Some("/oidc/challenge"),
        "{}",
        first.body
    );
    let challenge = b.get("/oidc/challenge").await;
    let back = b.verify(&challenge, &o.boss_code(), false).await;
    let landed = b.get(&back.location.unwrap()).await;
    assert_eq!(landed.location.as_deref(), Some("/console"));
    assert_eq!(b.get("/console").await.status, StatusCode::OK);
    // Once only, and never past its 15 minutes.
    assert_eq!(
        Browser::new(&o.app).get(&url).await.status,
        StatusCode::FORBIDDEN
    );
    let late = String::from_utf8(link("boss").stdout)
        .unwrap()
        .trim()
        .to_string();
    // The CLI signs with the system clock; the server runs on the test's: move it to 16
    // minutes past the real now.
    let real_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    o.app
        .advance_secs(real_now as i64 - o.app.now_secs() as i64 + 16 * 60);
    assert_eq!(
        Browser::new(&o.app).get(&late).await.status,
        StatusCode::FORBIDDEN
    );
    let garbage = Browser::new(&o.app)
        .get("/console/start?link=eyJhbGciOiJub25lIn0.e30.")
        .await;
    assert_eq!(garbage.status, StatusCode::FORBIDDEN);
}
