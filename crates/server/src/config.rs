//! Configuration: defaults → TOML file → `TWOFOLD_*` environment → command-line flags.
//! Unknown keys are warned about rather than silently ignored, so a typo is noticed.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use twofold_delivery::{EmailConfig, SmsConfig, WorkerConfig};
use twofold_store::PgStore;

/// Where the data lives, from `database_url`.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite file, for one node.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (it may hold a password: log [`Database::describe`] instead).
    Postgres(String),
}

impl Database {
    /// For logs and messages: the file, or the URL without its password.
    pub fn describe(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("SQLite {}", path.display()),
            Database::Postgres(url) => PgStore::redacted_url(url),
        }
    }
}

/// The password never shows, not even in a debug print.
impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

#[derive(Clone, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Address the HTTP server listens on.
    pub listen: SocketAddr,
    /// Where the embedded database, generated keys and development outbox live; created on
    /// first start.
    pub data_dir: PathBuf,
    /// `postgres://user:password@host:port/database`: the PostgreSQL database several nodes
    /// share. Unset: the embedded SQLite database `<data_dir>/twofold.db`. TLS as libpq:
    /// `?sslmode=verify-full&sslrootcert=/path/ca.pem` authenticates the server; the default,
    /// `prefer`, encrypts when the server offers TLS without checking who it is.
    pub database_url: Option<String>,
    /// Connections each node opens to PostgreSQL at most.
    pub database_pool_size: usize,
    /// 64 hex characters; when unset, `<data_dir>/master.key` is used (created if missing).
    /// The node's primary sealing key: the one it seals under until `twofold key rotate` has
    /// made another key active for the whole cluster.
    pub master_key: Option<String>,
    /// More master keys (64 hex characters each) this node can unseal with, beside
    /// `master_key` and the files in `<data_dir>/keys/`: the way to hand a rotation's new key
    /// to nodes whose keys come from the environment (`TWOFOLD_MASTER_KEYS`, comma-separated).
    pub master_keys: Vec<String>,
    /// How often each node reports its keyring to the database and looks for a key change,
    /// in milliseconds (a rotation waits on these reports); at least 100.
    pub key_heartbeat_ms: u64,
    /// 64 hex characters; when unset, `<data_dir>/hashing.key` is used (created if missing).
    pub hashing_key: Option<String>,
    pub audit_retention_days: u32,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// How long cached factors, tenants and API keys are trusted, in milliseconds.
    pub cache_ttl_ms: i64,
    /// `text` or `json`.
    pub log_format: String,
    /// A tracing filter such as `info` or `twofold=debug`.
    pub log_level: String,
    /// `[email]`: how email leaves (default: files in the development outbox).
    pub email: EmailConfig,
    /// `[sms]`: which SMS provider (default: files in the development outbox).
    pub sms: SmsConfig,
    /// `[delivery]`: the outbox worker (batch, lease, retries, backoff).
    pub delivery: WorkerConfig,
    /// Per-tenant template overrides: `<dir>/<tenant-slug>/<kind>.<part>`.
    pub templates_dir: Option<PathBuf>,
    /// `[codes]`: one-time code lifetime, resend cooldown and sending caps.
    pub codes: CodesConfig,
    /// `[sessions]`: session and pending-login lifetimes.
    pub sessions: SessionsConfig,
    /// Where users reach this server (links in emails, such as "this wasn't me"), e.g.
    /// `https://2fa.example.com`. Unset: `http://` and the listen address, fine on one machine.
    pub public_url: Option<String>,
    /// `[throttle]`: wrong-code limits per end-user IP and per tenant.
    pub throttle: ThrottleSection,
    /// `[network]`: where end users are (geo-IP database) and which proxies to believe.
    pub network: NetworkSection,
    /// `[vault]`: how many authenticator-vault codes are handed out per minute.
    pub vault: VaultSection,
    /// `[webauthn]`: the relying party security keys are scoped to.
    pub webauthn: WebauthnSection,
}

