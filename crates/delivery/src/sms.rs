//! SMS: the [`SmsTransport`] port and its providers.
//!
//! - [`TwilioSms`]: Twilio's Programmable Messaging REST API
//!   (`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded `To`, `From` or
//!   `MessagingServiceSid`, `Body`, HTTP basic auth with the account SID and auth token). The
//!   outbox's `message_id` goes in `I-Twilio-Idempotency-Token`, so a resend after a crash is
//!   not billed or delivered twice.
//! - [`WebhookSms`]: a signed JSON POST to any URL, for gateways Twofold does not know.
//! - [`DevSms`]: writes each SMS to a `.txt` file, for development.
//!
//! HTTP statuses are classified the same way for both providers: 2xx is delivered; 408, 429
//! and 5xx, connection errors and timeouts are [`SendError::Transient`]; every other status
//! (a 4xx: bad number, bad credentials, bad request; or a redirect, which is not followed
//! because a POST must not silently turn into a GET) is [`SendError::Permanent`].
//!
//! # Webhook protocol
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Idempotency-Key: <message_id>
//! X-Twofold-Timestamp: <unix seconds>
//! X-Twofold-Signature: v1=<hex(HMAC-SHA256(secret, "<timestamp>.<body>"))>
//!
//! {"message_id":"…","to":"+447700900123","body":"123456 is your …","tenant":"acme"}
//! ```
//!
//! To verify a request, a receiver:
//! 1. reads `X-Twofold-Timestamp` and rejects it if it is more than a few minutes from its own
//!    clock (this bounds replays);
//! 2. computes HMAC-SHA-256 with the shared secret (its UTF-8 bytes) as the key over the
//!    timestamp exactly as sent, one `.` (0x2E), and the raw request body bytes exactly as
//!    received (before any JSON parsing);
//! 3. compares the lowercase hex digest with the value after `v1=` in constant time;
//! 4. drops a request whose `Idempotency-Key` it has already handled (a retry after a crash).
//!
//! The `v1=` prefix leaves room for a future scheme; a receiver should accept any of several
//! comma-separated `v1=` values, so the secret can be rotated by sending two signatures.
//!
//! Any 2xx answer means "accepted"; answer 429 or 5xx to have the message retried later, and
//! another 4xx to reject it for good.

use crate::spool::{human_timestamp, spool, DevOutput};
use crate::SendError;
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// One SMS, rendered and addressed.
#[derive(Clone, PartialEq, Eq)]
pub struct Sms {
    /// The idempotency key given to the provider; stable across retries.
    pub message_id: String,
    /// E.164 number.
    pub to: String,
    pub body: String,
    pub tenant_slug: String,
}

impl std::fmt::Debug for Sms {
    // The body usually holds a one-time code: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sms")
            .field("message_id", &self.message_id)
            .field("to", &self.to)
            .field("tenant_slug", &self.tenant_slug)
            .finish_non_exhaustive()
    }
}

/// Hands SMS messages to something that delivers them.
#[async_trait]
pub trait SmsTransport: Send + Sync + 'static {
    async fn send(&self, sms: &Sms) -> Result<(), SendError>;
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("twofold/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Errors from reqwest before any status arrived.
fn classify_request_error(who: &str, e: reqwest::Error) -> SendError {
    // Connection refused, DNS, TLS, timeouts, a reset mid-request: the provider may be fine
    // again in a minute. Only a request we could not even build is our own fault.
    if e.is_builder() {
        SendError::Permanent(format!("{who}: cannot build the request: {e}"))
    } else {
        SendError::Transient(format!("{who}: {}", error_chain(&e)))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Whether a non-2xx status is worth retrying.
pub fn status_is_transient(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
        || status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
}

fn classify_status(status: reqwest::StatusCode, detail: String) -> SendError {
    if status_is_transient(status) {
        SendError::Transient(detail)
    } else {
        SendError::Permanent(detail)
    }
}

/// Keeps error text from a provider short and on one line.
fn snippet(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    one_line.trim().to_string()
}

// ------------------------------------------------------------------------------------ Twilio

/// Settings for [`TwilioSms::new`].
#[derive(Clone)]
pub struct TwilioOptions {
    /// `https://api.twilio.com` in production; tests point it at a local server.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: crate::Secret,
    /// The sending number or alphanumeric sender id; optional with a messaging service.
    pub from: Option<String>,
    /// A Messaging Service picks the sender from its pool; preferred when set.
    pub messaging_service_sid: Option<String>,
    pub timeout: Duration,
}

impl std::fmt::Debug for TwilioOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioOptions")
            .field("base_url", &self.base_url)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &self.auth_token)
            .field("from", &self.from)
            .field("messaging_service_sid", &self.messaging_service_sid)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Sends SMS through Twilio's Messages API.
pub struct TwilioSms {
    client: reqwest::Client,
    url: String,
    opts: TwilioOptions,
}

impl std::fmt::Debug for TwilioSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioSms").field("url", &self.url).finish()
    }
}

