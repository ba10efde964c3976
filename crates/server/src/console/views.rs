//! What an admin reads: the rollout's progress, the audit log, the delivery status, and the
//! vault's entries with their live codes (each code shown is audited and rate-limited like
//! any other caller's, issue #7).

use super::*;
use axum::extract::{Form, Path, Query};
use serde::Deserialize;
use twofold_core::rollout::RolloutReport;
use twofold_core::service::vault::VaultCaller;

/// The rollout as a horizontal stacked bar (SVG, no script, no inline style: colours are
/// presentation attributes, which a CSP does not govern) with a text legend that carries the
/// same numbers for screen readers and for anyone who cannot tell the colours apart.
fn rollout_chart(r: &RolloutReport) -> String {
    let parts = [
        ("Enrolled", r.enrolled, "#1b6e3a"),
        ("Pending", r.pending, "#8a5a00"),
        ("Overdue", r.overdue, "#a4262c"),
        ("Optional", r.optional, "#35557f"),
        ("Not required", r.not_required, "#5f6368"),
    ];
    let total = r.total.max(1) as f64;
    let mut x = 0.0;
    let mut rects = String::new();
    for (label, n, colour) in parts {
        let w = n as f64 / total * 600.0;
        if n > 0 {
            rects.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"32\" fill=\"{colour}\">\
                 <title>{label}: {n}</title></rect>"
            ));
        }
        x += w;
    }
    let legend: String = parts
        .iter()
        .map(|(label, n, colour)| {
            format!(
                "<li><svg width=\"12\" height=\"12\" aria-hidden=\"true\"><rect width=\"12\" \
                 height=\"12\" fill=\"{colour}\"/></svg> {label}: <strong>{n}</strong></li>"
            )
        })
        .collect();
    format!(
        "<figure class=\"chart\">\n<svg viewBox=\"0 0 600 32\" preserveAspectRatio=\"none\" width=\"100%\" height=\"32\" \
         role=\"img\" aria-label=\"{} of {} users enrolled\">{rects}</svg>\n\
         <figcaption><ul class=\"legend\">{legend}</ul></figcaption>\n</figure>",
        r.enrolled, r.total
    )
}

/// `GET /console`: the rollout at a glance.
pub(super) async fn overview(State(s): St, admin: Admin) -> Response {
    let report = match s.core.rollout_report(&admin.who.actor, admin.slug()).await {
        Ok(r) => r,
        Err(e) => return error_page(&e),
    };
    console_page(&s, &admin, StatusCode::OK, "Overview", |_| {
        let progress = report
            .progress_percent
            .map(|p| format!("<p><strong>{p:.1} %</strong> of the users who need or may use two-step verification have set it up.</p>"))
            .unwrap_or_else(|| "<p>Two-step verification is not in use yet.</p>".into());
        let deadline = match (report.deadline, report.days_left) {
            (Some(d), Some(0)) => format!("<p>Mandatory since {}.</p>", escape(&when(d))),
            (Some(d), Some(n)) => format!(
                "<p>Mandatory from {} ({n} day{} left).</p>",
                escape(&when(d)),
                if n == 1 { "" } else { "s" }
            ),
            _ => String::new(),
        };
        let m = &report.by_method;
        format!(
            "<h2>Rollout</h2>\n{progress}\n{deadline}\n{chart}\n\
             <p><a href=\"/console/users?status=overdue\">See who is overdue</a> · \
             <a href=\"/console/users?status=pending\">who is pending</a></p>\n\
             <h2>Methods in use</h2>\n<ul><li>Authenticator app: {}</li><li>Text message: {}\
             </li><li>Email: {}</li></ul>",
            m.totp,
            m.sms,
            m.email,
            chart = rollout_chart(&report),
        )
    })
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    user: Option<String>,
    action: Option<String>,
    cursor: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// `GET /console/audit?user&action`: newest first, filtered.
pub(super) async fn audit(State(s): St, admin: Admin, Query(q): Query<AuditQuery>) -> Response {
    let (user, action) = (nonempty(&q.user), nonempty(&q.action));
    let page = s
        .core
        .list_audit(
            &admin.who.actor,
            admin.slug(),
            user,
            action,
            nonempty(&q.cursor),
            Some(50),
        )
        .await;
    let (events, next) = match page {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    console_page(&s, &admin, StatusCode::OK, "Audit log", |_| {
        let rows: String = events
            .iter()
            .map(|e| {
                let r = &e.record;
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     <td>{}</td></tr>\n",
                    escape(&when(r.at)),
                    escape(&r.action),
                    escape(e.user_external_id.as_deref().unwrap_or("")),
                    escape(&r.outcome),
                    escape(r.reason.as_deref().unwrap_or("")),
                    escape(&r.actor),
                    escape(r.ip.as_deref().unwrap_or("")),
                )
            })
            .collect();
        let more = next
            .map(|c| {
                format!(
                    "<p><a href=\"/console/audit?user={}&amp;action={}&amp;cursor={}\">Older \
                     events</a></p>",
                    escape(user.unwrap_or("")),
                    escape(action.unwrap_or("")),
                    escape(&c)
                )
            })
            .unwrap_or_default();
        format!(
            "<form method=\"get\" action=\"/console/audit\" class=\"filters\">\n\
             <label for=\"user\">User</label>\n<input type=\"text\" id=\"user\" name=\"user\" \
             value=\"{u}\">\n<label for=\"action\">Action (e.g. login.decide, \
             proposal.confirm)</label>\n<input type=\"text\" id=\"action\" name=\"action\" \
             value=\"{a}\">\n<button type=\"submit\">Filter</button>\n</form>\n\
             <table>\n<thead><tr><th scope=\"col\">When (UTC)</th><th scope=\"col\">Action</th>\
             <th scope=\"col\">User</th><th scope=\"col\">Outcome</th><th scope=\"col\">Reason\
             </th><th scope=\"col\">By</th><th scope=\"col\">From</th></tr></thead>\n\
             <tbody>\n{rows}</tbody>\n</table>\n{more}",
            u = escape(user.unwrap_or("")),
            a = escape(action.unwrap_or("")),
            rows = rows_or_none(rows, 7, "No events match."),
        )
    })
}

/// `GET /console/outbox`: is mail and SMS getting out, and what failed.
pub(super) async fn outbox(State(s): St, admin: Admin) -> Response {
    let slug = Some(admin.slug());
    let stats = s.core.outbox_stats(&admin.who.actor, slug).await;
    let recent = s
        .core
        .list_messages(&admin.who.actor, slug, None, None, Some(50))
        .await;
    let (stats, (messages, _)) = match (stats, recent) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return error_page(&e),
    };
    console_page(&s, &admin, StatusCode::OK, "Messages", |_| {
        let oldest = stats
            .oldest_unsent_at
            .map(|t| format!("<p>Oldest message waiting since {}.</p>", escape(&when(t))))
            .unwrap_or_default();
        let rows: String = messages
            .iter()
            .map(|m| {
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                     </tr>\n",
                    escape(&when(m.created_at)),
                    escape(&format!("{:?}", m.channel).to_lowercase()),
                    escape(&m.destination),
                    escape(&format!("{:?}", m.status).to_lowercase()),
                    m.attempts,
                    escape(m.last_error.as_deref().unwrap_or("")),
                )
            })
            .collect();
        format!(
            "<ul><li>Waiting: <strong>{}</strong></li><li>Sending: {}</li><li>Sent: {}</li>\
             <li>Failed: <strong>{}</strong></li></ul>\n{oldest}\n\
             <table>\n<thead><tr><th scope=\"col\">Queued (UTC)</th><th scope=\"col\">Channel\
             </th><th scope=\"col\">To</th><th scope=\"col\">Status</th><th scope=\"col\">\
             Attempts</th><th scope=\"col\">Last error</th></tr></thead>\n<tbody>\n{rows}\
             </tbody>\n</table>",
            stats.pending,
            stats.sending,
            stats.sent,
            stats.failed,
            rows = rows_or_none(rows, 6, "No messages yet."),
        )
    })
}

