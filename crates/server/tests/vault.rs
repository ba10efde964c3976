//! The authenticator vault over HTTP: codes equal oathtool's, QR images made by qrencode
//! import, bad images are refused with stable codes, tokens are scoped, revocable and
//! tenant-bound, HOTP counters never repeat, codes are audited and rate-limited, and the
//! secret comes back only through an export confirmed by the admin's emailed code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::{err, setup};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

fn oathtool(args: &[&str]) -> String {
    let out = std::process::Command::new("oathtool")
        .args(args)
        .output()
        .expect("oathtool is installed by scripts/test.sh");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

async fn add(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    app.post("/v1/tenants/acme/vault/entries", key, body).await
}

async fn code(app: &TestApp, key: &str, name: &str) -> (StatusCode, Value) {
    app.get(&format!("/v1/tenants/acme/vault/entries/{name}/code"), key)
        .await
}

async fn token_code(app: &TestApp, token: &str, name: &str) -> (StatusCode, Value) {
    app.get(&format!("/v1/vault/code?entry={name}"), token)
        .await
}

async fn upload(app: &TestApp, key: &str, query: &str, bytes: Vec<u8>) -> (StatusCode, Value) {
    let resp = app
        .client
        .post(format!(
            "{}/v1/tenants/acme/vault/entries/qr?{query}",
            app.base
        ))
        .bearer_auth(key)
        .header("content-type", "image/png")
        .body(bytes)
        .send()
        .await
        .unwrap();
    split(resp).await
}

fn qrencode(text: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("qr.png");
    let out = std::process::Command::new("qrencode")
        .args(extra)
        .arg("-o")
        .arg(&path)
        .arg(text)
        .output()
        .expect("qrencode is installed by scripts/test.sh");
    assert!(out.status.success(), "{out:?}");
    std::fs::read(&path).unwrap()
}

#[tokio::test]
async fn codes_equal_oathtool_for_every_algorithm_digits_and_period() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    let mut n = 0;
    for alg in ["SHA1", "SHA256", "SHA512"] {
        for digits in [6u8, 7, 8] {
            for period in [30u32, 60] {
                n += 1;
                let name = format!("e{n}");
                let (s, body) = add(
                    &app,
                    &key,
                    json!({"name": name, "owner": "robot", "owner_kind": "service",
                           "secret": SECRET, "algorithm": alg, "digits": digits,
                           "period": period}),
                )
                .await;
                assert_eq!(s, StatusCode::CREATED, "{body}");
                assert!(body.get("secret").is_none(), "never returned: {body}");
                app.advance_secs(7);
                let (s, c) = code(&app, &key, &name).await;
                assert_eq!(s, StatusCode::OK, "{c}");
                let now = app.now_secs();
                let want = oathtool(&[
                    &format!("--totp={alg}"),
                    "-d",
                    &digits.to_string(),
                    "-s",
                    &period.to_string(),
                    "-N",
                    &format!("@{now}"),
                    "-b",
                    SECRET,
                ]);
                assert_eq!(c["code"], want, "{alg}/{digits}/{period}");
                let left = period as u64 - now % period as u64;
                assert_eq!(c["valid_for_secs"], left);
                assert_eq!(c["entry"], name);
            }
        }
    }
    // The same through an otpauth:// URI, and an HOTP entry against oathtool --hotp.
    let uri = format!("otpauth://totp/GitHub:robot?secret={SECRET}&issuer=GitHub&algorithm=SHA512&digits=8&period=60");
    let (s, body) = add(
        &app,
        &key,
        json!({"name": "gh", "owner": "robot", "owner_kind": "service", "uri": uri}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["issuer"].clone(), body["digits"].clone()),
        (json!("GitHub"), json!(8))
    );
    let (_, c) = code(&app, &key, "gh").await;
    let now = app.now_secs();
    let want = oathtool(&[
        "--totp=SHA512",
        "-d",
        "8",
        "-s",
        "60",
        "-N",
        &format!("@{now}"),
        "-b",
        SECRET,
    ]);
    assert_eq!(c["code"], want);
    let (s, _) = add(&app, &key, json!({"name": "bank", "owner": "robot", "owner_kind": "service", "secret": SECRET, "type": "hotp", "counter": 5})).await;
    assert_eq!(s, StatusCode::CREATED);
    for counter in 5..8 {
        let (_, c) = code(&app, &key, "bank").await;
        assert_eq!(c["counter"], counter);
        assert_eq!(c["valid_for_secs"], Value::Null);
        assert_eq!(
            c["code"],
            oathtool(&["--hotp", "-c", &counter.to_string(), "-b", SECRET])
        );
    }
}

