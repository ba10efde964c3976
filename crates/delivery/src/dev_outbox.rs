//! Reading back what the development transports ([`crate::DevMailbox`], [`crate::DevSms`])
//! wrote: the demo's "Mailbox" page shows these messages, `twofold demo` reads the code that
//! confirms its policy from the admin's email, and the tests read codes and notices from them,
//! each the way a person reads their inbox. Emails are parsed as MIME (RFC 5322 with
//! quoted-printable or base64 parts), SMS files by the same parser (their header block is
//! RFC 5322 shaped).

use std::path::{Path, PathBuf};

/// Which development transport wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevChannel {
    Email,
    Sms,
}

/// One message of the development outbox (an `.eml` or SMS `.txt` file).
#[derive(Debug, Clone)]
pub struct DevMessage {
    pub path: PathBuf,
    pub channel: DevChannel,
    /// The recipient: the address of an email, the phone number of an SMS.
    pub to: String,
    /// `Name <address>` of an email; empty for an SMS.
    pub from: String,
    pub message_id: String,
    pub subject: Option<String>,
    pub text: String,
    pub html: Option<String>,
    /// When it was written, `2025-01-02 03:04:05 UTC` (from the file name).
    pub written_at: String,
}

impl DevMessage {
    /// The one-time code in the message: the first run of exactly six digits that stands
    /// alone, not part of a word or of a link's token (a security notice's "this wasn't me"
    /// link may hold six digits in a row).
    pub fn code(&self) -> Option<String> {
        let b = self.text.as_bytes();
        (0..b.len().saturating_sub(5)).find_map(|i| {
            let run = &b[i..i + 6];
            let joined = |c: &u8| c.is_ascii_alphanumeric() || b"_-/".contains(c);
            let before = i.checked_sub(1).is_some_and(|j| joined(&b[j]));
            let after = b.get(i + 6).is_some_and(joined);
            (run.iter().all(u8::is_ascii_digit) && !before && !after)
                .then(|| String::from_utf8_lossy(run).into_owned())
        })
    }