impl TwilioSms {
    pub fn new(opts: TwilioOptions) -> Result<Self, String> {
        if opts.from.is_none() && opts.messaging_service_sid.is_none() {
            return Err("Twilio needs a sender: set `from` or `messaging_service_sid`".into());
        }
        let sid = &opts.account_sid;
        // The SID goes into the URL path: allow only what real SIDs are made of.
        if sid.is_empty() || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("Twilio account SID {sid:?} is not valid"));
        }
        let url = format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            opts.base_url.trim_end_matches('/')
        );
        Ok(Self {
            client: http_client(opts.timeout)?,
            url,
            opts,
        })
    }
}

#[derive(serde::Deserialize)]
struct TwilioError {
    code: Option<i64>,
    message: Option<String>,
}

#[async_trait]
impl SmsTransport for TwilioSms {
    async fn send(&self, sms: &Sms) -> Result<(), SendError> {
        let mut form: Vec<(&str, &str)> = vec![("To", &sms.to), ("Body", &sms.body)];
        if let Some(service) = &self.opts.messaging_service_sid {
            form.push(("MessagingServiceSid", service));
        }
        // With a messaging service, Twilio still honours an explicit From from its pool.
        if let Some(from) = &self.opts.from {
            form.push(("From", from));
        }
        let response = self
            .client
            .post(&self.url)
            .basic_auth(&self.opts.account_sid, Some(self.opts.auth_token.expose()))
            .header("I-Twilio-Idempotency-Token", &sms.message_id)
            .form(&form)
            .send()
            .await
            .map_err(|e| classify_request_error("Twilio", e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        // Twilio answers errors as {"code": 21211, "message": "...", "more_info": ..., ...}.
        let detail = match serde_json::from_str::<TwilioError>(&body) {
            Ok(TwilioError {
                code,
                message: Some(message),
            }) => match code {
                Some(code) => format!("Twilio {status}: error {code}: {}", snippet(&message)),
                None => format!("Twilio {status}: {}", snippet(&message)),
            },
            _ => format!("Twilio {status}: {}", snippet(&body)),
        };
        Err(classify_status(status, detail))
    }
}

// ----------------------------------------------------------------------------------- webhook

/// Sends SMS as a signed JSON POST; see the module documentation for the protocol.
pub struct WebhookSms {
    client: reqwest::Client,
    url: String,
    secret: crate::Secret,
}

impl std::fmt::Debug for WebhookSms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSms")
            .field("url", &self.url)
            .finish()
    }
}

