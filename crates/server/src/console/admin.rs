//! What an admin changes: the organisation's 2FA settings and resetting a user. Both become a
//! proposal that takes effect only with the code emailed to the acting admin (the same
//! proposals as the API's, so the guardrails are the core's).

use super::*;
use crate::web::forms::CodeForm;
use axum::extract::{Form, Path, Query};
use serde::Deserialize;
use twofold_core::policy::{Enforcement, Method, Policy};
use twofold_core::rollout::RolloutStatus;
use twofold_core::service::{SendReceipt, Verdict};

/// The settings form. Unknown modes or methods are refused by [`policy_of_form`].
#[derive(Deserialize, Default)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    profiles: String,
    #[serde(default)]
    totp: Option<String>,
    #[serde(default)]
    sms: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    webauthn: Option<String>,
    /// Profiles that must use a security key (comma-separated).
    #[serde(default)]
    phishing_resistant_profiles: String,
    /// `YYYY-MM-DD` (UTC midnight), empty: from the next sign-in.
    #[serde(default)]
    mandatory_from: String,
    #[serde(default)]
    reminder_days: String,
    /// Empty: "remember this device" is not offered.
    #[serde(default)]
    remember_device_days: String,
}

fn invalid(field: &'static str, message: &str) -> CoreError {
    CoreError::Invalid {
        field,
        message: message.into(),
    }
}

/// The current policy with the form's fields applied (client apps, risk rules and the rest
/// are kept as they are: the console edits what the admins need).
fn policy_of_form(current: &Policy, f: &SettingsForm) -> Result<Policy, CoreError> {
    let mut p = current.clone();
    let profiles = |list: &str| -> Vec<String> {
        list.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    p.enforcement = match f.mode.as_str() {
        "off" => Enforcement::Off,
        "optional" => Enforcement::Optional,
        "required_for_all" => Enforcement::RequiredForAll,
        "required_for_profiles" => Enforcement::RequiredForProfiles {
            profiles: profiles(&f.profiles),
        },
        _ => return Err(invalid("mode", "must be one of the choices offered")),
    };
    p.phishing_resistant_profiles = profiles(&f.phishing_resistant_profiles);
    p.methods = [
        (Method::Totp, &f.totp),
        (Method::Sms, &f.sms),
        (Method::Email, &f.email),
        (Method::Webauthn, &f.webauthn),
    ]
    .into_iter()
    .filter(|(_, on)| on.is_some())
    .map(|(m, _)| m)
    .collect();
    p.mandatory_from = match f.mandatory_from.trim() {
        "" => None,
        d => Some(
            twofold_core::policy::utc_date_ms(d)
                .ok_or_else(|| invalid("mandatory_from", "must be a date written YYYY-MM-DD"))?,
        ),
    };
    let number = |field: &'static str, v: &str| {
        v.trim()
            .parse::<u32>()
            .map_err(|_| invalid(field, "must be a whole number"))
    };
    p.reminder_days = number("reminder_days", &f.reminder_days)?;
    p.remember_device_days = match f.remember_device_days.trim() {
        "" => None,
        v => Some(number("remember_device_days", v)?),
    };
    Ok(p)
}

fn checked(on: bool) -> &'static str {
    if on {
        " checked"
    } else {
        ""
    }
}

