#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! SMTP delivery against a real SMTP server process (Python's aiosmtpd), and the dev mailbox.
//! What arrived is read back with Python's own `email` parser, not ours.

mod common;

use common::{mailer, parse_eml, smtp_config, smtp_config_tls, test_pki, SinkOptions, SmtpSink};
use std::time::Duration;
use twofold_delivery::{DevMailbox, Email, EmailConfig, EmailTransport, SendError, SmtpSecurity};

fn email(id: &str) -> Email {
    Email {
        message_id: format!("{id}@twofold"),
        from_name: "Acme Sécurité".into(),
        from_address: "no-reply@acme.test".into(),
        to: "alice@example.test".into(),
        subject: "Your Acme verification code — ünïcode".into(),
        text: "Your verification code is:\n\n    482913\n\nIt expires in 10 minutes.\n".into(),
        html: "<p>Your verification code is <b>482913</b>.</p>\n".into(),
    }
}

/// Sends [`email`] `id` with the mailer `config` describes, which must fail.
async fn send_fails(config: &EmailConfig, id: &str) -> SendError {
    mailer(config).send(&email(id)).await.unwrap_err()
}

/// Asserts a transient error whose text quotes the reply `code`.
fn assert_transient_quoting(err: SendError, code: &str) {
    match err {
        SendError::Transient(msg) => assert!(msg.contains(code), "{msg}"),
        other => panic!("expected transient, got {other:?}"),
    }
}

/// Checks that `sent` is the one message `sink` received, and returns what it saw of it.
fn the_one_received(sink: &SmtpSink, sent: &Email) -> serde_json::Value {
    let mut got = sink.received();
    assert_eq!(got.len(), 1);
    assert_is_the_email(&got[0], sent);
    got.remove(0)
}

/// Everything a receiver sees of [`email`], checked field by field.
fn assert_is_the_email(got: &serde_json::Value, sent: &Email) {
    assert_eq!(got["message_id"], format!("<{}>", sent.message_id));
    assert_eq!(got["from_name"], sent.from_name);
    assert_eq!(got["from_address"], sent.from_address);
    assert_eq!(got["to"], sent.to);
    assert_eq!(got["subject"], sent.subject);
    assert_eq!(got["content_type"], "multipart/alternative");
    // On the wire, text lines end in CRLF (RFC 5322 §2.3).
    let unix = |v: &serde_json::Value| v.as_str().unwrap().replace("\r\n", "\n");
    assert_eq!(unix(&got["text"]), sent.text);
    assert_eq!(unix(&got["html"]), sent.html);
    assert_eq!(got["headers"]["Auto-Submitted"], "auto-generated");
    assert!(got["headers"]["Date"]
        .as_str()
        .is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn plain_smtp_delivers_headers_and_both_bodies() {
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let m = mailer(&smtp_config(sink.port, SmtpSecurity::None));
    let sent = email("plain1");
    m.send(&sent).await.unwrap();
    let got = the_one_received(&sink, &sent);
    assert_eq!(got["mail_from"], "no-reply@acme.test");
    assert_eq!(got["rcpt_tos"], serde_json::json!(["alice@example.test"]));
    assert_eq!(got["tls"], false);
    // The id is exactly as given, in angle brackets, on the wire.
    assert!(sink.raw(1).contains("Message-ID: <plain1@twofold>\r\n"));

    // A second message on the same (pooled) transport.
    m.send(&email("plain2")).await.unwrap();
    let got = sink.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1]["message_id"], "<plain2@twofold>");
}

#[tokio::test]
async fn starttls_with_auth_and_a_private_ca() {
    let pki = test_pki();
    let auth = Some(("twofold", "s3cret-pass"));
    let sink = SmtpSink::start_tls("starttls", &pki, auth).await;
    let config = smtp_config_tls(sink.port, SmtpSecurity::Starttls, &pki, auth);
    let sent = email("starttls1");
    mailer(&config).send(&sent).await.unwrap();
    let got = the_one_received(&sink, &sent);
    assert_eq!(got["tls"], true, "the session was upgraded before DATA");
    assert_eq!(got["auth"], "twofold");
}

