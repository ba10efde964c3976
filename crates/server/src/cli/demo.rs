//! `twofold demo`: Twofold on embedded SQLite in its own data directory, set up with the demo
//! tenant of [`twofold_demo::data`], plus the demo app of [`twofold_demo`] beside it, so a
//! newcomer can try enrolment, sign-in and the admin console in a browser within a minute.
//!
//! The set-up is idempotent and done the way an operator and an admin would: the operator
//! creates the tenant and users; the organisation's settings are proposed for alice and
//! confirmed with the code emailed to her, read from the development outbox like every other
//! code here (so her mailbox shows it, and the audit log has the real trail); carol's email
//! and phone are enrolled with the codes sent to them. The client secret is never kept on
//! disk: each start rotates it and hands the new one to the demo app.

use super::{shutdown_signal, CliError};
use crate::app::Application;
use crate::config::Config;
use std::collections::HashSet;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use twofold_core::model::FactorStatus;
use twofold_core::policy::Method;
use twofold_core::service::{ContactKind, NewUserInput, RequestMeta};
use twofold_core::{Actor, CoreError, Twofold};
use twofold_delivery::dev_outbox;
use twofold_demo::data::{self, DemoUser, CLIENT_APP, TENANT, TENANT_NAME};
use twofold_demo::{DemoApp, DemoConfig};

/// The data directory when `--data-dir` is not given: apart from `serve`'s `./twofold-data`.
pub const DEFAULT_DATA_DIR: &str = "./twofold-demo";

/// How long the set-up waits for a code to reach the development outbox.
const CODE_WAIT: Duration = Duration::from_secs(30);

/// The demo's settings: Twofold's defaults (embedded SQLite, keys and outbox in `data_dir`,
/// no SMTP or SMS provider) whatever the config file or `TWOFOLD_*` environment says, so a
/// demo never writes into a real installation's database or sends real messages. Only the
/// log settings are kept.
pub fn config(loaded: &Config, data_dir: Option<PathBuf>, listen: SocketAddr) -> Config {
    Config {
        listen,
        data_dir: data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
        log_format: loaded.log_format.clone(),
        log_level: loaded.log_level.clone(),
        ..Config::default()
    }
}

