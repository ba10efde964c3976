//! Delivery settings as they appear in the server's TOML file (`[email]`, `[sms]` and the
//! worker's table) and in `TWOFOLD_*` environment variables, and the constructors that turn
//! them into transports.
//!
//! Every field has a default, so an empty table (or none) is valid: email and SMS then go to
//! the development outboxes under the data directory, which is what `twofold serve` with no
//! config should do. Unknown keys are left to the server's loader to report (it warns about
//! them, like everywhere else in its config). Secrets (`password`, `auth_token`, `secret`) are
//! [`Secret`]s: redacted in `Debug`, wiped on drop.
//!
//! ```toml
//! [email]
//! transport = "smtp"            # dev | smtp
//! host = "smtp.example.com"
//! port = 587                    # default: 25 / 587 / 465 by security
//! security = "starttls"         # none | starttls | tls
//! username = "twofold"
//! password = "…"
//! from_address = "no-reply@example.com"
//! ca_file = "/etc/twofold/smtp-ca.pem"   # optional extra trusted CA
//! timeout_secs = 30
//!
//! [sms]
//! provider = "twilio"           # dev | twilio | webhook
//! timeout_secs = 10
//! [sms.twilio]
//! account_sid = "AC…"
//! auth_token = "…"
//! from = "+15005550006"         # or messaging_service_sid = "MG…"
//! [sms.webhook]
//! url = "https://sms-gateway.internal/send"
//! secret = "…"
//! ```

use crate::email::{DevMailbox, EmailTransport, SmtpMailer, SmtpOptions};
use crate::sms::{DevSms, SmsTransport, TwilioOptions, TwilioSms, WebhookSms};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use zeroize::Zeroize;

pub use crate::email::SmtpSecurity;

/// A secret string from the config: never printed, wiped from memory on drop.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting the chosen transport cannot work without.
    #[error("{needed_by} needs {key}; set it in the config file or {env}")]
    Missing {
        needed_by: String,
        key: &'static str,
        env: &'static str,
    },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

fn missing(needed_by: &str, key: &'static str, env: &'static str) -> ConfigError {
    ConfigError::Missing {
        needed_by: needed_by.to_string(),
        key,
        env,
    }
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.trim()
        .parse()
        .map_err(|_| format!("`{v}` is not a valid number"))
}

fn opt(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_string())
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The host part of an `http(s)://host[:port]/…` URL, for warnings.
fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.starts_with('[') {
        host_port.split(']').next().map(|h| &h[1..]).unwrap_or("")
    } else {
        host_port.split(':').next().unwrap_or("")
    }
}

// --------------------------------------------------------------------------------------- email

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EmailTransportKind {
    /// Write `.eml` files under `dev_dir`; nothing leaves the machine.
    #[default]
    Dev,
    Smtp,
}

/// `[email]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct EmailConfig {
    pub transport: EmailTransportKind,
    /// SMTP server name; also the name its TLS certificate must carry.
    pub host: Option<String>,
    /// Default by `security`: 25 (none), 587 (starttls), 465 (tls).
    pub port: Option<u16>,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// The envelope sender and `From` address. Required with SMTP.
    pub from_address: Option<String>,
    /// A PEM file of CA certificates trusted in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// The longest one message may take, connecting and TLS included.
    pub timeout_secs: u64,
    /// Where the dev transport writes; default `<data_dir>/dev-outbox/email`.
    pub dev_dir: Option<PathBuf>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            transport: EmailTransportKind::Dev,
            host: None,
            port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password: None,
            from_address: None,
            ca_file: None,
            timeout_secs: 30,
            dev_dir: None,
        }
    }
}

impl std::fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailConfig")
            .field("transport", &self.transport)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("from_address", &self.from_address)
            .field("ca_file", &self.ca_file)
            .field("timeout_secs", &self.timeout_secs)
            .field("dev_dir", &self.dev_dir)
            .finish()
    }
}

/// Used as `From` by the dev transport when no address is configured.
pub const DEV_FROM_ADDRESS: &str = "twofold@localhost";

