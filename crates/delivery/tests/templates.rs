#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Templates: built-in texts, HTML escaping, per-tenant overrides read from disk.

use std::time::Duration;
use twofold_core::messaging::{MessageParams, TemplateKind};
use twofold_delivery::templates::{builtin, Part, Renderer};

fn params(pairs: &[(&str, &str)]) -> MessageParams {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn code_params() -> MessageParams {
    params(&[
        ("tenant_name", "Acme & Co"),
        ("tenant_slug", "acme"),
        ("sender_name", "Acme Security"),
        ("code", "482913"),
        ("purpose", "sign in"),
        ("minutes", "10"),
    ])
}

fn notice_params() -> MessageParams {
    params(&[
        ("tenant_name", "Acme"),
        ("tenant_slug", "acme"),
        ("sender_name", "Acme Security"),
        ("change", "a two-step verification method was added"),
        ("when", "2026-11-26 05:37 UTC"),
        ("where", "a request from 203.0.113.7"),
        ("factor", "text messages to +44•••••••123"),
    ])
}

#[test]
fn code_message_in_every_part() {
    let r = Renderer::default();
    let p = code_params();
    let email = r.render_email(TemplateKind::Code, &p);
    assert_eq!(email.subject, "Your Acme & Co verification code");
    assert!(email.text.contains("482913"));
    assert!(email
        .text
        .contains("Enter it to sign in. It expires in 10 minutes"));
    assert!(email.text.contains("Never share this code"));
    assert!(email.html.contains(">482913<"));
    let sms = r.render_sms(TemplateKind::Code, &p);
    assert_eq!(
        sms,
        "482913 is your Acme & Co code to sign in. It expires in 10 min. Never share it."
    );
    assert!(sms.len() <= 160, "one SMS segment: {}", sms.len());
}

#[test]
fn html_values_are_escaped_and_text_values_are_not() {
    let mut p = code_params();
    p.insert(
        "tenant_name".into(),
        "<script>alert('x')</script> \"Q\" & Co".into(),
    );
    let email = Renderer::default().render_email(TemplateKind::Code, &p);
    assert!(!email.html.contains("<script>"), "{}", email.html);
    assert!(email
        .html
        .contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &quot;Q&quot; &amp; Co"));
    assert!(email
        .text
        .contains("<script>alert('x')</script> \"Q\" & Co"));
}

#[test]
fn missing_placeholders_render_empty_and_optional_sentences_disappear() {
    let r = Renderer::default();
    let mut p = params(&[
        ("tenant_name", "Acme"),
        ("tenant_slug", "acme"),
        ("sender_name", "Acme"),
    ]);
    let without = r.render_email(TemplateKind::Invitation, &p);
    assert!(!without.text.contains("{{"), "{}", without.text);
    assert!(!without.text.contains("set it up by"), "{}", without.text);
    assert!(!without.html.contains("set it up by"));
    p.insert("deadline".into(), "1 March 2027".into());
    let with = r.render_email(TemplateKind::Invitation, &p);
    assert!(with.text.contains("Please set it up by 1 March 2027."));
    assert!(with.html.contains("Please set it up by 1 March 2027."));
    assert_eq!(
        r.render_sms(TemplateKind::Invitation, &p),
        "Acme now uses two-step verification. Sign in to set it up by 1 March 2027."
    );
}

#[test]
fn security_notice_says_what_when_where_and_what_to_do_and_has_no_code() {
    let r = Renderer::default();
    let mut p = notice_params();
    // Even if a caller wrongly passed a code or a full number, the notice must not show them.
    p.insert("code".into(), "482913".into());
    p.insert("phone".into(), "+447700900123".into());
    let email = r.render_email(TemplateKind::SecurityNotice, &p);
    for body in [&email.text, &email.html] {
        assert!(body.contains("a two-step verification method was added"));
        assert!(body.contains("2026-11-26 05:37 UTC"));
        assert!(body.contains("a request from 203.0.113.7"));
        assert!(body.contains("+44•••••••123"));
        assert!(body.contains("Change your password"));
        assert!(body.contains("If it was not you"));
        assert!(!body.contains("482913"), "a notice never carries a code");
        assert!(
            !body.contains("7700900"),
            "a notice never shows a full number"
        );
    }
    assert_eq!(
        email.subject,
        "Acme: your two-step verification settings changed"
    );
    // The built-in notice templates do not even have a slot for a code.
    for part in Part::ALL {
        let src = builtin(TemplateKind::SecurityNotice, part);
        assert!(
            !src.contains("{{code}}") && !src.contains("{{phone}}"),
            "{part:?}"
        );
    }
}

#[test]
fn every_builtin_part_renders_without_leftover_tags() {
    let r = Renderer::default();
    let mut p = code_params();
    p.extend(notice_params());
    p.insert("deadline".into(), "tomorrow".into());
    // Events are JSON for machines and have no templates.
    for kind in TemplateKind::ALL
        .into_iter()
        .filter(|k| *k != TemplateKind::Event)
    {
        for part in Part::ALL {
            let out = r.render(kind, part, &p);
            assert!(!out.trim().is_empty(), "{kind:?} {part:?}");
            assert!(
                !out.contains("{{") && !out.contains("}}"),
                "{kind:?} {part:?}: {out}"
            );
        }
    }
}

#[test]
fn tenant_override_replaces_one_part_for_that_tenant_only() {
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir(&acme).unwrap();
    std::fs::write(acme.join("code.subject"), "Acme code: {{code}}\n").unwrap();
    std::fs::write(acme.join("code.html"), "<b>{{tenant_name}}</b> {{code}}").unwrap();
    let r = Renderer::new(Some(dir.path().to_path_buf()));

    let email = r.render_email(TemplateKind::Code, &code_params());
    assert_eq!(email.subject, "Acme code: 482913");
    assert_eq!(email.html, "<b>Acme &amp; Co</b> 482913");
    // The text part has no override: built-in.
    assert!(email.text.contains("Your verification code is:"));

    let mut other = code_params();
    other.insert("tenant_slug".into(), "globex".into());
    let email = r.render_email(TemplateKind::Code, &other);
    assert_eq!(email.subject, "Your Acme & Co verification code");
}

#[test]
fn overrides_are_reread_when_the_file_changes() {
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir(&acme).unwrap();
    let file = acme.join("code.sms");
    std::fs::write(&file, "first {{code}}").unwrap();
    let r = Renderer::new(Some(dir.path().to_path_buf()));
    assert_eq!(
        r.render_sms(TemplateKind::Code, &code_params()),
        "first 482913"
    );
    // Make sure the modification time moves even on coarse-grained file systems.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&file, "second version {{code}}").unwrap();
    let f = std::fs::File::options().write(true).open(&file).unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        r.render_sms(TemplateKind::Code, &code_params()),
        "second version 482913"
    );
    std::fs::remove_file(&file).unwrap();
    assert!(r
        .render_sms(TemplateKind::Code, &code_params())
        .starts_with("482913 is your"));
}

#[test]
fn bad_slugs_never_touch_the_file_system() {
    let root = tempfile::tempdir().unwrap();
    let overrides = root.path().join("overrides");
    std::fs::create_dir(&overrides).unwrap();
    // A file a path traversal would reach: <overrides>/../code.subject.
    std::fs::write(root.path().join("code.subject"), "PWNED {{code}}").unwrap();
    // And one under a directory whose name is not a valid slug.
    std::fs::create_dir(overrides.join("Acme")).unwrap();
    std::fs::write(overrides.join("Acme").join("code.subject"), "UPPER").unwrap();
    let r = Renderer::new(Some(overrides));
    for slug in ["..", "../", "Acme", "acme/../..", "/etc", ""] {
        let mut p = code_params();
        p.insert("tenant_slug".into(), slug.into());
        let subject = r.render(TemplateKind::Code, Part::Subject, &p);
        assert_eq!(subject, "Your Acme & Co verification code", "slug {slug:?}");
    }
}

#[test]
#[cfg(unix)]
fn unreadable_override_falls_back_to_the_builtin() {
    let dir = tempfile::tempdir().unwrap();
    let acme = dir.path().join("acme");
    std::fs::create_dir(&acme).unwrap();
    // Invalid UTF-8 fails to read as text whoever runs the test (root ignores permissions).
    std::fs::write(acme.join("code.subject"), [0xff, 0xfe, 0x00]).unwrap();
    // A directory where a file should be.
    std::fs::create_dir(acme.join("code.sms")).unwrap();
    let r = Renderer::new(Some(dir.path().to_path_buf()));
    let p = code_params();
    assert_eq!(
        r.render(TemplateKind::Code, Part::Subject, &p),
        "Your Acme & Co verification code"
    );
    assert!(r
        .render_sms(TemplateKind::Code, &p)
        .starts_with("482913 is your"));
}
