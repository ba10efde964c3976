//! The delivery worker: drains the outbox with leases, retries with backoff, records outcomes.
//!
//! ```text
//!             claim (lease, attempts += 1)          send ok
//!  pending ───────────────────────────────▶ sending ───────▶ sent (parameters wiped)
//!     ▲                                       │  │
//!     │  transient error, attempts < max      │  │ permanent error, attempts >= max,
//!     └───────────────────────────────────────┘  │ or unreadable parameters
//!        (next_attempt_at = now + backoff)       ▼
//!                                              failed (an operator may retry it)
//!  A `sending` row whose lease ran out (its worker died) is claimable again.
//! ```
//!
//! Each round ([`DeliveryWorker::run_once`]) claims up to `batch` due messages, delivers them
//! with at most `concurrency` in flight, and reports each result with
//! [`Store::finish_message`], which only takes effect while this worker still holds the lease.
//! Claims are conditional updates in the store, so any number of workers, in one process or
//! on many nodes, never hold the same message at once. Delivery is still at least once (a
//! worker can die after the provider accepted a message and before recording it), which is
//! why every transport passes the message id on for deduplication.
//!
//! # Backoff
//!
//! After a transient failure on attempt `n` (1-based), the next attempt is due after a delay
//! drawn from `[d/2, d]`, where `d = min(backoff_max, backoff_base · 2^(n-1))` ("equal jitter").
//! Equal rather than full jitter (`[0, d]`) because the usual cause is the mail server or
//! provider being down: full jitter would sometimes retry almost at once and hammer it, while
//! equal jitter keeps a floor that doubles each time (so the delays keep growing) and still
//! spreads a backlog of messages that failed together over half the window, so they do not
//! all come back in one burst when the server returns.
//!
//! Time comes from the injected [`Clock`], so tests walk through retries without sleeping.

use crate::config::WorkerConfig;
use crate::email::{Email, EmailTransport};
use crate::metrics::{DeliveryMetrics, Outcome};
use crate::sms::{Sms, SmsTransport};
use crate::templates::Renderer;
use crate::SendError;
use futures_util::{FutureExt, StreamExt};
use rand::Rng;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use twofold_core::messaging::{
    params_owner, Channel, DeliveryResult, MessageParams, OutboxMessage,
};
use twofold_core::ports::{Clock, Store};
use twofold_crypto::SharedKeyring;
use zeroize::Zeroize;