#[derive(serde::Serialize)]
struct WebhookBody<'a> {
    message_id: &'a str,
    to: &'a str,
    body: &'a str,
    tenant: &'a str,
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`, the value of `X-Twofold-Signature`.
pub fn webhook_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", twofold_crypto::hex(&mac.finalize().into_bytes()))
}

impl WebhookSms {
    pub fn new(url: String, secret: crate::Secret, timeout: Duration) -> Result<Self, String> {
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(format!(
                "webhook url {url:?} must be an https:// (or http://) URL"
            ));
        }
        if secret.expose().is_empty() {
            return Err("the webhook secret must not be empty".into());
        }
        Ok(Self {
            client: http_client(timeout)?,
            url,
            secret,
        })
    }
}

#[async_trait]
impl SmsTransport for WebhookSms {
    async fn send(&self, sms: &Sms) -> Result<(), SendError> {
        // Serialise once: the signature covers exactly the bytes that are sent.
        let body = serde_json::to_vec(&WebhookBody {
            message_id: &sms.message_id,
            to: &sms.to,
            body: &sms.body,
            tenant: &sms.tenant_slug,
        })
        .map_err(|e| SendError::Permanent(format!("webhook: cannot encode the body: {e}")))?;
        post_signed(
            &self.client,
            &self.url,
            self.secret.expose().as_bytes(),
            &sms.message_id,
            body,
            &[],
            "SMS webhook",
        )
        .await
    }
}

/// POSTs `body` as JSON, signed as the module documents (`X-Twofold-Timestamp`,
/// `X-Twofold-Signature`), with `Idempotency-Key: <message_id>` and any `extra` headers; the
/// answer is classified like every provider's.
pub(crate) async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    message_id: &str,
    body: Vec<u8>,
    extra: &[(&str, &str)],
    who: &str,
) -> Result<(), SendError> {
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        .to_string();
    let signature = webhook_signature(secret, &timestamp, &body);
    let mut request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("Idempotency-Key", message_id)
        .header("X-Twofold-Timestamp", &timestamp)
        .header("X-Twofold-Signature", signature);
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    let response = request
        .body(body)
        .send()
        .await
        .map_err(|e| classify_request_error(who, e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    // A webhook's answer is the integrator's (or whoever the URL reaches): keep only the status,
    // so the outbox never relays a body from an internal service back to the tenant.
    let detail = if who == "webhook" {
        format!("{who} {status}")
    } else {
        let text = response.text().await.unwrap_or_default();
        format!("{who} {status}: {}", snippet(&text))
    };
    Err(classify_status(status, detail))
}

/// Whether an address is on the public internet: webhooks must not reach loopback, private,
/// link-local (cloud metadata), shared or multicast addresses (server-side request forgery).
pub fn is_public(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public(IpAddr::V4(v4)),
            None => {
                let seg = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (seg & 0xfe00) == 0xfc00
                    || (seg & 0xffc0) == 0xfe80)
            }
        },
    }
}

/// Delivers webhook events (`Channel::Webhook`): the body is the event's JSON, signed with the
/// webhook's own secret, which travels sealed in the message's parameters.
pub struct EventPoster {
    client: Result<reqwest::Client, String>,
    timeout: Duration,
    /// Development and tests only: let webhooks reach this machine and private networks.
    allow_private: bool,
}

impl EventPoster {
    pub fn new(timeout: Duration, allow_private: bool) -> Self {
        Self {
            client: http_client(timeout),
            timeout,
            allow_private,
        }
    }

    /// A client pinned to the addresses just checked, so a DNS answer that changes between
    /// the check and the connection (rebinding) cannot redirect the request inward.
    async fn checked_client(&self, url: &str) -> Result<reqwest::Client, SendError> {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| SendError::Permanent(format!("webhook URL: {e}")))?;
        let host = parsed
            .host_str()
            .ok_or_else(|| SendError::Permanent("webhook URL has no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = parsed.port_or_known_default().unwrap_or(443);
        let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| SendError::Transient(format!("webhook host: {e}")))?
            .collect();
        if addrs.is_empty() || addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(SendError::Permanent(
                "webhook host resolves to a non-public address; refused".into(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none());
        for a in &addrs {
            builder = builder.resolve(&host, *a);
        }
        builder
            .build()
            .map_err(|e| SendError::Transient(format!("webhook client: {e}")))
    }

    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        message_id: &str,
        event: &str,
        payload: &str,
    ) -> Result<(), SendError> {
        let checked;
        let client = if self.allow_private {
            self.client
                .as_ref()
                .map_err(|e| SendError::Transient(format!("webhook client: {e}")))?
        } else {
            checked = self.checked_client(url).await?;
            &checked
        };
        post_signed(
            client,
            url,
            secret.as_bytes(),
            message_id,
            payload.as_bytes().to_vec(),
            &[("X-Twofold-Event", event)],
            "webhook",
        )
        .await
    }
}

// --------------------------------------------------------------------------------------- dev

/// Writes each SMS as a `.txt` file instead of sending it: for development, demos and tests.
/// Files are written atomically with mode 0600 and named `<UTC time>-<message id>.txt`.
#[derive(Debug, Clone)]
pub struct DevSms {
    dir: PathBuf,
}

impl DevSms {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

const SMS_OUTBOX: DevOutput = DevOutput {
    ext: "txt",
    name: "dev SMS outbox",
    written: "dev SMS: message written to a file instead of sent",
};

#[async_trait]
impl SmsTransport for DevSms {
    async fn send(&self, sms: &Sms) -> Result<(), SendError> {
        let text = format!(
            "Message-ID: {}\nTo: {}\nTenant: {}\nDate: {}\n\n{}\n",
            sms.message_id,
            sms.to,
            sms.tenant_slug,
            human_timestamp(SystemTime::now()),
            sms.body
        );
        spool(&self.dir, &SMS_OUTBOX, &sms.message_id, text.into_bytes()).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_only_reach_public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["93.184.216.34", "2606:4700::6810:84e5", "8.8.8.8"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn signature_matches_an_independent_computation() {
        // python3 -c 'import hmac,hashlib; print(hmac.new(b"Jefe",
        //   b"1700000000.{\"a\":1}", hashlib.sha256).hexdigest())'
        let sig = webhook_signature(b"Jefe", "1700000000", br#"{"a":1}"#);
        assert_eq!(
            sig,
            "v1=fa5f6481efc59da48b19c9dc10196c9953e5651f8304b3a318b6b87d70272e0a"
        );
    }

    #[test]
    fn statuses() {
        use reqwest::StatusCode as S;
        for s in [
            S::TOO_MANY_REQUESTS,
            S::INTERNAL_SERVER_ERROR,
            S::BAD_GATEWAY,
            S::REQUEST_TIMEOUT,
        ] {
            assert!(status_is_transient(s), "{s}");
        }
        for s in [S::BAD_REQUEST, S::UNAUTHORIZED, S::NOT_FOUND, S::FOUND] {
            assert!(!status_is_transient(s), "{s}");
        }
    }

    #[tokio::test]
    async fn dev_sms_writes_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let t = DevSms::new(dir.path());
        t.send(&Sms {
            message_id: "m1@twofold".into(),
            to: "+447700900123".into(),
            body: "123456 is your code".into(),
            tenant_slug: "acme".into(),
        })
        .await
        .unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: +447700900123\n"), "{text}");
        assert!(text.ends_with("\n\n123456 is your code\n"), "{text}");
    }
}