#[tokio::test]
async fn bad_entries_are_refused_with_a_reason() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    for (body, field) in [
        (
            json!({"name": "x", "owner": "r", "owner_kind": "service", "uri": "https://example.com"}),
            "uri",
        ),
        (
            json!({"name": "x", "owner": "r", "owner_kind": "service", "secret": "not base32!"}),
            "secret",
        ),
        (
            json!({"name": "x", "owner": "r", "owner_kind": "service", "secret": "GEZDGNBV"}),
            "secret",
        ),
        (
            json!({"name": "x", "owner": "r", "owner_kind": "service", "secret": SECRET, "digits": 9}),
            "parameters",
        ),
        (
            json!({"name": "x", "owner": "r", "owner_kind": "service", "secret": SECRET, "period": 0}),
            "parameters",
        ),
        (
            json!({"name": "no spaces", "owner": "r", "owner_kind": "service", "secret": SECRET}),
            "name",
        ),
    ] {
        let (s, b) = add(&app, &key, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    // A user owner must exist in the tenant.
    let (s, b) = add(
        &app,
        &key,
        json!({"name": "x", "owner": "ghost", "secret": SECRET}),
    )
    .await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::NOT_FOUND, Some("user_not_found"))
    );
    app.user("acme", &key, "alice").await;
    let (s, _) = add(
        &app,
        &key,
        json!({"name": "x", "owner": "alice", "secret": SECRET}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = add(
        &app,
        &key,
        json!({"name": "x", "owner": "alice", "secret": SECRET}),
    )
    .await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::CONFLICT, Some("vault_entry_exists"))
    );
}

#[tokio::test]
async fn qr_images_made_by_qrencode_import_and_bad_images_are_refused() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    let uri =
        format!("otpauth://totp/Acme:ci?secret={SECRET}&issuer=Acme&algorithm=SHA256&digits=7");
    let png = qrencode(&uri, &["-s", "6"]);
    let (s, body) = upload(
        &app,
        &key,
        "name=ci&owner=robot&owner_kind=service",
        png.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["algorithm"].clone(), body["digits"].clone()),
        (json!("SHA256"), json!(7))
    );
    let (_, c) = code(&app, &key, "ci").await;
    let now = app.now_secs();
    assert_eq!(
        c["code"],
        oathtool(&[
            "--totp=SHA256",
            "-d",
            "7",
            "-N",
            &format!("@{now}"),
            "-b",
            SECRET
        ])
    );

    // The same picture as a JPEG.
    let img = image::load_from_memory(&png).unwrap();
    let mut jpeg = Vec::new();
    img.to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let (s, body) = upload(
        &app,
        &key,
        "name=ci-jpeg&owner=robot&owner_kind=service",
        jpeg,
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{body}");

    let q = "name=bad&owner=robot&owner_kind=service";
    // Not an image.
    let (s, b) = upload(&app, &key, q, b"hello, world".to_vec()).await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::BAD_REQUEST, Some("image_unsupported"))
    );
    // A truncated PNG.
    let (s, b) = upload(&app, &key, q, png[..png.len() / 2].to_vec()).await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::BAD_REQUEST, Some("image_malformed"))
    );
    // A picture without a QR code.
    let blank = image::GrayImage::from_pixel(200, 200, image::Luma([255u8]));
    let mut blank_png = Vec::new();
    blank
        .write_to(
            &mut std::io::Cursor::new(&mut blank_png),
            image::ImageFormat::Png,
        )
        .unwrap();
    let (s, b) = upload(&app, &key, q, blank_png).await;
    assert_eq!((s, err(&b)), (StatusCode::BAD_REQUEST, Some("image_no_qr")));
    // A QR code holding something else than an otpauth:// URI.
    let (s, b) = upload(&app, &key, q, qrencode("https://example.com", &[])).await;
    assert_eq!(
        (s, b["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("image"))
    );
    // A small file that decodes to a huge picture, and a body over the cap.
    let huge = qrencode(&uri, &["-s", "100"]);
    assert!(huge.len() < 200_000, "{}", huge.len());
    let (s, b) = upload(&app, &key, q, huge).await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("image_too_large"))
    );
    let (s, b) = upload(&app, &key, q, vec![0u8; 3 * 1024 * 1024]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let (_, list) = app.get("/v1/tenants/acme/vault/entries", &key).await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 2, "{list}");
}

async fn token(app: &TestApp, key: &str, scope: Value) -> (String, String) {
    let (s, b) = app.post("/v1/tenants/acme/vault/tokens", key, scope).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let t = b["token"].as_str().unwrap().to_string();
    assert!(t.starts_with("tfv_"));
    (b["id"].as_str().unwrap().to_string(), t)
}

