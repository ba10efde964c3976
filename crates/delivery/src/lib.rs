//! Delivery of Twofold's outbox: everything between "a message row was committed" and "the
//! user's phone buzzed".
//!
//! The domain queues messages in the store's outbox in the same transaction as the change that
//! caused them ([`twofold_core::messaging`]). This crate owns what happens next:
//!
//! - [`templates`]: turning a template kind and its parameters into a subject, a text and an
//!   HTML body (email) or an SMS body, with per-tenant overrides on disk;
//! - [`email`]: SMTP through `lettre` (RFC 5321 / RFC 5322, STARTTLS per RFC 3207, implicit TLS
//!   per RFC 8314) and a development mailbox that writes `.eml` files;
//! - [`sms`]: Twilio's Messages API, a signed generic webhook, and a development outbox that
//!   writes `.txt` files;
//! - [`worker`]: the loop that claims due messages with a lease, delivers them with bounded
//!   concurrency and records the outcome, retrying transient failures with capped exponential
//!   backoff;
//! - [`dev_outbox`]: reading those development files back (the demo's mailbox, tests);
//! - [`config`]: the `[email]` / `[sms]` / worker settings the server embeds in its TOML file,
//!   and the constructors that turn them into transports;
//! - [`metrics`]: counters for the Prometheus endpoint.
//!
//! Delivery is *at least once*: a worker that dies after the provider accepted a message but
//! before recording it loses its lease, and another worker sends it again. Every transport
//! therefore passes the outbox's stable `message_id` on (email `Message-ID`, Twilio idempotency
//! token, webhook `Idempotency-Key`) so receivers can drop the duplicate.

pub mod config;
pub mod dev_outbox;
pub mod email;
pub mod metrics;
pub mod sms;
mod spool;
pub mod templates;
pub mod worker;

pub use config::{
    ConfigError, EmailConfig, EmailTransportKind, Secret, SmsConfig, SmsProvider, SmtpSecurity,
    TwilioConfig, WebhookConfig, WorkerConfig,
};
pub use dev_outbox::{DevChannel, DevMessage};
pub use email::{DevMailbox, Email, EmailTransport, SmtpMailer};
pub use metrics::DeliveryMetrics;
pub use sms::{DevSms, Sms, SmsTransport, TwilioSms, WebhookSms};
pub use templates::{RenderedEmail, Renderer};
pub use worker::DeliveryWorker;

/// Why a transport could not hand a message over. Shared by email and SMS so the worker treats
/// both alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Trying again later may work: the server or provider is down, slow, rate limiting, or
    /// answered a 4xx SMTP / 5xx HTTP status.
    #[error("{0}")]
    Transient(String),
    /// Trying the same message again will fail the same way: the address or number is
    /// rejected, the content refused, or the request is malformed.
    #[error("{0}")]
    Permanent(String),
}

impl SendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SendError::Transient(_))
    }
}