/// Who this server is to security keys. Unset, both come from `public_url`: its host is the
/// RP id and its origin the one origin. An IP address cannot be an RP id, and browsers run
/// WebAuthn without TLS only on `localhost`: for anything else keys are off until configured.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct WebauthnSection {
    /// The registrable domain keys are scoped to (`example.com` lets `2fa.example.com` and
    /// `login.example.com` share keys). Changing it later strands every registered key.
    pub rp_id: Option<String>,
    /// The origins (`https://2fa.example.com`) whose pages run the ceremonies.
    pub origins: Vec<String>,
    /// The name authenticators show while registering; default "Twofold".
    pub rp_name: Option<String>,
}

impl WebauthnSection {
    /// The relying party, or `None` (with why) when `public_url` cannot scope keys and
    /// nothing is configured: security keys are then not offered.
    pub fn to_core(
        &self,
        public_url: &str,
    ) -> Result<Result<twofold_webauthn::RelyingParty, String>, String> {
        let configured = self.rp_id.is_some() || !self.origins.is_empty();
        let (rp_id, origins) = if configured {
            let derived = derive_rp(public_url);
            let rp_id = match (&self.rp_id, &derived) {
                (Some(id), _) => id.clone(),
                (None, Ok((id, _))) => id.clone(),
                (None, Err(why)) => return Err(format!("[webauthn] rp_id is needed: {why}")),
            };
            let origins = if self.origins.is_empty() {
                match derived {
                    Ok((_, o)) => vec![o],
                    Err(why) => return Err(format!("[webauthn] origins are needed: {why}")),
                }
            } else {
                self.origins.clone()
            };
            (rp_id, origins)
        } else {
            match derive_rp(public_url) {
                Ok((id, o)) => (id, vec![o]),
                Err(why) => return Ok(Err(why)),
            }
        };
        twofold_webauthn::RelyingParty::new(twofold_webauthn::RelyingPartyConfig {
            rp_id,
            origins,
            name: self.rp_name.clone().unwrap_or_else(|| "Twofold".into()),
        })
        .map(Ok)
        .map_err(|e| format!("[webauthn] {e}"))
    }
}

/// The RP id and origin a public URL implies, or why it implies none.
fn derive_rp(public_url: &str) -> Result<(String, String), String> {
    let rest = public_url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| public_url.strip_prefix("http://").map(|r| ("http", r)));
    let Some((scheme, rest)) = rest else {
        return Err(format!("public_url {public_url} is not an http(s) URL"));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    let loopback = host == "localhost";
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(format!(
            "public_url {public_url} is an IP address; security keys need a domain name \
             (set public_url, or [webauthn] rp_id and origins)"
        ));
    }
    if scheme == "http" && !loopback {
        return Err(format!(
            "public_url {public_url} is not https; browsers use security keys only over https"
        ));
    }
    let origin = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    Ok((host.to_string(), origin))
}

/// Caps on vault codes, counted in the store so they hold across nodes. A robot that signs in
/// once a minute needs one code a minute; a leaked token should not become a code oracle.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct VaultSection {
    /// Codes per minute for one caller (an API key or a vault token), over all entries.
    pub per_caller_per_minute: u32,
    /// Codes per minute for one entry, over all callers.
    pub per_entry_per_minute: u32,
}

impl Default for VaultSection {
    fn default() -> Self {
        let d = twofold_core::service::vault::VaultConfig::default();
        Self {
            per_caller_per_minute: d.per_caller_per_minute,
            per_entry_per_minute: d.per_entry_per_minute,
        }
    }
}

impl VaultSection {
    pub fn to_core(&self) -> Result<twofold_core::service::vault::VaultConfig, String> {
        if self.per_caller_per_minute == 0 || self.per_entry_per_minute == 0 {
            return Err("[vault] limits must be at least 1 code per minute".into());
        }
        Ok(twofold_core::service::vault::VaultConfig {
            per_caller_per_minute: self.per_caller_per_minute,
            per_entry_per_minute: self.per_entry_per_minute,
        })
    }
}