impl EmailConfig {
    /// Environment variables (after `TWOFOLD_`) that [`EmailConfig::apply_env`] understands.
    pub const ENV_KEYS: &'static [&'static str] = &[
        "EMAIL_TRANSPORT",
        "EMAIL_HOST",
        "EMAIL_PORT",
        "EMAIL_SECURITY",
        "EMAIL_USERNAME",
        "EMAIL_PASSWORD",
        "EMAIL_FROM_ADDRESS",
        "EMAIL_CA_FILE",
        "EMAIL_TIMEOUT_SECS",
        "EMAIL_DEV_DIR",
    ];

    /// Applies one `TWOFOLD_<key>` variable (`key` without the prefix). Returns `Ok(false)`
    /// when the key is not an email setting, an error text when the value is malformed.
    pub fn apply_env(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "EMAIL_TRANSPORT" => {
                self.transport = match value.trim() {
                    "dev" => EmailTransportKind::Dev,
                    "smtp" => EmailTransportKind::Smtp,
                    other => return Err(format!("`{other}` is not one of dev, smtp")),
                }
            }
            "EMAIL_HOST" => self.host = opt(value),
            "EMAIL_PORT" => self.port = Some(num(value)?),
            "EMAIL_SECURITY" => {
                self.security = match value.trim() {
                    "none" => SmtpSecurity::None,
                    "starttls" => SmtpSecurity::Starttls,
                    "tls" => SmtpSecurity::Tls,
                    other => return Err(format!("`{other}` is not one of none, starttls, tls")),
                }
            }
            "EMAIL_USERNAME" => self.username = opt(value),
            "EMAIL_PASSWORD" => self.password = opt(value).map(Secret),
            "EMAIL_FROM_ADDRESS" => self.from_address = opt(value),
            "EMAIL_CA_FILE" => self.ca_file = opt(value).map(PathBuf::from),
            "EMAIL_TIMEOUT_SECS" => self.timeout_secs = num(value)?,
            "EMAIL_DEV_DIR" => self.dev_dir = opt(value).map(PathBuf::from),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.security.default_port())
    }

    pub fn dev_dir(&self, data_dir: &Path) -> PathBuf {
        self.dev_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("dev-outbox").join("email"))
    }

    /// The `From` address for every email, checked to be a valid address.
    pub fn from_address(&self) -> Result<String, ConfigError> {
        let addr = match (&self.from_address, self.transport) {
            (Some(a), _) => a.trim().to_string(),
            (None, EmailTransportKind::Dev) => DEV_FROM_ADDRESS.to_string(),
            (None, EmailTransportKind::Smtp) => {
                return Err(missing(
                    "email.transport = smtp",
                    "email.from_address",
                    "TWOFOLD_EMAIL_FROM_ADDRESS",
                ))
            }
        };
        addr.parse::<lettre::Address>()
            .map_err(|e| invalid("email.from_address", format!("`{addr}` is not valid: {e}")))?;
        Ok(addr)
    }

    /// Checks the SMTP settings and reads the CA file.
    pub fn smtp_options(&self) -> Result<SmtpOptions, ConfigError> {
        const BY: &str = "email.transport = smtp";
        let host = self
            .host
            .as_deref()
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .ok_or_else(|| missing(BY, "email.host", "TWOFOLD_EMAIL_HOST"))?;
        let credentials = match (&self.username, &self.password) {
            (None, None) => None,
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (Some(_), None) => {
                return Err(missing(
                    "email.username",
                    "email.password",
                    "TWOFOLD_EMAIL_PASSWORD",
                ))
            }
            (None, Some(_)) => {
                return Err(missing(
                    "email.password",
                    "email.username",
                    "TWOFOLD_EMAIL_USERNAME",
                ))
            }
        };
        if self.timeout_secs == 0 {
            return Err(invalid("email.timeout_secs", "must be at least 1"));
        }
        let extra_ca_pem = match &self.ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                invalid(
                    "email.ca_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?),
        };
        if extra_ca_pem.is_some() && self.security == SmtpSecurity::None {
            return Err(invalid(
                "email.ca_file",
                "is set but email.security = none; use starttls or tls",
            ));
        }
        Ok(SmtpOptions {
            host: host.to_string(),
            port: self.port(),
            security: self.security,
            credentials,
            timeout: Duration::from_secs(self.timeout_secs),
            extra_ca_pem,
        })
    }

    /// Builds the configured transport. `data_dir` places the dev mailbox by default. Call it
    /// inside the Tokio runtime the worker will run on (SMTP keeps a connection pool there).
    pub fn build(&self, data_dir: &Path) -> Result<Arc<dyn EmailTransport>, ConfigError> {
        self.from_address()?;
        Ok(match self.transport {
            EmailTransportKind::Dev => Arc::new(DevMailbox::new(self.dev_dir(data_dir))),
            EmailTransportKind::Smtp => Arc::new(
                SmtpMailer::new(self.smtp_options()?).map_err(|m| invalid("email.ca_file", m))?,
            ),
        })
    }

    /// Settings that work but deserve a line in the startup log.
    pub fn warnings(&self, data_dir: &Path) -> Vec<String> {
        let mut w = Vec::new();
        match self.transport {
            EmailTransportKind::Dev => w.push(format!(
                "email.transport = dev: emails are written to {}, not sent",
                self.dev_dir(data_dir).display()
            )),
            EmailTransportKind::Smtp => {
                let host = self.host.as_deref().unwrap_or("");
                if self.security == SmtpSecurity::None && !is_loopback_host(host) {
                    w.push(format!(
                        "email.security = none: mail, codes{} go to {host} unencrypted",
                        if self.password.is_some() {
                            " and the SMTP password"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        w
    }
}

// ----------------------------------------------------------------------------------------- sms

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsProvider {
    /// Write `.txt` files under `dev_dir`; nothing leaves the machine.
    #[default]
    Dev,
    Twilio,
    Webhook,
}

/// `[sms.twilio]`.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TwilioConfig {
    pub base_url: String,
    pub account_sid: Option<String>,
    pub auth_token: Option<Secret>,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

impl Default for TwilioConfig {
    fn default() -> Self {
        Self {
            base_url: "https://api.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            from: None,
            messaging_service_sid: None,
        }
    }
}

impl std::fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .finish()
    }
}

/// `[sms.webhook]`.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WebhookConfig {
    pub url: Option<String>,
    /// HMAC key for `X-Twofold-Signature`; see [`crate::sms`] for the scheme.
    pub secret: Option<Secret>,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("url", &self.url)
            .field("secret", &self.secret)
            .finish()
    }
}

/// `[sms]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct SmsConfig {
    pub provider: SmsProvider,
    pub twilio: TwilioConfig,
    pub webhook: WebhookConfig,
    /// Whole-request timeout for the provider's HTTP API.
    pub timeout_secs: u64,
    /// Where the dev provider writes; default `<data_dir>/dev-outbox/sms`.
    pub dev_dir: Option<PathBuf>,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            provider: SmsProvider::Dev,
            twilio: TwilioConfig::default(),
            webhook: WebhookConfig::default(),
            timeout_secs: 10,
            dev_dir: None,
        }
    }
}

