//! The API's JSON request bodies and their conversion into domain types, fuzzed through the
//! crate that makes every decision about them (`twofold-core`).
//!
//! Why not the server's DTO structs: they sit next to their handlers in `twofold-server`, and
//! building that crate under the sanitizer pulls axum, SQLite, PostgreSQL and rustls into every
//! CI run for minutes. The DTOs are flat strings, numbers and booleans (`deny_unknown_fields`);
//! what a value becomes is decided in the core, by the parse constructors below (fed from any
//! JSON object, by field name, as the handlers feed them) and by `Policy` (the one body that is
//! deserialized into a core type, `POST …/policy/proposals`). The server's own decoding of every
//! body (unknown fields, wrong types, missing fields → a stable 4xx) is fuzzed end to end by
//! `scripts/api-fuzz.sh` (schemathesis against a running server).
//!
//! Properties: nothing panics; each accepted value meets its documented shape and parses
//! again to itself (canonical); a policy that validates is already canonical (validating it
//! again changes nothing, and it survives a JSON round trip), and the login decision made
//! from it never lets a user with a usable factor in without a code, except for the reasons
//! the policy and the facts allow (SSO exemption, remembered device, familiar login).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use twofold_core::policy::{
    decide, may_skip, phase, skip_until, AllowReason, Decision, Enforcement, LoginFacts, Method,
    Phase, Policy, PrimaryMethod,
};
use twofold_core::risk::RiskMode;
use twofold_core::service::notices::{human_utc, mask_email, mask_phone};
use twofold_core::service::parse_countries;
use twofold_core::types::{
    DisplayName, E164Phone, EmailAddress, ExternalId, FactorId, OtpCode, Profile, TenantSlug,
};

/// The last millisecond of year 9999: the latest date a policy may name.
const MAX_MS: i64 = 253_402_300_799_999;

/// `parse` then `as_str` then `parse` again gives the same value.
macro_rules! canonical {
    ($ty:ty, $s:expr) => {
        if let Ok(v) = <$ty>::parse($s) {
            assert_eq!(<$ty>::parse(v.as_str()).ok().as_ref(), Some(&v), "{}", $s);
            Some(v)
        } else {
            None
        }
    };
}

