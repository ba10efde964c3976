#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The delivery worker against the real SQLite store, a real SMTP server process and a local
//! HTTP server posing as Twilio. Time is a ManualClock: retries are walked through by moving
//! it, never by sleeping.

mod common;

use common::{mailer, smtp_config, MockHttp, SinkOptions, SmtpSink};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use twofold_core::messaging::{
    params_owner, Channel, MessageParams, MessageQuery, MessageStatus, NewMessage, OutboxMessage,
    TemplateKind,
};
use twofold_core::ports::{Clock, ManualClock, Store};
use twofold_crypto::{KeyMaterial, Keyring};
use twofold_delivery::metrics::Outcome;
use twofold_delivery::worker::{backoff_ceiling_ms, UNSEAL_ERROR};
use twofold_delivery::{
    DeliveryMetrics, DeliveryWorker, DevMailbox, DevSms, EmailTransport, Renderer, Secret,
    SmsConfig, SmsProvider, SmsTransport, SmtpSecurity, TwilioConfig, WorkerConfig,
};
use twofold_store::conformance::acme_tenant;
use twofold_store::SqliteStore;

const T0: i64 = 1_800_000_000_000;

struct Env {
    _dir: tempfile::TempDir,
    db: PathBuf,
    store: Arc<dyn Store>,
    keyring: Keyring,
    clock: Arc<ManualClock>,
    tenant_id: i64,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("twofold.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let tenant = acme_tenant(store.as_ref(), T0).await;
    Env {
        _dir: dir,
        db,
        store,
        keyring: Keyring::new(KeyMaterial::generate()),
        clock: Arc::new(ManualClock::new(T0)),
        tenant_id: tenant.id,
    }
}

fn code_params(code: &str) -> MessageParams {
    [
        ("tenant_name", "Acme"),
        ("tenant_slug", "acme"),
        ("sender_name", "Acme Security"),
        ("code", code),
        ("purpose", "sign in"),
        ("minutes", "10"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Env {
    fn message(&self, n: usize, channel: Channel, destination: &str) -> NewMessage {
        let message_id = format!("m{n:04}-{}@twofold", rand_suffix());
        let json = serde_json::to_vec(&code_params(&format!("{:06}", 100_000 + n))).unwrap();
        NewMessage {
            sealed_params: self
                .keyring
                .seal(&json, &params_owner(&message_id))
                .unwrap(),
            message_id,
            tenant_id: self.tenant_id,
            user_id: None,
            channel,
            destination: destination.into(),
            template: TemplateKind::Code,
            created_at: self.clock.now_ms(),
        }
    }

    async fn enqueue(&self, messages: Vec<NewMessage>) {
        self.store.enqueue(messages, None).await.unwrap();
    }

    async fn emails(&self, n: usize) -> Vec<NewMessage> {
        let msgs: Vec<_> = (0..n)
            .map(|i| self.message(i, Channel::Email, &format!("user{i}@example.test")))
            .collect();
        self.enqueue(msgs.clone()).await;
        msgs
    }

    fn worker(
        &self,
        email: Arc<dyn EmailTransport>,
        sms: Arc<dyn SmsTransport>,
        config: WorkerConfig,
        metrics: Arc<DeliveryMetrics>,
    ) -> DeliveryWorker {
        DeliveryWorker::new(
            self.store.clone(),
            self.keyring.clone(),
            self.clock.clone(),
            Renderer::default(),
            email,
            sms,
            config,
            "no-reply@acme.test".into(),
            metrics,
        )
    }

    /// A worker sending SMS through Twilio at `base_url` (and email to a dev mailbox).
    fn twilio_worker(&self, base_url: &str, metrics: Arc<DeliveryMetrics>) -> DeliveryWorker {
        self.worker(
            Arc::new(DevMailbox::new(self.db.with_file_name("mail"))),
            twilio(base_url),
            config(),
            metrics,
        )
    }

    async fn all(&self) -> Vec<OutboxMessage> {
        let mut all = self
            .store
            .list_messages(MessageQuery {
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        all.sort_by_key(|m| m.id);
        all
    }
}

fn rand_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

fn smtp(port: u16) -> Arc<dyn EmailTransport> {
    mailer(&smtp_config(port, SmtpSecurity::None))
}

fn twilio(base_url: &str) -> Arc<dyn SmsTransport> {
    SmsConfig {
        provider: SmsProvider::Twilio,
        twilio: TwilioConfig {
            base_url: base_url.into(),
            account_sid: Some("AC1".into()),
            auth_token: Some(Secret::new("token")),
            from: Some("+15005550006".into()),
            messaging_service_sid: None,
        },
        timeout_secs: 5,
        ..Default::default()
    }
    .build(Path::new("/nonexistent"))
    .unwrap()
}

fn dev_sms() -> Arc<dyn SmsTransport> {
    Arc::new(DevSms::new(
        std::env::temp_dir().join("twofold-delivery-tests-unused"),
    ))
}

fn config() -> WorkerConfig {
    WorkerConfig {
        batch: 16,
        concurrency: 4,
        backoff_base_secs: 5,
        backoff_max_secs: 3600,
        ..Default::default()
    }
}

/// Message-ID (without brackets) → how many times the SMTP server received it.
fn arrivals(sink: &SmtpSink) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for m in sink.received() {
        let id = m["message_id"]
            .as_str()
            .unwrap()
            .trim_matches(|c| c == '<' || c == '>')
            .to_string();
        *counts.entry(id).or_insert(0) += 1;
    }
    counts
}

fn assert_each_arrived_once(sink: &SmtpSink, sent: &[NewMessage]) {
    let counts = arrivals(sink);
    assert_eq!(counts.len(), sent.len(), "{counts:?}");
    for m in sent {
        assert_eq!(counts.get(&m.message_id), Some(&1), "{}", m.message_id);
    }
}

#[tokio::test]
async fn smtp_down_retries_with_growing_delays_then_delivers_once_across_a_restart() {
    let env = env().await;
    let port = common::free_port();
    let sent = env.emails(5).await;
    let metrics = Arc::new(DeliveryMetrics::new());
    let cfg = config();
    let worker = env.worker(smtp(port), dev_sms(), cfg.clone(), metrics.clone());

    // Attempts 1 and 2 fail: nobody listens on the port.
    let mut previous_delay: HashMap<i64, i64> = HashMap::new();
    for attempt in 1..=2 {
        let now = env.clock.now_ms();
        assert_eq!(worker.run_once().await, 5, "attempt {attempt}");
        let d = backoff_ceiling_ms(&cfg, attempt);
        for m in env.all().await {
            assert_eq!(m.status, MessageStatus::Pending);
            assert_eq!(m.attempts, attempt);
            assert!(m.last_error.as_deref().unwrap().contains("SMTP"), "{m:?}");
            let delay = m.next_attempt_at - now;
            assert!(
                (d / 2..=d).contains(&delay),
                "attempt {attempt}: delay {delay} outside [{}, {d}]",
                d / 2
            );
            if let Some(prev) = previous_delay.insert(m.id, delay) {
                assert!(delay >= prev, "delays grow: {prev} then {delay}");
            }
        }
        // Nothing is due before the earliest retry time.
        assert_eq!(worker.run_once().await, 0);
        let latest = env
            .all()
            .await
            .iter()
            .map(|m| m.next_attempt_at)
            .max()
            .unwrap();
        env.clock.set_ms(latest);
    }
    assert_eq!(metrics.get(Channel::Email, Outcome::Retried), 10);
    assert_eq!(metrics.get(Channel::Email, Outcome::Sent), 0);

    // Restart: the worker and the store go away; a new process opens the same database file.
    drop(worker);
    let Env {
        _dir,
        db,
        keyring,
        clock,
        tenant_id,
        store,
    } = env;
    drop(store);
    let env = Env {
        store: Arc::new(SqliteStore::open(&db).unwrap()),
        _dir,
        db,
        keyring,
        clock,
        tenant_id,
    };

    // The mail server comes up on the port the worker has been trying.
    let sink = SmtpSink::start(SinkOptions {
        port,
        ..Default::default()
    })
    .await;
    let metrics = Arc::new(DeliveryMetrics::new());
    let worker = env.worker(smtp(port), dev_sms(), cfg, metrics.clone());
    assert_eq!(worker.run_once().await, 5);
    assert_eq!(worker.run_once().await, 0);
    env.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(worker.run_once().await, 0, "nothing left to send, ever");

    assert_each_arrived_once(&sink, &sent);
    let stats = env.store.outbox_stats(None).await.unwrap();
    assert_eq!((stats.sent, stats.pending, stats.failed), (5, 0, 0));
    for m in env.all().await {
        assert_eq!(m.status, MessageStatus::Sent);
        assert_eq!(m.attempts, 3);
        assert!(m.sealed_params.is_none(), "parameters wiped once sent");
    }
    assert_eq!(metrics.get(Channel::Email, Outcome::Sent), 5);

    // What arrived is the rendered code message, from the tenant's sender name.
    let first = &sink.received()[0];
    assert_eq!(first["from_name"], "Acme Security");
    assert_eq!(first["from_address"], "no-reply@acme.test");
    assert_eq!(first["subject"], "Your Acme verification code");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("10000"), "the code is in the body: {text}");
}

#[tokio::test]
async fn a_worker_that_died_holding_a_lease_is_taken_over_after_the_lease() {
    let env = env().await;
    let sent = env.emails(3).await;
    let cfg = config();
    // A worker claims the messages and dies before sending or recording anything.
    let claimed = env
        .store
        .claim_messages("dead-worker", T0, cfg.lease_secs as i64 * 1000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);

    // The process restarts on the same database file.
    let old = env.store;
    drop(old);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&env.db).unwrap());
    let env = Env { store, ..env };
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let worker = env.worker(
        smtp(sink.port),
        dev_sms(),
        cfg.clone(),
        Arc::new(DeliveryMetrics::new()),
    );
    assert_eq!(worker.run_once().await, 0, "the lease still holds");
    env.clock.advance_ms(cfg.lease_secs as i64 * 1000);
    assert_eq!(worker.run_once().await, 3);
    assert_each_arrived_once(&sink, &sent);

    // The dead worker cannot record an outcome over the new one.
    let late = env
        .store
        .finish_message(
            claimed[0].id,
            "dead-worker",
            twofold_core::messaging::DeliveryResult::Failed {
                error: "late".into(),
            },
            env.clock.now_ms(),
        )
        .await
        .unwrap();
    assert!(!late);
    assert_eq!(env.store.outbox_stats(None).await.unwrap().sent, 3);
}

#[tokio::test]
async fn sms_429_then_200_is_delivered_after_a_retry() {
    let env = env().await;
    let http = MockHttp::start().await;
    http.answer(429, r#"{"code":20429,"message":"Too Many Requests"}"#);
    let msg = env.message(7, Channel::Sms, "+447700900123");
    env.enqueue(vec![msg.clone()]).await;
    let metrics = Arc::new(DeliveryMetrics::new());
    let worker = env.twilio_worker(&http.base_url, metrics.clone());
    assert_eq!(worker.run_once().await, 1);
    let stats = env.store.outbox_stats(None).await.unwrap();
    assert_eq!((stats.pending, stats.sent), (1, 0));
    env.clock.advance_ms(backoff_ceiling_ms(&config(), 1));
    assert_eq!(worker.run_once().await, 1);
    let stats = env.store.outbox_stats(None).await.unwrap();
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 1, 0));

    let reqs = http.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(
            r.header("i-twilio-idempotency-token").as_deref(),
            Some(msg.message_id.as_str()),
            "the retry carries the same idempotency token"
        );
        assert_eq!(r.form_value("To").as_deref(), Some("+447700900123"));
        assert_eq!(
            r.form_value("Body").as_deref(),
            Some("100007 is your Acme code to sign in. It expires in 10 min. Never share it.")
        );
    }
    assert_eq!(metrics.get(Channel::Sms, Outcome::Retried), 1);
    assert_eq!(metrics.get(Channel::Sms, Outcome::Sent), 1);
    assert!(metrics
        .render_prometheus()
        .contains("twofold_messages_sent_total{channel=\"sms\"} 1\n"));
}

