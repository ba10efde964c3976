//! The Twofold domain: tenants, users, API keys, TOTP factors, verification with replay
//! protection and attempt limits, and the audit trail.
//!
//! Pure logic over ports ([`ports::Store`], [`ports::Clock`]); no HTTP, no SQL. Time is always
//! injected, so expiry, backoff and step edges are tested without sleeping (SECURITY.md INV-12).

pub mod cache;
pub mod error;
pub mod keys;
pub mod login;
pub mod messaging;
pub mod model;
pub mod oidc;
pub mod phone_change;
pub mod policy;
pub mod ports;
pub mod risk;
pub mod rollout;
pub mod security;
pub mod service;
pub mod throttle;
pub mod tokens;
pub mod totp;
pub mod types;
pub mod vault;
pub mod webauthn;

pub use error::CoreError;
pub use service::{Actor, RequestMeta, Twofold, TwofoldConfig, Verdict};
