//! Email: the [`EmailTransport`] port, SMTP delivery with `lettre`, and a development mailbox.
//!
//! Every email is built the same way whichever transport carries it ([`to_rfc5322`]): an
//! RFC 5322 message with `From` (the tenant's sender name and the server's address), `To`,
//! `Subject`, `Date`, `Message-ID: <message_id>` and `Auto-Submitted: auto-generated`
//! (RFC 3834, so vacation responders stay quiet), and a `multipart/alternative` body
//! (RFC 2046) with the plain text first and the HTML last, as clients prefer the last part
//! they can show.
//!
//! The `Message-ID` is the outbox's `message_id`, identical on every retry: if a worker dies
//! between the server's "250 OK" and recording it, the message is sent again with the same id
//! and receivers that deduplicate on it show it once.
//!
//! [`SmtpMailer`] speaks SMTP (RFC 5321) with optional STARTTLS (RFC 3207) or implicit TLS
//! (RFC 8314), via rustls with the `ring` provider and the Mozilla roots plus an optional
//! extra CA file. Its errors are classified for the worker: 4xx replies, connection failures
//! and timeouts are [`SendError::Transient`]; 5xx replies are [`SendError::Permanent`], except
//! authentication and "STARTTLS first" refusals (530, 534, 535, 538), which are a problem of
//! the server's configuration, not of the message, and are retried so that fixing the
//! configuration still delivers what was queued.
//!
//! [`DevMailbox`] writes the same bytes to `.eml` files, for development and demos.

use crate::spool::{spool, DevOutput};
use crate::SendError;
use async_trait::async_trait;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;

/// One email, rendered and addressed.
#[derive(Clone, PartialEq, Eq)]
pub struct Email {
    /// Becomes `Message-ID: <message_id>`; stable across retries.
    pub message_id: String,
    /// The display name in `From` (the tenant's sender name).
    pub from_name: String,
    pub from_address: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

impl std::fmt::Debug for Email {
    // The bodies may hold a one-time code: keep them out of debug output and logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email")
            .field("message_id", &self.message_id)
            .field("from_name", &self.from_name)
            .field("from_address", &self.from_address)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

/// Hands emails to something that delivers them.
#[async_trait]
pub trait EmailTransport: Send + Sync + 'static {
    async fn send(&self, email: &Email) -> Result<(), SendError>;
}

/// `Auto-Submitted: auto-generated` (RFC 3834 §5).
#[derive(Clone)]
struct AutoSubmitted;

impl Header for AutoSubmitted {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("Auto-Submitted")
    }
    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), "auto-generated".into())
    }
}

/// A message id safe to put between `<` and `>`: printable ASCII without spaces or brackets.
fn valid_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// Builds the RFC 5322 message. Errors here are [`SendError::Permanent`]: a malformed address
/// will not become valid by waiting.
pub fn build_message(email: &Email) -> Result<Message, SendError> {
    if !valid_message_id(&email.message_id) {
        return Err(SendError::Permanent(format!(
            "message id {:?} cannot be used as a Message-ID",
            email.message_id
        )));
    }
    let from_address: Address = email.from_address.parse().map_err(|e| {
        SendError::Permanent(format!(
            "from address {:?} is not valid: {e}",
            email.from_address
        ))
    })?;
    let to: Address = email
        .to
        .parse()
        .map_err(|e| SendError::Permanent(format!("recipient address is not valid: {e}")))?;
    let from_name = email.from_name.trim();
    let from = Mailbox::new(
        (!from_name.is_empty()).then(|| from_name.to_string()),
        from_address,
    );
    Message::builder()
        .from(from)
        .to(Mailbox::new(None, to))
        .subject(email.subject.clone())
        .message_id(Some(format!("<{}>", email.message_id)))
        .header(AutoSubmitted)
        .multipart(MultiPart::alternative_plain_html(
            email.text.clone(),
            email.html.clone(),
        ))
        .map_err(|e| SendError::Permanent(format!("cannot build the email: {e}")))
}

/// The message as it goes on the wire (CRLF line endings).
pub fn to_rfc5322(email: &Email) -> Result<Vec<u8>, SendError> {
    build_message(email).map(|m| m.formatted())
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    /// Plain text. Only for a relay on the same host or network.
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (RFC 3207); usually port 587.
    #[default]
    Starttls,
    /// TLS from the first byte (RFC 8314 "implicit TLS"); usually port 465.
    Tls,
}

impl SmtpSecurity {
    pub fn default_port(&self) -> u16 {
        match self {
            SmtpSecurity::None => 25,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::Tls => 465,
        }
    }
    pub fn as_str(&self) -> &'static str {
        match self {
            SmtpSecurity::None => "none",
            SmtpSecurity::Starttls => "starttls",
            SmtpSecurity::Tls => "tls",
        }
    }
}

/// Everything [`SmtpMailer::new`] needs; [`crate::EmailConfig`] produces it from the config
/// file.
#[derive(Clone)]
pub struct SmtpOptions {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    /// Username and password for SMTP AUTH.
    pub credentials: Option<(String, crate::Secret)>,
    /// The longest one message may take, connecting included.
    pub timeout: Duration,
    /// PEM certificates trusted in addition to the Mozilla roots (a private CA).
    pub extra_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for SmtpOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|c| &c.0))
            .field("timeout", &self.timeout)
            .field("extra_ca", &self.extra_ca_pem.is_some())
            .finish()
    }
}

/// Delivers email over SMTP, reusing connections (lettre's pool) across messages.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    timeout: Duration,
    describe: String,
}