#[tokio::test]
async fn sms_400_fails_for_good_and_shows_in_stats() {
    let env = env().await;
    let http = MockHttp::start().await;
    http.answer(
        400,
        r#"{"code":21211,"message":"The 'To' number is not a valid phone number.","status":400}"#,
    );
    env.enqueue(vec![env.message(1, Channel::Sms, "+15005550001")])
        .await;
    let metrics = Arc::new(DeliveryMetrics::new());
    let worker = env.twilio_worker(&http.base_url, metrics.clone());
    assert_eq!(worker.run_once().await, 1);
    env.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(
        worker.run_once().await,
        0,
        "a failed message is not retried"
    );
    let stats = env.store.outbox_stats(None).await.unwrap();
    assert_eq!((stats.pending, stats.sent, stats.failed), (0, 0, 1));
    let m = &env.all().await[0];
    assert_eq!(m.status, MessageStatus::Failed);
    let error = m.last_error.as_deref().unwrap();
    assert!(error.contains("not a valid phone number"), "{error}");
    assert_eq!(metrics.get(Channel::Sms, Outcome::Failed), 1);
    assert_eq!(http.requests().len(), 1);
}

#[tokio::test]
async fn max_attempts_reached_fails_the_message() {
    let env = env().await;
    env.emails(1).await;
    let cfg = WorkerConfig {
        max_attempts: 3,
        ..config()
    };
    let metrics = Arc::new(DeliveryMetrics::new());
    let worker = env.worker(
        smtp(common::free_port()),
        dev_sms(),
        cfg.clone(),
        metrics.clone(),
    );
    for attempt in 1..=3 {
        assert_eq!(worker.run_once().await, 1, "attempt {attempt}");
        env.clock.advance_ms(backoff_ceiling_ms(&cfg, attempt));
    }
    assert_eq!(worker.run_once().await, 0);
    let m = &env.all().await[0];
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.attempts, 3);
    assert!(
        m.last_error
            .as_deref()
            .unwrap()
            .starts_with("gave up after 3 attempts: SMTP"),
        "{:?}",
        m.last_error
    );
    assert_eq!(metrics.get(Channel::Email, Outcome::Retried), 2);
    assert_eq!(metrics.get(Channel::Email, Outcome::Failed), 1);
    assert_eq!(env.store.outbox_stats(None).await.unwrap().failed, 1);
}

