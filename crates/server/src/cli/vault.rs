//! `twofold vault …`: the authenticator vault from the command line (operator rights).

use super::CliError;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use twofold_core::service::vault::*;
use twofold_core::service::RequestMeta;
use twofold_core::vault::{EntryKind, OwnerKind};
use twofold_core::{Actor, Twofold};

#[derive(Debug, Subcommand)]
pub enum VaultCmd {
    /// Add an entry from --uri, --qr FILE (PNG/JPEG) or --secret with its parameters.
    Add(AddArgs),
    /// The tenant's entries (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Print the entry's current code and the seconds it stays valid.
    Code {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// Remove an entry and the tokens scoped to it.
    Delete {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    /// Tokens that fetch codes: create (shown once), list, revoke.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Named sets of entries with their own tokens.
    #[command(subcommand)]
    Group(GroupCmd),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long)]
    tenant: String,
    #[arg(long)]
    name: String,
    /// A user's external id, or with --service a service account's name.
    #[arg(long)]
    owner: String,
    /// The owner is a service account (cannot sign in), not a user.
    #[arg(long)]
    service: bool,
    #[arg(long)]
    group: Option<String>,
    #[arg(long, conflicts_with_all = ["qr", "secret"])]
    uri: Option<String>,
    #[arg(long, value_name = "FILE", conflicts_with = "secret")]
    qr: Option<PathBuf>,
    /// Base32 secret.
    #[arg(long)]
    secret: Option<String>,
    /// totp or hotp.
    #[arg(long = "type", default_value = "totp")]
    kind: String,
    #[arg(long, default_value = "SHA1")]
    algorithm: String,
    #[arg(long, default_value_t = 6)]
    digits: u8,
    #[arg(long)]
    period: Option<u32>,
    #[arg(long)]
    counter: Option<u64>,
    #[arg(long)]
    issuer: Option<String>,
    #[arg(long)]
    account: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, default_value = "cli")]
        label: String,
        #[arg(long, conflicts_with = "group", required_unless_present = "group")]
        entry: Option<String>,
        #[arg(long)]
        group: Option<String>,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    Revoke {
        id: String,
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    Create {
        name: String,
        #[arg(long)]
        tenant: String,
    },
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Put an entry in a group (`--group` omitted: in none).
    Set {
        entry: String,
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        group: Option<String>,
    },
}

fn usage(m: impl Into<String>) -> CliError {
    CliError::Usage(m.into())
}

fn source(a: &AddArgs) -> Result<EntrySource, CliError> {
    if let Some(uri) = &a.uri {
        return Ok(EntrySource::Uri(uri.clone()));
    }
    if let Some(path) = &a.qr {
        let bytes = std::fs::read(path)
            .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
        let text = crate::qrimage::decode(&bytes)
            .map_err(|e| usage(format!("{}: {e}", path.display())))?;
        return Ok(EntrySource::Qr(text));
    }
    let secret = a
        .secret
        .clone()
        .ok_or_else(|| usage("give --uri, --qr FILE or --secret"))?;
    Ok(EntrySource::Secret {
        secret,
        kind: EntryKind::parse(&a.kind).ok_or_else(|| usage("--type is totp or hotp"))?,
        algorithm: twofold_otp::Algorithm::parse(&a.algorithm)
            .ok_or_else(|| usage("--algorithm is SHA1, SHA256 or SHA512"))?,
        digits: a.digits,
        period: a.period,
        counter: a.counter,
        issuer: a.issuer.clone(),
        account: a.account.clone(),
    })
}

fn json(v: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string(v).map_err(|e| usage(format!("cannot print: {e}")))
}

pub(super) async fn run(
    core: &Twofold,
    actor: &Actor,
    meta: &RequestMeta,
    cmd: VaultCmd,
) -> Result<(), CliError> {
    match cmd {
        VaultCmd::Add(a) => {
            let input = NewEntryInput {
                name: a.name.clone(),
                owner_kind: if a.service {
                    OwnerKind::Service
                } else {
                    OwnerKind::User
                },
                owner: a.owner.clone(),
                group: a.group.clone(),
                source: source(&a)?,
            };
            let view = core
                .create_vault_entry(actor, meta, &a.tenant, input)
                .await?;
            println!("{}", json(&view)?);
        }
        VaultCmd::List { tenant } => {
            for e in core.list_vault_entries(actor, &tenant).await? {
                println!("{}", json(&e)?);
            }
        }
        VaultCmd::Code { name, tenant } => {
            let c = core
                .vault_code(VaultCaller::Key(actor, &tenant), meta, &name)
                .await?;
            match (c.valid_for_secs, c.counter) {
                (Some(secs), _) => println!("{} {secs}s left", c.code),
                (None, Some(counter)) => println!("{} counter {counter}", c.code),
                (None, None) => println!("{}", c.code),
            }
        }
        VaultCmd::Delete { name, tenant } => {
            core.delete_vault_entry(actor, meta, &tenant, &name).await?;
            println!("entry {name} removed");
        }
        VaultCmd::Token(TokenCmd::Create {
            tenant,
            label,
            entry,
            group,
        }) => {
            let scope = match (&entry, &group) {
                (Some(e), None) => TokenScope::Entry(e),
                (None, Some(g)) => TokenScope::Group(g),
                _ => return Err(usage("give exactly one of --entry and --group")),
            };
            let (view, token) = core
                .create_vault_token(actor, meta, &tenant, &label, scope)
                .await?;
            eprintln!("token {} (shown once; only its hash is kept):", view.id);
            println!("{token}");
        }
        VaultCmd::Token(TokenCmd::List { tenant }) => {
            for t in core.list_vault_tokens(actor, &tenant).await? {
                println!("{}", json(&t)?);
            }
        }
        VaultCmd::Token(TokenCmd::Revoke { id, tenant }) => {
            core.revoke_vault_token(actor, meta, &tenant, &id).await?;
            println!("token {id} revoked");
        }
        VaultCmd::Group(GroupCmd::Create { name, tenant }) => {
            let g = core.create_vault_group(actor, meta, &tenant, &name).await?;
            println!("{}", json(&g)?);
        }
        VaultCmd::Group(GroupCmd::List { tenant }) => {
            for g in core.list_vault_groups(actor, &tenant).await? {
                println!("{}", json(&g)?);
            }
        }
        VaultCmd::Group(GroupCmd::Set {
            entry,
            tenant,
            group,
        }) => {
            let v = core
                .set_vault_entry_group(actor, meta, &tenant, &entry, group.as_deref())
                .await?;
            println!("{}", json(&v)?);
        }
    }
    Ok(())
}
