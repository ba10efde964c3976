//! The few API calls the load generator needs, and provisioning of the benchmark users.

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode, Url};
use serde::Deserialize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use twofold_otp::uri::KeyUri;
use twofold_otp::OtpParams;

/// Seconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Seconds since the Unix epoch with sub-second precision.
pub fn unix_secs_f64() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// One provisioned user with a confirmed TOTP factor.
pub struct BenchUser {
    /// Full URL of `POST /v1/tenants/{t}/users/{u}/verify` on each node, in `--url` order.
    pub verify_urls: Vec<Url>,
    pub secret: Vec<u8>,
    pub params: OtpParams,
    /// The TOTP step consumed by the confirmation (the server refuses it again).
    pub confirmed_step: u64,
}

/// Talks to one Twofold server with one bearer token.
#[derive(Clone)]
pub struct Api {
    pub client: Client,
    pub base: Url,
    pub auth: HeaderValue,
}

/// An API answer that was not what we asked for.
#[derive(Debug)]
pub struct ApiFailure {
    pub what: String,
    /// `None` for a transport failure (connection refused, timeout, ...).
    pub status: Option<StatusCode>,
    pub detail: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(s) => write!(f, "{} answered {}: {}", self.what, s, self.detail)?,
            None => write!(f, "{} failed: {}", self.what, self.detail)?,
        }
        let hint = match self.status.map(|s| s.as_u16()) {
            None => " (is the server running at --url? start it with `twofold serve`)",
            Some(401) => " (the API key was not accepted: pass a valid `tfk_...` token with --api-key)",
            Some(403) => " (--api-key must be an operator key: create one with `twofold apikey create --operator`)",
            Some(503) | Some(429) => " (the server is overloaded: lower --concurrency)",
            _ => "",
        };
        f.write_str(hint)
    }
}

/// Builds the HTTP client: keep-alive pool large enough for every worker, no Nagle delay.
pub fn client(pool: usize) -> Result<Client, String> {
    Client::builder()
        .pool_max_idle_per_host(pool)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

pub fn bearer(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "the API key contains characters not allowed in a header".to_string())
}

impl Api {
    pub fn url(&self, path: &str) -> Result<Url, String> {
        Self::join(&self.base, path)
    }

    fn join(base: &Url, path: &str) -> Result<Url, String> {
        base.join(path)
            .map_err(|e| format!("cannot build a URL from --url and {path}: {e}"))
    }

    /// The same credentials against another node.
    pub fn on(&self, base: &Url) -> Api {
        Api {
            base: base.clone(),
            ..self.clone()
        }
    }