/// A webhook secret shorter than this is guessable offline from one signed request.
const MIN_WEBHOOK_SECRET_LEN: usize = 32;

impl SmsConfig {
    /// Environment variables (after `TWOFOLD_`) that [`SmsConfig::apply_env`] understands.
    pub const ENV_KEYS: &'static [&'static str] = &[
        "SMS_PROVIDER",
        "SMS_TIMEOUT_SECS",
        "SMS_DEV_DIR",
        "SMS_TWILIO_BASE_URL",
        "SMS_TWILIO_ACCOUNT_SID",
        "SMS_TWILIO_AUTH_TOKEN",
        "SMS_TWILIO_FROM",
        "SMS_TWILIO_MESSAGING_SERVICE_SID",
        "SMS_WEBHOOK_URL",
        "SMS_WEBHOOK_SECRET",
    ];

    /// Applies one `TWOFOLD_<key>` variable (`key` without the prefix). Returns `Ok(false)`
    /// when the key is not an SMS setting.
    pub fn apply_env(&mut self, key: &str, value: &str) -> Result<bool, String> {
        match key {
            "SMS_PROVIDER" => {
                self.provider = match value.trim() {
                    "dev" => SmsProvider::Dev,
                    "twilio" => SmsProvider::Twilio,
                    "webhook" => SmsProvider::Webhook,
                    other => return Err(format!("`{other}` is not one of dev, twilio, webhook")),
                }
            }
            "SMS_TIMEOUT_SECS" => self.timeout_secs = num(value)?,
            "SMS_DEV_DIR" => self.dev_dir = opt(value).map(PathBuf::from),
            "SMS_TWILIO_BASE_URL" => self.twilio.base_url = value.trim().to_string(),
            "SMS_TWILIO_ACCOUNT_SID" => self.twilio.account_sid = opt(value),
            "SMS_TWILIO_AUTH_TOKEN" => self.twilio.auth_token = opt(value).map(Secret),
            "SMS_TWILIO_FROM" => self.twilio.from = opt(value),
            "SMS_TWILIO_MESSAGING_SERVICE_SID" => self.twilio.messaging_service_sid = opt(value),
            "SMS_WEBHOOK_URL" => self.webhook.url = opt(value),
            "SMS_WEBHOOK_SECRET" => self.webhook.secret = opt(value).map(Secret),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn dev_dir(&self, data_dir: &Path) -> PathBuf {
        self.dev_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("dev-outbox").join("sms"))
    }

    fn timeout(&self) -> Result<Duration, ConfigError> {
        if self.timeout_secs == 0 {
            return Err(invalid("sms.timeout_secs", "must be at least 1"));
        }
        Ok(Duration::from_secs(self.timeout_secs))
    }

    /// Checks the Twilio settings.
    pub fn twilio_options(&self) -> Result<TwilioOptions, ConfigError> {
        const BY: &str = "sms.provider = twilio";
        let t = &self.twilio;
        let account_sid = t.account_sid.clone().ok_or_else(|| {
            missing(
                BY,
                "sms.twilio.account_sid",
                "TWOFOLD_SMS_TWILIO_ACCOUNT_SID",
            )
        })?;
        let auth_token = t
            .auth_token
            .clone()
            .ok_or_else(|| missing(BY, "sms.twilio.auth_token", "TWOFOLD_SMS_TWILIO_AUTH_TOKEN"))?;
        if t.from.is_none() && t.messaging_service_sid.is_none() {
            return Err(missing(
                BY,
                "sms.twilio.from (or sms.twilio.messaging_service_sid)",
                "TWOFOLD_SMS_TWILIO_FROM",
            ));
        }
        if !(t.base_url.starts_with("https://") || t.base_url.starts_with("http://")) {
            return Err(invalid(
                "sms.twilio.base_url",
                format!("`{}` is not an http(s) URL", t.base_url),
            ));
        }
        Ok(TwilioOptions {
            base_url: t.base_url.clone(),
            account_sid,
            auth_token,
            from: t.from.clone(),
            messaging_service_sid: t.messaging_service_sid.clone(),
            timeout: self.timeout()?,
        })
    }

    /// Builds the configured provider. `data_dir` places the dev outbox by default.
    pub fn build(&self, data_dir: &Path) -> Result<Arc<dyn SmsTransport>, ConfigError> {
        Ok(match self.provider {
            SmsProvider::Dev => Arc::new(DevSms::new(self.dev_dir(data_dir))),
            SmsProvider::Twilio => Arc::new(
                TwilioSms::new(self.twilio_options()?).map_err(|m| invalid("sms.twilio", m))?,
            ),
            SmsProvider::Webhook => {
                const BY: &str = "sms.provider = webhook";
                let url = self
                    .webhook
                    .url
                    .clone()
                    .ok_or_else(|| missing(BY, "sms.webhook.url", "TWOFOLD_SMS_WEBHOOK_URL"))?;
                let secret = self
                    .webhook
                    .secret
                    .clone()
                    .filter(|s| !s.expose().is_empty())
                    .ok_or_else(|| {
                        missing(BY, "sms.webhook.secret", "TWOFOLD_SMS_WEBHOOK_SECRET")
                    })?;
                Arc::new(
                    WebhookSms::new(url, secret, self.timeout()?)
                        .map_err(|m| invalid("sms.webhook.url", m))?,
                )
            }
        })
    }

    /// Settings that work but deserve a line in the startup log.
    pub fn warnings(&self, data_dir: &Path) -> Vec<String> {
        let mut w = Vec::new();
        match self.provider {
            SmsProvider::Dev => w.push(format!(
                "sms.provider = dev: text messages are written to {}, not sent",
                self.dev_dir(data_dir).display()
            )),
            SmsProvider::Twilio => {
                let url = &self.twilio.base_url;
                if url.starts_with("http://") && !is_loopback_host(url_host(url)) {
                    w.push(format!(
                        "sms.twilio.base_url = {url}: credentials and codes travel unencrypted"
                    ));
                }
            }
            SmsProvider::Webhook => {
                let url = self.webhook.url.as_deref().unwrap_or("");
                if url.starts_with("http://") && !is_loopback_host(url_host(url)) {
                    w.push(format!(
                        "sms.webhook.url = {url}: codes travel unencrypted; use https://"
                    ));
                }
                if self
                    .webhook
                    .secret
                    .as_ref()
                    .is_some_and(|s| s.expose().len() < MIN_WEBHOOK_SECRET_LEN)
                {
                    w.push(format!(
                        "sms.webhook.secret is shorter than {MIN_WEBHOOK_SECRET_LEN} characters: \
                         use a long random value"
                    ));
                }
            }
        }
        w
    }
}

