//! Twofold on PostgreSQL, and several nodes on one database: every guarantee a single node
//! gives (a code accepted once, attempt limits, a login finished once, each message sent once)
//! must hold when the requests of one user are spread over nodes by a load balancer.
//!
//! Each test gets a fresh database from the test kit ([`PgDatabase`]); without a reachable
//! PostgreSQL server they fail and say how to get one (never skip).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::logins::*;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::HashSet;
use twofold_core::ports::Clock;
use twofold_core::throttle::BACKOFF_AFTER;
use twofold_crypto::KeyMaterial;
use twofold_testkit::PgDatabase;

/// Servers sharing one PostgreSQL database, as nodes behind a load balancer would.
struct Cluster {
    /// Declared before the database so they stop before it is dropped.
    nodes: Vec<TestApp>,
    db: PgDatabase,
}

/// `n` nodes on a fresh database. Each has a data directory of its own, so the keys every node
/// must share come from the config, as in a real deployment. Email goes to the first node's
/// development outbox (its helpers read codes whichever node sent them); SMS stays in each
/// node's own, so a test can see which node delivered a message and that none did it twice.
async fn cluster(n: usize) -> Cluster {
    let db = PgDatabase::fresh().await;
    let (master, hashing) = (
        KeyMaterial::generate().to_hex(),
        KeyMaterial::generate().to_hex(),
    );
    let mut nodes: Vec<TestApp> = Vec::new();
    for _ in 0..n {
        let email_dir = nodes.first().map(|a| a.outbox_dir().join("email"));
        nodes.push(
            spawn_app_with(|c| {
                c.database_url = Some(db.url.clone());
                // Tests run two at a time, three nodes each: stay far below max_connections.
                c.database_pool_size = 6;
                c.master_key = Some(master.clone());
                c.hashing_key = Some(hashing.clone());
                c.email.dev_dir = email_dir;
            })
            .await,
        );
    }
    Cluster { nodes, db }
}

impl Cluster {
    /// Every node's clock set to the first node's (each `TestApp` has its own `ManualClock`).
    fn sync_clocks(&self) {
        let now = self.nodes[0].clock.now_ms();
        for node in &self.nodes[1..] {
            node.clock.set_ms(now);
        }
    }

    fn advance_secs(&self, s: i64) {
        for node in &self.nodes {
            node.advance_secs(s);
        }
    }

    /// Sends one verification per code at once, round-robin over the nodes; returns how many
    /// answered `verified: true` (every answer must be a 200).
    async fn verify_in_parallel(&self, e: &Enrolled, codes: Vec<String>) -> usize {
        let path = format!("/v1/tenants/{}/users/{}/verify", e.tenant, e.user);
        let mut tasks = Vec::new();
        for (i, code) in codes.into_iter().enumerate() {
            let node = &self.nodes[i % self.nodes.len()];
            let request = node
                .client
                .post(format!("{}{path}", node.base))
                .bearer_auth(&e.key)
                .json(&json!({ "code": code }));
            tasks.push(tokio::spawn(async move {
                let (s, body) = split(request.send().await.unwrap()).await;
                assert_eq!(s, StatusCode::OK, "{body}");
                body["verified"].as_bool().unwrap()
            }));
        }
        let mut accepted = 0;
        for t in tasks {
            accepted += usize::from(t.await.unwrap());
        }
        accepted
    }
}

