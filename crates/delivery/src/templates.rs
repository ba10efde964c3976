//! Message templates: the built-in English texts and per-tenant overrides on disk.
//!
//! Each [`TemplateKind`] has four parts: `<kind>.subject`, `<kind>.txt` and `<kind>.html` make
//! an email (sent as `multipart/alternative`, RFC 2046), `<kind>.sms` an SMS. The built-in
//! parts live in `crates/delivery/templates/en/` and are compiled into the binary.
//!
//! The syntax is deliberately tiny, so a template cannot run code or read files:
//! - `{{name}}` is replaced by the parameter's value; a parameter with no value renders empty.
//!   In the `.html` part values are HTML-escaped; elsewhere they are inserted as they are.
//! - `{{#name}}…{{/name}}` keeps its content only when `name` has a non-empty value (for
//!   optional sentences such as an invitation's deadline).
//!
//! Values are never scanned for placeholders themselves, so a tenant name such as
//! `{{code}}` prints literally instead of leaking another parameter.
//!
//! Overrides: with an override directory configured, a readable file
//! `<dir>/<tenant_slug>/<kind>.<part>` replaces that one built-in part for that tenant. Slugs
//! are checked against `[a-z0-9-]` before any path is built. Files are read when a message is
//! rendered (cached until their modification time changes), so an operator can edit them
//! without a restart. A file that exists but cannot be read is logged and the built-in is used:
//! a broken override must not stop codes from going out.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;
use twofold_core::messaging::{MessageParams, TemplateKind};

/// Largest override file read; anything bigger is a mistake, not a template.
const MAX_OVERRIDE_BYTES: u64 = 256 * 1024;

/// One piece of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Subject,
    Text,
    Html,
    Sms,
}

impl Part {
    pub const ALL: [Part; 4] = [Part::Subject, Part::Text, Part::Html, Part::Sms];

    /// The file extension of this part.
    pub fn extension(&self) -> &'static str {
        match self {
            Part::Subject => "subject",
            Part::Text => "txt",
            Part::Html => "html",
            Part::Sms => "sms",
        }
    }
}

/// An email ready to be addressed and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedEmail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// The built-in text of a part.
pub fn builtin(kind: TemplateKind, part: Part) -> &'static str {
    use Part::*;
    use TemplateKind::*;
    match (kind, part) {
        (Code, Subject) => include_str!("../templates/en/code.subject"),
        (Code, Text) => include_str!("../templates/en/code.txt"),
        (Code, Html) => include_str!("../templates/en/code.html"),
        (Code, Sms) => include_str!("../templates/en/code.sms"),
        (Invitation, Subject) => include_str!("../templates/en/invitation.subject"),
        (Invitation, Text) => include_str!("../templates/en/invitation.txt"),
        (Invitation, Html) => include_str!("../templates/en/invitation.html"),
        (Invitation, Sms) => include_str!("../templates/en/invitation.sms"),
        (SecurityNotice, Subject) => include_str!("../templates/en/security_notice.subject"),
        (SecurityNotice, Text) => include_str!("../templates/en/security_notice.txt"),
        (SecurityNotice, Html) => include_str!("../templates/en/security_notice.html"),
        (SecurityNotice, Sms) => include_str!("../templates/en/security_notice.sms"),
        // Events are JSON for machines, never rendered for people.
        (Event, _) => "",
    }
}