/// The settings form filled with `p`, and an error above it if there is one.
fn settings_body(p: &Policy, field: &str, error: Option<&str>) -> String {
    let (mode, profiles) = match &p.enforcement {
        Enforcement::Off => ("off", String::new()),
        Enforcement::Optional => ("optional", String::new()),
        Enforcement::RequiredForAll => ("required_for_all", String::new()),
        Enforcement::RequiredForProfiles { profiles } => {
            ("required_for_profiles", profiles.join(", "))
        }
    };
    let modes = [
        ("off", "Off"),
        ("optional", "Optional: users may turn it on"),
        (
            "required_for_profiles",
            "Required for some profiles (below), optional for the rest",
        ),
        ("required_for_all", "Required for everyone"),
    ]
    .iter()
    .map(|(value, label)| {
        format!(
            "<label class=\"check\"><input type=\"radio\" name=\"mode\" value=\"{value}\"{}> \
             {label}</label>",
            checked(*value == mode)
        )
    })
    .collect::<Vec<_>>()
    .join("\n");
    let methods = [
        (Method::Totp, "Authenticator app"),
        (Method::Sms, "Text message (SMS)"),
        (Method::Email, "Email"),
        (
            Method::Webauthn,
            "Security key or passkey (resists phishing)",
        ),
    ]
    .iter()
    .map(|(m, label)| {
        format!(
            "<label class=\"check\"><input type=\"checkbox\" name=\"{name}\" value=\"1\"{c}> \
             {label}</label>",
            name = m.as_str(),
            c = checked(p.methods.contains(m))
        )
    })
    .collect::<Vec<_>>()
    .join("\n");
    let from = p
        .mandatory_from
        .map(|ms| super::when(ms).chars().take(10).collect::<String>())
        .unwrap_or_default();
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>\n", escape(e)))
        .unwrap_or_default();
    format!(
        "{error}<p>Changes take effect only after you enter the code we email you.</p>\n\
         <form method=\"post\" action=\"/console/settings\">\n{field}\n\
         <fieldset><legend>Two-step verification</legend>\n{modes}\n</fieldset>\n\
         <label for=\"profiles\">Profiles that must use it (comma-separated)</label>\n\
         <input type=\"text\" id=\"profiles\" name=\"profiles\" value=\"{profiles}\">\n\
         <fieldset><legend>Methods users may choose</legend>\n{methods}\n</fieldset>\n\
         <label for=\"phishing_resistant_profiles\">Profiles that must use a security key \
         once it is mandatory (comma-separated, e.g. admin)</label>\n\
         <input type=\"text\" id=\"phishing_resistant_profiles\" \
         name=\"phishing_resistant_profiles\" value=\"{pr_profiles}\">\n\
         <label for=\"mandatory_from\">Mandatory from (date, UTC; empty: from the next \
         sign-in)</label>\n\
         <input type=\"date\" id=\"mandatory_from\" name=\"mandatory_from\" value=\"{from}\">\n\
         <label for=\"reminder_days\">Remind users this many days before</label>\n\
         <input type=\"number\" id=\"reminder_days\" name=\"reminder_days\" min=\"0\" \
         max=\"365\" value=\"{reminder}\" required>\n\
         <label for=\"remember_device_days\">\"Remember this device\" for this many days \
         (empty: not offered)</label>\n\
         <input type=\"number\" id=\"remember_device_days\" name=\"remember_device_days\" \
         min=\"1\" max=\"365\" value=\"{remember}\">\n\
         <button type=\"submit\">Review and confirm by email</button>\n</form>",
        profiles = escape(&profiles),
        pr_profiles = escape(&p.phishing_resistant_profiles.join(", ")),
        reminder = p.reminder_days,
        remember = p
            .remember_device_days
            .map(|d| d.to_string())
            .unwrap_or_default(),
    )
}

/// `GET /console/settings`.
pub(super) async fn settings(State(s): St, admin: Admin) -> Response {
    match s.core.get_policy(&admin.who.actor, admin.slug()).await {
        Ok((p, _)) => console_page(&s, &admin, StatusCode::OK, "Settings", |field| {
            settings_body(&p, field, None)
        }),
        Err(e) => error_page(&e),
    }
}

/// Where the browser goes once a proposal is made: the page that asks for its code.
fn to_confirm(
    r: Result<(twofold_core::service::ProposalView, SendReceipt), CoreError>,
) -> Response {
    match r {
        Ok((p, _)) => see_other(&format!("/console/confirm/{}", p.id)),
        Err(e) => error_page(&e),
    }
}

/// `POST /console/settings`: a proposal, and its code emailed to this admin.
pub(super) async fn propose(State(s): St, admin: Admin, Form(f): Form<SettingsForm>) -> Response {
    if !Csrf::verify(&admin.headers, &f.csrf) {
        return csrf_refused();
    }
    let current = match s.core.get_policy(&admin.who.actor, admin.slug()).await {
        Ok((p, _)) => p,
        Err(e) => return error_page(&e),
    };
    let proposed = match policy_of_form(&current, &f).and_then(|p| p.validate()) {
        Ok((p, _)) => p,
        Err(CoreError::Invalid { field, message }) => {
            let text = format!("{field} {message}.");
            return console_page(&s, &admin, StatusCode::BAD_REQUEST, "Settings", |field| {
                settings_body(&current, field, Some(&text))
            });
        }
        Err(e) => return error_page(&e),
    };
    let r = s
        .core
        .propose_policy(
            &admin.who.actor,
            &admin.meta,
            admin.slug(),
            &admin.who.user.external_id,
            proposed,
        )
        .await;
    to_confirm(r)
}

fn confirm_body(id: &str, summary: &str, field: &str, refused: bool) -> String {
    let alert = if refused {
        "<p class=\"error\" role=\"alert\">That code did not work. Check the newest email and \
         try again.</p>\n"
    } else {
        ""
    };
    format!(
        "{alert}<p>You asked to: <strong>{summary}</strong>.</p>\n\
         <p>We emailed you a code. Enter it to apply the change; nothing changes until you \
         do.</p>\n\
         <form method=\"post\" action=\"/console/confirm/{id}\">\n{field}\n\
         <label for=\"code\">Code from the email</label>\n\
         <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"one-time-code\" \
         inputmode=\"numeric\" pattern=\"[0-9]*\" maxlength=\"10\" required autofocus>\n\
         <button type=\"submit\">Apply the change</button>\n</form>",
        summary = escape(summary),
        id = escape(id),
    )
}

/// `GET /console/confirm/{proposal}`.
pub(super) async fn confirm_form(State(s): St, admin: Admin, Path(id): Path<String>) -> Response {
    match s
        .core
        .pending_proposal(&admin.who.actor, admin.slug(), &id)
        .await
    {
        Ok((p, summary)) => console_page(&s, &admin, StatusCode::OK, "Confirm the change", |f| {
            confirm_body(&p.id, &summary, f, false)
        }),
        Err(e) => error_page(&e),
    }
}