/// Runs the demo until Ctrl-C (or SIGTERM).
pub async fn run(config: Config, app_listen: SocketAddr) -> Result<(), CliError> {
    if config.listen.port() == 0 || app_listen.port() == 0 {
        return Err(CliError::Usage(
            "the demo needs fixed ports (the browser is sent between them): pass \
             --listen and --app-listen with a port other than 0"
                .into(),
        ));
    }
    // The app's port first: a busy one fails before anything is set up.
    let app_listener = tokio::net::TcpListener::bind(app_listen)
        .await
        .map_err(|e| {
            CliError::Usage(format!(
                "cannot listen on {app_listen}: {e}; is another demo running? pick another \
                 with --app-listen"
            ))
        })?;
    let app_url = format!("http://{app_listen}");
    progress(&format!(
        "starting Twofold on embedded SQLite in {}",
        config.data_dir.display()
    ));
    let twofold = Application::build(&config).await?;
    let core = twofold.state().core.clone();
    let issuer = core.oidc_issuer();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(twofold.run_until(until(stopped.clone())));
    progress(&format!("Twofold is listening at {issuer}"));

    let outbox = config.data_dir.join("dev-outbox");
    let started = async {
        let secret = provision(&core, &outbox, &app_url).await?;
        let demo = DemoApp::new(DemoConfig {
            issuer: issuer.clone(),
            app_url: app_url.clone(),
            client_id: data::client_id(),
            client_secret: secret,
            outbox: outbox.clone(),
            stylesheet: crate::web::STYLESHEET,
        })
        .await
        .map_err(|e| CliError::Usage(format!("the demo app cannot start: {e}")))?;
        Ok::<_, CliError>(demo)
    }
    .await;
    let demo = match started {
        Ok(demo) => demo,
        Err(e) => {
            let _ = stop.send(true);
            let _ = server.await;
            return Err(e);
        }
    };
    let app = tokio::spawn(
        axum::serve(app_listener, demo.router())
            .with_graceful_shutdown(until(stopped))
            .into_future(),
    );
    banner(&issuer, &app_url, &outbox);
    shutdown_signal().await;
    let _ = stop.send(true);
    if let Ok(Err(e)) = app.await {
        tracing::warn!(error = %e, "the demo app stopped with an error");
    }
    server
        .await
        .map_err(|e| CliError::Usage(format!("Twofold stopped abnormally: {e}")))??;
    println!(
        "demo stopped; its data stays in {}",
        config.data_dir.display()
    );
    Ok(())
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn until(mut stop: tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn progress(line: &str) {
    println!("demo: {line}");
}

fn banner(issuer: &str, app_url: &str, outbox: &Path) {
    let users: Vec<String> = data::USERS
        .iter()
        .map(|u| format!("  {:<6} password {:<11} {}", u.name, u.password, u.story))
        .collect();
    println!(
        "\n\
         Twofold demo is ready.\n\n\
         \x20 Demo app (sign in here):  {app_url}/\n\
         \x20 Twofold:                  {issuer}\n\
         \x20 Mailbox (codes by email and text message): {app_url}/mailbox\n\
         \x20 (written to {outbox})\n\n\
         Users of {TENANT_NAME}:\n{users}\n\n\
         Try: sign in as alice, choose Set up now and the authenticator app (scan the QR code\n\
         or type the key), keep the recovery codes, then sign in again and tick \"remember\n\
         this device\". Sign in as bob to see the countdown, as carol to get a code by email\n\
         or text message in the Mailbox.\n\n\
         Press Ctrl-C to stop.",
        outbox = outbox.display(),
        users = users.join("\n"),
    );
}

/// Sets up what is missing of the demo tenant; returns the client secret of the demo app.
async fn provision(core: &Twofold, outbox: &Path, app_url: &str) -> Result<String, CliError> {
    let (actor, meta) = (Actor::Cli, RequestMeta::default());
    match core.create_tenant(&actor, &meta, TENANT, TENANT_NAME).await {
        Ok(_) => progress(&format!("created tenant {TENANT} ({TENANT_NAME})")),
        Err(CoreError::Conflict {
            code: "tenant_exists",
            ..
        }) => progress(&format!("tenant {TENANT} is there from an earlier start")),
        Err(e) => return Err(e.into()),
    }
    for u in data::USERS {
        let input = NewUserInput {
            external_id: u.name.into(),
            email: Some(u.email()),
            phone: u.phone.map(String::from),
            profile: u.profile.map(String::from),
            is_admin: u.admin,
        };
        match core.create_user(&actor, &meta, TENANT, input).await {
            Ok(_) => progress(&format!("created user {} <{}>", u.name, u.email())),
            Err(CoreError::Conflict {
                code: "user_exists",
                ..
            }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let (_, version) = core.get_policy(&actor, TENANT).await?;
    if version == 0 {
        set_policy(core, outbox).await?;
    }
    for u in data::USERS.iter().filter(|u| !u.set_up.is_empty()) {
        set_up_contacts(core, outbox, u).await?;
    }
    client_secret(core, app_url).await
}

/// The organisation's settings, proposed for the admin and confirmed with her emailed code.
async fn set_policy(core: &Twofold, outbox: &Path) -> Result<(), CliError> {
    let (actor, meta) = (Actor::Cli, RequestMeta::default());
    let Some(admin) = data::USERS.iter().find(|u| u.admin) else {
        return Err(CliError::Usage("the demo data has no administrator".into()));
    };
    let before = seen(outbox);
    let policy = data::policy(core.now());
    let (proposal, _) = core
        .propose_policy(&actor, &meta, TENANT, admin.name, policy)
        .await?;
    let code = code_for(outbox, &admin.email(), &before).await?;
    let verdict = core
        .confirm_proposal(&actor, &meta, TENANT, &proposal.id, &code)
        .await?;
    if !verdict.is_accepted() {
        return Err(CliError::Usage(
            "the emailed code did not confirm the demo's settings".into(),
        ));
    }
    progress(&format!(
        "{} confirmed the settings with the code emailed to her: two-step verification \
         required for everyone in {} days (authenticator app, text message, email)",
        admin.name,
        data::GRACE_DAYS
    ));
    Ok(())
}

/// Enrols the user's email address and phone (what `set_up` names and is not active yet),
/// each confirmed with the code sent to it.
async fn set_up_contacts(core: &Twofold, outbox: &Path, u: &DemoUser) -> Result<(), CliError> {
    let (actor, meta) = (Actor::Cli, RequestMeta::default());
    let active: Vec<String> = core
        .list_factors(&actor, TENANT, u.name)
        .await?
        .into_iter()
        .filter(|f| f.status == FactorStatus::Active)
        .map(|f| f.kind)
        .collect();
    for method in u.set_up {
        let (kind, destination) = match method {
            Method::Email => (ContactKind::Email, u.email()),
            Method::Sms => match u.phone {
                Some(p) => (ContactKind::Sms, p.to_string()),
                None => continue,
            },
            // Apps and keys are set up by the person, in their browser.
            Method::Totp | Method::Webauthn => continue,
        };
        if active.iter().any(|k| k == method.as_str()) {
            continue;
        }
        let before = seen(outbox);
        let (factor, _) = core
            .enroll_contact(&actor, &meta, TENANT, u.name, kind, &destination)
            .await?;
        let code = code_for(outbox, &destination, &before).await?;
        let (verdict, _) = core
            .confirm_factor(&actor, &meta, TENANT, u.name, &factor.id, &code)
            .await?;
        if !verdict.is_accepted() {
            return Err(CliError::Usage(format!(
                "the code sent to {destination} did not confirm it"
            )));
        }
        progress(&format!(
            "{} set up codes by {} to {destination}",
            u.name,
            if kind == ContactKind::Email {
                "email"
            } else {
                "text message"
            }
        ));
    }
    Ok(())
}

/// Registers the demo app for OpenID Connect with its redirect URI (or updates that URI, for
/// a new --app-listen), and gives it a new secret.
async fn client_secret(core: &Twofold, app_url: &str) -> Result<String, CliError> {
    let (actor, meta) = (Actor::Cli, RequestMeta::default());
    let redirect = vec![twofold_demo::redirect_uri(app_url)];
    let id = data::client_id();
    let existing = core
        .list_oidc_clients(&actor, TENANT)
        .await?
        .into_iter()
        .find(|c| c.client_id == id);
    let issued = match existing {
        None => {
            let issued = core
                .create_oidc_client(&actor, &meta, TENANT, CLIENT_APP, &redirect)
                .await?;
            progress(&format!("registered the demo app as OIDC client {id}"));
            issued
        }
        Some(client) => {
            if client.redirect_uris != redirect {
                core.set_oidc_redirect_uris(&actor, &meta, TENANT, &id, &redirect)
                    .await?;
            }
            core.rotate_oidc_secret(&actor, &meta, TENANT, &id).await?
        }
    };
    Ok(issued.client_secret)
}

/// The messages in the outbox now.
fn seen(outbox: &Path) -> HashSet<PathBuf> {
    dev_outbox::read_all(outbox)
        .into_iter()
        .map(|m| m.path)
        .collect()
}

/// The code in the first new message to `to` that carries one (a message not in `before`).
async fn code_for(outbox: &Path, to: &str, before: &HashSet<PathBuf>) -> Result<String, CliError> {
    let deadline = tokio::time::Instant::now() + CODE_WAIT;
    loop {
        let code = dev_outbox::read_all(outbox)
            .into_iter()
            .filter(|m| m.to == to && !before.contains(&m.path))
            .find_map(|m| m.code());
        if let Some(code) = code {
            return Ok(code);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(CliError::Usage(format!(
                "no code reached {to} within {} s; the outbox is {}",
                CODE_WAIT.as_secs(),
                outbox.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