impl std::fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.describe)
            .finish()
    }
}

impl SmtpMailer {
    /// Builds the transport; nothing is connected until the first message. Fails on a
    /// malformed CA file or TLS setup, and when called outside a Tokio runtime (the connection
    /// pool lives on it).
    pub fn new(opts: SmtpOptions) -> Result<Self, String> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err("the SMTP mailer must be created inside a Tokio runtime".into());
        }
        // builder_dangerous: no TLS by default; we add exactly the TLS the operator asked for.
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&opts.host)
            .port(opts.port)
            .timeout(Some(opts.timeout));
        if opts.security != SmtpSecurity::None {
            let mut tls = TlsParameters::builder(opts.host.clone());
            if let Some(pem) = &opts.extra_ca_pem {
                let cert = Certificate::from_pem(pem)
                    .map_err(|e| format!("the CA file holds no usable PEM certificate: {e}"))?;
                tls = tls.add_root_certificate(cert);
            }
            let params = tls
                .build_rustls()
                .map_err(|e| format!("cannot set up TLS for {}: {e}", opts.host))?;
            builder = builder.tls(match opts.security {
                SmtpSecurity::Tls => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some((user, pass)) = &opts.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), pass.expose().to_string()));
        }
        Ok(Self {
            transport: builder.build(),
            timeout: opts.timeout,
            describe: format!("{}:{} ({})", opts.host, opts.port, opts.security.as_str()),
        })
    }
}

#[async_trait]
impl EmailTransport for SmtpMailer {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let message = build_message(email)?;
        // lettre's async transport bounds only the TCP connect; a server that accepts and then
        // stalls would hold the message (and its lease) forever, so bound the whole exchange.
        match tokio::time::timeout(self.timeout, self.transport.send(message)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(classify_smtp(&e, &self.describe)),
            Err(_) => Err(SendError::Transient(format!(
                "SMTP {}: no answer within {} s",
                self.describe,
                self.timeout.as_secs_f32()
            ))),
        }
    }
}

/// Reply codes that refuse the session rather than the message: authentication required or
/// failed, or STARTTLS required. Retrying after the operator fixes the config will work.
const SESSION_REFUSALS: [&str; 4] = ["530", "534", "535", "538"];

/// Maps a lettre error to transient / permanent; see the module documentation.
pub fn classify_smtp(e: &lettre::transport::smtp::Error, server: &str) -> SendError {
    let text = format!("SMTP {server}: {e}");
    match e.status() {
        Some(code) => {
            let code = code.to_string();
            if SESSION_REFUSALS.contains(&code.as_str()) {
                SendError::Transient(format!(
                    "{text} (the server refused our session: check email.username, \
                     email.password and email.security)"
                ))
            } else if code.starts_with('5') {
                SendError::Permanent(text)
            } else {
                SendError::Transient(text)
            }
        }
        // No reply code: the connection failed, timed out, TLS broke or the reply was garbled.
        // Nothing about the message itself was refused, so it is worth another try.
        None => SendError::Transient(text),
    }
}

/// Writes each email as an `.eml` file instead of sending it: for development, demos and
/// tests. Files are written atomically with mode 0600 and named `<UTC time>-<message id>.eml`.
#[derive(Debug, Clone)]
pub struct DevMailbox {
    dir: PathBuf,
}

impl DevMailbox {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

const MAILBOX: DevOutput = DevOutput {
    ext: "eml",
    name: "dev mailbox",
    written: "dev mailbox: email written to a file instead of sent",
};

#[async_trait]
impl EmailTransport for DevMailbox {
    async fn send(&self, email: &Email) -> Result<(), SendError> {
        let bytes = to_rfc5322(email)?;
        spool(&self.dir, &MAILBOX, &email.message_id, bytes).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn email() -> Email {
        Email {
            message_id: "abc123@twofold".into(),
            from_name: "Acme Security".into(),
            from_address: "no-reply@example.com".into(),
            to: "alice@example.org".into(),
            subject: "Your Acme verification code".into(),
            text: "Your code is 123456".into(),
            html: "<p>Your code is <b>123456</b></p>".into(),
        }
    }

    #[test]
    fn message_has_the_headers_and_both_parts() {
        let raw = String::from_utf8(to_rfc5322(&email()).unwrap()).unwrap();
        assert!(raw.contains("Message-ID: <abc123@twofold>\r\n"), "{raw}");
        assert!(
            raw.contains("From: \"Acme Security\" <no-reply@example.com>\r\n"),
            "{raw}"
        );
        assert!(raw.contains("To: alice@example.org\r\n"), "{raw}");
        assert!(
            raw.contains("Subject: Your Acme verification code\r\n"),
            "{raw}"
        );
        assert!(raw.contains("Auto-Submitted: auto-generated\r\n"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        let text_at = raw.find("text/plain").unwrap();
        let html_at = raw.find("text/html").unwrap();
        assert!(text_at < html_at, "plain text first, HTML last");
    }

    #[test]
    fn bad_addresses_and_ids_are_permanent() {
        let mut e = email();
        e.to = "not an address".into();
        assert!(matches!(to_rfc5322(&e), Err(SendError::Permanent(_))));
        let mut e = email();
        e.message_id = "a b>\r\nBcc: x@y".into();
        assert!(matches!(to_rfc5322(&e), Err(SendError::Permanent(_))));
    }

    #[test]
    fn debug_hides_the_bodies() {
        let s = format!("{:?}", email());
        assert!(!s.contains("123456"), "{s}");
    }
}
