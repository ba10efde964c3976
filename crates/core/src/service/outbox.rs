//! The outbox as operators and integrators see it (queue depth, failures, retrying a failed
//! message), per-tenant messaging settings, and setup invitations.

use super::*;
use crate::messaging::*;
use std::sync::atomic::AtomicU64;

/// A queued message as clients may see it: destination masked, parameters never shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MessageView {
    pub id: i64,
    pub message_id: String,
    pub tenant_id: i64,
    pub channel: Channel,
    pub destination: String,
    pub template: TemplateKind,
    pub status: MessageStatus,
    pub attempts: i32,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

impl From<&OutboxMessage> for MessageView {
    fn from(m: &OutboxMessage) -> Self {
        Self {
            id: m.id,
            message_id: m.message_id.clone(),
            tenant_id: m.tenant_id,
            channel: m.channel,
            destination: notices::mask_destination(m.channel.as_str(), &m.destination),
            template: m.template,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: m.next_attempt_at,
            last_error: m.last_error.clone(),
            created_at: m.created_at,
            sent_at: m.sent_at,
        }
    }
}

/// Codes refused by cooldown, exhaustion, lock or caps since start.
#[derive(Debug, Default)]
pub struct RefusalCounts {
    pub cooldown: AtomicU64,
    pub exhausted: AtomicU64,
    pub locked: AtomicU64,
    pub limit_dest: AtomicU64,
    pub limit_user: AtomicU64,
    pub limit_tenant: AtomicU64,
}

impl RefusalCounts {
    pub(crate) fn record(&self, r: &SendRefusal) {
        let counter = match r {
            SendRefusal::Cooldown => &self.cooldown,
            SendRefusal::Exhausted => &self.exhausted,
            SendRefusal::Locked => &self.locked,
            SendRefusal::Limit(kind) => match kind.as_str() {
                "dest" => &self.limit_dest,
                "user" => &self.limit_user,
                _ => &self.limit_tenant,
            },
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// (reason label, count) pairs.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [
            ("cooldown", get(&self.cooldown)),
            ("exhausted", get(&self.exhausted)),
            ("locked", get(&self.locked)),
            ("limit_dest", get(&self.limit_dest)),
            ("limit_user", get(&self.limit_user)),
            ("limit_tenant", get(&self.limit_tenant)),
        ]
    }
}