/// A tenant slug as used in override paths: 1 to 63 of `[a-z0-9-]`, not starting with `-`.
/// Anything else (`..`, `/`, upper case) never reaches the file system.
pub fn is_valid_slug(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 63
        && !slug.starts_with('-')
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

struct Cached {
    modified: SystemTime,
    len: u64,
    text: String,
}

/// Renders messages from the built-in templates and, optionally, per-tenant overrides.
pub struct Renderer {
    override_dir: Option<PathBuf>,
    cache: Mutex<HashMap<PathBuf, Cached>>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("override_dir", &self.override_dir)
            .finish()
    }
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Renderer {
    /// `override_dir`: where `<tenant_slug>/<kind>.<part>` files are looked up. `None` uses
    /// the built-in templates only.
    pub fn new(override_dir: Option<PathBuf>) -> Self {
        Self {
            override_dir,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn override_dir(&self) -> Option<&Path> {
        self.override_dir.as_deref()
    }

    /// Subject, text and HTML of an email. The tenant is `params["tenant_slug"]`.
    pub fn render_email(&self, kind: TemplateKind, params: &MessageParams) -> RenderedEmail {
        RenderedEmail {
            subject: self.render(kind, Part::Subject, params),
            text: self.render(kind, Part::Text, params),
            html: self.render(kind, Part::Html, params),
        }
    }

    /// The body of an SMS.
    pub fn render_sms(&self, kind: TemplateKind, params: &MessageParams) -> String {
        self.render(kind, Part::Sms, params)
    }

    /// One part. Subjects and SMS bodies are folded onto one line and trimmed; a subject never
    /// carries a line break into a mail header.
    pub fn render(&self, kind: TemplateKind, part: Part, params: &MessageParams) -> String {
        let slug = params.get("tenant_slug").map(String::as_str).unwrap_or("");
        let source = self.source(kind, part, slug);
        let out = render_str(&source, params, part == Part::Html);
        match part {
            Part::Subject | Part::Sms => one_line(&out),
            Part::Text | Part::Html => out,
        }
    }

    /// The template text to use: the tenant's override if there is a readable one.
    fn source(&self, kind: TemplateKind, part: Part, slug: &str) -> String {
        let fallback = || builtin(kind, part).to_string();
        let Some(dir) = &self.override_dir else {
            return fallback();
        };
        if slug.is_empty() {
            return fallback();
        }
        if !is_valid_slug(slug) {
            tracing::warn!(
                slug = %slug.escape_debug(),
                "tenant slug is not [a-z0-9-]; template overrides ignored"
            );
            return fallback();
        }
        let path = dir
            .join(slug)
            .join(format!("{}.{}", kind.as_str(), part.extension()));
        match self.read_override(&path) {
            Ok(Some(text)) => text,
            Ok(None) => fallback(),
            Err(e) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot read template override; using the built-in template"
                );
                fallback()
            }
        }
    }

    /// `Ok(None)` when there is no override (the usual case, not worth a log line).
    ///
    /// This is a `stat` and at most one small read of a local file, so it runs inline even
    /// when called from async code; the result is cached until the file's mtime or size change.
    fn read_override(&self, path: &Path) -> std::io::Result<Option<String>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.lock_cache().remove(path);
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            return Err(std::io::Error::other("not a regular file"));
        }
        if meta.len() > MAX_OVERRIDE_BYTES {
            return Err(std::io::Error::other(format!(
                "larger than {MAX_OVERRIDE_BYTES} bytes"
            )));
        }
        let modified = meta.modified()?;
        if let Some(c) = self.lock_cache().get(path) {
            if c.modified == modified && c.len == meta.len() {
                return Ok(Some(c.text.clone()));
            }
        }
        let text = std::fs::read_to_string(path)?;
        self.lock_cache().insert(
            path.to_path_buf(),
            Cached {
                modified,
                len: meta.len(),
                text: text.clone(),
            },
        );
        Ok(Some(text))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Cached>> {
        // The cache holds no invariant a panic could break; keep using it.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Renders `template` with `params`. See the module documentation for the syntax.
pub fn render_str(template: &str, params: &MessageParams, escape_html: bool) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    render_into(&mut out, template, params, escape_html);
    out
}

fn render_into(out: &mut String, mut rest: &str, params: &MessageParams, escape: bool) {
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            // An unclosed tag is text, not an error: templates are edited by hand.
            out.push_str(&rest[start..]);
            return;
        };
        let tag = after[..end].trim();
        rest = &after[end + 2..];
        if let Some(name) = tag.strip_prefix('#') {
            let name = name.trim();
            let close = format!("{{{{/{name}}}}}");
            let (inner, tail) = match rest.find(&close) {
                Some(i) => (&rest[..i], &rest[i + close.len()..]),
                // No closing tag: the section runs to the end.
                None => (rest, ""),
            };
            if params.get(name).is_some_and(|v| !v.is_empty()) {
                render_into(out, inner, params, escape);
            }
            rest = tail;
        } else if tag.starts_with('/') {
            // A stray closing tag renders as nothing.
        } else if let Some(value) = params.get(tag) {
            if escape {
                push_escaped(out, value);
            } else {
                out.push_str(value);
            }
        }
    }
    out.push_str(rest);
}

/// HTML-escapes text for element content and double- or single-quoted attribute values (the
/// templates' `.html` parts, the hosted pages, the demo app's pages).
pub fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    push_escaped(&mut out, value);
    out
}

fn push_escaped(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// Collapses all whitespace and control characters to single spaces.
fn one_line(s: &str) -> String {
    s.split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> MessageParams {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn placeholders_sections_and_missing_values() {
        let p = params(&[("a", "1"), ("b", "")]);
        assert_eq!(render_str("x{{a}}y{{ a }}z", &p, false), "x1y1z");
        assert_eq!(render_str("[{{missing}}]", &p, false), "[]");
        assert_eq!(render_str("{{#a}}yes {{a}}{{/a}}.", &p, false), "yes 1.");
        assert_eq!(render_str("{{#b}}hidden{{/b}}.", &p, false), ".");
        assert_eq!(render_str("{{#zz}}hidden{{/zz}}.", &p, false), ".");
        assert_eq!(render_str("open {{a", &p, false), "open {{a");
        assert_eq!(render_str("{{/a}}x", &p, false), "x");
    }

    #[test]
    fn values_are_not_rescanned() {
        let p = params(&[("tenant_name", "{{code}}"), ("code", "123456")]);
        assert_eq!(render_str("{{tenant_name}}", &p, false), "{{code}}");
    }

    #[test]
    fn slugs() {
        assert!(is_valid_slug("acme-2"));
        for bad in ["", "..", "a/b", "Acme", "-x", "a b", "é", &"a".repeat(64)] {
            assert!(!is_valid_slug(bad), "{bad:?}");
        }
    }

    #[test]
    fn subjects_are_one_line() {
        let p = params(&[("tenant_name", "Evil\r\nBcc: x@y")]);
        let r = Renderer::default().render(TemplateKind::Code, Part::Subject, &p);
        assert!(!r.contains('\n') && !r.contains('\r'), "{r}");
    }
}