/// A code that none of the steps near now accepts, drift or not.
fn a_wrong_code(app: &TestApp, e: &Enrolled) -> String {
    let near: HashSet<String> = (-3..=3)
        .map(|k| app.code_at_offset(&e.secret, &e.params, k))
        .collect();
    (0..)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

#[tokio::test]
async fn enrol_confirm_verify_and_replay_on_postgres() {
    let c = cluster(1).await;
    let app = &c.nodes[0];
    let e = app.enrolled("acme").await;
    let code = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(app.verify(&e, &code).await.1, json!({"verified": true}));
    assert_eq!(app.verify(&e, &code).await.1, json!({"verified": false}));
    let reasons = app.audit_outcomes(&e, "action=totp.verify").await;
    assert_eq!(
        reasons,
        vec![json!(["denied", "replayed"]), json!(["ok", null])]
    );
    assert!(
        !app.data_path.join("twofold.db").exists(),
        "with database_url nothing is stored in SQLite"
    );
}

#[tokio::test]
async fn a_login_started_on_one_node_completes_on_another_once() {
    let c = cluster(3).await;
    let (a, b, n3) = (&c.nodes[0], &c.nodes[1], &c.nodes[2]);
    let e = setup(a).await;
    set_policy(a, &e, required(json!({}))).await;
    c.sync_clocks();

    let d = login(a, &e, "alice", json!({})).await;
    assert_eq!(d["decision"], "challenge", "{d}");
    let code = b.code_at_offset(&e.secret, &e.params, 0);
    let r = step(b, &e, &d, &code, json!({})).await;
    assert_eq!(r["verified"], true, "{r}");
    let session = r["session"]["token"].clone();
    let s = introspect(n3, &e, &session).await;
    assert_eq!(
        (s["active"].as_bool(), s["session"]["user"].as_str()),
        (Some(true), Some("alice"))
    );

    // The login is finished everywhere: on a third node its token is dead, even with a fresh
    // code, and the code it used is spent for a new login too.
    c.advance_secs(30);
    let next = n3.code_at_offset(&e.secret, &e.params, 0);
    let (s, r) = n3
        .post(
            "/v1/tenants/acme/logins/verify",
            &e.key,
            json!({"pending_token": d["pending"]["token"], "code": next}),
        )
        .await;
    assert_eq!(
        (s, err(&r)),
        (StatusCode::CONFLICT, Some("invalid_login_token"))
    );
    let d2 = login(n3, &e, "alice", json!({})).await;
    assert_eq!(step(a, &e, &d2, &code, json!({})).await["verified"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_uses_of_one_code_over_three_nodes_succeed_once() {
    let c = cluster(3).await;
    let e = c.nodes[0].enrolled("acme").await;
    c.sync_clocks();
    let code = c.nodes[0].code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(c.verify_in_parallel(&e, vec![code; 50]).await, 1);
    let audited = c.nodes[1].audit(&e, "action=totp.verify&limit=100").await;
    assert_eq!(audited.len(), 50, "every attempt is audited");
}

/// The single-node limits (tests/api.rs): after 5 consecutive failures each attempt waits out
/// a backoff, and attempts during it are refused without counting. With the clocks stopped,
/// 200 wrong codes at once over three nodes may therefore count 5 failures, no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_parallel_wrong_codes_over_three_nodes_stay_within_the_limit() {
    let c = cluster(3).await;
    let app = &c.nodes[0];
    let e = app.enrolled("acme").await;
    c.sync_clocks();
    let wrong = a_wrong_code(app, &e);
    assert_eq!(c.verify_in_parallel(&e, vec![wrong; 200]).await, 0);

    let audited = app.audit(&e, "action=totp.verify&limit=500").await;
    assert_eq!(audited.len(), 200, "every attempt is audited");
    let count = |reason: &str| audited.iter().filter(|ev| ev["reason"] == reason).count();
    assert_eq!(
        (count("wrong_code"), count("throttled")),
        (BACKOFF_AFTER as usize, 200 - BACKOFF_AFTER as usize),
        "only failures outside the backoff count"
    );
    let (_, f) = app
        .get("/v1/tenants/acme/users/alice/factors", &e.key)
        .await;
    assert_eq!(f["factors"][0]["locked"], false);
    // The backoff is a second after the fifth failure: then the right code works again.
    c.advance_secs(1);
    let good = app.code_at_offset(&e.secret, &e.params, 0);
    assert_eq!(c.verify_in_parallel(&e, vec![good]).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_workers_on_three_nodes_deliver_each_message_once() {
    let c = cluster(3).await;
    let key = c.nodes[0].tenant("acme").await;
    let mut phones = HashSet::new();
    for i in 0..20 {
        let node = &c.nodes[i % 3];
        let user = format!("u{i}");
        let phone = format!("+4477009{:05}", 100 + i);
        node.user("acme", &key, &user).await;
        let (s, body) = node
            .post(
                &format!("/v1/tenants/acme/users/{user}/factors/sms"),
                &key,
                json!({ "phone": phone }),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{body}");
        phones.insert(phone);
    }
    let delivered = || -> Vec<Vec<DevMessage>> {
        c.nodes
            .iter()
            .map(|n| dev_messages(&n.outbox_dir().join("sms")))
            .collect()
    };
    for _ in 0..200 {
        if delivered().iter().map(Vec::len).sum::<usize>() >= 20 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A little longer, for a second delivery of any message to show up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let per_node = delivered();
    let all: Vec<&DevMessage> = per_node.iter().flatten().collect();
    let ids: HashSet<&str> = all.iter().map(|m| m.message_id.as_str()).collect();
    let to: HashSet<String> = all.iter().map(|m| m.to.clone()).collect();
    assert_eq!(
        (all.len(), ids.len(), to),
        (20, 20, phones),
        "each SMS delivered once, by one node: {:?}",
        per_node.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let (_, stats) = c.nodes[2]
        .get("/v1/outbox/stats", &c.nodes[2].operator_key)
        .await;
    assert_eq!(
        (&stats["sent"], &stats["pending"], &stats["sending"]),
        (&json!(20), &json!(0), &json!(0))
    );
}

/// The session-revocation job (and the invitation job before it) with three nodes polling for
/// due jobs: each of its batches is done by one node, once. The job covers more users than one
/// batch, so the nodes compete for every batch; its effect shows once: one audit row per batch
/// with that batch's count, the job's total equal to the users in scope, each old session
/// without 2FA revoked, each user invited once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_on_three_nodes_run_each_batch_once() {
    use twofold_core::service::JOB_BATCH;
    let c = cluster(3).await;
    let e = setup(&c.nodes[0]).await;
    // Enough users for two batches, created over all nodes at once.
    let extra = JOB_BATCH as usize + 100;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..extra {
        if tasks.len() >= 24 {
            tasks.join_next().await.unwrap().unwrap();
        }
        let node = &c.nodes[i % 3];
        let request = node
            .client
            .post(format!("{}/v1/tenants/acme/users", node.base))
            .bearer_auth(&e.key)
            .json(&json!({"external_id": format!("u{i}"), "email": format!("u{i}@example.com")}));
        tasks.spawn(async move {
            let (s, body) = split(request.send().await.unwrap()).await;
            assert_eq!(s, StatusCode::CREATED, "{body}");
        });
    }
    while let Some(t) = tasks.join_next().await {
        t.unwrap();
    }
    let in_scope = (extra + 2) as i64; // alice and boss too
                                       // Sessions without 2FA from before 2FA is required, started on every node.
    c.sync_clocks();
    let mut sessions = Vec::new();
    for i in 0..30 {
        let d = login(&c.nodes[i % 3], &e, &format!("u{i}"), json!({})).await;
        assert_eq!(d["decision"], "allow", "{d}");
        sessions.push(d["session"]["token"].clone());
    }
    // Required for everyone; sessions without 2FA revoked an hour later.
    set_policy(
        &c.nodes[0],
        &e,
        required(json!({"revoke_sessions_after_hours": 1})),
    )
    .await;
    c.sync_clocks();
    c.advance_secs(3_601);

    let db = c.db.client().await;
    let mut done = false;
    for _ in 0..300 {
        let open: i64 = db
            .query_one("SELECT count(*) FROM jobs WHERE done_at IS NULL", &[])
            .await
            .unwrap()
            .get(0);
        if open == 0 {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(done, "both jobs finished");
    // Every node polls every 500 ms: give a second run of any batch the time to show.
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;

    for kind in ["invitations", "revoke_sessions"] {
        let processed: i64 = db
            .query_one("SELECT processed FROM jobs WHERE kind = $1", &[&kind])
            .await
            .unwrap()
            .get(0);
        assert_eq!(processed, in_scope, "{kind}");
    }
    for action in ["invitations.queue", "sessions.revoke_2fa_required"] {
        let reasons: Vec<String> = db
            .query(
                "SELECT reason FROM audit_events WHERE action = $1 ORDER BY id",
                &[&action],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let counts: Vec<String> = reasons
            .iter()
            .map(|r| r.split(": ").nth(1).unwrap().to_string())
            .collect();
        assert_eq!(
            counts,
            [
                format!("{JOB_BATCH} users"),
                format!("{} users", in_scope - i64::from(JOB_BATCH))
            ],
            "one audit row per batch, each batch once: {action} {reasons:?}"
        );
    }
    let (revoked, reasons): (i64, i64) = db
        .query_one(
            "SELECT count(*), count(DISTINCT revoke_reason) FROM sessions
             WHERE revoked_at IS NOT NULL",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((revoked, reasons), (30, 1));
    for (i, token) in sessions.iter().enumerate() {
        let s = introspect(&c.nodes[(i + 1) % 3], &e, token).await;
        assert_eq!(s["active"], false, "{s}");
    }
    let (invitations, invited): (i64, i64) = db
        .query_one(
            "SELECT count(*), count(DISTINCT user_id) FROM outbox WHERE template = 'invitation'",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!((invitations, invited), (in_scope, in_scope));
}
