//! The `twofold` command line. Every command takes the same `--config`, `--data-dir` and
//! `--database-url` as `serve`, so an operator can run them beside a running server, on the
//! embedded store or on the PostgreSQL database the nodes share.

mod demo;
mod vault;

use crate::app::{open_core, Application};
use crate::config::{Config, Database};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::sync::Arc;
use twofold_core::ports::SystemClock;
use twofold_core::service::{NewUserInput, RequestMeta};
use twofold_core::{Actor, Twofold};

#[derive(Debug, Parser)]
#[command(
    name = "twofold",
    version,
    about = "Multi-tenant two-factor authentication server"
)]
pub struct Cli {
    /// TOML config file (settings may also come from TWOFOLD_* environment variables).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded database and keys [default: ./twofold-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// PostgreSQL database shared by several nodes [default: SQLite in the data directory].
    /// Other users of the machine can read flags: prefer TWOFOLD_DATABASE_URL for a password.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Try Twofold in a browser: a demo organisation with users, and a small demo app that
    /// signs them in through Twofold's hosted pages. Runs on embedded SQLite in its own data
    /// directory (default ./twofold-demo), with email and text messages written to files the
    /// demo app's Mailbox shows; the config file and TWOFOLD_* settings are not used.
    Demo {
        /// Address Twofold listens on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Address the demo app listens on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
        app_listen: std::net::SocketAddr,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    #[command(subcommand)]
    Tenant(TenantCmd),
    #[command(subcommand)]
    Apikey(ApiKeyCmd),
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Factor(FactorCmd),
    #[command(subcommand)]
    Otp(OtpCmd),
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Queued email and SMS: depth, failures, retrying.
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// The organisation's 2FA settings: show, propose, confirm with the emailed code.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// The authenticator vault: third-party TOTP/HOTP secrets whose codes automation fetches.
    #[command(subcommand)]
    Vault(vault::VaultCmd),
    /// The admin console: one-time links for org admins.
    #[command(subcommand)]
    Console(ConsoleCmd),
    /// Write a consistent copy of the live SQLite database to FILE (safe while serving); on
    /// PostgreSQL use pg_dump. The copy holds no key: back up master.key and hashing.key too.
    Backup {
        #[arg(long, value_name = "FILE")]
        to: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// The master keys that seal secrets at rest: status, rotation, retirement. The hashing
    /// key (hashing.key: API keys, codes, tokens) is separate and never rotated by these.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Copy an embedded (SQLite) install into an empty PostgreSQL database, verified by row
    /// counts and checksums. Stop every server on the SQLite database first.
    MigrateStore {
        /// The SQLite database [default: sqlite://<data_dir>/twofold.db].
        #[arg(long, value_name = "sqlite://PATH")]
        from: Option<String>,
        /// The empty PostgreSQL database [default: database_url, e.g. TWOFOLD_DATABASE_URL].
        /// Other users of the machine can read flags: prefer the environment for a password.
        #[arg(long, value_name = "postgres://URL")]
        to: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCmd {
    /// This keyring's master keys, the cluster's active key, and each node's keys.
    Status {
        /// Also count the sealed values under each key (reads every sealed row).
        #[arg(long)]
        count: bool,
        /// A node not seen for this long counts as stopped [default: 6 heartbeats, ≥ 30].
        #[arg(long, value_name = "SECS")]
        stale_after: Option<u64>,
    },
    /// Seal every secret under a new master key while the nodes keep serving.
    ///
    /// 1. Writes a new key to <data_dir>/keys/<id>.key (or takes --key ID, already in this
    ///    keyring) and asks the nodes for it: each live node re-reads its key files every
    ///    key_heartbeat_ms while a rotation waits (and at once on SIGHUP). Copy the file to
    ///    every node's keys directory, or share the directory.
    /// 2. Waits until every live node holds the key, then makes it the active key for the
    ///    whole cluster. If some node lacks it at --wait, nothing changes and it says which.
    /// 3. Waits until every live node seals under it, then re-seals every sealed value
    ///    (TOTP seeds, queued message parameters, webhook secrets, seeds kept by "this wasn't
    ///    me" links) in batches, each row only if it did not change meanwhile.
    /// 4. Reports which keys still have sealed values; retire the old one with `twofold key
    ///    retire ID`.
    ///
    /// Run it again with --key ID to resume. The hashing key is not rotated: hashes of API
    /// keys, codes and tokens cannot be recomputed without the secrets themselves.
    Rotate {
        /// Rotate to this key (its id, as `key status` shows) instead of a new one.
        #[arg(long, value_name = "ID")]
        key: Option<String>,
        /// How long to wait for the nodes at each step.
        #[arg(long, value_name = "SECS", default_value_t = 300)]
        wait: u64,
        /// A node not seen for this long counts as stopped and is not waited for
        /// [default: 6 heartbeats, at least 30].
        #[arg(long, value_name = "SECS")]
        stale_after: Option<u64>,
        /// Rows re-sealed per transaction.
        #[arg(long, default_value_t = 500)]
        batch: u32,
    },
    /// Remove a master key from this keyring, once it is not active and nothing is sealed
    /// under it.
    Retire {
        /// The key id (as `key status` shows).
        id: String,
        /// A node not seen for this long counts as stopped [default: 6 heartbeats, ≥ 30].
        #[arg(long, value_name = "SECS")]
        stale_after: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant and print its first API key (shown once).
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// Set the tenant's email sender name and the calling codes SMS may go to.
    Messaging {
        #[arg(long)]
        slug: String,
        /// Display name on the tenant's emails (default: the tenant's name).
        #[arg(long)]
        sender_name: Option<String>,
        /// Comma-separated calling codes or number prefixes, e.g. `44,1,49`.
        #[arg(long, value_delimiter = ',', conflicts_with = "default_sms_countries")]
        sms_countries: Option<Vec<String>>,
        /// Go back to the server's list of SMS countries.
        #[arg(long)]
        default_sms_countries: bool,
    },
    /// Switch 2FA off for the whole tenant: the policy goes off now, and a background job of
    /// the running server removes every user's factors (emailing each).
    #[command(name = "disable-2fa")]
    Disable2fa {
        #[arg(long)]
        slug: String,
        /// Required: this affects every user of the tenant.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Print the tenant's settings as JSON.
    Show {
        #[arg(long)]
        tenant: String,
    },
    /// Propose settings from a JSON file (as `policy show` prints them) on behalf of an admin;
    /// a code is emailed to that admin.
    Propose {
        #[arg(long)]
        tenant: String,
        /// External id of the admin.
        #[arg(long)]
        admin: String,
        #[arg(long, value_name = "FILE")]
        file: PathBuf,
    },
    /// Confirm a proposal with the code the admin received.
    Confirm {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        proposal: String,
        #[arg(long)]
        code: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConsoleCmd {
    /// Print a one-time link (15 minutes) that opens the admin console for an admin; they
    /// still sign in with their second factor (or set one up first).
    Link {
        #[arg(long)]
        tenant: String,
        /// External id of the admin.
        #[arg(long)]
        admin: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OutboxCmd {
    /// Queue depth and totals.
    Stats {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Messages, newest first (never their content).
    List {
        #[arg(long)]
        tenant: Option<String>,
        /// pending, sending, sent or failed.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Put a failed message back in the queue.
    Retry { id: i64 },
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key and print it (shown once).
    Create {
        /// Scope the key to this tenant.
        #[arg(
            long,
            conflicts_with = "operator",
            required_unless_present = "operator"
        )]
        tenant: Option<String>,
        /// An operator-wide key that may manage every tenant.
        #[arg(long)]
        operator: bool,
        #[arg(long, default_value = "cli")]
        label: String,
    },
    /// List API keys of a tenant, or the operator keys.
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Revoke an API key by its id.
    Revoke { key_id: String },
}

#[derive(Debug, Args)]
pub struct UserRef {
    #[arg(long)]
    pub tenant: String,
    /// The user's external id.
    #[arg(long)]
    pub user: String,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        external_id: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        profile: Option<String>,
        #[arg(long)]
        admin: bool,
    },
    /// Switch 2FA off for one user: every factor and recovery code removed, signed out
    /// everywhere, emailed, audited.
    #[command(name = "disable-2fa")]
    Disable2fa {
        #[command(flatten)]
        who: UserRef,
    },
    /// Lift the freeze a "this wasn't me" report put on the user's 2FA settings.
    Unfreeze {
        #[command(flatten)]
        who: UserRef,
    },
}

#[derive(Debug, Subcommand)]
pub enum FactorCmd {
    /// List a user's factors.
    List {
        #[command(flatten)]
        who: UserRef,
    },
    /// Clear a factor's failures, backoff and lock.
    Unlock {
        #[command(flatten)]
        who: UserRef,
        #[arg(long)]
        factor: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OtpCmd {
    /// Print the current code of an otpauth:// URI.
    Code {
        #[arg(long)]
        uri: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Delete audit rows past the retention period now.
    Prune,
}

/// A failure of a CLI command, printed as one line that says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] crate::app::StartupError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Store(#[from] twofold_core::ports::StoreError),
    #[error("{0}")]
    Core(#[from] twofold_core::CoreError),
    #[error("{0}")]
    Usage(String),
    #[error("server error: {0}")]
    Io(#[from] std::io::Error),
}

pub fn load_config(cli: &Cli) -> Result<(Config, Vec<String>), CliError> {
    if matches!(cli.command, Command::Demo { .. })
        && (cli.config.is_some() || cli.database_url.is_some())
    {
        return Err(CliError::Usage(
            "the demo keeps to its own embedded database and settings: drop --config and \
             --database-url (--data-dir chooses where it lives)"
                .into(),
        ));
    }
    let (mut config, warnings) = Config::load(cli.config.as_deref())?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    if let Some(url) = &cli.database_url {
        config.database_url = Some(url.clone());
    }
    if let Command::Serve {
        listen: Some(listen),
    } = &cli.command
    {
        config.listen = *listen;
    }
    if let Command::Demo { listen, .. } = &cli.command {
        config = demo::config(&config, cli.data_dir.clone(), *listen);
    }
    Ok((config, warnings))
}

async fn core(config: &Config) -> Result<Arc<Twofold>, CliError> {
    Ok(open_core(config, Arc::new(SystemClock)).await?)
}

/// The database `config` names, or a usage error saying what is wrong with `database_url`.
fn database(config: &Config) -> Result<Database, CliError> {
    config.database().map_err(CliError::Usage)
}

pub async fn run(cli: Cli, config: Config) -> Result<(), CliError> {
    let meta = RequestMeta::default();
    let actor = Actor::Cli;
    match cli.command {
        Command::Serve { .. } => {
            for w in config.insecure_warnings() {
                tracing::warn!("{w}");
            }
            let app = Application::build(&config).await?;
            tracing::info!(
                addr = %app.local_addr(),
                node = %app.node_id(),
                sealing_key = %app.state().core.keyring().active_id(),
                data_dir = %config.data_dir.display(),
                database = %database(&config)?.describe(),
                "twofold listening"
            );
            app.run_until(shutdown_signal()).await?;
            tracing::info!("twofold stopped");
        }
        Command::Demo { app_listen, .. } => demo::run(config, app_listen).await?,
        Command::Migrate => {
            core(&config).await?;
            println!("database {} is up to date", database(&config)?.describe());
        }
        Command::Tenant(TenantCmd::Create { slug, name }) => {
            let (tenant, key) = core(&config)
                .await?
                .create_tenant(&actor, &meta, &slug, &name)
                .await?;
            println!("created tenant {} ({})", tenant.slug, tenant.name);
            println!("tenant API key (shown once, store it now): {}", key.token);
        }
        Command::Tenant(TenantCmd::Messaging {
            slug,
            sender_name,
            sms_countries,
            default_sms_countries,
        }) => {
            let core = core(&config).await?;
            let countries = match (&sms_countries, default_sms_countries) {
                (_, true) => Some(None),
                (Some(list), false) => Some(Some(list.as_slice())),
                (None, false) => None,
            };
            let t = core
                .update_messaging(
                    &actor,
                    &meta,
                    &slug,
                    sender_name.as_deref().map(Some),
                    countries,
                )
                .await?;
            println!(
                "{}: sender name \"{}\", SMS to +{}",
                t.slug,
                t.sender_name.as_deref().unwrap_or(&t.name),
                core.effective_sms_countries(&t).join(", +")
            );
        }
        Command::Outbox(OutboxCmd::Stats { tenant }) => {
            let s = core(&config)
                .await?
                .outbox_stats(&actor, tenant.as_deref())
                .await?;
            println!(
                "pending {}\tsending {}\tsent {}\tfailed {}",
                s.pending, s.sending, s.sent, s.failed
            );
            if let Some(at) = s.oldest_unsent_at {
                println!(
                    "oldest unsent message queued at {}",
                    twofold_core::service::notices::human_utc(at)
                );
            }
        }
        Command::Outbox(OutboxCmd::List {
            tenant,
            status,
            limit,
        }) => {
            let (messages, _) = core(&config)
                .await?
                .list_messages(
                    &actor,
                    tenant.as_deref(),
                    status.as_deref(),
                    None,
                    Some(limit),
                )
                .await?;
            for m in messages {
                println!(
                    "{}\t{}\t{}\t{}\t{}\tattempts {}{}",
                    m.id,
                    m.status.as_str(),
                    m.channel.as_str(),
                    m.template.as_str(),
                    m.destination,
                    m.attempts,
                    m.last_error
                        .map(|e| format!("\tlast error: {e}"))
                        .unwrap_or_default()
                );
            }
        }
        Command::Vault(cmd) => vault::run(&*core(&config).await?, &actor, &meta, cmd).await?,
        Command::Console(ConsoleCmd::Link { tenant, admin }) => {
            let (url, expires_at) = core(&config)
                .await?
                .mint_console_link(&actor, &RequestMeta::default(), &tenant, &admin)
                .await?;
            println!("{url}");
            eprintln!(
                "valid once, until {}; send it to {admin} over a channel you trust",
                twofold_core::service::notices::human_utc(expires_at)
            );
        }
        Command::Policy(PolicyCmd::Show { tenant }) => {
            let (policy, version) = core(&config).await?.get_policy(&actor, &tenant).await?;
            let json = serde_json::to_string_pretty(&policy)
                .map_err(|e| CliError::Usage(format!("cannot print the policy: {e}")))?;
            println!("{json}");
            eprintln!("version {version}");
        }
        Command::Policy(PolicyCmd::Propose {
            tenant,
            admin,
            file,
        }) => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
            let policy = serde_json::from_str(&text).map_err(|e| {
                CliError::Usage(format!(
                    "{} is not a policy ({e}); start from `twofold policy show`",
                    file.display()
                ))
            })?;
            let (proposal, receipt) = core(&config)
                .await?
                .propose_policy(&actor, &meta, &tenant, &admin, policy)
                .await?;
            for w in &proposal.warnings {
                eprintln!("warning: {w}");
            }
            println!(
                "proposal {} sent a code to {}; confirm within 10 minutes with \
                 `twofold policy confirm --tenant {tenant} --proposal {} --code CODE`",
                proposal.id, receipt.destination, proposal.id
            );
        }
        Command::Policy(PolicyCmd::Confirm {
            tenant,
            proposal,
            code,
        }) => {
            let verdict = core(&config)
                .await?
                .confirm_proposal(&actor, &meta, &tenant, &proposal, &code)
                .await?;
            if !verdict.is_accepted() {
                return Err(CliError::Usage(
                    "the code is wrong, expired or used; nothing changed".into(),
                ));
            }
            println!("settings of {tenant} changed");
        }
        Command::Outbox(OutboxCmd::Retry { id }) => {
            core(&config)
                .await?
                .retry_message(&actor, &meta, id)
                .await?;
            println!("message {id} queued again");
        }
        Command::Apikey(ApiKeyCmd::Create {
            tenant,
            operator,
            label,
        }) => {
            if tenant.is_none() && !operator {
                return Err(CliError::Usage("pass --tenant SLUG or --operator".into()));
            }
            let key = core(&config)
                .await?
                .create_api_key(&actor, &meta, tenant.as_deref(), &label)
                .await?;
            println!("key id: {}", key.key_id);
            println!("API key (shown once, store it now): {}", key.token);
        }
        Command::Apikey(ApiKeyCmd::List { tenant }) => {
            for k in core(&config)
                .await?
                .list_api_keys(&actor, tenant.as_deref())
                .await?
            {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}", k.key_id, state, k.label);
            }
        }
        Command::Apikey(ApiKeyCmd::Revoke { key_id }) => {
            core(&config)
                .await?
                .revoke_api_key(&actor, &meta, &key_id)
                .await?;
            println!("revoked {key_id}");
        }
        Command::User(UserCmd::Create {
            tenant,
            external_id,
            email,
            phone,
            profile,
            admin,
        }) => {
            let user = core(&config)
                .await?
                .create_user(
                    &actor,
                    &meta,
                    &tenant,
                    NewUserInput {
                        external_id,
                        email,
                        phone,
                        profile,
                        is_admin: admin,
                    },
                )
                .await?;
            println!("created user {}", user.external_id);
        }
        Command::User(UserCmd::Disable2fa { who }) => {
            core(&config)
                .await?
                .disable_user_2fa(&actor, &meta, &who.tenant, &who.user)
                .await?;
            println!(
                "two-step verification is off for {}: factors and recovery codes removed, \
                 signed out everywhere, user emailed",
                who.user
            );
        }
        Command::User(UserCmd::Unfreeze { who }) => {
            core(&config)
                .await?
                .unfreeze_user(&actor, &meta, &who.tenant, &who.user)
                .await?;
            println!("{} may change their two-step verification again", who.user);
        }
        Command::Tenant(TenantCmd::Disable2fa { slug, yes }) => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "this switches two-step verification off for every user of {slug}; run \
                     again with --yes to do it"
                )));
            }
            core(&config)
                .await?
                .disable_tenant_2fa(&actor, &meta, &slug)
                .await?;
            println!(
                "two-step verification is off for {slug}; a running server removes every \
                 user's factors in the background (progress in its log and the audit trail)"
            );
        }
        Command::Factor(FactorCmd::List { who }) => {
            for f in core(&config)
                .await?
                .list_factors(&actor, &who.tenant, &who.user)
                .await?
            {
                let detail = match &f.destination {
                    Some(d) => d.clone(),
                    None => f.algorithm.clone(),
                };
                println!(
                    "{}\t{}\t{}\t{}{}",
                    f.id,
                    f.kind,
                    f.status.as_str(),
                    detail,
                    if f.locked { "\tLOCKED" } else { "" }
                );
            }
        }
        Command::Factor(FactorCmd::Unlock { who, factor }) => {
            core(&config)
                .await?
                .unlock_factor(&actor, &meta, &who.tenant, &who.user, &factor)
                .await?;
            println!("unlocked {factor}");
        }
        Command::Otp(OtpCmd::Code { uri }) => {
            let key = twofold_otp::uri::KeyUri::parse(&uri)
                .map_err(|e| CliError::Usage(format!("--uri: {e}")))?;
            let code = match key.kind {
                twofold_otp::uri::OtpKind::Hotp { counter } => {
                    twofold_otp::hotp(&key.secret, counter, key.algorithm, key.digits)
                }
                twofold_otp::uri::OtpKind::Totp { .. } => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0);
                    twofold_otp::totp_at_time(&key.secret, now, &key.params())
                }
            };
            println!("{code}");
        }
        Command::Key(cmd) => key(&config, cmd).await?,
        Command::Backup { to, force } => backup(&config, to, force).await?,
        Command::MigrateStore { from, to } => migrate_store(&config, from, to).await?,
        Command::Audit(AuditCmd::Prune) => {
            let n = core(&config).await?.prune_audit().await?;
            println!("pruned {n} audit rows");
        }
    }
    Ok(())
}

/// `twofold key …`: see [`crate::rotation`].
async fn key(config: &Config, cmd: KeyCmd) -> Result<(), CliError> {
    let stale = |secs: Option<u64>| {
        secs.map(std::time::Duration::from_secs)
            .unwrap_or_else(|| config.node_stale_after())
    };
    const BATCH: u32 = 500;
    match cmd {
        KeyCmd::Status { count, stale_after } => {
            crate::rotation::status(config, count, stale(stale_after), BATCH).await
        }
        KeyCmd::Rotate {
            key,
            wait,
            stale_after,
            batch,
        } => {
            let opts = crate::rotation::RotateOptions {
                key,
                wait: std::time::Duration::from_secs(wait),
                stale_after: stale(stale_after),
                batch: batch.max(1),
            };
            crate::rotation::rotate(config, opts).await
        }
        KeyCmd::Retire { id, stale_after } => {
            crate::rotation::retire(config, &id, stale(stale_after), BATCH).await
        }
    }
}

/// `twofold backup`: the online copy (see `twofold_store::backup` for why it is consistent
/// beside a running server), with progress on stderr for databases that take several steps.
async fn backup(config: &Config, to: PathBuf, force: bool) -> Result<(), CliError> {
    let path = match database(config)? {
        Database::Sqlite(path) => path,
        Database::Postgres(_) => {
            return Err(CliError::Usage(
                "twofold backup copies the embedded SQLite database, and this server \
                 uses PostgreSQL (database_url): back it up with PostgreSQL's own tools, \
                 e.g. `pg_dump --format=custom --file=FILE DATABASE`, and keep \
                 master.key and hashing.key with it (see docs/DEPLOYMENT.md)"
                    .into(),
            ))
        }
    };
    let opts = twofold_store::BackupOptions {
        overwrite: force,
        ..Default::default()
    };
    let dest = to.clone();
    let report = tokio::task::spawn_blocking(move || {
        let mut shown = Progress::default();
        twofold_store::backup(&path, &dest, &opts, &mut |p| {
            shown.show("backup", p.pages_done, p.pages_total, "pages");
        })
    })
    .await
    .map_err(|e| CliError::Usage(format!("backup failed: {e}")))?
    .map_err(|e| {
        use twofold_store::BackupError;
        CliError::Usage(match e {
            BackupError::Exists(p) => format!(
                "{} already exists; choose a new file name, or pass --force to replace it",
                p.display()
            ),
            BackupError::NoSource(p) => format!(
                "there is no database at {}; pass the server's --data-dir (or --config)",
                p.display()
            ),
            other => format!("backup failed, nothing was written: {other}"),
        })
    })?;
    println!(
        "backup written to {} ({:.1} MiB, mode 0600)",
        to.display(),
        report.bytes as f64 / (1024.0 * 1024.0)
    );
    let [master, hashing] = key_sources(config);
    println!(
        "IMPORTANT: the backup holds no key. Keep a copy of the master key ({master}) and the \
         hashing key ({hashing}) apart from it: without the master key no TOTP seed in the \
         backup can be unsealed, and without the hashing key no API key works."
    );
    Ok(())
}

/// `twofold migrate-store`: see `twofold_store::transfer` for how nothing is lost.
async fn migrate_store(
    config: &Config,
    from: Option<String>,
    to: Option<String>,
) -> Result<(), CliError> {
    let source = match from {
        None => config.data_dir.join("twofold.db"),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => {
                return Err(CliError::Usage(format!(
                    "--from takes sqlite://PATH to the twofold.db file (sqlite:///var/lib/\
                     twofold/twofold.db for an absolute path), not {url}"
                )))
            }
        },
    };
    let target = match to {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => url,
        Some(_) => {
            return Err(CliError::Usage(
                "--to takes a postgres://user:password@host:5432/database URL".into(),
            ))
        }
        None => match config.database() {
            Ok(Database::Postgres(url)) => url,
            _ => {
                return Err(CliError::Usage(
                    "pass --to postgres://user@host:5432/database (or set database_url, e.g. \
                     TWOFOLD_DATABASE_URL, to the PostgreSQL database)"
                        .into(),
                ))
            }
        },
    };
    let shown = twofold_store::PgStore::redacted_url(&target);
    eprintln!(
        "copying SQLite {} into PostgreSQL {shown}",
        source.display()
    );
    let mut table = String::new();
    let mut progress = Progress::default();
    let reports = twofold_store::transfer::sqlite_to_postgres(&source, &target, &mut |p| {
        if p.table != table {
            table = p.table.to_string();
            progress = Progress::default();
        }
        // A line when a table is done (or a second passes), none before its first batch.
        if p.copied > 0 || p.total == 0 {
            progress.show_always(p.table, p.copied, p.total, "rows");
        }
    })
    .await
    .map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "copied and verified {} tables (row counts and SHA-256 checksums match):",
        reports.len()
    );
    for r in &reports {
        println!(
            "  {:<18} {:>10} rows  sha256 {}",
            r.table, r.rows, r.checksum
        );
    }
    let [master, hashing] = key_sources(config);
    println!(
        "next: start every node with database_url = \"{shown}\" (TWOFOLD_DATABASE_URL, with \
         the password) and the same keys: master key {master}, hashing key {hashing}. The \
         SQLite file is untouched: keep it until you are satisfied, but start no server on it \
         again."
    );
    Ok(())
}

/// Where the master and hashing keys come from, for messages: their files, or the
/// environment/config. After a rotation the master keys include `<data_dir>/keys/`.
fn key_sources(config: &Config) -> [String; 2] {
    let source = |set: bool, file: &str, env: &str| {
        if set {
            format!("{env} or the config file")
        } else {
            config.data_dir.join(file).display().to_string()
        }
    };
    let mut master = source(
        config.master_key.is_some(),
        "master.key",
        "TWOFOLD_MASTER_KEY",
    );
    let keys_dir = crate::keys::keys_dir(config);
    if keys_dir.exists() {
        master = format!("{master}, and the keys in {}", keys_dir.display());
    }
    if !config.master_keys.is_empty() {
        master = format!("{master}, and TWOFOLD_MASTER_KEYS");
    }
    [
        master,
        source(
            config.hashing_key.is_some(),
            "hashing.key",
            "TWOFOLD_HASHING_KEY",
        ),
    ]
}

/// Progress lines on stderr for long copies: shown only once the work takes more than one
/// step, then at most once a second, and always at the end.
#[derive(Default)]
struct Progress {
    steps: u64,
    last: Option<std::time::Instant>,
}

impl Progress {
    fn show(&mut self, what: &str, done: u64, total: u64, unit: &str) {
        self.steps += 1;
        if self.steps == 1 && done >= total {
            return;
        }
        self.show_always(what, done, total, unit);
    }

    /// The same, but a piece of work done in one step gets its line too.
    fn show_always(&mut self, what: &str, done: u64, total: u64, unit: &str) {
        let finished = done >= total;
        let due = match self.last {
            None => true,
            Some(t) => t.elapsed() >= std::time::Duration::from_secs(1),
        };
        if due || finished {
            let pct = (done * 100).checked_div(total).unwrap_or(100);
            eprintln!("{what}: {done}/{total} {unit} ({pct}%)");
            self.last = Some(std::time::Instant::now());
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