    /// The message in `path`; `None` if it is not one the development transports write.
    pub fn parse(path: &Path) -> Option<Self> {
        let channel = match path.extension().and_then(|e| e.to_str()) {
            Some("eml") => DevChannel::Email,
            Some("txt") => DevChannel::Sms,
            _ => return None,
        };
        let bytes = std::fs::read(path).ok()?;
        let msg = mail_parser::MessageParser::default().parse(&bytes)?;
        let header = |name: &str| {
            msg.header_raw(name)
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let first = |a: Option<&mail_parser::Address>| {
            a.and_then(|a| a.first()).map(|a| {
                (
                    a.name().unwrap_or_default().to_string(),
                    a.address().unwrap_or_default().to_string(),
                )
            })
        };
        let to = match channel {
            DevChannel::Email => first(msg.to()).map(|(_, a)| a).unwrap_or_default(),
            DevChannel::Sms => header("To"),
        };
        let from = first(msg.from())
            .map(|(name, address)| format!("{name} <{address}>"))
            .unwrap_or_default();
        let name = path.file_name()?.to_str()?;
        Some(Self {
            path: path.to_path_buf(),
            channel,
            to,
            from,
            message_id: msg
                .message_id()
                .map(str::to_string)
                .unwrap_or_else(|| header("Message-ID")),
            subject: msg.subject().map(str::to_string),
            text: msg.body_text(0).map(|t| t.into_owned()).unwrap_or_default(),
            html: msg.body_html(0).map(|t| t.into_owned()),
            written_at: written_at(name).unwrap_or_default(),
        })
    }
}

/// `20250102T030405.123456Z-…` (see `spool::file_timestamp`) as `2025-01-02 03:04:05 UTC`.
fn written_at(file_name: &str) -> Option<String> {
    let t = file_name.get(..15)?;
    let digits =
        |r: std::ops::Range<usize>| t.get(r).filter(|s| s.bytes().all(|b| b.is_ascii_digit()));
    Some(format!(
        "{}-{}-{} {}:{}:{} UTC",
        digits(0..4)?,
        digits(4..6)?,
        digits(6..8)?,
        digits(9..11)?,
        digits(11..13)?,
        digits(13..15)?
    ))
}

/// Every message under `dir` (searched recursively: give it the outbox, or its `email` or
/// `sms` folder), oldest first. Files being written are hidden until complete, so a message
/// is never read half-written.
pub fn read_all(dir: &Path) -> Vec<DevMessage> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if p.is_dir() {
                stack.push(p);
            } else if !hidden {
                files.push(p);
            }
        }
    }
    // Names start with the time they were written, to the microsecond.
    files.sort_by_key(|p| p.file_name().map(|n| n.to_os_string()));
    files.iter().filter_map(|p| DevMessage::parse(p)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{DevMailbox, DevSms, Email, EmailTransport, Sms, SmsTransport};

    #[tokio::test]
    async fn what_the_dev_transports_write_reads_back_with_its_code() {
        let dir = tempfile::tempdir().unwrap();
        let mail = DevMailbox::new(dir.path().join("email"));
        mail.send(&Email {
            message_id: "m1@twofold".into(),
            from_name: "Acme Security".into(),
            from_address: "no-reply@example.com".into(),
            to: "alice@example.org".into(),
            subject: "Your Acme verification code".into(),
            // Long enough for quoted-printable soft line breaks, with a non-ASCII character.
            text: format!("Your code is 123456 — {}", "é".repeat(80)),
            html: "<p>Your code is <b>123456</b></p>".into(),
        })
        .await
        .unwrap();
        let sms = DevSms::new(dir.path().join("sms"));
        sms.send(&Sms {
            message_id: "m2@twofold".into(),
            to: "+447700900123".into(),
            tenant_slug: "acme".into(),
            body: "654321 is your Acme code; see https://x.example/t/111111".into(),
        })
        .await
        .unwrap();
        // A file being written (hidden) and a stranger are not messages.
        std::fs::write(dir.path().join("email/.partial.eml.tmp"), b"To: x").unwrap();
        std::fs::write(dir.path().join("sms/notes.md"), b"hello").unwrap();

        let all = read_all(dir.path());
        assert_eq!(all.len(), 2, "{all:?}");
        let email = all.iter().find(|m| m.channel == DevChannel::Email).unwrap();
        assert_eq!(email.to, "alice@example.org");
        assert_eq!(email.from, "Acme Security <no-reply@example.com>");
        assert_eq!(
            email.subject.as_deref(),
            Some("Your Acme verification code")
        );
        assert!(email.text.contains(&"é".repeat(80)), "{}", email.text);
        assert_eq!(email.code().as_deref(), Some("123456"));
        assert!(email.written_at.ends_with(" UTC"), "{}", email.written_at);
        let text = all.iter().find(|m| m.channel == DevChannel::Sms).unwrap();
        assert_eq!(text.to, "+447700900123");
        assert_eq!(text.code().as_deref(), Some("654321"));
        assert_eq!(read_all(&dir.path().join("sms")).len(), 1);
    }

    #[test]
    fn a_code_stands_alone() {
        let m = |text: &str| DevMessage {
            path: PathBuf::new(),
            channel: DevChannel::Email,
            to: String::new(),
            from: String::new(),
            message_id: String::new(),
            subject: None,
            text: text.into(),
            html: None,
            written_at: String::new(),
        };
        assert_eq!(m("code: 012345.").code().as_deref(), Some("012345"));
        assert_eq!(m("https://x/wasnt-me/ab123456cd 1234567").code(), None);
        assert_eq!(
            m("ref_123456 then 654321").code().as_deref(),
            Some("654321")
        );
    }

    #[test]
    fn the_time_comes_from_the_file_name() {
        assert_eq!(
            written_at("20250102T030405.123456Z-m1.eml").as_deref(),
            Some("2025-01-02 03:04:05 UTC")
        );
        assert_eq!(written_at("notes.eml"), None);
    }
}
