//! The security headers of every hosted page, in one place.
//!
//! - CSP (CSP Level 3): nothing runs, nothing loads but our own stylesheet (and `data:`
//!   images: QR codes, and the empty favicon that keeps browsers from asking for one): no
//!   `script-src` at all, so `default-src 'none'` forbids every script, inline or not (the
//!   one page with a script, the recovery codes' Print button, sets [`csp_with_own_scripts`]:
//!   scripts from this origin, still nothing inline); forms post only to us; no `<base>`;
//!   no framing (`frame-ancestors 'none'`, plus `X-Frame-Options: DENY` for browsers
//!   without CSP 2). Chromium applies `form-action` to the redirects that follow a POST
//!   too: a page whose POST answers with a redirect to another site (an OpenID Connect
//!   callback) sets [`csp_with_form_action`] itself, and the middleware keeps a CSP the
//!   handler set.
//! - `Referrer-Policy: no-referrer`: page URLs hold one-time tokens (the "this wasn't me" link).
//! - `X-Content-Type-Options: nosniff`, `Cross-Origin-Opener-Policy: same-origin`.
//! - `Permissions-Policy`: no page needs a sensor, camera, microphone, location or payment.
//!   Only features current browsers know are listed: an unknown one is a console error.
//! - `Cache-Control: no-store`: pages carry CSRF tokens and account details.

use axum::http::{header, HeaderMap, HeaderName, HeaderValue};
use axum::response::Response;

/// The pages' Content-Security-Policy.
pub const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                       form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), \
                                      gyroscope=(), magnetometer=(), microphone=(), \
                                      payment=(), usb=()";

const PERMISSIONS_POLICY_HEADER: HeaderName = HeaderName::from_static("permissions-policy");
const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");

/// Sets the page security headers; a handler's own `Cache-Control` (the stylesheet's) and
/// CSP ([`csp_with_form_action`]) stay.
pub fn set_security_headers(h: &mut HeaderMap) {
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        PERMISSIONS_POLICY_HEADER,
        HeaderValue::from_static(PERMISSIONS_POLICY),
    );
    h.insert(COOP, HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// [`CSP`] whose `form-action` also allows `origins` (each `https://host[:port]`, checked:
/// `None` if one could smuggle in another directive), for a form whose POST redirects there.
pub fn csp_with_form_action(origins: &[&str]) -> Option<HeaderValue> {
    let plain = |o: &&str| {
        (o.starts_with("https://") || o.starts_with("http://"))
            && !o.contains(|c: char| c == ';' || c == ',' || c == '\'' || c.is_whitespace())
    };
    if !origins.iter().all(plain) {
        return None;
    }
    let extra = origins.join(" ");
    HeaderValue::from_str(
        &CSP.replace("form-action 'self'", &format!("form-action 'self' {extra}")),
    )
    .ok()
}

/// [`CSP`] that also runs scripts from this origin (`script-src 'self'`, still nothing
/// inline), for the one page whose Print button is a script ([`super::PRINT_SCRIPT`]).
pub fn csp_with_own_scripts() -> HeaderValue {
    let csp = CSP.replacen(
        "default-src 'none';",
        "default-src 'none'; script-src 'self';",
        1,
    );
    HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static(CSP))
}

/// Middleware (`axum::middleware::map_response`) for a router of pages: every response gets
/// the headers, including the ones axum writes itself (a rejected form body, a 405).
pub async fn harden(mut resp: Response) -> Response {
    set_security_headers(resp.headers_mut());
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn the_csp_allows_no_script_and_no_framing() {
        let directives: Vec<&str> = CSP.split(';').map(str::trim).collect();
        assert!(directives.contains(&"default-src 'none'"));
        assert!(directives.contains(&"frame-ancestors 'none'"));
        assert!(directives.contains(&"style-src 'self'"));
        assert!(
            !CSP.contains("script-src") && !CSP.contains("unsafe"),
            "{CSP}"
        );
    }

    #[test]
    fn a_handlers_cache_control_is_kept_and_pages_are_not_stored() {
        let mut h = HeaderMap::new();
        set_security_headers(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let mut h = HeaderMap::new();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("max-age=1"));
        set_security_headers(&mut h);
        assert_eq!(h[header::CACHE_CONTROL], "max-age=1");
        assert_eq!(h["permissions-policy"], PERMISSIONS_POLICY);
    }

    #[test]
    fn own_scripts_are_allowed_only_where_asked_and_never_inline() {
        let csp = csp_with_own_scripts();
        let csp = csp.to_str().unwrap();
        assert!(csp.starts_with("default-src 'none'; script-src 'self'; style-src 'self';"));
        assert!(!csp.contains("unsafe") && csp.contains("frame-ancestors 'none'"));
        assert!(!CSP.contains("script-src"));
    }

    #[test]
    fn a_wider_form_action_is_kept_and_cannot_inject_directives() {
        let csp = csp_with_form_action(&["https://app.example.com"]).unwrap();
        assert!(csp
            .to_str()
            .unwrap()
            .contains("form-action 'self' https://app.example.com; frame-ancestors 'none'"));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
        set_security_headers(&mut h);
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], csp);
        for bad in [
            "https://a.example; script-src *",
            "https://a.example 'unsafe-inline'",
            "javascript:x",
            "https://a.example,b",
        ] {
            assert!(csp_with_form_action(&[bad]).is_none(), "{bad}");
        }
    }
}