/// Calling codes, or longer number prefixes (up to 6 digits, e.g. `1876` for one North
/// American area), not starting with 0. E.164 calling codes are prefix-free, so a number
/// matches at most one calling code; a longer prefix narrows it.
pub fn parse_countries(list: &[String]) -> Result<Vec<String>, CoreError> {
    let bad = |c: &str| CoreError::Invalid {
        field: "sms_countries",
        message: format!(
            "`{c}` is not a calling code or number prefix (1 to 6 digits, e.g. 44 or 1)"
        ),
    };
    if list.len() > 300 {
        return Err(CoreError::Invalid {
            field: "sms_countries",
            message: "at most 300 calling codes".into(),
        });
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for c in list {
        let c = c.trim().trim_start_matches('+');
        if !(1..=6).contains(&c.len())
            || !c.bytes().all(|b| b.is_ascii_digit())
            || c.starts_with('0')
        {
            return Err(bad(c));
        }
        if !out.iter().any(|o| o == c) {
            out.push(c.to_string());
        }
    }
    Ok(out)
}

impl Twofold {
    /// Changes the tenant's email sender name and the countries SMS may go to. For each:
    /// `None` leaves it as it is, `Some(None)` restores the default (the tenant's name; the
    /// server's country list).
    pub async fn update_messaging(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        sender_name: Option<Option<&str>>,
        sms_countries: Option<Option<&[String]>>,
    ) -> Result<Tenant, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        // Where SMS may go is what toll fraud needs widened: an operator decision, never the
        // tenant key's alone.
        if sms_countries.is_some() && !actor.is_operator() {
            return Err(CoreError::Forbidden(
                "only operators may change the countries SMS goes to",
            ));
        }
        let sender = sender_name
            .map(|n| {
                n.map(|n| DisplayName::parse("sender_name", n).map(DisplayName::into_inner))
                    .transpose()
            })
            .transpose()?;
        let countries = sms_countries
            .map(|c| c.map(parse_countries).transpose())
            .transpose()?;
        // Merge with what is stored now, not with a cached copy.
        let current = self
            .store
            .tenant_by_slug(&tenant.slug)
            .await?
            .ok_or(CoreError::NotFound("tenant"))?;
        let updated = Tenant {
            sender_name: sender.unwrap_or(current.sender_name.clone()),
            sms_countries: countries.unwrap_or(current.sms_countries.clone()),
            ..current
        };
        let audit = self.audit(actor, meta, "tenant.messaging", Some(tenant.id));
        self.store
            .update_tenant_messaging(
                tenant.id,
                updated.sender_name.clone(),
                updated.sms_countries.clone(),
                audit,
            )
            .await?;
        self.tenants.remove(&tenant.slug);
        Ok(updated)
    }

    /// The allowed SMS calling codes that apply to a tenant now.
    pub fn effective_sms_countries<'a>(&'a self, tenant: &'a Tenant) -> &'a [String] {
        tenant
            .sms_countries
            .as_deref()
            .unwrap_or(&self.config.messaging.default_sms_countries)
    }

    /// Queues an invitation to set up two-step verification, to the user's email address.
    pub async fn invite_user(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        slug: &str,
        external_id: &str,
        deadline: Option<&str>,
    ) -> Result<MessageView, CoreError> {
        let tenant = self.tenant_for(actor, slug).await?;
        let user = self.user_in(&tenant, external_id).await?;
        let email = user.email.clone().ok_or_else(|| {
            CoreError::conflict(
                "user_has_no_email",
                "the user has no email address to invite; set one first",
            )
        })?;
        let mut params = MessageParams::new();
        if let Some(d) = deadline {
            params.insert(
                "deadline".into(),
                DisplayName::parse("deadline", d)?.into_inner(),
            );
        }
        let message = self.message(
            &tenant,
            Some(user.id),
            Channel::Email,
            &email,
            TemplateKind::Invitation,
            params,
        )?;
        let mut audit = self.audit(actor, meta, "user.invite", Some(tenant.id));
        audit.user_id = Some(user.id);
        let view = MessageView::from(&OutboxMessage {
            id: 0,
            message_id: message.message_id.clone(),
            tenant_id: tenant.id,
            user_id: Some(user.id),
            channel: Channel::Email,
            destination: email,
            template: TemplateKind::Invitation,
            sealed_params: None,
            status: MessageStatus::Pending,
            attempts: 0,
            next_attempt_at: message.created_at,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: message.created_at,
            sent_at: None,
        });
        self.store.enqueue(vec![message], Some(audit)).await?;
        self.queued();
        Ok(view)
    }

    /// Queue totals for one tenant, or (operators, `None`) for the whole server.
    pub async fn outbox_stats(
        &self,
        actor: &Actor,
        slug: Option<&str>,
    ) -> Result<OutboxStats, CoreError> {
        let tenant_id = self.scope(actor, slug).await?;
        Ok(self.store.outbox_stats(tenant_id).await?)
    }

    async fn scope(&self, actor: &Actor, slug: Option<&str>) -> Result<Option<i64>, CoreError> {
        match slug {
            Some(s) => Ok(Some(self.tenant_for(actor, s).await?.id)),
            None if actor.is_operator() => Ok(None),
            None => Err(CoreError::Forbidden(
                "only operators may see the whole server's outbox",
            )),
        }
    }

    pub async fn list_messages(
        &self,
        actor: &Actor,
        slug: Option<&str>,
        status: Option<&str>,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<(Vec<MessageView>, Option<String>), CoreError> {
        let tenant_id = self.scope(actor, slug).await?;
        let status = status
            .map(|s| {
                MessageStatus::parse(s).ok_or(CoreError::Invalid {
                    field: "status",
                    message: "must be pending, sending, sent or failed".into(),
                })
            })
            .transpose()?;
        let limit = limit.unwrap_or(50).clamp(1, 500);
        let rows = self
            .store
            .list_messages(MessageQuery {
                tenant_id,
                status,
                user_id: None,
                before_id: cursor.map(cursor_decode).transpose()?,
                limit,
            })
            .await?;
        let next = if rows.len() as u32 == limit {
            rows.last().map(|m| cursor_encode(m.id))
        } else {
            None
        };
        Ok((rows.iter().map(MessageView::from).collect(), next))
    }

    /// Deletes delivered and failed messages past the audit retention period, expired codes,
    /// finished phone changes and past send windows; run by a background job.
    pub async fn prune_messaging(&self) -> Result<u64, CoreError> {
        let now = self.now();
        let cutoff = now - i64::from(self.config.audit_retention_days) * 86_400_000;
        Ok(self.store.prune_messaging(cutoff, now).await?)
    }

    /// Puts a failed message back in the queue (operators only: it may cost money).
    pub async fn retry_message(
        &self,
        actor: &Actor,
        meta: &RequestMeta,
        id: i64,
    ) -> Result<(), CoreError> {
        if !actor.is_operator() {
            return Err(CoreError::Forbidden("only operators may retry messages"));
        }
        let audit = self.audit(actor, meta, "outbox.retry", None);
        if !self.store.retry_message(id, self.now(), audit).await? {
            return Err(CoreError::conflict(
                "message_not_failed",
                "no failed message has this id",
            ));
        }
        self.queued();
        Ok(())
    }
}