/// Provider error texts often quote the request: the destination number, sometimes the body
/// with its code. They end up in the outbox (shown to the tenant) and in logs, so every run of
/// six or more digits (with any `+`) is replaced before they are kept anywhere.
pub fn redact_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.trim_start_matches('+').len() >= 6 {
            out.push_str("[redacted]");
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for ch in text.chars() {
        if ch.is_ascii_digit() || (ch == '+' && run.is_empty()) {
            run.push(ch);
        } else {
            flush(&mut run, &mut out);
            out.push(ch);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The error recorded when sealed parameters do not open.
pub const UNSEAL_ERROR: &str = "cannot unseal parameters: wrong master key?";

/// Drains the outbox. Build one per process (or several: they coordinate through leases).
pub struct DeliveryWorker {
    store: Arc<dyn Store>,
    /// The node's keyring: a reload or a key rotation reaches the worker too.
    keyring: SharedKeyring,
    clock: Arc<dyn Clock>,
    renderer: Renderer,
    email: Arc<dyn EmailTransport>,
    sms: Arc<dyn SmsTransport>,
    config: WorkerConfig,
    from_address: String,
    metrics: Arc<DeliveryMetrics>,
    owner: String,
    notify: Arc<Notify>,
    /// Posts webhook events; each carries its own URL and secret.
    events: crate::sms::EventPoster,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker")
            .field("owner", &self.owner)
            .field("config", &self.config)
            .field("from_address", &self.from_address)
            .finish_non_exhaustive()
    }
}

impl DeliveryWorker {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Arc<dyn Store>,
        keyring: impl Into<SharedKeyring>,
        clock: Arc<dyn Clock>,
        renderer: Renderer,
        email: Arc<dyn EmailTransport>,
        sms: Arc<dyn SmsTransport>,
        config: WorkerConfig,
        from_address: String,
        metrics: Arc<DeliveryMetrics>,
    ) -> Self {
        let events = crate::sms::EventPoster::new(
            std::time::Duration::from_secs(10),
            config.allow_private_webhooks,
        );
        Self {
            store,
            keyring: keyring.into(),
            clock,
            renderer,
            email,
            sms,
            config,
            from_address,
            metrics,
            owner: new_owner_id(),
            notify: Arc::new(Notify::new()),
            events,
        }
    }

    /// The lease owner this worker claims messages as: `<hostname>-<pid>-<random>`, unique
    /// even for two workers in one process.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Call `notify_one()` on this right after queueing a message, so it goes out now rather
    /// than at the next poll. A notification sent while the worker is busy is kept, not lost.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Delivers until `shutdown` completes. A round in progress is finished first (each send is
    /// bounded by the transports' timeouts), so nothing claimed is left to wait for its lease.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        let poll = Duration::from_millis(self.config.poll_interval_ms.max(1));
        tracing::info!(owner = %self.owner, "delivery worker started");
        loop {
            let handled = self.run_once().await;
            if (&mut shutdown).now_or_never().is_some() {
                break;
            }
            // A full batch means more may be due: go again without waiting.
            if handled >= self.config.batch as usize {
                continue;
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        tracing::info!(owner = %self.owner, "delivery worker stopped");
    }

    /// One round: claims a batch of due messages, delivers them (at most `concurrency` at a
    /// time) and records each outcome. Returns how many messages were handled.
    pub async fn run_once(&self) -> usize {
        let now = self.clock.now_ms();
        let lease_ms = secs_to_ms(self.config.lease_secs);
        let batch = match self
            .store
            .claim_messages(&self.owner, now, lease_ms, self.config.batch.max(1))
            .await
        {
            Ok(batch) => batch,
            Err(e) => {
                tracing::warn!(error = %e, "delivery worker cannot claim messages; will retry");
                return 0;
            }
        };
        let handled = batch.len();
        futures_util::stream::iter(batch)
            .for_each_concurrent(self.config.concurrency.max(1), |m| self.deliver(m))
            .await;
        handled
    }

    async fn deliver(&self, msg: OutboxMessage) {
        let sent = self.attempt(&msg).await.map_err(|e| match e {
            SendError::Transient(t) => SendError::Transient(redact_numbers(&t)),
            SendError::Permanent(t) => SendError::Permanent(redact_numbers(&t)),
        });
        let now = self.clock.now_ms();
        let channel = msg.channel.as_str();
        let (result, outcome) = match sent {
            Ok(()) => (DeliveryResult::Sent, Outcome::Sent),
            Err(SendError::Transient(error)) if msg.attempts < self.config.max_attempts as i32 => {
                let delay = retry_delay_ms(&self.config, msg.attempts, &mut rand::thread_rng());
                tracing::warn!(
                    message_id = %msg.message_id,
                    channel,
                    attempt = msg.attempts,
                    retry_in_ms = delay,
                    error = %error,
                    "delivery failed; will retry"
                );
                (
                    DeliveryResult::Retry {
                        at: now.saturating_add(delay),
                        error,
                    },
                    Outcome::Retried,
                )
            }
            Err(e) => {
                let error = match e {
                    SendError::Transient(error) => {
                        format!("gave up after {} attempts: {error}", msg.attempts)
                    }
                    SendError::Permanent(error) => error,
                };
                tracing::error!(
                    message_id = %msg.message_id,
                    channel,
                    attempt = msg.attempts,
                    error = %error,
                    "delivery failed for good"
                );
                (DeliveryResult::Failed { error }, Outcome::Failed)
            }
        };
        self.metrics.record(msg.channel, outcome);
        match self
            .store
            .finish_message(msg.id, &self.owner, result, now)
            .await
        {
            Ok(true) => {}
            // Our lease ran out and another worker took the message over; its outcome wins.
            Ok(false) => tracing::warn!(
                message_id = %msg.message_id,
                channel,
                "lease lost before the outcome was recorded; another worker owns the message"
            ),
            // The lease will run out and the message be tried again (and deduplicated by id).
            Err(e) => tracing::error!(
                message_id = %msg.message_id,
                channel,
                error = %e,
                "cannot record the delivery outcome"
            ),
        }
    }

    /// Unseals, renders and sends one message.
    async fn attempt(&self, msg: &OutboxMessage) -> Result<(), SendError> {
        let mut params = self.open_params(msg)?;
        let result = match msg.channel {
            Channel::Email => {
                let rendered = self.renderer.render_email(msg.template, &params);
                let from_name = ["sender_name", "tenant_name"]
                    .iter()
                    .filter_map(|k| params.get(*k))
                    .find(|v| !v.trim().is_empty())
                    .cloned()
                    .unwrap_or_else(|| "Twofold".to_string());
                let email = Email {
                    message_id: msg.message_id.clone(),
                    from_name,
                    from_address: self.from_address.clone(),
                    to: msg.destination.clone(),
                    subject: rendered.subject,
                    text: rendered.text,
                    html: rendered.html,
                };
                self.bounded(self.email.send(&email)).await
            }
            Channel::Webhook => {
                let get = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
                let send = self.events.send(
                    &msg.destination,
                    get("secret"),
                    &msg.message_id,
                    get("event"),
                    get("payload"),
                );
                self.bounded(send).await
            }
            Channel::Sms => {
                let sms = Sms {
                    message_id: msg.message_id.clone(),
                    to: msg.destination.clone(),
                    body: self.renderer.render_sms(msg.template, &params),
                    tenant_slug: params.get("tenant_slug").cloned().unwrap_or_default(),
                };
                self.bounded(self.sms.send(&sms)).await
            }
        };
        // The parameters may hold a one-time code: do not leave it in freed memory.
        params.values_mut().for_each(Zeroize::zeroize);
        result
    }

    fn open_params(&self, msg: &OutboxMessage) -> Result<MessageParams, SendError> {
        let sealed = msg.sealed_params.as_deref().ok_or_else(|| {
            SendError::Permanent("the message has no parameters (already wiped)".into())
        })?;
        let mut json = self
            .keyring
            .unseal(sealed, &params_owner(&msg.message_id))
            .map_err(|_| SendError::Permanent(UNSEAL_ERROR.into()))?;
        let params = serde_json::from_slice(&json)
            .map_err(|_| SendError::Permanent("the sealed parameters are not valid".into()));
        json.zeroize();
        params
    }

    /// A send that outlived half the lease would let another worker claim the message while
    /// it may still go out: cut it off and retry instead. Transports have their own, shorter
    /// timeouts; this is the backstop.
    async fn bounded(
        &self,
        send: impl Future<Output = Result<(), SendError>>,
    ) -> Result<(), SendError> {
        let limit =
            Duration::from_millis((secs_to_ms(self.config.lease_secs) / 2).max(1000) as u64);
        match tokio::time::timeout(limit, send).await {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(format!(
                "no answer within {} s",
                limit.as_secs()
            ))),
        }
    }
}

fn secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs)
        .unwrap_or(i64::MAX / 1000)
        .saturating_mul(1000)
}

