//! Rollout jobs started by a confirmed policy change: setup invitations to every user who
//! comes into scope, and, after the configured hours, revoking the sessions without 2FA of
//! users newly required to use it.
//!
//! A job walks the tenant's users in id order, in batches. Each batch's messages or
//! revocations are committed in the same transaction as the job's new cursor, and only if the
//! cursor was still where this runner found it: a job resumed after a crash (or run by two
//! nodes at once) neither skips nor repeats anyone. Delivery is then paced by the outbox.

use super::*;
use crate::login::Job;
use crate::messaging::*;
use crate::policy::{Enforcement, Policy};

/// Users per batch: one transaction each.
pub const JOB_BATCH: u32 = 1000;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum JobPayload {
    /// Invite users in scope under `new` who were not under `old`.
    Invitations {
        slug: String,
        new: Enforcement,
        old: Enforcement,
        deadline: Option<i64>,
    },
    /// Revoke sessions without 2FA, created before `created_before`, of users required under
    /// `new` but not under `old`.
    RevokeSessions {
        slug: String,
        new: Enforcement,
        old: Enforcement,
        created_before: i64,
    },
    /// Switch 2FA off for every user of the tenant who has a factor (an operator did it).
    Disable2fa { slug: String },
}

/// Whether a user with this profile is asked about 2FA at all under `e`.
fn in_scope(e: &Enforcement, profile: Option<&str>) -> bool {
    match e {
        Enforcement::Off => false,
        Enforcement::Optional | Enforcement::RequiredForAll => true,
        Enforcement::RequiredForProfiles { profiles } => {
            profile.is_some_and(|p| profiles.iter().any(|q| q == p))
        }
    }
}

fn required(e: &Enforcement, profile: Option<&str>) -> bool {
    match e {
        Enforcement::Optional | Enforcement::Off => false,
        _ => in_scope(e, profile),
    }
}

fn job(tenant_id: i64, kind: &str, payload: &JobPayload, run_at: i64) -> Result<Job, CoreError> {
    Ok(Job {
        id: 0,
        tenant_id,
        kind: kind.into(),
        payload: serde_json::to_string(payload)
            .map_err(|e| CoreError::Internal(format!("job payload: {e}")))?,
        cursor: 0,
        run_at,
        done_at: None,
        processed: 0,
        created_at: run_at,
    })
}

/// The job that removes every user's factors after an operator switched 2FA off for the
/// tenant.
pub(crate) fn disable_job(tenant_id: i64, slug: &str, now: i64) -> Result<Job, CoreError> {
    let payload = JobPayload::Disable2fa {
        slug: slug.to_string(),
    };
    job(tenant_id, "disable_2fa", &payload, now)
}

/// The jobs a policy change starts, to be inserted with the change itself.
pub(crate) fn rollout_jobs(
    tenant_id: i64,
    slug: &str,
    old: &Policy,
    new: &Policy,
    now: i64,
) -> Result<Vec<Effect>, CoreError> {
    let mut effects = Vec::new();
    if new.enforcement != old.enforcement && new.enforcement != Enforcement::Off {
        let payload = JobPayload::Invitations {
            slug: slug.to_string(),
            new: new.enforcement.clone(),
            old: old.enforcement.clone(),
            deadline: new.mandatory_from,
        };
        effects.push(Effect::InsertJob(job(
            tenant_id,
            "invitations",
            &payload,
            now,
        )?));
    }
    let required_now = matches!(
        new.enforcement,
        Enforcement::RequiredForAll | Enforcement::RequiredForProfiles { .. }
    );
    // A new scope, or a moved deadline, schedules the revocation for the new date.
    if required_now
        && (new.enforcement != old.enforcement || new.mandatory_from != old.mandatory_from)
    {
        // Sessions are revoked only once 2FA is actually mandatory, and the configured hours
        // after that.
        let from = new.mandatory_from.unwrap_or(now).max(now);
        let run_at = from.saturating_add(i64::from(new.revoke_sessions_after_hours) * 3_600_000);
        let payload = JobPayload::RevokeSessions {
            slug: slug.to_string(),
            new: new.enforcement.clone(),
            // A moved deadline concerns everyone required, not only the newly required.
            old: if new.enforcement == old.enforcement {
                Enforcement::Off
            } else {
                old.enforcement.clone()
            },
            created_before: run_at,
        };
        effects.push(Effect::InsertJob(job(
            tenant_id,
            "revoke_sessions",
            &payload,
            run_at,
        )?));
    }
    Ok(effects)
}

impl Twofold {
    /// Registers what wakes the job runner after a job was created (set once).
    pub fn set_on_jobs(&self, hook: Box<dyn Fn() + Send + Sync>) {
        let _ = self.on_jobs.set(hook);
    }

    pub(crate) fn jobs_queued(&self) {
        if let Some(hook) = self.on_jobs.get() {
            hook();
        }
    }