// -------------------------------------------------------------------------------------- worker

/// The delivery worker's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct WorkerConfig {
    /// Messages claimed per round.
    pub batch: u32,
    /// How long a claim lasts; a worker that dies releases its messages after this.
    pub lease_secs: u64,
    /// Attempts (the first one included) before a message is given up as failed.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubles with each further attempt.
    pub backoff_base_secs: u64,
    /// Longest delay between two attempts.
    pub backoff_max_secs: u64,
    /// How often the queue is checked when nobody wakes the worker.
    pub poll_interval_ms: u64,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// Let webhooks reach loopback and private addresses (development and tests only; in
    /// production that is server-side request forgery).
    pub allow_private_webhooks: bool,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: 32,
            lease_secs: 60,
            max_attempts: 12,
            backoff_base_secs: 5,
            backoff_max_secs: 3600,
            poll_interval_ms: 1000,
            concurrency: 8,
            allow_private_webhooks: false,
        }
    }
}

impl WorkerConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive: [(&'static str, u64); 6] = [
            ("batch", self.batch.into()),
            ("lease_secs", self.lease_secs),
            ("max_attempts", self.max_attempts.into()),
            ("backoff_base_secs", self.backoff_base_secs),
            ("poll_interval_ms", self.poll_interval_ms),
            ("concurrency", self.concurrency as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        if self.backoff_max_secs < self.backoff_base_secs {
            return Err(invalid(
                "backoff_max_secs",
                "must not be smaller than backoff_base_secs",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(default)]
    struct Root {
        email: EmailConfig,
        sms: SmsConfig,
        delivery: WorkerConfig,
    }

    #[test]
    fn empty_config_means_dev_outboxes() {
        let root: Root = toml::from_str("").unwrap();
        assert_eq!(root.email.transport, EmailTransportKind::Dev);
        assert_eq!(root.sms.provider, SmsProvider::Dev);
        assert_eq!(root.delivery, WorkerConfig::default());
        let data = Path::new("/tmp/data");
        assert!(root.email.build(data).is_ok());
        assert!(root.sms.build(data).is_ok());
        assert_eq!(root.email.from_address().unwrap(), DEV_FROM_ADDRESS);
    }

    #[tokio::test]
    async fn parses_a_full_file_and_redacts_secrets() {
        let root: Root = toml::from_str(
            r#"
            [email]
            transport = "smtp"
            host = "smtp.example.com"
            security = "tls"
            username = "u"
            password = "hunter2-password"
            from_address = "no-reply@example.com"
            [sms]
            provider = "twilio"
            [sms.twilio]
            account_sid = "AC123"
            auth_token = "twilio-token-secret"
            from = "+15005550006"
            [delivery]
            batch = 5
            "#,
        )
        .unwrap();
        assert_eq!(root.email.port(), 465);
        assert_eq!(root.delivery.batch, 5);
        assert_eq!(root.delivery.lease_secs, 60);
        let dbg = format!("{:?} {:?}", root.email, root.sms);
        assert!(
            !dbg.contains("hunter2") && !dbg.contains("twilio-token"),
            "{dbg}"
        );
        assert!(dbg.contains("<redacted>"));
        let data = Path::new("/tmp/data");
        assert!(root.email.build(data).is_ok());
        assert!(root.sms.build(data).is_ok());
    }

    #[test]
    fn missing_settings_say_what_to_set() {
        let mut e = EmailConfig::default();
        e.apply_env("EMAIL_TRANSPORT", "smtp").unwrap();
        e.apply_env("EMAIL_FROM_ADDRESS", "a@example.com").unwrap();
        let err = e.build(Path::new(".")).err().unwrap().to_string();
        assert_eq!(
            err,
            "email.transport = smtp needs email.host; set it in the config file or \
             TWOFOLD_EMAIL_HOST"
        );
        e.host = Some("mail".into());
        e.from_address = None;
        let err = e.build(Path::new(".")).err().unwrap().to_string();
        assert!(err.contains("TWOFOLD_EMAIL_FROM_ADDRESS"), "{err}");
        e.from_address = Some("not an address".into());
        assert!(e.build(Path::new(".")).is_err());
        e.from_address = Some("a@example.com".into());
        e.username = Some("u".into());
        let err = e.build(Path::new(".")).err().unwrap().to_string();
        assert!(err.contains("email.password"), "{err}");

        let mut s = SmsConfig::default();
        s.apply_env("SMS_PROVIDER", "webhook").unwrap();
        let err = s.build(Path::new(".")).err().unwrap().to_string();
        assert!(err.contains("TWOFOLD_SMS_WEBHOOK_URL"), "{err}");
        s.provider = SmsProvider::Twilio;
        let err = s.build(Path::new(".")).err().unwrap().to_string();
        assert!(err.contains("sms.twilio.account_sid"), "{err}");
        assert!(s.apply_env("SMS_PROVIDER", "carrier-pigeon").is_err());
        assert_eq!(s.apply_env("LISTEN", "x"), Ok(false));
    }

    #[test]
    fn warnings_for_clear_text() {
        let mut e = EmailConfig {
            transport: EmailTransportKind::Smtp,
            host: Some("mail.example.com".into()),
            security: SmtpSecurity::None,
            ..Default::default()
        };
        assert_eq!(e.warnings(Path::new(".")).len(), 1);
        e.host = Some("127.0.0.1".into());
        assert!(e.warnings(Path::new(".")).is_empty());
        let s = SmsConfig {
            provider: SmsProvider::Webhook,
            webhook: WebhookConfig {
                url: Some("http://gateway.example.com:8080/send".into()),
                secret: Some(Secret::new("short")),
            },
            ..Default::default()
        };
        assert_eq!(s.warnings(Path::new(".")).len(), 2);
        assert_eq!(url_host("http://[::1]:80/x"), "::1");
        assert_eq!(url_host("https://u:p@h.example:1/x"), "h.example");
    }

    #[test]
    fn worker_config_is_checked() {
        assert!(WorkerConfig::default().validate().is_ok());
        let bad = WorkerConfig {
            concurrency: 0,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
        let bad = WorkerConfig {
            backoff_max_secs: 1,
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