/// How the server learns where an end user is. The API takes the end user's IP from the
/// integrator (its key is trusted); the pages users open themselves take it from the socket,
/// or from `X-Forwarded-For` only as far as `trusted_proxies` vouch for it (INV-08).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkSection {
    /// A MaxMind-format database (GeoLite2/GeoIP2 City or Country `.mmdb`) for the tenants'
    /// risk rules. Unset: countries come only from the integrator (`country` in the login
    /// request, e.g. from its proxy's `CF-IPCountry`), and the network and device rules still
    /// work; impossible travel needs the coordinates of a City database.
    pub geoip_db: Option<PathBuf>,
    /// CIDRs of the load balancers / reverse proxies in front of the pages, e.g.
    /// `["10.0.0.0/8"]`. Empty: forwarding headers are ignored.
    pub trusted_proxies: Vec<String>,
}

/// Failure limits beyond each factor's own (see `twofold_core::service::ThrottleConfig`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ThrottleSection {
    pub ip_failures_per_hour: u32,
    pub tenant_failures_per_hour: u32,
}

impl Default for ThrottleSection {
    fn default() -> Self {
        let d = twofold_core::service::ThrottleConfig::default();
        Self {
            ip_failures_per_hour: d.ip_failures_per_hour,
            tenant_failures_per_hour: d.tenant_failures_per_hour,
        }
    }
}

impl ThrottleSection {
    pub fn to_core(&self) -> Result<twofold_core::service::ThrottleConfig, String> {
        if self.ip_failures_per_hour == 0 || self.tenant_failures_per_hour == 0 {
            return Err("[throttle] limits must be at least 1".into());
        }
        Ok(twofold_core::service::ThrottleConfig {
            ip_failures_per_hour: self.ip_failures_per_hour,
            tenant_failures_per_hour: self.tenant_failures_per_hour,
        })
    }
}

impl Config {
    /// The base URL of links in emails.
    pub fn public_url(&self) -> Result<String, String> {
        match self.public_url.as_deref().map(str::trim) {
            None | Some("") => Ok(format!("http://{}", self.listen)),
            Some(u) if u.starts_with("https://") || u.starts_with("http://") => {
                Ok(u.trim_end_matches('/').to_string())
            }
            Some(u) => Err(format!(
                "public_url `{u}` must start with https:// (or http:// for a local test)"
            )),
        }
    }
}

/// Session lifetimes. Integrators tie their own sessions to Twofold's and introspect them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SessionsConfig {
    /// Absolute lifetime of a session.
    pub ttl_hours: u32,
    /// A session unused this long is dead.
    pub idle_minutes: u32,
    /// How long a login waits for its second step.
    pub pending_minutes: u32,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        let l = twofold_core::service::LoginConfig::default();
        Self {
            ttl_hours: (l.session_ttl_ms / 3_600_000) as u32,
            idle_minutes: (l.session_idle_ms / 60_000) as u32,
            pending_minutes: (l.pending_ttl_ms / 60_000) as u32,
        }
    }
}

impl SessionsConfig {
    pub fn to_core(&self) -> Result<twofold_core::service::LoginConfig, String> {
        if !(1..=24 * 90).contains(&self.ttl_hours)
            || !(1..=24 * 60).contains(&self.idle_minutes)
            || !(1..=60).contains(&self.pending_minutes)
        {
            return Err("sessions: ttl_hours must be 1-2160, idle_minutes 1-1440, \
                        pending_minutes 1-60"
                .into());
        }
        Ok(twofold_core::service::LoginConfig {
            session_ttl_ms: i64::from(self.ttl_hours) * 3_600_000,
            session_idle_ms: i64::from(self.idle_minutes) * 60_000,
            pending_ttl_ms: i64::from(self.pending_minutes) * 60_000,
            ..Default::default()
        })
    }
}

/// Limits on one-time codes. On by default with conservative numbers: SMS pumping costs money.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CodesConfig {
    pub ttl_secs: u32,
    pub resend_cooldown_secs: u32,
    pub per_destination_per_hour: u32,
    pub per_user_per_hour: u32,
    pub per_tenant_per_hour: u32,
    pub per_country_per_hour: u32,
    /// Calling codes SMS may go to for tenants without their own list.
    pub default_sms_countries: Vec<String>,
}

