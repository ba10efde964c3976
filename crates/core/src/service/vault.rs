//! The authenticator vault (issue #7): third-party TOTP/HOTP secrets kept for automation,
//! whose current code authorised callers fetch by API.
//!
//! - Entries are added from an `otpauth://` URI (typed, or decoded from a QR image by the
//!   server), or from a base32 secret and parameters. The secret is sealed bound to
//!   `vault:{tenant}:{entry}` and never shown again, except through an export confirmed by a
//!   code emailed to the acting admin ([`CodePurpose::VaultExport`], bound by an action hash
//!   to that entry and that admin, INV-05).
//! - Codes are handed to the tenant's API key or to a vault token (`tfv_…`, shown once, kept
//!   as a keyed hash) scoped to one entry or one group. Every code handed out is audited
//!   (`vault.code`: the caller, the time, the socket IP) and counted per caller and per entry
//!   in the store's send counters, so the limits hold across nodes.
//! - An HOTP code is handed out only with one conditional update of the entry's counter
//!   (`counter = counter + 1 WHERE counter = expected`): two parallel requests never get the
//!   same counter; the loser re-reads and takes the next one.

use super::login::new_id;
use super::*;
use crate::messaging::{Channel, CodePurpose, SendLimit};
use crate::vault::*;

const TOKEN_PREFIX: &str = "tfv";
const MINUTE_MS: i64 = 60_000;
/// The shortest secret accepted: 80 bits, what many services hand out.
pub const MIN_SECRET_BYTES: usize = 10;
/// How many times an HOTP request re-reads a counter another request advanced meanwhile.
const HOTP_RETRIES: usize = 32;

/// Per-minute caps on codes handed out.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    pub per_caller_per_minute: u32,
    pub per_entry_per_minute: u32,
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            per_caller_per_minute: 60,
            per_entry_per_minute: 120,
        }
    }
}

/// Where a new entry's secret comes from.
pub enum EntrySource {
    /// An `otpauth://` URI typed by the caller.
    Uri(String),
    /// The text of a QR image the server decoded.
    Qr(String),
    /// A base32 secret and its parameters.
    Secret {
        secret: String,
        kind: EntryKind,
        algorithm: Algorithm,
        digits: u8,
        /// TOTP only; defaults to 30.
        period: Option<u32>,
        /// HOTP only; defaults to 0.
        counter: Option<u64>,
        issuer: Option<String>,
        account: Option<String>,
    },
}

/// A new entry: its name, owner, optional group (by name) and secret.
pub struct NewEntryInput {
    pub name: String,
    pub owner_kind: OwnerKind,
    pub owner: String,
    pub group: Option<String>,
    pub source: EntrySource,
}

/// What callers see of an entry: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VaultEntryView {
    pub id: String,
    pub name: String,
    pub owner_kind: OwnerKind,
    pub owner: String,
    /// The group's name.
    pub group: Option<String>,
    pub kind: EntryKind,
    pub algorithm: String,
    pub digits: u8,
    /// TOTP only.
    pub period: Option<u32>,
    /// HOTP only: the counter the next code uses.
    pub counter: Option<i64>,
    pub issuer: Option<String>,
    pub account: Option<String>,
    pub created_at: i64,
}

/// What callers see of a token: never the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VaultTokenView {
    pub id: String,
    pub label: String,
    /// The entry's name, for a token scoped to one entry.
    pub entry: Option<String>,
    /// The group's name, for a token scoped to a group.
    pub group: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A code handed out.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VaultCode {
    pub code: String,
    /// Seconds the TOTP code stays valid; `None` for HOTP (valid until used).
    pub valid_for_secs: Option<u64>,
    pub entry: String,
    /// HOTP only: the counter this code was made from.
    pub counter: Option<i64>,
}

/// A secret as exported after the emailed code. No `Debug`: it holds the secret.
#[derive(Clone, serde::Serialize)]
pub struct VaultSecret {
    pub entry: String,
    /// Unpadded base32.
    pub secret: String,
    pub otpauth_uri: String,
}

/// Who asks for a code.
pub enum VaultCaller<'a> {
    /// A vault token (`tfv_…`): the tenant is the token's.
    Token(&'a str),
    /// An API key acting on this tenant (by slug).
    Key(&'a Actor, &'a str),
}