    /// POSTs a JSON body and returns the status and body, retrying a few times on 503/429.
    async fn post(&self, what: &str, path: &str, body: String) -> Result<Vec<u8>, ApiFailure> {
        let url = self.url(path).map_err(|detail| ApiFailure {
            what: what.into(),
            status: None,
            detail,
        })?;
        let mut delay = Duration::from_millis(50);
        for attempt in 0..6 {
            let resp = self
                .client
                .post(url.clone())
                .header(AUTHORIZATION, self.auth.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .map_err(|e| ApiFailure {
                    what: what.into(),
                    status: None,
                    detail: error_chain(&e),
                })?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(|e| ApiFailure {
                what: what.into(),
                status: Some(status),
                detail: format!("cannot read the body: {}", error_chain(&e)),
            })?;
            if status.is_success() {
                return Ok(bytes.to_vec());
            }
            let retryable = status == StatusCode::SERVICE_UNAVAILABLE
                || status == StatusCode::TOO_MANY_REQUESTS;
            if !retryable || attempt == 5 {
                return Err(ApiFailure {
                    what: what.into(),
                    status: Some(status),
                    detail: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
                });
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
        Err(ApiFailure {
            what: what.into(),
            status: None,
            detail: "gave up after retries".into(),
        })
    }

    async fn post_parse<T: for<'de> Deserialize<'de>>(
        &self,
        what: &str,
        path: &str,
        body: String,
    ) -> Result<T, ApiFailure> {
        let bytes = self.post(what, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
            what: what.into(),
            status: None,
            detail: format!(
                "unexpected answer ({e}): {}",
                String::from_utf8_lossy(&bytes)
                    .chars()
                    .take(300)
                    .collect::<String>()
            ),
        })
    }
}

/// The text of an error and its causes, e.g. "error sending request: connection refused".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[derive(Deserialize)]
struct CreatedTenant {
    api_key: IssuedKey,
}

#[derive(Deserialize)]
struct IssuedKey {
    token: String,
}

#[derive(Deserialize)]
struct Enrollment {
    factor_id: String,
    otpauth_uri: String,
}

#[derive(Deserialize)]
struct Confirmed {
    confirmed: bool,
}

/// A random-enough suffix without an RNG dependency: std's `RandomState` is seeded per process
/// from the OS, mixed with the time and pid.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.write_u32(std::process::id());
    format!("{:012x}", h.finish() & 0xffff_ffff_ffff)
}

/// Creates `bench-<random>` with the operator key; returns its slug and tenant-scoped token.
pub async fn create_tenant(operator: &Api) -> Result<(String, String), ApiFailure> {
    let slug = format!("bench-{}", random_suffix());
    let body = serde_json::json!({ "slug": slug, "name": format!("load test {slug}") });
    let created: CreatedTenant = operator
        .post_parse(
            "create tenant (POST /v1/tenants)",
            "/v1/tenants",
            body.to_string(),
        )
        .await?;
    Ok((slug, created.api_key.token))
}

/// Creates one user through `api`, enrols a TOTP factor and confirms it with the current code;
/// `nodes` are the bases of every node, for the user's verify URLs.
async fn provision_one(
    api: &Api,
    nodes: &[Url],
    slug: &str,
    i: usize,
    period: u32,
) -> Result<BenchUser, ApiFailure> {
    let ext = format!("u{i:07}");
    let users = format!("/v1/tenants/{slug}/users");
    api.post(
        "create user",
        &users,
        serde_json::json!({ "external_id": ext }).to_string(),
    )
    .await?;
    let enrolled: Enrollment = api
        .post_parse(
            "enrol TOTP",
            &format!("{users}/{ext}/factors/totp"),
            serde_json::json!({ "period": period }).to_string(),
        )
        .await?;
    let bad = |detail: String| ApiFailure {
        what: "enrol TOTP".into(),
        status: None,
        detail,
    };
    let key = KeyUri::parse(&enrolled.otpauth_uri)
        .map_err(|e| bad(format!("cannot parse the otpauth URI: {e}")))?;
    let params = key.params();
    let confirm = format!("{users}/{ext}/factors/{}/confirm", enrolled.factor_id);
    // A confirmation racing a step boundary is still accepted (the server takes T-2..=T+1),
    // but retry once with a fresh code to be safe.
    for _ in 0..2 {
        let now = unix_secs();
        let code = twofold_otp::totp_at_time(&key.secret, now, &params);
        let c: Confirmed = api
            .post_parse(
                "confirm factor",
                &confirm,
                format!("{{\"code\":\"{code}\"}}"),
            )
            .await?;
        if c.confirmed {
            let verify = format!("{users}/{ext}/verify");
            let verify_urls = nodes
                .iter()
                .map(|base| Api::join(base, &verify))
                .collect::<Result<_, _>>()
                .map_err(bad)?;
            return Ok(BenchUser {
                verify_urls,
                secret: key.secret,
                params,
                confirmed_step: params.step_at(now),
            });
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    Err(ApiFailure {
        what: "confirm factor".into(),
        status: None,
        detail: format!(
            "the server answered confirmed:false twice for {ext}; is its clock in sync with this machine's?"
        ),
    })
}

/// Provisions `n` users with `workers` concurrent workers spread over the nodes `api` names
/// (`nodes`, in `--url` order), printing progress every second.
pub async fn provision(
    api: &Api,
    nodes: &[Url],
    slug: &str,
    n: usize,
    workers: usize,
    period: u32,
) -> Result<(Vec<BenchUser>, Duration), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers.max(1).min(n) {
        let api = match nodes.get(w % nodes.len().max(1)) {
            Some(base) => api.on(base),
            None => api.clone(),
        };
        let nodes = nodes.to_vec();
        let (slug, next, done) = (slug.to_string(), next.clone(), done.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok(mine);
                }
                match provision_one(&api, &nodes, &slug, i, period).await {
                    Ok(u) => {
                        mine.push((i, u));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Stop the others early.
                        next.store(n, Ordering::Relaxed);
                        return Err(e.to_string());
                    }
                }
            }
        }));
    }
    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed);
                let secs = start.elapsed().as_secs_f64();
                let rate = d as f64 / secs.max(1e-9);
                let eta = n.saturating_sub(d) as f64 / rate.max(1e-9);
                eprintln!("  provisioned {d}/{n} users ({rate:.0} users/s, ~{eta:.0}s left)");
            }
        })
    };
    let mut users: Vec<Option<BenchUser>> = (0..n).map(|_| None).collect();
    let mut first_err = None;
    for h in handles {
        match h.await {
            Ok(Ok(list)) => {
                for (i, u) in list {
                    users[i] = Some(u);
                }
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(format!("a provisioning task failed: {e}"));
            }
        }
    }
    progress.abort();
    if let Some(e) = first_err {
        return Err(format!("provisioning failed: {e}"));
    }
    let users: Vec<BenchUser> = users.into_iter().flatten().collect();
    if users.len() != n {
        return Err(format!(
            "provisioning made {} of {n} users; rerun",
            users.len()
        ));
    }
    Ok((users, start.elapsed()))
}