/// `POST /console/confirm/{proposal}`: the emailed code applies the proposal.
pub(super) async fn confirm(
    State(s): St,
    admin: Admin,
    Path(id): Path<String>,
    Form(f): Form<CodeForm>,
) -> Response {
    if !Csrf::verify(&admin.headers, &f.csrf) {
        return csrf_refused();
    }
    let (p, summary) = match s
        .core
        .pending_proposal(&admin.who.actor, admin.slug(), &id)
        .await
    {
        Ok(x) => x,
        Err(e) => return error_page(&e),
    };
    let verdict = s
        .core
        .confirm_proposal(
            &admin.who.actor,
            &admin.meta,
            admin.slug(),
            &p.id,
            f.code.trim(),
        )
        .await;
    match verdict {
        Ok(Verdict::Accepted) => console_page(&s, &admin, StatusCode::OK, "Change applied", |_| {
            format!(
                "<p class=\"note\" role=\"status\">Done: {}. Every admin of your organisation \
                 was told by email.</p>\n<p><a href=\"/console\">Back to the overview</a></p>",
                escape(&summary)
            )
        }),
        Ok(_) | Err(CoreError::Invalid { .. }) => console_page(
            &s,
            &admin,
            StatusCode::UNAUTHORIZED,
            "Confirm the change",
            |f| confirm_body(&p.id, &summary, f, true),
        ),
        Err(e) => error_page(&e),
    }
}

#[derive(Deserialize)]
pub(super) struct UsersQuery {
    status: Option<String>,
    cursor: Option<String>,
}

/// `GET /console/users?status=`: users with where they stand in the rollout.
pub(super) async fn users(State(s): St, admin: Admin, Query(q): Query<UsersQuery>) -> Response {
    let only = match q.status.as_deref().filter(|v| !v.is_empty()) {
        None => None,
        Some(v) => match RolloutStatus::ALL.into_iter().find(|st| st.as_str() == v) {
            Some(st) => Some(st),
            None => return error_page(&invalid("status", "is not a rollout status")),
        },
    };
    let page = s
        .core
        .list_users(
            &admin.who.actor,
            admin.slug(),
            q.cursor.as_deref(),
            Some(50),
            only,
        )
        .await;
    let (users, next) = match page {
        Ok(p) => p,
        Err(e) => return error_page(&e),
    };
    let filter: String = std::iter::once(("", "everyone"))
        .chain(
            RolloutStatus::ALL
                .iter()
                .map(|st| (st.as_str(), st.as_str())),
        )
        .map(|(v, label)| {
            let sel = if q.status.as_deref().unwrap_or("") == v {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{v}\"{sel}>{}</option>",
                label.replace('_', " ")
            )
        })
        .collect();
    console_page(&s, &admin, StatusCode::OK, "Users", |field| {
        let rows: String = users
            .iter()
            .map(|u| {
                let methods: Vec<&str> = u.methods.iter().map(|m| m.as_str()).collect();
                format!(
                    "<tr><td>{id}</td><td>{status}</td><td>{methods}</td><td>\
                     <form method=\"post\" action=\"/console/users/{id}/reset\">{field}\
                     <button type=\"submit\" class=\"plain\" aria-label=\"Reset two-step \
                     verification of {id}\">Reset</button></form></td></tr>\n",
                    id = escape(&u.user.external_id),
                    status = u.status.as_str().replace('_', " "),
                    methods = escape(&methods.join(", ")),
                )
            })
            .collect();
        let more = next
            .map(|c| {
                format!(
                    "<p><a href=\"/console/users?status={}&amp;cursor={}\">Next page</a></p>",
                    escape(q.status.as_deref().unwrap_or("")),
                    escape(&c)
                )
            })
            .unwrap_or_default();
        format!(
            "<form method=\"get\" action=\"/console/users\" class=\"filters\">\n\
             <label for=\"status\">Show</label>\n<select id=\"status\" name=\"status\">{filter}\
             </select>\n<button type=\"submit\">Filter</button>\n</form>\n\
             <p>Reset removes every sign-in method and recovery code of a user who lost them; \
             they set up two-step verification again at their next sign-in. You confirm it \
             with a code we email you.</p>\n\
             <table>\n<thead><tr><th scope=\"col\">User</th><th scope=\"col\">Status</th>\
             <th scope=\"col\">Methods</th><th scope=\"col\">Action</th></tr></thead>\n\
             <tbody>\n{rows}</tbody>\n</table>\n{more}",
            rows = rows_or_none(rows, 4, "No users to show."),
        )
    })
}

/// `POST /console/users/{user}/reset`: a reset proposal, confirmed by the emailed code.
pub(super) async fn reset(
    State(s): St,
    admin: Admin,
    Path(user): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Response {
    if !f.valid(&admin.headers) {
        return csrf_refused();
    }
    let r = s
        .core
        .propose_reset(
            &admin.who.actor,
            &admin.meta,
            admin.slug(),
            &admin.who.user.external_id,
            &user,
        )
        .await;
    to_confirm(r)
}