#[tokio::test]
async fn tokens_are_scoped_revocable_audited_and_bound_to_their_tenant() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    let other_key = app.tenant("other").await;
    for name in ["a", "b", "c"] {
        let (s, _) = add(
            &app,
            &key,
            json!({"name": name, "owner": "robot", "owner_kind": "service", "secret": SECRET}),
        )
        .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, _) = app
        .post(
            "/v1/tenants/acme/vault/groups",
            &key,
            json!({"name": "robots"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = app
        .call(
            Method::PUT,
            "/v1/tenants/acme/vault/entries/b/group",
            Some(&key),
            Some(json!({"group": "robots"})),
        )
        .await;
    assert_eq!((s, b["group"].clone()), (StatusCode::OK, json!("robots")));

    let (a_id, a_token) = token(&app, &key, json!({"label": "ci", "entry": "a"})).await;
    let (_, g_token) = token(&app, &key, json!({"label": "grp", "group": "robots"})).await;
    let (s, c) = token_code(&app, &a_token, "a").await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["code"].as_str().unwrap().len(), 6);
    // Out of scope looks like a missing entry.
    for (t, name) in [
        (&a_token, "b"),
        (&a_token, "nope"),
        (&g_token, "a"),
        (&g_token, "c"),
    ] {
        let (s, b) = token_code(&app, t, name).await;
        assert_eq!(
            (s, err(&b)),
            (StatusCode::NOT_FOUND, Some("vault_entry_not_found")),
            "{name}"
        );
    }
    let (s, _) = token_code(&app, &g_token, "b").await;
    assert_eq!(s, StatusCode::OK);
    // A token is not an API key, and an API key or garbage is not a token.
    let (s, _) = app.get("/v1/tenants/acme/vault/entries", &a_token).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for bad in [key.as_str(), "tfv_forged", "garbage"] {
        let (s, _) = token_code(&app, bad, "a").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{bad}");
    }

    // Another tenant with an entry of the same name: acme's token still reads only acme's.
    let (s, _) = app
        .post("/v1/tenants/other/vault/entries", &other_key, json!({"name": "a", "owner": "r", "owner_kind": "service", "secret": "JBSWY3DPEHPK3PXPJBSWY3DP"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, mine) = code(&app, &key, "a").await;
    let (_, via_token) = token_code(&app, &a_token, "a").await;
    assert_eq!(mine["code"], via_token["code"]);
    // Cross-tenant ids and names answer 404.
    let (s, _) = app.get("/v1/tenants/acme/vault/entries", &other_key).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .get("/v1/tenants/acme/vault/entries/a/code", &other_key)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/other/vault/tokens/{a_id}"),
            Some(&other_key),
            None,
        )
        .await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::NOT_FOUND, Some("vault_token_not_found"))
    );

    // Every code is audited with the token's id and the caller's address.
    let audit = app.audit_of("acme", &key, "action=vault.code").await;
    let by_token: Vec<_> = audit
        .iter()
        .filter(|e| e["actor"] == format!("vaulttoken:{a_id}"))
        .collect();
    assert_eq!(by_token.len(), 2, "{audit:?}");
    assert_eq!(by_token[0]["ip"], "127.0.0.1");
    assert_eq!(by_token[0]["reason"], "a");

    // Listed, then revoked: it stops working at once.
    let (_, list) = app.get("/v1/tenants/acme/vault/tokens", &key).await;
    assert_eq!(list["tokens"].as_array().unwrap().len(), 2);
    assert!(
        list.to_string().find("tfv_").is_none(),
        "never the token: {list}"
    );
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/vault/tokens/{a_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = token_code(&app, &a_token, "a").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/v1/tenants/acme/vault/tokens/{a_id}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn codes_are_rate_limited_per_token_and_parallel_hotp_codes_differ() {
    let app = spawn_app().await;
    let key = app.tenant("acme").await;
    let (s, _) = add(&app, &key, json!({"name": "bank", "owner": "robot", "owner_kind": "service", "secret": SECRET, "type": "hotp"})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (_, t) = token(&app, &key, json!({"label": "ci", "entry": "bank"})).await;
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let client = app.client.clone();
        let url = format!("{}/v1/vault/code?entry=bank", app.base);
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            split(client.get(url).bearer_auth(t).send().await.unwrap()).await
        }));
    }
    let mut counters = Vec::new();
    for task in tasks {
        let (s, c) = task.await.unwrap();
        assert_eq!(s, StatusCode::OK, "{c}");
        let n = c["counter"].as_i64().unwrap();
        assert_eq!(
            c["code"],
            oathtool(&["--hotp", "-c", &n.to_string(), "-b", SECRET])
        );
        counters.push(n);
    }
    counters.sort();
    assert_eq!(counters, (0..10).collect::<Vec<i64>>());
    // 60 a minute per caller: 50 more pass, the next is refused, and a minute later it works.
    for _ in 0..50 {
        let (s, _) = token_code(&app, &t, "bank").await;
        assert_eq!(s, StatusCode::OK);
    }
    let (s, b) = token_code(&app, &t, "bank").await;
    assert_eq!(
        (s, err(&b)),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    let denied = app.audit_of("acme", &key, "action=vault.code").await;
    assert_eq!(denied[0]["outcome"], "denied");
    app.advance_secs(60);
    let (s, c) = token_code(&app, &t, "bank").await;
    assert_eq!((s, c["counter"].clone()), (StatusCode::OK, json!(60)));
}