    /// Runs every due job to its end (or until `max_batches`); returns the batches done.
    /// Safe to run on several nodes at once.
    pub async fn run_jobs(&self, max_batches: usize) -> Result<usize, CoreError> {
        let mut batches = 0;
        for job in self.store.due_jobs(self.now(), 16).await? {
            let mut job = job;
            while batches < max_batches {
                batches += 1;
                // One broken job must not hold up the others (revocations are due on time).
                match self.job_batch(&job).await {
                    Ok(Some(next)) if next.done_at.is_none() => job = next,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(job = job.id, error = %e, "rollout job batch failed");
                        break;
                    }
                }
            }
        }
        Ok(batches)
    }

    /// One batch of a job; returns the job as it is afterwards (`None` if another runner
    /// moved it first).
    async fn job_batch(&self, job: &Job) -> Result<Option<Job>, CoreError> {
        let payload: JobPayload = serde_json::from_str(&job.payload)
            .map_err(|e| CoreError::Internal(format!("job {}: {e}", job.id)))?;
        let users = self
            .store
            .list_users(job.tenant_id, Some(job.cursor), JOB_BATCH)
            .await?;
        let now = self.now();
        let to_cursor = users.last().map(|u| u.id).unwrap_or(job.cursor);
        let done = (users.len() as u32) < JOB_BATCH;
        let mut effects = Vec::new();
        let (action, mut processed) = match &payload {
            JobPayload::Invitations {
                slug,
                new,
                old,
                deadline,
            } => {
                let tenant = self
                    .store
                    .tenant_by_slug(slug)
                    .await?
                    .ok_or(CoreError::NotFound("tenant"))?;
                let mut params = MessageParams::new();
                if let Some(d) = deadline {
                    params.insert("deadline".into(), notices::human_utc(*d));
                }
                let mut n = 0;
                for u in &users {
                    let profile = u.profile.as_deref();
                    let (Some(email), true) =
                        (&u.email, in_scope(new, profile) && !in_scope(old, profile))
                    else {
                        continue;
                    };
                    let m = self.message(
                        &tenant,
                        Some(u.id),
                        Channel::Email,
                        email,
                        TemplateKind::Invitation,
                        params.clone(),
                    )?;
                    effects.push(Effect::Enqueue(m));
                    n += 1;
                }
                ("invitations.queue", n)
            }
            JobPayload::RevokeSessions {
                slug,
                new,
                old,
                created_before,
            } => {
                // The policy may have changed since (a later deadline, 2FA switched off): only
                // users for whom 2FA is mandatory now, past its grace hours, lose sessions.
                let tenant = self
                    .store
                    .tenant_by_slug(slug)
                    .await?
                    .ok_or(CoreError::NotFound("tenant"))?;
                let (current, _) = self.policy_of(&tenant).await?;
                let grace_over = current
                    .mandatory_from
                    .unwrap_or(0)
                    .saturating_add(i64::from(current.revoke_sessions_after_hours) * 3_600_000)
                    <= now;
                let mut n = 0;
                for u in &users {
                    let profile = u.profile.as_deref();
                    if grace_over
                        && crate::policy::phase(&current, profile, now)
                            == crate::policy::Phase::Required
                        && required(new, profile)
                        && !required(old, profile)
                    {
                        effects.push(Effect::RevokeSessionsWithout2fa {
                            user_id: u.id,
                            created_before: *created_before,
                            at: now,
                        });
                        n += 1;
                    }
                }
                ("sessions.revoke_2fa_required", n)
            }
            JobPayload::Disable2fa { slug } => {
                let tenant = self
                    .store
                    .tenant_by_slug(slug)
                    .await?
                    .ok_or(CoreError::NotFound("tenant"))?;
                // 2FA switched on again since: the operator's "off" is over, nobody else loses
                // anything.
                let (current, _) = self.policy_of(&tenant).await?;
                let users = if current.enforcement == Enforcement::Off {
                    users.clone()
                } else {
                    Vec::new()
                };
                let meta = RequestMeta::default();
                let mut n = 0;
                for u in &users {
                    let factors = self.store.factors_of(u.id).await?;
                    // A factor enrolled after the operator acted is the user's new choice.
                    if factors.iter().any(|f| f.created_at > job.created_at) {
                        continue;
                    }
                    let has_codes = self.store.recovery_codes_left(u.id).await? > 0;
                    if factors.is_empty() && !has_codes {
                        continue;
                    }
                    let on = On {
                        actor: &Actor::System,
                        meta: &meta,
                        tenant: &tenant,
                        user: u,
                    };
                    effects.extend(self.user_2fa_off_effects(&on).await?);
                    n += 1;
                }
                ("user.2fa_disable", n)
            }
        };
        if processed > 0 {
            let mut audit = self.audit(
                &Actor::System,
                &RequestMeta::default(),
                action,
                Some(job.tenant_id),
            );
            audit.reason = Some(format!("job {}: {processed} users", job.id));
            effects.push(Effect::Audit(audit));
        } else {
            processed = 0;
        }
        let moved = self
            .store
            .advance_job(job.id, job.cursor, to_cursor, processed, done, effects, now)
            .await?;
        if !moved {
            return Ok(None);
        }
        self.queued();
        tracing::info!(
            job = job.id,
            kind = %job.kind,
            tenant = job.tenant_id,
            processed = job.processed + processed,
            done,
            "rollout job progress"
        );
        Ok(Some(Job {
            cursor: to_cursor,
            processed: job.processed + processed,
            done_at: done.then_some(now),
            ..job.clone()
        }))
    }
}