impl Default for CodesConfig {
    fn default() -> Self {
        let m = twofold_core::service::MessagingConfig::default();
        Self {
            ttl_secs: (m.code_ttl_ms / 1000) as u32,
            resend_cooldown_secs: (m.resend_cooldown_ms / 1000) as u32,
            per_destination_per_hour: m.per_destination_per_hour,
            per_user_per_hour: m.per_user_per_hour,
            per_tenant_per_hour: m.per_tenant_per_hour,
            per_country_per_hour: m.per_country_per_hour,
            default_sms_countries: m.default_sms_countries,
        }
    }
}

impl CodesConfig {
    /// The core's settings; a malformed country list is refused rather than read as "any".
    pub fn to_core(&self) -> Result<twofold_core::service::MessagingConfig, String> {
        if !(60..=3600).contains(&self.ttl_secs) {
            return Err("codes.ttl_secs must be between 60 and 3600".into());
        }
        let countries = twofold_core::service::parse_countries(&self.default_sms_countries)
            .map_err(|e| format!("codes.default_sms_countries: {e}"))?;
        Ok(twofold_core::service::MessagingConfig {
            code_ttl_ms: i64::from(self.ttl_secs) * 1000,
            resend_cooldown_ms: i64::from(self.resend_cooldown_secs) * 1000,
            per_destination_per_hour: self.per_destination_per_hour,
            per_user_per_hour: self.per_user_per_hour,
            per_tenant_per_hour: self.per_tenant_per_hour,
            per_country_per_hour: self.per_country_per_hour,
            default_sms_countries: countries,
        })
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |k: &Option<String>| k.as_ref().map(|_| "<redacted>");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(PgStore::redacted_url),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field("master_key", &redact(&self.master_key))
            .field(
                "master_keys",
                &format_args!("[{} redacted]", self.master_keys.len()),
            )
            .field("key_heartbeat_ms", &self.key_heartbeat_ms)
            .field("hashing_key", &redact(&self.hashing_key))
            .field("audit_retention_days", &self.audit_retention_days)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("cache_ttl_ms", &self.cache_ttl_ms)
            .field("log_format", &self.log_format)
            .field("log_level", &self.log_level)
            .field("email", &self.email)
            .field("sms", &self.sms)
            .field("delivery", &self.delivery)
            .field("templates_dir", &self.templates_dir)
            .field("codes", &self.codes)
            .field("sessions", &self.sessions)
            .field("public_url", &self.public_url)
            .field("throttle", &self.throttle)
            .field("vault", &self.vault)
            .field("webauthn", &self.webauthn)
            .field("network", &self.network)
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./twofold-data"),
            database_url: None,
            database_pool_size: twofold_store::POOL_SIZE,
            master_key: None,
            master_keys: Vec::new(),
            key_heartbeat_ms: 5_000,
            hashing_key: None,
            audit_retention_days: 90,
            max_body_bytes: 64 * 1024,
            cache_ttl_ms: 30_000,
            log_format: "text".into(),
            log_level: "info".into(),
            email: EmailConfig::default(),
            sms: SmsConfig::default(),
            delivery: WorkerConfig::default(),
            templates_dir: None,
            codes: CodesConfig::default(),
            sessions: SessionsConfig::default(),
            public_url: None,
            throttle: ThrottleSection::default(),
            vault: VaultSection::default(),
            network: NetworkSection::default(),
            webauthn: WebauthnSection::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML for twofold: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
}

/// Settings that can come from the environment, by variable name.
const ENV_KEYS: &[&str] = &[
    "LISTEN",
    "DATA_DIR",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "MASTER_KEY",
    "MASTER_KEYS",
    "KEY_HEARTBEAT_MS",
    "HASHING_KEY",
    "AUDIT_RETENTION_DAYS",
    "MAX_BODY_BYTES",
    "CACHE_TTL_MS",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "TEMPLATES_DIR",
    "PUBLIC_URL",
    "TRUSTED_PROXIES",
    "GEOIP_DB",
];

impl Config {
    /// Loads the file (if any) and the environment; returns the config and warnings to log
    /// once logging is set up.
    pub fn load(file: Option<&Path>) -> Result<(Self, Vec<String>), ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(file, &vars)
    }