#[tokio::test]
async fn export_needs_the_code_emailed_to_the_admin() {
    let app = spawn_app().await;
    let _e = setup(&app).await;
    let key = app.tenant("other").await;
    let (s, b) = app
        .post(
            "/v1/tenants/acme/vault/entries",
            &app.operator_key,
            json!({"name": "gh", "owner": "boss", "secret": SECRET, "issuer": "GitHub"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let path = "/v1/tenants/acme/vault/entries/gh/export";
    let op = app.operator_key.clone();
    // Only an admin of the tenant with an address receives the code.
    let (s, _) = app.post(path, &op, json!({"admin": "alice"})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Another tenant's key sees nothing.
    let (s, _) = app.post(path, &key, json!({"admin": "boss"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, r) = app.post(path, &op, json!({"admin": "boss"})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    let code = app.next_code("boss@example.com").await;
    let confirm = format!("{path}/confirm");
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (s, b) = app
        .post(&confirm, &op, json!({"admin": "boss", "code": wrong}))
        .await;
    assert_eq!(
        (s, b["exported"].clone(), b["secret"].clone()),
        (StatusCode::OK, json!(false), Value::Null)
    );
    let (s, b) = app
        .post(&confirm, &op, json!({"admin": "boss", "code": code}))
        .await;
    assert_eq!(
        (s, b["exported"].clone()),
        (StatusCode::OK, json!(true)),
        "{b}"
    );
    assert_eq!(b["secret"], SECRET);
    let uri = b["otpauth_uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/GitHub:gh?") && uri.contains(SECRET),
        "{uri}"
    );
    // Used once.
    let (_, b) = app
        .post(&confirm, &op, json!({"admin": "boss", "code": code}))
        .await;
    assert_eq!(b["exported"], false);
    let audit = app
        .audit_of("acme", &op, "action=vault.export.confirm")
        .await;
    assert_eq!(audit.len(), 3, "{audit:?}");
}

/// `[vault]` limits come from the config: per caller over all entries, and per entry over all
/// callers, each refusing the code past its cap.
#[tokio::test]
async fn the_configured_limits_cap_codes_per_caller_and_per_entry() {
    let app = spawn_app_with(|c| {
        c.vault.per_caller_per_minute = 3;
        c.vault.per_entry_per_minute = 4;
    })
    .await;
    let key = app.tenant("acme").await;
    for name in ["bank", "shop"] {
        let body =
            json!({"name": name, "owner": "robot", "owner_kind": "service", "secret": SECRET});
        let (s, b) = add(&app, &key, body).await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    let (_, first) = token(&app, &key, json!({"label": "a", "entry": "bank"})).await;
    let (_, second) = token(&app, &key, json!({"label": "b", "entry": "bank"})).await;
    let limited = (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"));
    for _ in 0..3 {
        assert_eq!(token_code(&app, &first, "bank").await.0, StatusCode::OK);
    }
    let (s, b) = token_code(&app, &first, "bank").await;
    assert_eq!((s, err(&b)), limited, "the fourth code for one caller");
    // Another caller still gets one: the entry's own cap (4) is reached only then.
    assert_eq!(token_code(&app, &second, "bank").await.0, StatusCode::OK);
    let (s, b) = token_code(&app, &second, "bank").await;
    assert_eq!((s, err(&b)), limited, "the fifth code for one entry");
    // The tenant's API key is another caller, and "shop" another entry with room left.
    let (s, c) = app
        .get("/v1/tenants/acme/vault/entries/shop/code", &key)
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    app.advance_secs(60);
    assert_eq!(token_code(&app, &first, "bank").await.0, StatusCode::OK);
}
