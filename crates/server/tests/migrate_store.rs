//! `twofold migrate-store`: an embedded install moved to PostgreSQL with nothing lost. The
//! tool checks row counts and checksums before it commits; this test checks them again
//! afterwards, compares the sealed seeds byte for byte, and starts a server on PostgreSQL that
//! accepts the user's next TOTP code, session and remembered device.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::*;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use twofold_core::ports::Clock;
use twofold_testkit::PgDatabase;

const PHONE: &str = "+447700900123";

/// Runs `twofold migrate-store` from `db` into `url` (given by the environment, as the docs
/// advise for a URL with a password).
async fn migrate_store(data: &Path, db: &Path, url: &str) -> Output {
    let (data, from, url) = (
        data.to_path_buf(),
        format!("sqlite://{}", db.display()),
        url.to_string(),
    );
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_twofold"))
            .args(["migrate-store", "--from", &from, "--data-dir"])
            .arg(&data)
            .env("TWOFOLD_DATABASE_URL", &url)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &[u8]) -> String {
    String::from_utf8_lossy(o).into_owned()
}

/// The run failed and said `why`.
fn refused(out: &Output, why: &str) {
    let err = text(&out.stderr);
    assert!(!out.status.success() && err.contains(why), "{err}");
}

/// Rows per table in the SQLite file, every table but the migration log.
fn sqlite_counts(db: &Path) -> BTreeMap<String, i64> {
    let c = rusqlite::Connection::open(db).unwrap();
    let names: Vec<String> = c
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table'
             AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations'",
        )
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names
        .into_iter()
        .map(|n| {
            let count = c
                .query_row(&format!("SELECT count(*) FROM \"{n}\""), [], |r| r.get(0))
                .unwrap();
            (n, count)
        })
        .collect()
}