#[tokio::test]
async fn two_workers_in_parallel_never_deliver_a_message_twice() {
    let env = env().await;
    let sent = env.emails(60).await;
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let cfg = WorkerConfig {
        batch: 7,
        concurrency: 3,
        ..config()
    };
    let m1 = Arc::new(DeliveryMetrics::new());
    let m2 = Arc::new(DeliveryMetrics::new());
    let w1 = env.worker(smtp(sink.port), dev_sms(), cfg.clone(), m1.clone());
    let w2 = env.worker(smtp(sink.port), dev_sms(), cfg, m2.clone());
    assert_ne!(w1.owner(), w2.owner());
    let mut rounds = 0;
    loop {
        let (a, b) = tokio::join!(w1.run_once(), w2.run_once());
        if a + b == 0 {
            break;
        }
        rounds += 1;
        assert!(rounds < 100, "the queue drains");
    }
    assert_each_arrived_once(&sink, &sent);
    let s1 = m1.get(Channel::Email, Outcome::Sent);
    let s2 = m2.get(Channel::Email, Outcome::Sent);
    assert_eq!(s1 + s2, 60);
    assert!(s1 > 0 && s2 > 0, "both workers took part: {s1} + {s2}");
    assert_eq!(env.store.outbox_stats(None).await.unwrap().sent, 60);
}

