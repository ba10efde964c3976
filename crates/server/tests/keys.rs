//! Master key rotation with real processes: `twofold serve` nodes that reload their keyring
//! (on a rotation's request and on SIGHUP), and `twofold key rotate | retire | status` run
//! beside them while codes keep being verified.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::process::*;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use twofold_crypto::{KeyMaterial, Keyring};
use twofold_otp::uri::KeyUri;
use twofold_testkit::PgDatabase;

/// Waits out the last second of a 30 s step, so a code computed now is still of the same
/// step when the server checks it (a confirmation a step late would learn a drift).
fn settle() {
    while unix_secs() % 30 >= 29 {
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A command that must fail; returns its stderr.
fn refused(o: &Output) -> String {
    assert!(
        !o.status.success(),
        "expected a refusal\nstdout: {}\nstderr: {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    text(&o.stderr)
}

fn key_id_in(path: &Path) -> String {
    KeyMaterial::from_hex(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .id()
}

/// Copies a key file as an operator would: mode 0600, into a 0700 directory.
fn install_key(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let dir = to.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn sighup(node: &Server) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &node.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -HUP");
}

/// A TOTP user: its secret, and the last step used, so no code is ever replayed (a replay
/// would count as a failure and, five in a row, throttle the user).
#[derive(Clone)]
struct TotpUser {
    name: String,
    key: KeyUri,
    last_step: u64,
}

impl TotpUser {
    /// The current code, if this user has not used the current step yet.
    fn fresh_code(&mut self) -> Option<String> {
        let now = unix_secs();
        let step = now / 30;
        if step <= self.last_step {
            return None;
        }
        self.last_step = step;
        Some(twofold_otp::totp_at_time(
            &self.key.secret,
            now,
            &self.key.params(),
        ))
    }

    /// Verifies a fresh code on `http`: true when accepted.
    fn verify(&mut self, http: &Http, api_key: &str) -> Option<bool> {
        let code = self.fresh_code()?;
        let (status, body) = http.post(
            &format!("/v1/tenants/acme/users/{}/verify", self.name),
            api_key,
            json!({ "code": code }),
        );
        assert_eq!(status, 200, "{body}");
        Some(body["verified"] == true)
    }
}

/// Creates a user with an email (so changes queue notices) and a confirmed TOTP factor:
/// enrolled on one node, confirmed on the other with the previous step's code, which leaves
/// the current step free for a verification.
fn totp_user(enrol_on: &Http, confirm_on: &Http, api_key: &str, name: &str) -> TotpUser {
    let (s, body) = enrol_on.post(
        "/v1/tenants/acme/users",
        api_key,
        json!({"external_id": name, "email": format!("{name}@example.com")}),
    );
    assert_eq!(s, 201, "{body}");
    let (factor, key) = enrol(enrol_on, api_key, name);
    settle();
    let now = unix_secs();
    let code = twofold_otp::totp_at_time(&key.secret, now - 30, &key.params());
    let (s, body) = confirm_on.post(
        &format!("/v1/tenants/acme/users/{name}/factors/{factor}/confirm"),
        api_key,
        json!({ "code": code }),
    );
    assert_eq!((s, &body["confirmed"]), (200, &json!(true)), "{body}");
    TotpUser {
        name: name.into(),
        key,
        last_step: now / 30 - 1,
    }
}

/// Starts a TOTP enrolment; returns the factor id and its key.
fn enrol(http: &Http, api_key: &str, name: &str) -> (String, KeyUri) {
    let (s, body) = http.post(
        &format!("/v1/tenants/acme/users/{name}/factors/totp"),
        api_key,
        json!({}),
    );
    assert_eq!(s, 201, "{body}");
    (
        body["factor_id"].as_str().unwrap().to_string(),
        KeyUri::parse(body["otpauth_uri"].as_str().unwrap()).unwrap(),
    )
}

/// Verifies codes in the background, alternating nodes, one fresh user every `pace`, until
/// stopped; returns (node index, accepted) per verification.
struct Verifier {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(usize, bool)>>,
}

impl Verifier {
    fn start(addrs: Vec<String>, api_key: String, mut users: Vec<TotpUser>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let nodes: Vec<Http> = addrs.iter().map(|a| Http::new(a)).collect();
            let mut results = Vec::new();
            let mut next = 0usize;
            while !stopped.load(Ordering::Relaxed) {
                let node = results.len() % nodes.len();
                let fresh = (0..users.len()).find_map(|k| {
                    let i = (next + k) % users.len();
                    users[i].verify(&nodes[node], &api_key).map(|ok| (i, ok))
                });
                match fresh {
                    Some((i, ok)) => {
                        results.push((node, ok));
                        next = i + 1;
                        std::thread::sleep(Duration::from_millis(400));
                    }
                    None => std::thread::sleep(Duration::from_millis(200)),
                }
            }
            results
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<(usize, bool)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

/// The key id of every sealed value in the database, by column (read straight from the rows:
/// the blob header names its key; an undo record holds its seed in base64).
async fn blob_keys(db: &PgDatabase) -> BTreeMap<&'static str, Vec<String>> {
    let c = db.client().await;
    let mut out: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for (column, sql) in [
        (
            "factors",
            "SELECT sealed_secret FROM factors WHERE length(sealed_secret) > 0",
        ),
        (
            "outbox",
            "SELECT sealed_params FROM outbox WHERE sealed_params IS NOT NULL",
        ),
        ("webhooks", "SELECT sealed_secret FROM webhooks"),
    ] {
        for row in c.query(sql, &[]).await.unwrap() {
            let blob: Vec<u8> = row.get(0);
            let id = Keyring::key_id_of(&blob).unwrap().to_string();
            out.entry(column).or_default().push(id);
        }
    }
    for row in c.query("SELECT undo FROM revert_links", &[]).await.unwrap() {
        let undo: Value = serde_json::from_str(row.get::<_, &str>(0)).unwrap();
        if let Some(seed) = undo["factor"]["sealed_secret"].as_str() {
            let blob = base64::engine::general_purpose::STANDARD
                .decode(seed)
                .unwrap();
            let id = Keyring::key_id_of(&blob).unwrap().to_string();
            out.entry("revert_links").or_default().push(id);
        }
    }
    out
}

/// Every sealed value is under `id`, and every column has some.
fn all_under(blobs: &BTreeMap<&'static str, Vec<String>>, id: &str) {
    for column in ["factors", "outbox", "webhooks", "revert_links"] {
        let ids = blobs.get(column).cloned().unwrap_or_default();
        assert!(!ids.is_empty(), "no sealed value in {column}: {blobs:?}");
        assert!(
            ids.iter().all(|k| k == id),
            "{column} not all under {id}: {ids:?}"
        );
    }
}

async fn key_state(db: &PgDatabase) -> (Option<String>, Option<String>) {
    let c = db.client().await;
    match c
        .query_opt(
            "SELECT active_key_id, pending_key_id FROM sealing_keys",
            &[],
        )
        .await
        .unwrap()
    {
        Some(r) => (r.get(0), r.get(1)),
        None => (None, None),
    }
}

/// Waits until the node listening on `addr` reports exactly `want` as its keys and `sealing`
/// as the key it seals under.
async fn wait_for_report(db: &PgDatabase, addr: &str, want: &[&str], sealing: &str) {
    let c = db.client().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = None;
    while Instant::now() < deadline {
        let rows = c
            .query(
                "SELECT key_ids, sealing_key_id FROM node_keys WHERE node_id LIKE $1",
                &[&format!("%/{addr}/%")],
            )
            .await
            .unwrap();
        if let Some(r) = rows.first() {
            let (ids, s): (String, String) = (r.get(0), r.get(1));
            let mut want: Vec<&str> = want.to_vec();
            want.sort();
            if ids == want.join(",") && s == sealing {
                return;
            }
            last = Some((ids, s));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("node {addr} never reported {want:?} sealing under {sealing}: last {last:?}");
}

/// `twofold serve` that must refuse to start: its stderr.
fn serve_refused(data: &Path, env: &[(&str, &str)]) -> String {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_twofold"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .envs(env.iter().copied())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started without the active key");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    text(&out.stderr)
}

const USERS: usize = 24;

/// Two nodes on one PostgreSQL database, each with its own data directory (keys copied as
/// DEPLOYMENT.md says). Codes are verified on both all along, and must all be accepted.
#[test]
fn rotation_on_two_nodes_waits_for_both_reseals_everything_then_retires_the_old_key() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(PgDatabase::fresh());
    let root = tempfile::tempdir().unwrap();
    let (data_a, data_b): (PathBuf, PathBuf) = (root.path().join("a"), root.path().join("b"));
    let env: Vec<(&str, &str)> = vec![
        ("TWOFOLD_DATABASE_URL", &db.url),
        ("TWOFOLD_DATABASE_POOL_SIZE", "4"),
        ("TWOFOLD_KEY_HEARTBEAT_MS", "200"),
        // No cache: every verification unseals the seed as stored, with the keyring as it is.
        ("TWOFOLD_CACHE_TTL_MS", "0"),
        // An SMTP server that refuses: queued notices stay in the outbox, sealed.
        ("TWOFOLD_EMAIL_TRANSPORT", "smtp"),
        ("TWOFOLD_EMAIL_HOST", "127.0.0.1"),
        ("TWOFOLD_EMAIL_PORT", "1"),
        ("TWOFOLD_EMAIL_SECURITY", "none"),
        ("TWOFOLD_EMAIL_FROM_ADDRESS", "twofold@example.com"),
    ];
    let a = serve_with_env(root.path(), &["--data-dir", data_a.to_str().unwrap()], &env);
    for k in ["master.key", "hashing.key"] {
        install_key(&data_a.join(k), &data_b.join(k));
    }
    let b = serve_with_env(root.path(), &["--data-dir", data_b.to_str().unwrap()], &env);
    let cli = |args: &[&str]| twofold_with_env(&data_a, args, &env);
    let old = key_id_in(&data_a.join("master.key"));
    let old_key = std::fs::read_to_string(data_a.join("master.key")).unwrap();
    assert_eq!(a.started["fields"]["sealing_key"], json!(old));

    // Sealed values of every kind: seeds, queued notices, a webhook secret, and the seed a
    // "this wasn't me" link keeps of a removed factor.
    let api_key = token(&stdout(&cli(&[
        "tenant", "create", "--slug", "acme", "--name", "Acme",
    ])));
    let (ha, hb) = (Http::new(&a.addr), Http::new(&b.addr));
    let (s, body) = ha.post(
        "/v1/tenants/acme/webhooks",
        &api_key,
        json!({"url": "http://127.0.0.1:1/hook", "events": ["factor.enrolled", "factor.removed"]}),
    );
    assert_eq!(s, 201, "{body}");
    let mut users: Vec<TotpUser> = (0..USERS)
        .map(|i| {
            let (on, other) = if i % 2 == 0 { (&ha, &hb) } else { (&hb, &ha) };
            totp_user(on, other, &api_key, &format!("user{i}"))
        })
        .collect();
    // A second factor, confirmed with the previous step's code and removed with the current
    // one (removing needs a fresh code).
    let (second, key2) = enrol(&ha, &api_key, "user0");
    settle();
    let now = unix_secs();
    let code_at = |t: u64| twofold_otp::totp_at_time(&key2.secret, t, &key2.params());
    let (s, body) = hb.post(
        &format!("/v1/tenants/acme/users/user0/factors/{second}/confirm"),
        &api_key,
        json!({ "code": code_at(now - 30) }),
    );
    assert_eq!(body["confirmed"], true, "{s} {body}");
    let (s, body) = ha.post(
        &format!("/v1/tenants/acme/users/user0/factors/{second}/disable"),
        &api_key,
        json!({ "code": code_at(now) }),
    );
    assert_eq!((s, &body["disabled"]), (200, &json!(true)), "{body}");
    all_under(&rt.block_on(blob_keys(&db)), &old);

    // Users kept apart from the background verifier, for checks at chosen moments.
    let mut checks: Vec<TotpUser> = users.split_off(USERS - 6);
    let verifier = Verifier::start(vec![a.addr.clone(), b.addr.clone()], api_key.clone(), users);

    // 1. Node B never gets the new key: rotate waits, gives up naming B, and changes nothing.
    let out = cli(&["key", "rotate", "--wait", "3", "--stale-after", "10"]);
    let err = refused(&out);
    let said = text(&out.stdout);
    let new = said
        .split_whitespace()
        .skip_while(|w| *w != "key")
        .nth(1)
        .unwrap()
        .to_string();
    let new_file = data_a.join("keys").join(format!("{new}.key"));
    assert_eq!(key_id_in(&new_file), new, "{said}");
    let gave_up = err.lines().last().unwrap();
    assert!(
        gave_up.contains("do not hold key")
            && gave_up.contains(&format!("/{}/", b.addr))
            && !gave_up.contains(&format!("/{}/", a.addr))
            && gave_up.contains("Nothing changed"),
        "{err}"
    );
    assert!(err.contains("waiting for 1 of 2 live node(s)"), "{err}");
    assert_eq!(rt.block_on(key_state(&db)), (None, None));
    all_under(&rt.block_on(blob_keys(&db)), &old);
    // Node A read its own keys directory while the rotation waited: it holds the new key but
    // still seals under the old one.
    rt.block_on(wait_for_report(&db, &a.addr, &[&old, &new], &old));
    assert!(checks.pop().unwrap().verify(&hb, &api_key).unwrap());

    // 2. The key reaches B, which picks it up on SIGHUP.
    install_key(&new_file, &data_b.join("keys").join(format!("{new}.key")));
    sighup(&b);
    rt.block_on(wait_for_report(&db, &b.addr, &[&old, &new], &old));

    // 3. Now the rotation goes through: both hold the key, it becomes active, everything is
    // re-sealed, and the old key is free.
    let out = cli(&["key", "rotate", "--key", &new, "--stale-after", "10"]);
    let said = stdout(&out);
    let err = text(&out.stderr);
    assert!(
        said.contains(&format!(
            "key {new} is now the active master key (was {old})"
        )),
        "{said}"
    );
    assert!(err.contains("all 2 live node(s) hold key"), "{err}");
    assert!(err.contains("all 2 live node(s) seal under key"), "{err}");
    assert!(
        err.contains("re-sealing (pass 1) factors.sealed_secret") && err.contains("done"),
        "{err}"
    );
    assert!(
        said.contains(&format!("nothing is sealed under {old}: retire it")),
        "{said}"
    );
    assert_eq!(rt.block_on(key_state(&db)), (Some(new.clone()), None));
    all_under(&rt.block_on(blob_keys(&db)), &new);
    rt.block_on(wait_for_report(&db, &a.addr, &[&old, &new], &new));
    rt.block_on(wait_for_report(&db, &b.addr, &[&old, &new], &new));
    assert!(checks.pop().unwrap().verify(&ha, &api_key).unwrap());
    assert!(checks.pop().unwrap().verify(&hb, &api_key).unwrap());
    // New secrets on either node are sealed under the new key.
    totp_user(&hb, &ha, &api_key, "late");
    let blobs = rt.block_on(blob_keys(&db));
    assert!(blobs["factors"].iter().all(|k| *k == new), "{blobs:?}");

    // 4. Retiring: never the active key, never a key something is still sealed under.
    let err = refused(&cli(&["key", "retire", &new]));
    assert!(err.contains("is the active master key"), "{err}");
    // A blob under the old key that the rotation did not see (as if restored from elsewhere).
    let stray = Keyring::new(KeyMaterial::from_hex(&old_key).unwrap());
    rt.block_on(async {
        let c = db.client().await;
        let id: String = c
            .query_one("SELECT id FROM webhooks", &[])
            .await
            .unwrap()
            .get(0);
        let blob = stray.seal(b"whsec_x", &format!("webhook:{id}")).unwrap();
        c.execute(
            "UPDATE webhooks SET sealed_secret = $1 WHERE id = $2",
            &[&blob, &id],
        )
        .await
        .unwrap();
    });
    let err = refused(&cli(&["key", "retire", &old]));
    assert!(
        err.contains(&format!("1 value(s) are still sealed under key {old}"))
            && err.contains("webhooks.sealed_secret 1")
            && err.contains(&format!("twofold key rotate --key {new}")),
        "{err}"
    );
    assert!(data_a.join("master.key").exists());
    let said = stdout(&cli(&[
        "key",
        "rotate",
        "--key",
        &new,
        "--stale-after",
        "10",
    ]));
    assert!(
        said.contains("already the active master key")
            && said.contains(&format!("nothing is sealed under {old}")),
        "{said}"
    );
    // A live node that still seals under the old key (stuck, say) keeps it from retiring.
    let stuck = rt.block_on(async {
        let c = db.client().await;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        c.execute(
            "INSERT INTO node_keys VALUES ('stuck/10.0.0.9:8080/1', $1, $1, $2, $2)",
            &[&old, &now],
        )
        .await
        .unwrap();
        c
    });
    let err = refused(&cli(&["key", "retire", &old]));
    assert!(
        err.contains(&format!("1 live node(s) still seal under key {old}"))
            && err.contains("stuck/10.0.0.9:8080/1"),
        "{err}"
    );
    rt.block_on(stuck.execute("DELETE FROM node_keys WHERE node_id LIKE 'stuck/%'", &[]))
        .unwrap();
    let said = stdout(&cli(&["key", "retire", &old]));
    assert!(
        said.contains(&format!("retired master key {old}")),
        "{said}"
    );
    assert!(!data_a.join("master.key").exists());
    all_under(&rt.block_on(blob_keys(&db)), &new);

    // 5. The nodes drop the old key once its file is gone and they get SIGHUP; codes still
    // verify.
    std::fs::remove_file(data_b.join("master.key")).unwrap();
    sighup(&a);
    sighup(&b);
    rt.block_on(wait_for_report(&db, &a.addr, &[&new], &new));
    rt.block_on(wait_for_report(&db, &b.addr, &[&new], &new));
    assert!(checks.pop().unwrap().verify(&hb, &api_key).unwrap());
    assert!(checks.pop().unwrap().verify(&ha, &api_key).unwrap());
    let status = stdout(&cli(&["key", "status", "--count"]));
    assert!(
        status.contains(&format!("active key: {new}")) && status.contains("never rotated"),
        "{status}"
    );
    assert!(!status.contains(&old), "{status}");

    let results = verifier.finish();
    let accepted = results.iter().filter(|(_, ok)| *ok).count();
    assert_eq!(
        accepted,
        results.len(),
        "every code was accepted: {results:?}"
    );
    assert!(
        results.iter().any(|(n, _)| *n == 0) && results.iter().any(|(n, _)| *n == 1),
        "both nodes verified: {results:?}"
    );

    // 6. A node without the active key refuses to start and says what to copy; one that has
    // only the new key (master.key retired) starts and serves.
    let stale_dir = root.path().join("c");
    std::fs::create_dir_all(&stale_dir).unwrap();
    std::fs::write(stale_dir.join("master.key"), &old_key).unwrap();
    install_key(&data_b.join("hashing.key"), &stale_dir.join("hashing.key"));
    {
        use std::os::unix::fs::PermissionsExt;
        let p = stale_dir.join("master.key");
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let err = serve_refused(&stale_dir, &env);
    assert!(
        err.contains(&format!(
            "seals under master key {new}, which this keyring lacks"
        )) && err.contains(&format!("{new}.key")),
        "{err}"
    );
    drop(b);
    let b = serve_with_env(root.path(), &["--data-dir", data_b.to_str().unwrap()], &env);
    assert_eq!(b.started["fields"]["sealing_key"], json!(new));
    let hb = Http::new(&b.addr);
    assert!(checks.pop().unwrap().verify(&hb, &api_key).unwrap());
    drop(a);
}

/// One node on the embedded SQLite database, the CLI on the same data directory: the node
/// finds the rotation's new key in its own keys directory by itself, so `key rotate` needs no
/// copying and no signal.
#[test]
fn a_single_sqlite_node_rotates_without_any_copying() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    let env = [("TWOFOLD_KEY_HEARTBEAT_MS", "200")];
    let node = serve_with_env(root.path(), &["--data-dir", data.to_str().unwrap()], &env);
    let cli = |args: &[&str]| twofold_with_env(&data, args, &env);
    let api_key = token(&stdout(&cli(&[
        "tenant", "create", "--slug", "acme", "--name", "Acme",
    ])));
    let http = Http::new(&node.addr);
    let mut alice = totp_user(&http, &http, &api_key, "alice");
    let old = key_id_in(&data.join("master.key"));

    let said = stdout(&cli(&["key", "rotate", "--wait", "20"]));
    let new = key_id_in(
        &std::fs::read_dir(data.join("keys"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path(),
    );
    assert!(
        said.contains(&format!(
            "key {new} is now the active master key (was {old})"
        )) && said.contains(&format!("nothing is sealed under {old}")),
        "{said}"
    );
    let c = rusqlite::Connection::open(data.join("twofold.db")).unwrap();
    let seeds: Vec<Vec<u8>> = c
        .prepare("SELECT sealed_secret FROM factors")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!seeds.is_empty());
    assert!(seeds
        .iter()
        .all(|s| Keyring::key_id_of(s) == Some(new.as_str())));
    assert!(alice.verify(&http, &api_key).unwrap());
    stdout(&cli(&["key", "retire", &old]));
    assert!(!data.join("master.key").exists());
    // Restarted with the new key alone (master.key retired), it still verifies codes.
    drop(node);
    let node = serve_with_env(root.path(), &["--data-dir", data.to_str().unwrap()], &env);
    assert!(!data.join("master.key").exists(), "no new key was made");
    assert_eq!(node.started["fields"]["sealing_key"], json!(new));
    let http = Http::new(&node.addr);
    let mut bob = totp_user(&http, &http, &api_key, "bob");
    assert!(bob.verify(&http, &api_key).unwrap());
}