/// The upper bound `d` of the delay after failed attempt `attempts` (1-based):
/// `min(backoff_max, backoff_base · 2^(attempts-1))`, in milliseconds.
pub fn backoff_ceiling_ms(config: &WorkerConfig, attempts: i32) -> i64 {
    let base = secs_to_ms(config.backoff_base_secs).max(1);
    let max = secs_to_ms(config.backoff_max_secs).max(base);
    let doublings = (attempts.max(1) - 1).min(62) as u32;
    base.checked_mul(1i64 << doublings)
        .map_or(max, |d| d.min(max))
}

/// The delay before the next attempt after failed attempt `attempts`: uniform in `[d/2, d]`
/// with `d` = [`backoff_ceiling_ms`] (equal jitter; see the module documentation for why).
pub fn retry_delay_ms(config: &WorkerConfig, attempts: i32, rng: &mut impl Rng) -> i64 {
    let ceiling = backoff_ceiling_ms(config, attempts);
    let floor = ceiling / 2;
    floor + rng.gen_range(0..=ceiling - floor)
}

/// This machine's name, for ids that say where a process runs (lease owners, key reports).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

fn new_owner_id() -> String {
    let host = host_name();
    format!(
        "{host}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_errors_lose_numbers_and_codes() {
        assert_eq!(
            redact_numbers("The 'To' number +447700900123 is not valid (code 21211)"),
            "The 'To' number [redacted] is not valid (code 21211)"
        );
        assert_eq!(
            redact_numbers("echo: 123456 is your code; HTTP 500"),
            "echo: [redacted] is your code; HTTP 500"
        );
        assert_eq!(redact_numbers("+ 12 x"), "+ 12 x");
    }

    #[test]
    fn backoff_grows_from_base_and_is_capped() {
        let c = WorkerConfig {
            backoff_base_secs: 5,
            backoff_max_secs: 3600,
            ..Default::default()
        };
        assert_eq!(backoff_ceiling_ms(&c, 1), 5_000);
        assert_eq!(backoff_ceiling_ms(&c, 2), 10_000);
        assert_eq!(backoff_ceiling_ms(&c, 3), 20_000);
        assert_eq!(backoff_ceiling_ms(&c, 10), 2_560_000);
        assert_eq!(backoff_ceiling_ms(&c, 11), 3_600_000);
        assert_eq!(backoff_ceiling_ms(&c, 1000), 3_600_000);
        assert_eq!(backoff_ceiling_ms(&c, 0), 5_000);
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let c = WorkerConfig::default();
        let mut rng = rand::thread_rng();
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2000 {
            let d = retry_delay_ms(&c, 3, &mut rng);
            assert!((10_000..=20_000).contains(&d), "{d}");
            seen_low |= d < 12_500;
            seen_high |= d > 17_500;
        }
        assert!(seen_low && seen_high, "the delay is spread over the window");
    }

    #[test]
    fn owner_ids_differ() {
        assert_ne!(new_owner_id(), new_owner_id());
    }
}