#[tokio::test]
async fn parameters_sealed_under_another_key_fail_with_a_clear_error() {
    let env = env().await;
    let other = Keyring::new(KeyMaterial::generate());
    let message_id = "wrongkey@twofold".to_string();
    let json = serde_json::to_vec(&code_params("123456")).unwrap();
    env.enqueue(vec![NewMessage {
        sealed_params: other.seal(&json, &params_owner(&message_id)).unwrap(),
        message_id,
        tenant_id: env.tenant_id,
        user_id: None,
        channel: Channel::Email,
        destination: "a@example.test".into(),
        template: TemplateKind::Code,
        created_at: T0,
    }])
    .await;
    let mailbox_dir = env.db.with_file_name("mail");
    let worker = env.worker(
        Arc::new(DevMailbox::new(&mailbox_dir)),
        dev_sms(),
        config(),
        Arc::new(DeliveryMetrics::new()),
    );
    assert_eq!(worker.run_once().await, 1);
    let m = &env.all().await[0];
    assert_eq!(m.status, MessageStatus::Failed);
    assert_eq!(m.last_error.as_deref(), Some(UNSEAL_ERROR));
    assert!(!mailbox_dir.exists(), "nothing was sent");
}

#[tokio::test]
async fn run_wakes_on_notify_and_stops_on_shutdown() {
    let env = env().await;
    let mailbox_dir = env.db.with_file_name("mail");
    let worker = env.worker(
        Arc::new(DevMailbox::new(&mailbox_dir)),
        dev_sms(),
        WorkerConfig {
            // Long enough that only the notification can explain a quick delivery.
            poll_interval_ms: 600_000,
            ..config()
        },
        Arc::new(DeliveryMetrics::new()),
    );
    let notify = worker.notifier();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run(async {
        let _ = stopped.await;
    }));
    // Let the first (empty) round pass so the worker is asleep.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let sent = env.emails(1).await;
    notify.notify_one();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if env.store.outbox_stats(None).await.unwrap().sent == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not woken by notify"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let files: Vec<_> = std::fs::read_dir(&mailbox_dir).unwrap().collect();
    assert_eq!(files.len(), 1);
    let name = files[0].as_ref().unwrap().file_name();
    assert!(name.to_string_lossy().contains(&sent[0].message_id));
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("run returns after shutdown")
        .unwrap();
}
