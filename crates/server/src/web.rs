//! What every server-rendered page shares: the layout, HTML escaping, the security headers,
//! the one cookie factory, CSRF double-submit tokens and the client IP of a browser.
//!
//! Pages carry no script at all: the CSP is `default-src 'none'` with inline styles only,
//! forms may post only to this origin, nothing may frame them (`frame-ancestors 'none'` and
//! `X-Frame-Options: DENY`), and no referrer leaks (URLs may hold tokens). Cookies are
//! HttpOnly, `Secure` when `public_url` is https, with an explicit SameSite and path.
//!
//! CSRF: a form carries a random token that must equal a cookie set with the page (double
//! submit, compared in constant time). A cross-site page can make the browser send the
//! cookie but cannot read it, so it cannot put the same value in the form.

use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use twofold_core::RequestMeta;

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:0;padding:24px;background:#f5f5f5;color:#1a1a1a;line-height:1.5}\
main{max-width:32rem;margin:0 auto;background:#fff;padding:24px;border-radius:8px}\
h1{font-size:1.4rem;margin-top:0}\
label{display:block;font-weight:600;margin:16px 0 4px}\
input[type=text]{font-size:1.4rem;letter-spacing:.2em;padding:10px;width:100%;\
box-sizing:border-box;border:2px solid #555;border-radius:6px}\
input:focus,button:focus,a:focus{outline:3px solid #1a1a1a;outline-offset:2px}\
button{font-size:1rem;padding:12px 20px;border:0;border-radius:6px;background:#0b57d0;\
color:#fff;cursor:pointer;margin-top:12px}\
button.danger{background:#b00020}button.plain{background:#e8e8e8;color:#1a1a1a}\
.check{display:flex;gap:8px;align-items:center;font-weight:400}\
.what{background:#f0f0f0;padding:12px;border-radius:6px}\
.error{background:#fde7e9;border-left:4px solid #b00020;padding:8px 12px}\
.note{background:#e8f0fe;padding:8px 12px;border-radius:6px}\
nav ul{padding-left:1.2rem}";

/// A whole page around `body` (already escaped HTML), with the page headers.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n\
         <h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// How a cookie may travel across sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    /// Only same-site requests: CSRF cookies.
    Strict,
    /// Also top-level navigations from other sites: cookies that must survive the
    /// integrator's redirect to the hosted pages.
    Lax,
}

/// The one cookie factory: HttpOnly always, `Secure` when the pages are reached over https
/// (browsers drop Secure cookies set over plain http, which would break the forms).
pub fn cookie(
    state: &AppState,
    name: &str,
    value: &str,
    path: &str,
    same_site: SameSite,
    max_age_secs: i64,
) -> Option<HeaderValue> {
    let secure = if state.https { "; Secure" } else { "" };
    let same_site = match same_site {
        SameSite::Strict => "Strict",
        SameSite::Lax => "Lax",
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}{secure}; HttpOnly; SameSite={same_site}; \
         Max-Age={max_age_secs}"
    ))
    .ok()
}

/// Adds a `Set-Cookie` (several may be set on one response).
pub fn set_cookie(resp: &mut Response, cookie: Option<HeaderValue>) {
    if let Some(v) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of a request cookie.
pub fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token for a page's forms, and the cookie that must come back with them. A token
/// the browser already holds is kept (so a page opened earlier, or in another tab, still
/// works); otherwise a fresh random one.
pub fn csrf_token(
    state: &AppState,
    headers: &HeaderMap,
    cookie_name: &str,
    path: &str,
) -> (String, Option<HeaderValue>) {
    let token = cookie_value(headers, cookie_name)
        .filter(|t| {
            t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(String::from)
        .unwrap_or_else(|| twofold_crypto::random_token(32));
    let cookie = cookie(state, cookie_name, &token, path, SameSite::Strict, 3600);
    (token, cookie)
}

/// Whether a submitted form's CSRF token equals its cookie (constant time).
pub fn csrf_ok(headers: &HeaderMap, cookie_name: &str, submitted: &str) -> bool {
    let expected = cookie_value(headers, cookie_name).unwrap_or("");
    !expected.is_empty() && twofold_crypto::ct_eq(expected.as_bytes(), submitted.as_bytes())
}

/// The request context of a page a user opened: the client IP from the socket, or from
/// `X-Forwarded-For` as far as configured trusted proxies vouch for it (INV-08). When no
/// vouched-for address exists, the audit row names the proxy and the per-IP budget is not
/// charged to an address the client chose.
pub fn client_meta(s: &AppState, meta: RequestMeta, headers: &HeaderMap) -> RequestMeta {
    let Some(peer) = meta.ip.as_deref().and_then(|ip| ip.parse().ok()) else {
        return meta;
    };
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let resolved = twofold_geo::resolve_client_ip(peer, &forwarded, &s.proxies);
    RequestMeta {
        ip: Some(resolved.addr().to_string()),
        client_ip: resolved.known().map(|ip| ip.to_string()),
        ..meta
    }
}