/// Token scope at creation.
pub enum TokenScope<'a> {
    Entry(&'a str),
    Group(&'a str),
}

/// Entry, group and service-account names: 1 to 64 of `A-Z a-z 0-9 . _ - @ + :`.
fn vault_name(field: &'static str, s: &str) -> Result<String, CoreError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-@+:".contains(&b));
    if ok {
        Ok(s.to_string())
    } else {
        Err(CoreError::Invalid {
            field,
            message: "must be 1 to 64 characters of A-Z a-z 0-9 . _ - @ + :".into(),
        })
    }
}

fn optional_label(field: &'static str, s: Option<String>) -> Result<Option<String>, CoreError> {
    s.filter(|s| !s.trim().is_empty())
        .map(|s| DisplayName::parse(field, &s).map(DisplayName::into_inner))
        .transpose()
}

/// The parameters of a new entry, checked: (kind, secret, algorithm, digits, period, counter,
/// issuer, account).
struct Parsed {
    kind: EntryKind,
    secret: Zeroizing<Vec<u8>>,
    algorithm: Algorithm,
    digits: u8,
    period: u32,
    counter: u64,
    issuer: Option<String>,
    account: Option<String>,
}

fn parse_uri(field: &'static str, s: &str) -> Result<Parsed, CoreError> {
    let uri = KeyUri::parse(s.trim()).map_err(|e| CoreError::Invalid {
        field,
        message: format!("not a usable otpauth:// URI: {e}"),
    })?;
    let (kind, period, counter) = match uri.kind {
        OtpKind::Totp { period } => (EntryKind::Totp, period, 0),
        OtpKind::Hotp { counter } => (EntryKind::Hotp, 0, counter),
    };
    Ok(Parsed {
        kind,
        secret: Zeroizing::new(uri.secret.clone()),
        algorithm: uri.algorithm,
        digits: uri.digits,
        period,
        counter,
        issuer: uri.issuer.clone(),
        account: Some(uri.account.clone()).filter(|a| !a.is_empty()),
    })
}

fn parse_source(source: EntrySource) -> Result<Parsed, CoreError> {
    let parsed = match source {
        EntrySource::Uri(s) => parse_uri("uri", &s)?,
        EntrySource::Qr(s) => parse_uri("image", &s)?,
        EntrySource::Secret {
            secret,
            kind,
            algorithm,
            digits,
            period,
            counter,
            issuer,
            account,
        } => {
            let cleaned: String = secret
                .chars()
                .filter(|c| !c.is_whitespace() && *c != '-')
                .collect::<String>()
                .trim_end_matches('=')
                .to_ascii_uppercase();
            let bytes = base32::decode(&cleaned).map_err(|e| CoreError::Invalid {
                field: "secret",
                message: format!("must be base32: {e}"),
            })?;
            let period = match kind {
                EntryKind::Totp => period.unwrap_or(30),
                EntryKind::Hotp => 0,
            };
            Parsed {
                kind,
                secret: Zeroizing::new(bytes),
                algorithm,
                digits,
                period,
                counter: counter.unwrap_or(0),
                issuer: optional_label("issuer", issuer)?,
                account: optional_label("account", account)?,
            }
        }
    };
    if parsed.secret.len() < MIN_SECRET_BYTES || parsed.secret.len() > uri_max_secret() {
        return Err(CoreError::Invalid {
            field: "secret",
            message: format!(
                "must be {MIN_SECRET_BYTES} to {} bytes ({} to {} base32 characters)",
                uri_max_secret(),
                MIN_SECRET_BYTES * 8 / 5,
                uri_max_secret() * 8 / 5 + 1
            ),
        });
    }
    let period = if parsed.kind == EntryKind::Totp {
        parsed.period
    } else {
        30
    };
    OtpParams::new(parsed.algorithm, parsed.digits, period).map_err(|e| CoreError::Invalid {
        field: "parameters",
        message: e.to_string(),
    })?;
    if parsed.counter > i64::MAX as u64 / 2 {
        return Err(CoreError::Invalid {
            field: "counter",
            message: "is too large".into(),
        });
    }
    Ok(parsed)
}

fn uri_max_secret() -> usize {
    twofold_otp::uri::MAX_SECRET_LEN
}

fn view(e: &VaultEntry, groups: &[VaultGroup]) -> VaultEntryView {
    VaultEntryView {
        id: e.id.clone(),
        name: e.name.clone(),
        owner_kind: e.owner_kind,
        owner: e.owner.clone(),
        group: e
            .group_id
            .as_ref()
            .and_then(|g| groups.iter().find(|x| &x.id == g))
            .map(|g| g.name.clone()),
        kind: e.kind,
        algorithm: e.algorithm.clone(),
        digits: e.digits,
        period: (e.kind == EntryKind::Totp).then_some(e.period),
        counter: (e.kind == EntryKind::Hotp).then_some(e.counter),
        issuer: e.issuer.clone(),
        account: e.account.clone(),
        created_at: e.created_at,
    }
}

/// The id of the group named `name` (if any) among the tenant's groups.
fn group_id(groups: &[VaultGroup], name: Option<&str>) -> Result<Option<String>, CoreError> {
    name.map(|n| {
        groups
            .iter()
            .find(|g| g.name == n)
            .map(|g| g.id.clone())
            .ok_or(CoreError::NotFound("vault_group"))
    })
    .transpose()
}

fn algorithm_of(e: &VaultEntry) -> Result<Algorithm, CoreError> {
    Algorithm::parse(&e.algorithm)
        .ok_or_else(|| CoreError::Internal(format!("vault entry {}: bad algorithm", e.id)))
}

impl Twofold {
    async fn vault_entry_in(&self, tenant: &Tenant, name: &str) -> Result<VaultEntry, CoreError> {
        let not_found = CoreError::NotFound("vault_entry");
        if vault_name("entry", name).is_err() {
            return Err(not_found);
        }
        self.store
            .vault_entry(tenant.id, name)
            .await?
            .ok_or(not_found)
    }

    async fn vault_group_in(&self, tenant: &Tenant, name: &str) -> Result<VaultGroup, CoreError> {
        self.store
            .vault_groups(tenant.id)
            .await?
            .into_iter()
            .find(|g| g.name == name)
            .ok_or(CoreError::NotFound("vault_group"))
    }

    fn vault_audit(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        action: &str,
        tenant: &Tenant,
        entry: Option<&VaultEntry>,
        reason: String,
    ) -> AuditRecord {
        let mut audit = self.audit(actor, meta, action, Some(tenant.id));
        audit.factor_id = entry.map(|e| e.id.clone());
        audit.reason = Some(reason);
        audit
    }

    /// Adds an entry. The secret is sealed and never returned.
    pub async fn create_vault_entry(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        input: NewEntryInput,
    ) -> Result<VaultEntryView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let name = vault_name("name", &input.name)?;
        let owner = match input.owner_kind {
            OwnerKind::User => self.user_in(&tenant, &input.owner).await?.external_id,
            OwnerKind::Service => vault_name("owner", &input.owner)?,
        };
        let groups = self.store.vault_groups(tenant.id).await?;
        let group_id = group_id(&groups, input.group.as_deref())?;
        let p = parse_source(input.source)?;
        let id = new_id("vte");
        let entry = VaultEntry {
            sealed_secret: self
                .keyring
                .seal(&p.secret, &VaultEntry::seal_owner(tenant.id, &id))?,
            id,
            tenant_id: tenant.id,
            name,
            owner_kind: input.owner_kind,
            owner,
            group_id,
            kind: p.kind,
            algorithm: p.algorithm.as_str().to_string(),
            digits: p.digits,
            period: p.period,
            counter: p.counter as i64,
            issuer: p.issuer,
            account: p.account,
            created_at: self.now(),
        };
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.entry.create",
            &tenant,
            Some(&entry),
            entry.name.clone(),
        );
        let out = view(&entry, &groups);
        self.store
            .apply(vec![Effect::InsertVaultEntry(entry)], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("vault_entry_exists") => CoreError::conflict(
                    "vault_entry_exists",
                    "the tenant has an entry with this name already",
                ),
                StoreError::Conflict("state_changed") => CoreError::NotFound("vault_group"),
                e => e.into(),
            })?;
        Ok(out)
    }

    pub async fn list_vault_entries(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<VaultEntryView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let groups = self.store.vault_groups(tenant.id).await?;
        let entries = self.store.vault_entries(tenant.id).await?;
        Ok(entries.iter().map(|e| view(e, &groups)).collect())
    }

    pub async fn vault_entry(
        &self,
        actor: &Actor,
        slug: &str,
        name: &str,
    ) -> Result<VaultEntryView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let entry = self.vault_entry_in(&tenant, name).await?;
        let groups = self.store.vault_groups(tenant.id).await?;
        Ok(view(&entry, &groups))
    }

    /// Removes an entry with the tokens scoped to it.
    pub async fn delete_vault_entry(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let entry = self.vault_entry_in(&tenant, name).await?;
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.entry.delete",
            &tenant,
            Some(&entry),
            entry.name.clone(),
        );
        let effect = Effect::DeleteVaultEntry {
            id: entry.id.clone(),
            tenant_id: tenant.id,
        };
        self.store
            .apply(vec![effect], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("vault_entry"),
                e => e.into(),
            })
    }

    /// Puts an entry in a group (or, with `None`, in none).
    pub async fn set_vault_entry_group(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
        group: Option<&str>,
    ) -> Result<VaultEntryView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let mut entry = self.vault_entry_in(&tenant, name).await?;
        let groups = self.store.vault_groups(tenant.id).await?;
        entry.group_id = group_id(&groups, group)?;
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.entry.group",
            &tenant,
            Some(&entry),
            format!("{}:{}", entry.name, group.unwrap_or("-")),
        );
        let effect = Effect::SetVaultEntryGroup {
            entry_id: entry.id.clone(),
            tenant_id: tenant.id,
            group_id: entry.group_id.clone(),
        };
        self.store.apply(vec![effect], audit).await?;
        Ok(view(&entry, &groups))
    }

    pub async fn create_vault_group(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
    ) -> Result<VaultGroup, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let group = VaultGroup {
            id: new_id("vtg"),
            tenant_id: tenant.id,
            name: vault_name("name", name)?,
            created_at: self.now(),
        };
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.group.create",
            &tenant,
            None,
            group.name.clone(),
        );
        self.store
            .apply(vec![Effect::InsertVaultGroup(group.clone())], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("vault_group_exists") => CoreError::conflict(
                    "vault_group_exists",
                    "the tenant has a group with this name already",
                ),
                e => e.into(),
            })?;
        Ok(group)
    }

    pub async fn list_vault_groups(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<VaultGroup>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        Ok(self.store.vault_groups(tenant.id).await?)
    }

    /// Creates a token scoped to one entry or one group; the token is returned once.
    pub async fn create_vault_token(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        label: &str,
        scope: TokenScope<'_>,
    ) -> Result<(VaultTokenView, String), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let label = DisplayName::parse("label", label)?.into_inner();
        let (entry, group) = match scope {
            TokenScope::Entry(name) => (Some(self.vault_entry_in(&tenant, name).await?), None),
            TokenScope::Group(name) => (None, Some(self.vault_group_in(&tenant, name).await?)),
        };
        let (token, token_hash) = self.mint_token(TOKEN_PREFIX);
        let record = VaultToken {
            id: new_id("vtk"),
            tenant_id: tenant.id,
            label: label.clone(),
            token_hash,
            entry_id: entry.as_ref().map(|e| e.id.clone()),
            group_id: group.as_ref().map(|g| g.id.clone()),
            created_at: self.now(),
            revoked_at: None,
        };
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.token.create",
            &tenant,
            entry.as_ref(),
            record.id.clone(),
        );
        let out = VaultTokenView {
            id: record.id.clone(),
            label,
            entry: entry.map(|e| e.name),
            group: group.map(|g| g.name),
            created_at: record.created_at,
            revoked_at: None,
        };
        self.store
            .apply(vec![Effect::InsertVaultToken(record)], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("vault_entry"),
                e => e.into(),
            })?;
        Ok((out, token))
    }

    pub async fn list_vault_tokens(
        &self,
        actor: &Actor,
        slug: &str,
    ) -> Result<Vec<VaultTokenView>, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let entries = self.store.vault_entries(tenant.id).await?;
        let groups = self.store.vault_groups(tenant.id).await?;
        let tokens = self.store.vault_tokens(tenant.id).await?;
        Ok(tokens
            .into_iter()
            .map(|t| VaultTokenView {
                entry: t
                    .entry_id
                    .as_ref()
                    .and_then(|id| entries.iter().find(|e| &e.id == id))
                    .map(|e| e.name.clone()),
                group: t
                    .group_id
                    .as_ref()
                    .and_then(|id| groups.iter().find(|g| &g.id == id))
                    .map(|g| g.name.clone()),
                id: t.id,
                label: t.label,
                created_at: t.created_at,
                revoked_at: t.revoked_at,
            })
            .collect())
    }

    pub async fn revoke_vault_token(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        id: &str,
    ) -> Result<(), CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let audit = self.vault_audit(
            actor,
            meta,
            "vault.token.revoke",
            &tenant,
            None,
            id.chars().take(40).collect(),
        );
        let effect = Effect::RevokeVaultToken {
            id: id.to_string(),
            tenant_id: tenant.id,
            at: self.now(),
        };
        self.store
            .apply(vec![effect], audit)
            .await
            .map_err(|e| match e {
                StoreError::Conflict("state_changed") => CoreError::NotFound("vault_token"),
                e => e.into(),
            })
    }

    /// The live token behind a `tfv_…` bearer, with its tenant. Unknown, malformed and revoked
    /// tokens all answer `Unauthenticated`.
    async fn vault_token_of(&self, token: &str) -> Result<(VaultToken, Tenant), CoreError> {
        if crate::tokens::parse(crate::tokens::TokenKind::Vault, token).is_none() {
            return Err(CoreError::Unauthenticated);
        }
        let record = self
            .store
            .vault_token(&self.token_hash(TOKEN_PREFIX, token))
            .await?
            .filter(|t| t.revoked_at.is_none())
            .ok_or(CoreError::Unauthenticated)?;
        let tenant = self
            .store
            .tenant_by_id(record.tenant_id)
            .await?
            .ok_or(CoreError::Unauthenticated)?;
        Ok((record, tenant))
    }

    /// The current code of an entry, for a token in its scope or the tenant's API key.
    pub async fn vault_code(
        &self,
        caller: VaultCaller<'_>,
        meta: &RequestMeta,
        entry_name: &str,
    ) -> Result<VaultCode, CoreError> {
        let (tenant, who, scope) = match caller {
            VaultCaller::Token(token) => {
                let (t, tenant) = self.vault_token_of(token).await?;
                (Arc::new(tenant), format!("vaulttoken:{}", t.id), Some(t))
            }
            VaultCaller::Key(actor, slug) => {
                (self.tenant_for(actor, slug).await?, actor.name(), None)
            }
        };
        let entry = self.vault_entry_in(&tenant, entry_name).await?;
        // Out of scope answers like a missing entry: a token does not learn other names.
        if let Some(t) = &scope {
            let in_scope = t.entry_id.as_deref() == Some(entry.id.as_str())
                || (t.group_id.is_some() && t.group_id == entry.group_id);
            if !in_scope {
                return Err(CoreError::NotFound("vault_entry"));
            }
        }
        let limits = vec![
            SendLimit {
                scope: format!("vaultcaller:{}:{who}", tenant.id),
                max: self.config.vault.per_caller_per_minute,
                window_ms: MINUTE_MS,
            },
            SendLimit {
                scope: format!("vaultentry:{}:{}", tenant.id, entry.id),
                max: self.config.vault.per_entry_per_minute,
                window_ms: MINUTE_MS,
            },
        ];
        let mut entry = entry;
        for _ in 0..HOTP_RETRIES {
            let now = self.now();
            let mut audit = AuditRecord {
                actor: who.clone(),
                ..self.vault_audit(
                    &Actor::System,
                    meta,
                    "vault.code",
                    &tenant,
                    Some(&entry),
                    entry.name.clone(),
                )
            };
            audit.at = now;
            let counts = self.store.counts(limits.clone(), now).await?;
            if limits
                .iter()
                .zip(&counts)
                .any(|(l, n)| *n >= i64::from(l.max))
            {
                audit.outcome = "denied".into();
                audit.reason = Some(format!("{}:throttled", entry.name));
                self.store.append_audit(audit).await?;
                return Err(CoreError::TooMany {
                    code: "rate_limited",
                    message: "too many codes asked for this entry or by this caller; retry \
                              after the Retry-After delay"
                        .into(),
                    retry_after_ms: MINUTE_MS - now.rem_euclid(MINUTE_MS),
                });
            }
            let secret = self.keyring.unseal(
                &entry.sealed_secret,
                &VaultEntry::seal_owner(tenant.id, &entry.id),
            )?;
            let secret = Zeroizing::new(secret);
            let algorithm = algorithm_of(&entry)?;
            let mut effects = vec![Effect::ChargeBudgets {
                limits: limits.clone(),
                at: now,
            }];
            let out = match entry.kind {
                EntryKind::Totp => {
                    let params = OtpParams::new(algorithm, entry.digits, entry.period)
                        .map_err(|e| CoreError::Internal(format!("vault entry: {e}")))?;
                    let secs = (now / 1000).max(0) as u64;
                    let period = u64::from(entry.period);
                    VaultCode {
                        code: twofold_otp::totp_at_time(&secret, secs, &params),
                        valid_for_secs: Some(period - secs % period),
                        entry: entry.name.clone(),
                        counter: None,
                    }
                }
                EntryKind::Hotp => {
                    effects.push(Effect::AdvanceVaultCounter {
                        entry_id: entry.id.clone(),
                        expected: entry.counter,
                    });
                    audit.reason = Some(format!("{}:{}", entry.name, entry.counter));
                    VaultCode {
                        code: twofold_otp::hotp(
                            &secret,
                            entry.counter.max(0) as u64,
                            algorithm,
                            entry.digits,
                        ),
                        valid_for_secs: None,
                        entry: entry.name.clone(),
                        counter: Some(entry.counter),
                    }
                }
            };
            match self.store.apply(effects, audit).await {
                Ok(()) => return Ok(out),
                // A full window, or (HOTP) a counter another request advanced: re-read.
                Err(StoreError::Conflict("state_changed")) => {
                    entry = self.vault_entry_in(&tenant, entry_name).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(CoreError::Unavailable)
    }

    fn vault_export_hash(&self, tenant: &Tenant, entry: &VaultEntry, admin: &User) -> Vec<u8> {
        self.action_hash(&[
            "vault_export",
            &tenant.id.to_string(),
            &entry.id,
            &admin.id.to_string(),
        ])
    }

    /// Starts exporting an entry's secret: a code is emailed to the acting admin; only that
    /// code, for this entry and this admin, completes it ([`Self::confirm_vault_export`]).
    pub async fn start_vault_export(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
        admin: &str,
    ) -> Result<SendReceipt, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let entry = self.vault_entry_in(&tenant, name).await?;
        let (admin, email) = self.proposing_admin(&tenant, admin).await?;
        let mut audit = self.vault_audit(
            actor,
            meta,
            "vault.export.request",
            &tenant,
            Some(&entry),
            entry.name.clone(),
        );
        audit.user_id = Some(admin.id);
        let hash = self.vault_export_hash(&tenant, &entry, &admin);
        self.send_code_to(
            &tenant,
            &admin,
            &entry.id,
            Channel::Email,
            &email,
            CodePurpose::VaultExport,
            Some(hash),
            Vec::new(),
            audit,
            Some(&format!("entry {}", entry.name)),
        )
        .await
    }

    /// Completes an export with the emailed code: the secret, or `None` for a wrong, expired
    /// or reused code (the audit log keeps which).
    pub async fn confirm_vault_export(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        name: &str,
        admin: &str,
        code: &str,
    ) -> Result<Option<VaultSecret>, CoreError> {
        let code = OtpCode::parse(code)?;
        let tenant = self.tenant_for(actor, slug).await?;
        let entry = self.vault_entry_in(&tenant, name).await?;
        let (admin, _) = self.proposing_admin(&tenant, admin).await?;
        let now = self.now();
        self.check_admin_attempts(&tenant, &admin, "vault.export.confirm", now)
            .await?;
        let mut audit = self.vault_audit(
            actor,
            meta,
            "vault.export.confirm",
            &tenant,
            Some(&entry),
            entry.name.clone(),
        );
        audit.at = now;
        let on = On {
            actor,
            meta,
            tenant: &tenant,
            user: &admin,
        };
        // The code's subject is the entry: it confirms this export and nothing else.
        let subject = Factor::pending(entry.id.clone(), tenant.id, admin.id, "vault", now);
        let hash = self.vault_export_hash(&tenant, &entry, &admin);
        let verdict = self
            .consume(
                &on,
                &subject,
                CodePurpose::VaultExport,
                Some(hash),
                &code,
                Vec::new(),
                audit,
            )
            .await?;
        if !verdict.is_accepted() {
            return Ok(None);
        }
        let secret = Zeroizing::new(self.keyring.unseal(
            &entry.sealed_secret,
            &VaultEntry::seal_owner(tenant.id, &entry.id),
        )?);
        let kind = match entry.kind {
            EntryKind::Totp => OtpKind::Totp {
                period: entry.period,
            },
            EntryKind::Hotp => OtpKind::Hotp {
                counter: entry.counter.max(0) as u64,
            },
        };
        let uri = KeyUri {
            kind,
            issuer: entry.issuer.clone(),
            account: entry.account.clone().unwrap_or_else(|| entry.name.clone()),
            secret: secret.to_vec(),
            algorithm: algorithm_of(&entry)?,
            digits: entry.digits,
        };
        Ok(Some(VaultSecret {
            entry: entry.name.clone(),
            secret: base32::encode(&secret),
            otpauth_uri: uri
                .to_uri()
                .map_err(|e| CoreError::Internal(format!("vault uri: {e}")))?,
        }))
    }
}