/// One string field of a request, as the handlers convert it.
fn field(name: &str, s: &str) {
    match name {
        "slug" | "tenant" => {
            if let Some(v) = canonical!(TenantSlug, s) {
                let b = v.as_str().as_bytes();
                assert!((2..=63).contains(&b.len()) && b[0] != b'-' && b[b.len() - 1] != b'-');
            }
        }
        "external_id" | "user" | "admin" | "owner" => {
            if let Some(v) = canonical!(ExternalId, s) {
                assert!(!v.as_str().contains(['/', ' ', '?', '#', '%']));
            }
        }
        "email" => {
            if let Some(v) = canonical!(EmailAddress, s) {
                let (local, domain) = v.as_str().split_once('@').unwrap_or_default();
                assert!(!local.is_empty() && domain.contains('.') && !domain.contains('@'));
                assert!(v.as_str().is_ascii() && v.as_str().len() <= 254);
                // The mask keeps the domain and at most the first character of the local part.
                let masked = mask_email(v.as_str());
                assert!(masked.ends_with(&format!("••••@{domain}")), "{masked}");
            }
        }
        "phone" | "new_phone" => {
            if let Some(v) = canonical!(E164Phone, s) {
                let digits = &v.as_str()[1..];
                assert!(digits.bytes().all(|b| b.is_ascii_digit()) && digits.len() >= 8);
                // The mask shows the calling code and the last three digits, nothing between.
                let masked = mask_phone(v.as_str());
                assert_eq!(masked.chars().filter(char::is_ascii_digit).count(), 5);
            }
        }
        "profile" => {
            canonical!(Profile, s);
        }
        "name" | "label" | "sender_name" | "issuer" | "account_name" => {
            if let Ok(v) = DisplayName::parse("name", s) {
                assert_eq!(
                    DisplayName::parse("name", v.as_str()).ok().as_ref(),
                    Some(&v)
                );
                assert!(!v.as_str().chars().any(char::is_control));
            }
        }
        "code" | "code1" | "code2" => {
            let ok = (6..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
            assert_eq!(OtpCode::parse(s).is_ok(), ok, "{s:?}");
        }
        "factor_id" | "code_factor_id" | "disable_factor_id" => {
            canonical!(FactorId, s);
        }
        _ => {}
    }
}

fn walk(name: &str, v: &Value, depth: usize) {
    if depth > 8 {
        return;
    }
    match v {
        Value::String(s) => field(name, s),
        Value::Object(map) => map.iter().for_each(|(k, v)| walk(k, v, depth + 1)),
        Value::Array(items) if name == "sms_countries" => {
            let list: Vec<String> = items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect();
            if let Ok(codes) = parse_countries(&list) {
                assert!(codes.len() <= list.len());
                assert_eq!(parse_countries(&codes).ok().as_ref(), Some(&codes));
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(name, i, depth + 1)),
        Value::Number(n) if name == "deadline" || name == "mandatory_from" => {
            if let Some(ms) = n.as_i64() {
                let text = human_utc(ms);
                assert!(text.ends_with(" UTC"), "{text}");
            }
        }
        _ => {}
    }
}

/// Every login the decision may see for one policy: the property that no user with a
/// usable, unlocked factor gets in without a code unless the policy and facts allow it.
fn decisions(policy: &Policy, bits: u64, now: i64) {
    let profiles: Vec<&str> = match &policy.enforcement {
        Enforcement::RequiredForProfiles { profiles } => {
            profiles.iter().map(String::as_str).collect()
        }
        _ => Vec::new(),
    };
    let profile = profiles.get(bits as usize % 4).copied();
    let factors: Vec<(Method, bool)> = (0..(bits >> 2) % 4)
        .map(|i| {
            (
                Method::ALL[((bits >> (4 + i)) % 3) as usize],
                bits >> (8 + i) & 1 == 1,
            )
        })
        .collect();
    let facts = LoginFacts {
        profile,
        factors: factors.clone(),
        primary: if bits >> 12 & 1 == 1 {
            PrimaryMethod::Sso
        } else {
            PrimaryMethod::Password
        },
        client_supports_2fa: [None, Some(true), Some(false)][(bits >> 13) as usize % 3],
        trusted_device: bits >> 15 & 1 == 1,
        familiar: bits >> 16 & 1 == 1,
        skipped_until: (bits >> 17 & 1 == 1)
            .then(|| now.saturating_add((bits >> 18) as i64 % 1_000_000_000 - 500_000_000)),
        now,
    };
    let usable: Vec<(Method, bool)> = factors
        .iter()
        .copied()
        .filter(|(m, _)| policy.methods.contains(m))
        .collect();
    let decision = decide(policy, &facts);
    match &decision {
        Decision::Allow { reason } => {
            let why_ok = match reason {
                AllowReason::NotRequired => {
                    policy.enforcement == Enforcement::Off || usable.is_empty()
                }
                AllowReason::SsoExempt => facts.primary == PrimaryMethod::Sso && policy.sso_exempt,
                AllowReason::TrustedDevice => {
                    facts.trusted_device && policy.remember_device_days.is_some()
                }
                AllowReason::Familiar => facts.familiar && policy.risk.mode == RiskMode::Adaptive,
                AllowReason::Skipped => {
                    usable.is_empty() && facts.skipped_until.is_some_and(|t| t > now)
                }
                AllowReason::NotRequiredYet => usable.is_empty(),
                AllowReason::SecondFactor | AllowReason::AppPassword => false,
            };
            assert!(why_ok, "{decision:?} for {facts:?} under {policy:?}");
            // Nobody who must enrol now skips it.
            if matches!(reason, AllowReason::Skipped) {
                assert!(!matches!(phase(policy, profile, now), Phase::Required));
            }
        }
        Decision::Challenge { methods } => {
            assert!(!methods.is_empty());
            for m in methods {
                assert!(policy.methods.contains(m) && usable.contains(&(*m, false)));
            }
        }
        Decision::EnrollRequired { .. } | Decision::EnrollOffered { .. } => {
            assert!(usable.is_empty(), "{decision:?}");
        }
        Decision::Deny { .. } => {}
    }
    let _ = may_skip(policy, profile, now);
    assert!(skip_until(policy, now) > now);
}

fuzz_target!(|data: &[u8]| {
    // The first 16 bytes choose the login facts and the clock; the rest is the body.
    let (head, body) = data.split_at(data.len().min(16));
    let mut b = [0u8; 16];
    b[..head.len()].copy_from_slice(head);
    let bits = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
    let now = i64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]])
        .rem_euclid(MAX_MS);

    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return;
    };
    walk("", &value, 0);

    // The policy proposal: the body's `policy`, or the body itself.
    let candidate = value.get("policy").cloned().unwrap_or(value);
    let Ok(policy) = serde_json::from_value::<Policy>(candidate) else {
        return;
    };
    let Ok((valid, warnings)) = policy.validate() else {
        return;
    };
    assert_eq!(
        valid.clone().validate().ok(),
        Some((valid.clone(), warnings))
    );
    let json = serde_json::to_string(&valid).unwrap_or_default();
    assert_eq!(
        serde_json::from_str::<Policy>(&json).ok().as_ref(),
        Some(&valid)
    );
    decisions(&valid, bits, now);
});