/// `GET /console/vault`: the entries (never their secrets), each with a button that shows
/// its current code.
pub(super) async fn vault(State(s): St, admin: Admin) -> Response {
    vault_page(&s, &admin, None).await
}

/// The vault page, with one entry's code shown if just asked for.
async fn vault_page(
    s: &AppState,
    admin: &Admin,
    shown: Option<(String, twofold_core::service::vault::VaultCode)>,
) -> Response {
    let entries = match s
        .core
        .list_vault_entries(&admin.who.actor, admin.slug())
        .await
    {
        Ok(e) => e,
        Err(e) => return error_page(&e),
    };
    console_page(s, admin, StatusCode::OK, "Vault", |field| {
        let notice = shown
            .map(|(name, c)| {
                let valid = c
                    .valid_for_secs
                    .map(|v| format!(", valid for {v} more seconds"))
                    .unwrap_or_default();
                format!(
                    "<p class=\"note\" role=\"status\">Code for {}: <code class=\"key\">{}\
                     </code>{valid}. Showing it was recorded in the audit log.</p>\n",
                    escape(&name),
                    escape(&c.code)
                )
            })
            .unwrap_or_default();
        let rows: String = entries
            .iter()
            .map(|e| {
                format!(
                    "<tr><td>{name}</td><td>{issuer}</td><td>{owner}</td><td>{group}</td>\
                     <td>{kind}</td><td><form method=\"post\" action=\"/console/vault/{id}/code\">\
                     {field}<button type=\"submit\" class=\"plain\" aria-label=\"Show the code \
                     of {name}\">Show code</button></form></td></tr>\n",
                    name = escape(&e.name),
                    issuer = escape(e.issuer.as_deref().unwrap_or("")),
                    owner = escape(&e.owner),
                    group = escape(e.group.as_deref().unwrap_or("")),
                    kind = escape(&format!("{:?}", e.kind).to_lowercase()),
                    id = escape(&e.name),
                )
            })
            .collect();
        format!(
            "{notice}<p>Third-party accounts whose codes Twofold generates for your \
             automation. Secrets are never shown here.</p>\n\
             <table>\n<thead><tr><th scope=\"col\">Entry</th><th scope=\"col\">Issuer</th>\
             <th scope=\"col\">Owner</th><th scope=\"col\">Group</th><th scope=\"col\">Kind\
             </th><th scope=\"col\">Code</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>",
            rows = rows_or_none(rows, 6, "The vault is empty."),
        )
    })
}

/// `POST /console/vault/{entry}/code`: the entry's current code (audited as this admin).
pub(super) async fn vault_code(
    State(s): St,
    admin: Admin,
    Path(entry): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !f.valid(&admin.headers) {
        return csrf_refused();
    }
    let caller = VaultCaller::Key(&admin.who.actor, admin.slug());
    match s.core.vault_code(caller, &admin.meta, &entry).await {
        Ok(code) => vault_page(&s, &admin, Some((entry, code))).await,
        Err(e) => error_page(&e),
    }
}