    pub fn load_from(
        file: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<(Self, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let mut config = match file {
            None => Config::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let de = toml::Deserializer::new(&text);
                serde_ignored::deserialize(de, |p| {
                    warnings.push(format!(
                        "unknown key `{p}` in {} is ignored",
                        path.display()
                    ))
                })
                .map_err(|e| ConfigError::Parse {
                    path: path.to_path_buf(),
                    message: e.to_string(),
                })?
            }
        };
        for (name, value) in env {
            let Some(key) = name.strip_prefix("TWOFOLD_") else {
                continue;
            };
            if !ENV_KEYS.contains(&key)
                && !EmailConfig::ENV_KEYS.contains(&key)
                && !SmsConfig::ENV_KEYS.contains(&key)
            {
                warnings.push(format!("unknown environment variable {name} is ignored"));
                continue;
            }
            config
                .apply_env(key, value)
                .map_err(|message| ConfigError::Env {
                    var: name.clone(),
                    message,
                })?;
        }
        Ok((config, warnings))
    }

    fn apply_env(&mut self, key: &str, value: &str) -> Result<(), String> {
        fn num<T: std::str::FromStr>(v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("`{v}` is not a valid number"))
        }
        match key {
            "LISTEN" => {
                self.listen = value
                    .parse()
                    .map_err(|_| format!("`{value}` is not an address like 127.0.0.1:8080"))?
            }
            "DATA_DIR" => self.data_dir = PathBuf::from(value),
            "DATABASE_URL" => self.database_url = Some(value.to_string()),
            "DATABASE_POOL_SIZE" => self.database_pool_size = num(value)?,
            "MASTER_KEY" => self.master_key = Some(value.to_string()),
            "MASTER_KEYS" => self.master_keys = comma_list(value),
            "KEY_HEARTBEAT_MS" => self.key_heartbeat_ms = num(value)?,
            "HASHING_KEY" => self.hashing_key = Some(value.to_string()),
            "AUDIT_RETENTION_DAYS" => self.audit_retention_days = num(value)?,
            "MAX_BODY_BYTES" => self.max_body_bytes = num(value)?,
            "CACHE_TTL_MS" => self.cache_ttl_ms = num(value)?,
            "LOG_FORMAT" => self.log_format = value.to_string(),
            "LOG_LEVEL" => self.log_level = value.to_string(),
            "TEMPLATES_DIR" => self.templates_dir = Some(PathBuf::from(value)),
            "PUBLIC_URL" => self.public_url = Some(value.to_string()),
            "WEBAUTHN_RP_ID" => self.webauthn.rp_id = Some(value.to_string()),
            "WEBAUTHN_ORIGINS" => self.webauthn.origins = comma_list(value),
            "GEOIP_DB" => self.network.geoip_db = Some(PathBuf::from(value)),
            "TRUSTED_PROXIES" => self.network.trusted_proxies = comma_list(value),
            _ => {
                if !self.email.apply_env(key, value)? {
                    self.sms.apply_env(key, value)?;
                }
            }
        }
        Ok(())
    }

    /// How long after its last report a node counts as stopped: a rotation does not wait for
    /// it. Several heartbeats, and never under 30 s, so a node busy for a moment is not
    /// skipped.
    pub fn node_stale_after(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.key_heartbeat_ms.saturating_mul(6).max(30_000))
    }

    /// The database to open: PostgreSQL for a `postgres://` URL, the embedded SQLite file when
    /// `database_url` is unset or empty.
    pub fn database(&self) -> Result<Database, String> {
        let url = self.database_url.as_deref().map(str::trim).unwrap_or("");
        if url.is_empty() {
            return Ok(Database::Sqlite(self.data_dir.join("twofold.db")));
        }
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(
                "database_url must be a postgres:// URL; leave it unset for the \
                        embedded SQLite database in data_dir"
                    .into(),
            );
        }
        if self.database_pool_size == 0 {
            return Err("database_pool_size must be at least 1".into());
        }
        Ok(Database::Postgres(url.to_string()))
    }

    /// Warnings about settings that weaken security or will not work.
    pub fn insecure_warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        if !self.listen.ip().is_loopback() {
            w.push(format!(
                "listening on {} without TLS: put a TLS-terminating proxy in front",
                self.listen
            ));
        }
        if self.master_key.is_some() || !self.master_keys.is_empty() {
            w.push("master key taken from config/environment: keep that source secret".into());
        }
        if let Ok(Database::Postgres(url)) = self.database() {
            w.extend(PgStore::tls_warning(&url));
            if self.master_key.is_none() || self.hashing_key.is_none() {
                w.push(format!(
                    "keys come from files in {}: every node on this database must use the same \
                     master.key and hashing.key (copy them before a new node first starts)",
                    self.data_dir.display()
                ));
            }
        }
        w.extend(self.email.warnings(&self.data_dir));
        w.extend(self.sms.warnings(&self.data_dir));
        if self.audit_retention_days == 0 {
            w.push("audit_retention_days = 0 keeps no audit history".into());
        }
        w
    }
}

