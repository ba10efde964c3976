//! Delivery-specific helpers on top of the shared test kit (`twofold-testkit`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub use twofold_testkit::*;

use std::path::Path;
use std::sync::Arc;
use twofold_delivery::{EmailConfig, EmailTransport, EmailTransportKind, Secret, SmtpSecurity};

// ------------------------------------------------------------------------------- SMTP client

/// Mailer settings for the SMTP server on `127.0.0.1:port`.
pub fn smtp_config(port: u16, security: SmtpSecurity) -> EmailConfig {
    EmailConfig {
        transport: EmailTransportKind::Smtp,
        host: Some("127.0.0.1".into()),
        port: Some(port),
        security,
        from_address: Some("no-reply@acme.test".into()),
        timeout_secs: 5,
        ..Default::default()
    }
}

/// [`smtp_config`] trusting the private CA of `pki`, and logging in as `auth` when given.
pub fn smtp_config_tls(
    port: u16,
    security: SmtpSecurity,
    pki: &TestPki,
    auth: Option<(&str, &str)>,
) -> EmailConfig {
    let mut config = smtp_config(port, security);
    config.ca_file = Some(pki.ca.clone());
    if let Some((username, password)) = auth {
        config.username = Some(username.into());
        config.password = Some(Secret::new(password));
    }
    config
}

pub fn mailer(config: &EmailConfig) -> Arc<dyn EmailTransport> {
    config.build(Path::new("/nonexistent")).unwrap()
}