/// Fills every table of the embedded store through the API: tenant, keys, users, a TOTP and
/// an SMS factor, codes, send counters, outbox messages, a phone change, a webhook, a policy
/// with its proposal and rollout jobs, a pending login, a session and a remembered device,
/// the audit rows of all that, and a master key rotation. Returns the enrolment, the session
/// and the device token.
async fn fill(app: &TestApp) -> (Enrolled, serde_json::Value, String) {
    let e = setup(app).await;
    let (s, w) = app
        .post(
            "/v1/tenants/acme/webhooks",
            &e.key,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["session.revoked"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{w}");
    let (s, sms) = app
        .post(
            "/v1/tenants/acme/users/alice/factors/sms",
            &e.key,
            json!({ "phone": PHONE }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sms}");
    let sms = sms["factor"]["id"].as_str().unwrap().to_string();
    let code = app.next_code(PHONE).await;
    let (s, c) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{sms}/confirm"),
            &e.key,
            json!({ "code": code }),
        )
        .await;
    assert_eq!((s, &c["confirmed"]), (StatusCode::OK, &json!(true)), "{c}");
    let (s, change) = app
        .post(
            &format!("/v1/tenants/acme/users/alice/factors/{sms}/phone-change"),
            &e.key,
            json!({"new_phone": "+447700900456"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{change}");
    // Risk rules on (the login history fills) and an app password for a client without 2FA.
    set_policy(
        app,
        &e,
        required(json!({
            "methods": ["totp", "sms", "email", "webauthn"],
            "risk": {"mode": "adaptive"},
            "clients": [
                {"id": "imap", "supports_2fa": false, "app_passwords": true},
                {"id": "web", "supports_2fa": true}
            ]
        })),
    )
    .await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let (s, apw) = app
        .post(
            "/v1/tenants/acme/users/alice/app-passwords",
            &e.key,
            json!({"client_id": "imap", "code": code, "code_factor_id": e.factor_id}),
        )
        .await;
    assert_eq!(
        (s, &apw["verified"]),
        (StatusCode::OK, &json!(true)),
        "{apw}"
    );
    app.advance_secs(30);
    // The vault: a group, an entry in it, and a token for the group.
    let (s, g) = app
        .post(
            "/v1/tenants/acme/vault/groups",
            &e.key,
            json!({"name": "robots"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{g}");
    let (s, v) = app
        .post(
            "/v1/tenants/acme/vault/entries",
            &e.key,
            json!({"name": "gh", "owner": "robot", "owner_kind": "service",
                   "secret": "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .call(
            reqwest::Method::PUT,
            "/v1/tenants/acme/vault/entries/gh/group",
            Some(&e.key),
            Some(json!({"group": "robots"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, t) = app
        .post(
            "/v1/tenants/acme/vault/tokens",
            &e.key,
            json!({"label": "ci", "group": "robots"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
    // The OIDC provider: a client, its signing key, a spent hint, a hosted login, and a
    // code minted by a hosted second step (not exchanged).
    let (s, c) = app
        .post(
            "/v1/tenants/acme/oidc/clients",
            &e.key,
            json!({"client_app": "web", "redirect_uris": ["http://localhost:3000/cb"]}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let secret = c["client_secret"].as_str().unwrap();
    let (b, page) =
        oidc::start_hosted(app, "acme.web", secret, "http://localhost:3000/cb", &e).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let back = b.verify(&page, &code, false).await;
    assert!(back.param("code").is_some(), "{:?}", back.location);
    // A security-key ceremony: bob, who has no factor, opens the key page of the hosted
    // enrolment.
    app.user("acme", &e.key, "bob").await;
    let (_, doc) = app.get("/.well-known/openid-configuration", &e.key).await;
    let issuer = doc["issuer"].as_str().unwrap();
    let bob = oidc::signed_hint(issuer, "acme.web", secret, "bob", app.now_secs() + 60);
    let url = format!(
        "{}/oidc/authorize?response_type=code&scope=openid&client_id=acme.web&\
         redirect_uri=http%3A%2F%2Flocalhost%3A3000%2Fcb&state=st&nonce=nn&\
         code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&\
         login_hint_token={bob}",
        app.base
    );
    let b = oidc::Browser::new(app);
    assert_eq!(b.get(&url).await.location.as_deref(), Some("/oidc/enroll"));
    let keys = b.get("/oidc/enroll/key").await;
    assert!(
        keys.body.contains("data-webauthn=\"create\""),
        "{}",
        keys.body
    );
    app.advance_secs(30);
    let pending = login(app, &e, "alice", json!({})).await;
    assert_eq!(pending["decision"], "challenge", "{pending}");
    let done = login(app, &e, "alice", json!({})).await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    let r = step(app, &e, &done, &code, json!({"remember_device": true})).await;
    assert_eq!(r["verified"], true, "{r}");
    let device = r["device"]["token"].as_str().unwrap().to_string();
    rotate_master_key(app).await;
    (e, r["session"]["token"].clone(), device)
}

/// A master key rotation, beside the running node: the cluster's key state and the node's key
/// report get their rows, and the seeds move to a key from `<data_dir>/keys/`.
async fn rotate_master_key(app: &TestApp) {
    let data = app.data_path.clone();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_twofold"))
            .args(["key", "rotate", "--wait", "30", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success() && text(&out.stdout).contains("is now the active master key"),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_install_moves_to_postgres_with_nothing_lost() {
    let pg = PgDatabase::fresh().await;
    let dir = tempfile::tempdir().unwrap();
    let data: PathBuf = dir.path().join("data");
    let db = data.join("twofold.db");
    let app = spawn_app_at_with(data.clone(), |c| {
        c.key_heartbeat_ms = 200;
        // Security keys need an RP id: the page of a key ceremony is part of `fill`.
        c.webauthn.rp_id = Some("localhost".into());
        c.webauthn.origins = vec!["http://localhost:3000".into()];
    })
    .await;
    let (e, session, device) = fill(&app).await;

    // While a server has the database open, nothing is copied (it would go on writing).
    refused(&migrate_store(&data, &db, &pg.url).await, "in use");

    let now = app.clock.now_ms();
    drop(app);
    let mut out = migrate_store(&data, &db, &pg.url).await;
    for _ in 0..50 {
        if out.status.success() || !text(&out.stderr).contains("in use") {
            break;
        }
        // The stopped server lets go of its connections in a moment.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        out = migrate_store(&data, &db, &pg.url).await;
    }
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("users: 3/3 rows"),
        "progress per table: {stderr}"
    );

    // Every table came along, filled: a table a later migration adds must get rows in `fill`
    // so that its copy is tested too.
    let reported: BTreeMap<String, i64> = stdout
        .lines()
        .filter(|l| l.contains(" rows  sha256 "))
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            (w[0].to_string(), w[1].parse().unwrap())
        })
        .collect();
    let counts = sqlite_counts(&db);
    assert_eq!(reported, counts, "{stdout}");
    let empty: Vec<&String> = counts
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(t, _)| t)
        .collect();
    assert!(empty.is_empty(), "fill() leaves {empty:?} empty");

    // A second run into the now filled database is refused, and changes nothing.
    refused(
        &migrate_store(&data, &db, &pg.url).await,
        "already holds data",
    );

    // Counts and checksums computed afresh on both sides, after the commit.
    let compared = twofold_store::transfer::compare(&db, &pg.url)
        .await
        .unwrap();
    assert_eq!(compared.len(), counts.len());
    for c in &compared {
        assert_eq!(c.sqlite, c.postgres, "{}", c.table);
        assert_eq!(c.sqlite.0 as i64, counts[&c.table], "{}", c.table);
    }
    // Sealed seeds byte for byte.
    let sqlite_seeds: Vec<(String, Vec<u8>)> = rusqlite::Connection::open(&db)
        .unwrap()
        .prepare("SELECT id, sealed_secret FROM factors ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let client = pg.client().await;
    let pg_seeds: Vec<(String, Vec<u8>)> = client
        .query(
            "SELECT id, sealed_secret FROM factors ORDER BY id COLLATE \"C\"",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(sqlite_seeds.len(), 2);
    assert_eq!(pg_seeds, sqlite_seeds);

    // A server on PostgreSQL with the same keys: the next TOTP step verifies, the session and
    // the remembered device still work, and new rows get fresh ids.
    let url = pg.url.clone();
    let node = spawn_app_at_with(data.clone(), move |c| c.database_url = Some(url)).await;
    node.clock.set_ms(now);
    node.advance_secs(30);
    let code = node.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(node.verify(&e, &code).await.1, json!({"verified": true}));
    assert_eq!(node.verify(&e, &code).await.1, json!({"verified": false}));
    assert_eq!(introspect(&node, &e, &session).await["active"], true);
    let d = login(&node, &e, "alice", json!({"device_token": device})).await;
    assert_eq!(
        (d["decision"].as_str(), d["reason"].as_str()),
        (Some("allow"), Some("trusted_device")),
        "{d}"
    );
    node.user("acme", &e.key, "carol").await;
    let seq: (i64, i64) = client
        .query_one("SELECT count(*), count(DISTINCT seq) FROM sessions", &[])
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(
        seq.0, seq.1,
        "sessions made after the copy get new seq values"
    );
    drop(node);
}