/// A comma-separated environment value as a list, blanks dropped.
fn comma_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {

    /// The relying party follows `public_url` unless configured; where no RP id can come of
    /// it, keys are off with the reason, and a configuration that cannot work stops the start.
    #[test]
    fn the_webauthn_relying_party_comes_from_public_url_or_its_section() {
        let off = WebauthnSection::default();
        let rp = |w: &WebauthnSection, url: &str| {
            w.to_core(url).map(|r| r.map(|rp| rp.config().clone()))
        };
        let on = rp(&off, "https://2fa.example.com").unwrap().unwrap();
        assert_eq!(
            (on.rp_id.as_str(), on.origins.clone()),
            (
                "2fa.example.com",
                vec!["https://2fa.example.com".to_string()]
            )
        );
        let local = rp(&off, "http://localhost:8080").unwrap().unwrap();
        assert_eq!(local.origins, ["http://localhost:8080"]);
        for (url, why) in [
            ("http://127.0.0.1:8080", "IP address"),
            ("https://[::1]:8443", "IP address"),
            ("http://2fa.example.com", "not https"),
        ] {
            let reason = rp(&off, url).unwrap().unwrap_err();
            assert!(reason.contains(why), "{url}: {reason}");
        }
        let shared = WebauthnSection {
            rp_id: Some("example.com".into()),
            origins: vec![
                "https://2fa.example.com".into(),
                "https://login.example.com".into(),
            ],
            rp_name: Some("Acme".into()),
        };
        let cfg = rp(&shared, "http://127.0.0.1:8080").unwrap().unwrap();
        assert_eq!(
            (cfg.rp_id.as_str(), cfg.origins.len(), cfg.name.as_str()),
            ("example.com", 2, "Acme")
        );
        let wrong = WebauthnSection {
            rp_id: Some("example.org".into()),
            ..shared.clone()
        };
        assert!(rp(&wrong, "https://2fa.example.com")
            .unwrap_err()
            .contains("[webauthn]"));
        let no_origin = WebauthnSection {
            rp_id: Some("example.com".into()),
            ..WebauthnSection::default()
        };
        assert!(rp(&no_origin, "http://127.0.0.1:8080")
            .unwrap_err()
            .contains("origins are needed"));
    }

    #[test]
    fn public_url_proxies_and_geoip_come_from_the_environment() {
        let env: Vec<(String, String)> = [
            ("TWOFOLD_PUBLIC_URL", "https://2fa.example.com"),
            ("TWOFOLD_TRUSTED_PROXIES", "10.0.0.0/8"),
            ("TWOFOLD_GEOIP_DB", "/srv/geo.mmdb"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let (c, warnings) = Config::load_from(None, &env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.public_url.as_deref(), Some("https://2fa.example.com"));
        assert_eq!(c.network.trusted_proxies, vec!["10.0.0.0/8".to_string()]);
        assert_eq!(c.network.geoip_db, Some(PathBuf::from("/srv/geo.mmdb")));
    }
    use super::*;

    #[test]
    fn vault_limits_come_from_the_file_and_must_be_positive() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[vault]\nper_caller_per_minute = 5\n").unwrap();
        let (c, warnings) = Config::load_from(Some(&path), &[]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let v = c.vault.to_core().unwrap();
        assert_eq!((v.per_caller_per_minute, v.per_entry_per_minute), (5, 120));
        std::fs::write(&path, "[vault]\nper_entry_per_minute = 0\n").unwrap();
        let (c, _) = Config::load_from(Some(&path), &[]).unwrap();
        assert!(c.vault.to_core().unwrap_err().contains("[vault]"));
    }

    #[test]
    fn file_then_env_with_warnings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\naudit_retention_days = 7\ncolour = \"blue\"\n",
        )
        .unwrap();
        let env = vec![
            ("TWOFOLD_AUDIT_RETENTION_DAYS".to_string(), "30".to_string()),
            ("TWOFOLD_NOPE".to_string(), "1".to_string()),
            ("HOME".to_string(), "/root".to_string()),
        ];
        let (c, warnings) = Config::load_from(Some(&path), &env).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.audit_retention_days, 30);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("colour"));
        assert!(warnings[1].contains("TWOFOLD_NOPE"));
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let env = vec![("TWOFOLD_LISTEN".to_string(), "nowhere".to_string())];
        let err = Config::load_from(None, &env).unwrap_err().to_string();
        assert!(err.contains("TWOFOLD_LISTEN"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listen = 5").unwrap();
        assert!(matches!(
            Config::load_from(Some(&path), &[]),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn database_url_selects_postgres_and_its_password_is_never_shown() {
        let (c, _) = Config::load_from(None, &[]).unwrap();
        assert_eq!(
            c.database().unwrap(),
            Database::Sqlite(PathBuf::from("./twofold-data/twofold.db"))
        );
        let url = "postgres://app:hunter2@db:5432/twofold";
        let env = vec![("TWOFOLD_DATABASE_URL".to_string(), url.to_string())];
        let (c, warnings) = Config::load_from(None, &env).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        let db = c.database().unwrap();
        assert_eq!(db, Database::Postgres(url.into()));
        for shown in [format!("{c:?}"), format!("{db:?}"), db.describe()] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("postgres://app@db:5432/twofold"), "{shown}");
        }
        let empty = vec![("TWOFOLD_DATABASE_URL".to_string(), String::new())];
        let (c, _) = Config::load_from(None, &empty).unwrap();
        assert!(matches!(c.database(), Ok(Database::Sqlite(_))));
        let tls = "postgres://app:hunter2@db:5432/twofold?sslmode=verify-full&sslrootcert=/ca.pem";
        let env = vec![("TWOFOLD_DATABASE_URL".to_string(), tls.to_string())];
        let db = Config::load_from(None, &env).unwrap().0.database().unwrap();
        assert_eq!(
            db.describe(),
            "postgres://app@db:5432/twofold?sslmode=verify-full&sslrootcert=/ca.pem"
        );
        let mysql = vec![("TWOFOLD_DATABASE_URL".to_string(), "mysql://h/db".into())];
        let err = Config::load_from(None, &mysql).unwrap().0.database();
        assert!(err.unwrap_err().contains("postgres://"));
    }

    #[test]
    fn postgres_without_an_authenticated_server_is_warned_about() {
        let warns = |url: &str| {
            let env = vec![("TWOFOLD_DATABASE_URL".to_string(), url.to_string())];
            let (c, _) = Config::load_from(None, &env).unwrap();
            c.insecure_warnings()
                .into_iter()
                .filter(|w| w.starts_with("database_url"))
                .collect::<Vec<_>>()
        };
        let w = warns("postgres://app:hunter2@db.internal/twofold");
        assert!(w.len() == 1 && w[0].contains("sslmode=prefer"), "{w:?}");
        assert!(!w[0].contains("hunter2"));
        let w = warns("postgres://app@10.0.0.5/twofold?sslmode=require");
        assert!(w.len() == 1 && w[0].contains("not authenticated"), "{w:?}");
        let w = warns("postgres://app@db/twofold?sslmode=disable");
        assert!(w.len() == 1 && w[0].contains("not encrypted"), "{w:?}");
        for fine in [
            "postgres://app@db/twofold?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://app@127.0.0.1/twofold",
            "postgres://app@localhost/twofold?sslmode=disable",
            "postgres://app@[::1]:5432/twofold",
        ] {
            assert!(warns(fine).is_empty(), "{fine}");
        }
    }
}