#[tokio::test]
async fn implicit_tls_with_a_private_ca() {
    let pki = test_pki();
    let sink = SmtpSink::start_tls("tls", &pki, None).await;
    let config = smtp_config_tls(sink.port, SmtpSecurity::Tls, &pki, None);
    let sent = email("tls1");
    mailer(&config).send(&sent).await.unwrap();
    the_one_received(&sink, &sent);
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_retried_later() {
    let pki = test_pki();
    let sink = SmtpSink::start_tls("tls", &pki, None).await;
    // No ca_file: the private CA is unknown.
    let err = send_fails(&smtp_config(sink.port, SmtpSecurity::Tls), "untrusted").await;
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn starttls_required_but_not_offered_fails() {
    // A plain server: a mailer configured for STARTTLS must not fall back to clear text.
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let err = send_fails(
        &smtp_config(sink.port, SmtpSecurity::Starttls),
        "nostarttls",
    )
    .await;
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn reply_4xx_is_transient() {
    let sink = SmtpSink::start(SinkOptions {
        fail: Some((451, "4.3.0 Mailbox temporarily unavailable", "data")),
        ..Default::default()
    })
    .await;
    let err = send_fails(&smtp_config(sink.port, SmtpSecurity::None), "t451").await;
    assert_transient_quoting(err, "451");
    assert!(sink.received().is_empty());
}

#[tokio::test]
async fn reply_5xx_is_permanent() {
    for (code, text, at) in [
        (550, "5.1.1 No such user here", "rcpt"),
        (554, "5.6.0 Message content rejected", "data"),
    ] {
        let sink = SmtpSink::start(SinkOptions {
            fail: Some((code, text, at)),
            ..Default::default()
        })
        .await;
        let err = send_fails(&smtp_config(sink.port, SmtpSecurity::None), "p5xx").await;
        match err {
            SendError::Permanent(msg) => assert!(msg.contains(&code.to_string()), "{msg}"),
            other => panic!("{code}: expected permanent, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn wrong_smtp_password_is_retried_not_given_up() {
    // 535 is a 5xx, but it refuses the session (our configuration), not the message.
    let pki = test_pki();
    let sink = SmtpSink::start_tls("starttls", &pki, Some(("twofold", "right"))).await;
    let wrong = Some(("twofold", "wrong"));
    let config = smtp_config_tls(sink.port, SmtpSecurity::Starttls, &pki, wrong);
    assert_transient_quoting(send_fails(&config, "badauth").await, "535");
}

#[tokio::test]
async fn no_server_is_transient() {
    let port = common::free_port();
    let err = send_fails(&smtp_config(port, SmtpSecurity::None), "down").await;
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
}

#[tokio::test]
async fn a_silent_server_times_out_as_transient() {
    // Accepts the connection and never says a word.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            let (s, _) = listener.accept().await.unwrap();
            held.push(s);
        }
    });
    let mut config = smtp_config(port, SmtpSecurity::None);
    config.timeout_secs = 1;
    let started = std::time::Instant::now();
    let err = send_fails(&config, "silent").await;
    assert!(matches!(err, SendError::Transient(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    hold.abort();
}

#[tokio::test]
async fn dev_mailbox_writes_the_same_message_to_a_private_file() {
    let dir = tempfile::tempdir().unwrap();
    let mailbox = DevMailbox::new(dir.path().join("mail"));
    let first = email("dev1");
    mailbox.send(&first).await.unwrap();
    mailbox.send(&email("dev2")).await.unwrap();
    let mut files: Vec<_> = std::fs::read_dir(dir.path().join("mail"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "no temporary files left: {files:?}");
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names[0].ends_with("-dev1@twofold.eml"), "{names:?}");
    assert!(
        names[1].ends_with("-dev2@twofold.eml"),
        "sorted by time: {names:?}"
    );
    let got = parse_eml(&files[0]);
    assert_is_the_email(&got, &first);
    let raw = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        raw.contains("\r\n"),
        "RFC 5322 line endings, as SMTP would send"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
