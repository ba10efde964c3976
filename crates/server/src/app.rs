//! Building and running the HTTP application: `Application::build` binds the listener (port 0
//! in tests) and returns something to run until shutdown; `router` can be driven directly.

use crate::api;
use crate::config::{Config, Database};
use crate::error::ApiError;
use crate::extract::Auth;
use crate::keywatch::KeyWatch;
use crate::metrics::Metrics;
use crate::openapi::ApiDoc;
use crate::state::AppState;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use twofold_core::ports::{Clock, Store, StoreError, SystemClock};
use twofold_core::{Actor, Twofold, TwofoldConfig};
use twofold_delivery::{DeliveryMetrics, DeliveryWorker, Renderer};
use twofold_store::{PgStore, SqliteStore};
use utoipa::OpenApi;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("cannot open the database: {0}")]
    Store(#[from] StoreError),
    /// `url` has no password (see [`PgStore::redacted_url`]).
    #[error("cannot open the PostgreSQL database {url}: {reason}")]
    Postgres { url: String, reason: String },
    #[error("config: {0}")]
    Config(String),
    #[error("delivery settings: {0}")]
    Delivery(#[from] twofold_delivery::ConfigError),
    #[error("cannot listen on {addr}: {source}; is another server running there? pick another with --listen")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the store (embedded SQLite, or PostgreSQL with `database_url`) and the keys; shared
/// by `serve` and the CLI.
pub async fn open_core(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<Twofold>, StartupError> {
    open_parts(config, clock).await
}

/// Opens the configured database and applies pending migrations.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartupError> {
    match config.database().map_err(StartupError::Config)? {
        Database::Sqlite(path) => Ok(Arc::new(SqliteStore::open(path)?)),
        Database::Postgres(url) => {
            match PgStore::connect_pooled(&url, config.database_pool_size).await {
                Ok(store) => Ok(Arc::new(store)),
                Err(e) => Err(StartupError::Postgres {
                    url: PgStore::redacted_url(&url),
                    reason: match e {
                        StoreError::Busy => "the server is unreachable or refuses connections; \
                                             is it running, and may this user log in?"
                            .into(),
                        other => other.to_string(),
                    },
                }),
            }
        }
    }
}

/// The core with its keys. The keyring seals under the key the database names active (after
/// a rotation), else under this node's primary key; a node that lacks the active key refuses
/// to start, since every blob sealed since the rotation would be unreadable on it.
async fn open_parts(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Twofold>, StartupError> {
    let master = crate::keys::master_keys(config, true)?;
    let hasher = crate::keys::hasher(config)?;
    let store = open_store(config).await?;
    let active = store.key_state().await?.active;
    let keyring = master.keyring(active.as_deref(), &crate::keys::keys_dir(config))?;
    let public_url = config.public_url().map_err(StartupError::Config)?;
    let webauthn = match config.webauthn.to_core(&public_url) {
        Ok(Ok(rp)) => {
            tracing::info!(rp_id = %rp.config().rp_id, origins = ?rp.config().origins, "security keys (WebAuthn) on");
            Some(Arc::new(rp))
        }
        Ok(Err(why)) => {
            tracing::warn!("security keys (WebAuthn) are off: {why}");
            None
        }
        Err(e) => return Err(StartupError::Config(e)),
    };
    let core = Twofold::new(
        store,
        clock,
        keyring,
        hasher,
        TwofoldConfig {
            audit_retention_days: config.audit_retention_days,
            cache_ttl_ms: config.cache_ttl_ms,
            messaging: config.codes.to_core().map_err(StartupError::Config)?,
            login: config.sessions.to_core().map_err(StartupError::Config)?,
            public_url,
            webauthn,
            throttle: config.throttle.to_core().map_err(StartupError::Config)?,
            vault: config.vault.to_core().map_err(StartupError::Config)?,
            ..TwofoldConfig::default()
        },
    );
    if let Some(path) = &config.network.geoip_db {
        let db = twofold_geo::GeoDb::open(path).map_err(|e| {
            StartupError::Config(format!(
                "[network] geoip_db: {e}; point it at a MaxMind-format .mmdb file or remove it"
            ))
        })?;
        tracing::info!(path = %path.display(), "geo-IP database loaded for the risk rules");
        core.set_geo(Arc::new(Geo(db)));
    }
    Ok(Arc::new(core))
}

/// The geo-IP database as the core's port.
struct Geo(twofold_geo::GeoDb);

impl twofold_core::ports::GeoLookup for Geo {
    fn locate(&self, ip: std::net::IpAddr) -> (Option<String>, Option<(f64, f64)>) {
        let info = self.0.lookup(ip);
        (info.country, info.coords)
    }
}

/// Builds the outbox worker from the `[email]`, `[sms]` and `[delivery]` settings and hooks
/// it to the core, so that every queued message wakes it at once.
fn delivery_worker(
    config: &Config,
    core: &Arc<Twofold>,
    clock: Arc<dyn Clock>,
    metrics: Arc<DeliveryMetrics>,
) -> Result<DeliveryWorker, StartupError> {
    config.delivery.validate()?;
    let email = config.email.build(&config.data_dir)?;
    let sms = config.sms.build(&config.data_dir)?;
    let worker = DeliveryWorker::new(
        core.store().clone(),
        // The core's own handle: a reloaded keyring or a new active key reaches both at once.
        core.keyring().clone(),
        clock,
        Renderer::new(config.templates_dir.clone()),
        email,
        sms,
        config.delivery.clone(),
        config.email.from_address()?,
        metrics,
    );
    let wake = worker.notifier();
    core.set_on_queued(Box::new(move || wake.notify_one()));
    Ok(worker)
}

pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    state: AppState,
    worker: DeliveryWorker,
    jobs_wake: Arc<tokio::sync::Notify>,
    keys: KeyWatch,
}

impl Application {
    pub async fn build(config: &Config) -> Result<Self, StartupError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartupError> {
        let core = open_parts(config, clock.clone()).await?;
        let delivery = Arc::new(DeliveryMetrics::new());
        let worker = delivery_worker(config, &core, clock, delivery.clone())?;
        let jobs_wake = Arc::new(tokio::sync::Notify::new());
        let wake = jobs_wake.clone();
        core.set_on_jobs(Box::new(move || wake.notify_one()));
        let proxies = twofold_geo::TrustedProxies::parse(&config.network.trusted_proxies)
            .map_err(|e| StartupError::Config(format!("[network] trusted_proxies: {e}")))?;
        let state = AppState {
            core,
            metrics: Arc::new(Metrics::default()),
            delivery: Some(delivery),
            proxies: Arc::new(proxies),
            https: config
                .public_url()
                .map_err(StartupError::Config)?
                .starts_with("https://"),
        };
        if !state.https {
            tracing::warn!(
                "public_url is not https: links in emails and the pages' cookies are sent in \
                 the clear; set public_url to the https address users reach"
            );
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartupError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().unwrap_or(config.listen);
        Ok(Self {
            router: router(state.clone(), config.max_body_bytes),
            keys: KeyWatch::new(state.core.clone(), config, addr),
            listener,
            state,
            worker,
            jobs_wake,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The id under which this node reports its keys (`twofold key status` lists it).
    pub fn node_id(&self) -> &str {
        self.keys.node_id()
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let pruner = tokio::spawn(prune_forever(self.state.clone()));
        let keys = tokio::spawn(self.keys.run());
        let jobs = tokio::spawn(jobs_forever(self.state.clone(), self.jobs_wake.clone()));
        let (stop_worker, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(self.worker.run(async move {
            let _ = worker_stopped.await;
        }));
        let result = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await;
        pruner.abort();
        jobs.abort();
        keys.abort();
        // Messages it was sending finish (or their lease lapses and another node takes them).
        let _ = stop_worker.send(());
        let _ = worker.await;
        result
    }
}

/// Background job: runs rollout jobs (invitations, session revocations) when woken by a policy
/// change and otherwise every few seconds, so scheduled ones start on time. Every node runs it;
/// the store lets only one runner do each batch.
async fn jobs_forever(state: AppState, wake: Arc<tokio::sync::Notify>) {
    loop {
        let _ = tokio::time::timeout(Duration::from_millis(500), wake.notified()).await;
        if let Err(e) = state.core.run_jobs(usize::MAX).await {
            tracing::warn!(error = %e, "rollout jobs failed; will retry");
        }
    }
}

/// Background job, hourly: prunes audit rows past retention, and delivered or failed messages,
/// expired codes and stale send counters.
async fn prune_forever(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match state.core.prune_audit().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned audit rows past retention"),
            Err(e) => tracing::warn!(error = %e, "audit pruning failed; will retry next hour"),
        }
        match state.core.prune_messaging().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned old messages, codes and counters"),
            Err(e) => tracing::warn!(error = %e, "outbox pruning failed; will retry next hour"),
        }
        if let Err(e) = state.core.prune_oidc().await {
            tracing::warn!(error = %e, "pruning spent OIDC codes and hints failed; will retry");
        }
        match state.core.prune_login_history().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rows = n, "pruned login history older than a year"),
            Err(e) => tracing::warn!(error = %e, "login history pruning failed; will retry"),
        }
        let stopped = SystemClock.now_ms() - crate::keywatch::FORGET_NODES_AFTER_MS;
        if let Err(e) = state.core.store().prune_node_keys(stopped).await {
            tracing::warn!(error = %e, "pruning stopped nodes' key reports failed; will retry");
        }
    }
}

pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(api::routes())
        .merge(crate::pages::routes())
        .merge(crate::oidc::routes())
        .merge(crate::console::routes())
        .merge(crate::account::routes())
        .merge(crate::web::routes())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked; answering 500");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Metrics, request log line and security headers for every response.
async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    // A fixed label set: clients choose methods, and each label value costs memory forever.
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        _ => "OTHER",
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let mut resp = next.run(req).await;
    let elapsed = start.elapsed().as_secs_f64();
    let status = resp.status().as_u16();
    state
        .metrics
        .observe_request(method, &route, status, elapsed);
    tracing::debug!(%method, %route, status, ms = elapsed * 1e3, "request");
    let h = resp.headers_mut();
    // Responses can carry one-time secrets (enrolment, new keys): never cache them, unless the
    // handler said otherwise (the pages' versioned stylesheet).
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "route_not_found",
        "no such endpoint; see /openapi.json",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method; see /openapi.json",
    )
}

async fn healthz() -> &'static str {
    "ok"
}

/// Ready when the store can commit a write (SQLite: the writer thread is alive and not blocked;
/// PostgreSQL: a pooled connection answers from a primary, not a standby).
async fn readyz(State(s): State<AppState>) -> Response {
    match s.core.store().ping().await {
        Ok(_) => "ready".into_response(),
        Err(e) => ApiError::from(twofold_core::CoreError::from(e)).into_response(),
    }
}

/// Metrics carry the real reasons codes were refused, which callers must not learn (INV-11),
/// so they need an operator key (Prometheus: `authorization: {credentials: <key>}`).
async fn metrics(State(s): State<AppState>, Auth(actor): Auth) -> Response {
    if !matches!(actor, Actor::Operator { .. } | Actor::Cli) {
        return ApiError::from(twofold_core::CoreError::Forbidden(
            "metrics need an operator key",
        ))
        .into_response();
    }
    let mut text = s.metrics.render();
    crate::metrics::render_messaging(&mut text, &s).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}
