//! The one cookie factory of the pages, and the CSRF double-submit check built on it.
//!
//! Every cookie is `HttpOnly` (no script reads it; the pages run none anyway), `SameSite`
//! (`Strict` unless a flow needs the cookie on a cross-site top-level navigation, such as an
//! OpenID Connect redirect arriving from the integrator: then `Lax`), scoped to a path, given
//! a lifetime, and `Secure` whenever the pages are reached over https (`public_url`). Over
//! plain http `Secure` is left out, or browsers would drop the cookie and break the forms.
//!
//! CSRF (OWASP "double submit cookie"): a page with a form sets a random token in a cookie and
//! in a hidden field; the POST must carry both, equal (compared in constant time). A cross-site
//! form cannot read or set the cookie, so it cannot send the matching field. On top of that, a
//! POST whose `Sec-Fetch-Site` says `cross-site` is refused outright (Fetch Metadata).

use crate::state::AppState;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::Response;

/// The CSRF cookie's name, and the hidden form field that must echo it.
pub const CSRF_COOKIE: &str = "tf_csrf";
pub const CSRF_FIELD: &str = "csrf";
/// A page with a form stays usable this long (seconds); then it says "open the link again".
pub const CSRF_MAX_AGE: u64 = 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
}

/// Makes the pages' `Set-Cookie` values; `Secure` follows `public_url`.
#[derive(Clone, Copy, Debug)]
pub struct CookieFactory {
    secure: bool,
}

impl CookieFactory {
    pub fn new(secure: bool) -> Self {
        CookieFactory { secure }
    }

    pub fn of(state: &AppState) -> Self {
        CookieFactory::new(state.https)
    }

    /// `name=value` for `path`, living `max_age` seconds. `None` when a part cannot be a
    /// header (a path taken from the request with control characters): no cookie is better
    /// than a broken header, and the form then simply fails its CSRF check.
    pub fn build(
        &self,
        name: &str,
        value: &str,
        path: &str,
        max_age: u64,
        same_site: SameSite,
    ) -> Option<HeaderValue> {
        let is_token = |s: &str| !s.contains([';', ',', ' ', '=']);
        if !is_token(name) || !is_token(value) || path.contains([';', ',']) {
            return None;
        }
        let secure = if self.secure { "; Secure" } else { "" };
        let same_site = match same_site {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
        };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path={path}{secure}; HttpOnly; SameSite={same_site}; Max-Age={max_age}"
        ))
        .ok()
    }

    /// A header that deletes `name` at `path` (same attributes, `Max-Age=0`).
    pub fn clear(&self, name: &str, path: &str, same_site: SameSite) -> Option<HeaderValue> {
        self.build(name, "", path, 0, same_site)
    }
}

/// The value of cookie `name` in the request, if any.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A CSRF token issued with a page: put [`Csrf::field`] in its form and [`Csrf::attach`] the
/// cookie to the response.
pub struct Csrf {
    token: String,
    cookie: Option<HeaderValue>,
}

impl Csrf {
    /// A fresh token whose cookie is scoped to `path` (the form's own URL, so two pages open in
    /// two tabs do not overwrite each other's token).
    pub fn issue(cookies: &CookieFactory, path: &str) -> Csrf {
        let token = twofold_crypto::random_token(32);
        let cookie = cookies.build(CSRF_COOKIE, &token, path, CSRF_MAX_AGE, SameSite::Strict);
        Csrf { token, cookie }
    }

    /// The token the browser already holds for `path` (so forms open in other tabs keep
    /// working), or a fresh one.
    pub fn reuse_or_issue(cookies: &CookieFactory, headers: &HeaderMap, path: &str) -> Csrf {
        match read_cookie(headers, CSRF_COOKIE).filter(|t| t.len() == 43) {
            Some(token) => Csrf {
                token: token.to_string(),
                cookie: cookies.build(CSRF_COOKIE, token, path, CSRF_MAX_AGE, SameSite::Strict),
            },
            None => Csrf::issue(cookies, path),
        }
    }

    /// The hidden input carrying the token (the token is URL-safe base64: nothing to escape).
    pub fn field(&self) -> String {
        format!(
            "<input type=\"hidden\" name=\"{CSRF_FIELD}\" value=\"{}\">",
            super::escape(&self.token)
        )
    }

    pub fn attach(&self, resp: &mut Response) {
        if let Some(c) = &self.cookie {
            resp.headers_mut().append(header::SET_COOKIE, c.clone());
        }
    }

    /// True when the POST carries the cookie and a field equal to it, and does not come from
    /// another site.
    pub fn verify(headers: &HeaderMap, submitted: &str) -> bool {
        let cross_site = headers
            .get("sec-fetch-site")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"cross-site"));
        let expected = read_cookie(headers, CSRF_COOKIE).unwrap_or("");
        !cross_site
            && !expected.is_empty()
            && twofold_crypto::ct_eq(expected.as_bytes(), submitted.as_bytes())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cookies_are_httponly_samesite_and_secure_only_over_https() {
        let plain = CookieFactory::new(false)
            .build("a", "b", "/x", 60, SameSite::Strict)
            .unwrap();
        assert_eq!(plain, "a=b; Path=/x; HttpOnly; SameSite=Strict; Max-Age=60");
        let tls = CookieFactory::new(true)
            .build("a", "b", "/x", 60, SameSite::Lax)
            .unwrap();
        assert_eq!(
            tls,
            "a=b; Path=/x; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        let gone = CookieFactory::new(true)
            .clear("a", "/x", SameSite::Lax)
            .unwrap();
        assert!(
            gone.to_str().unwrap().starts_with("a=; ")
                && gone.to_str().unwrap().ends_with("Max-Age=0")
        );
    }

    #[test]
    fn parts_that_would_inject_attributes_make_no_cookie() {
        let f = CookieFactory::new(false);
        assert!(f
            .build("a", "b; Domain=evil", "/", 1, SameSite::Strict)
            .is_none());
        assert!(f
            .build("a", "b", "/x; Domain=evil", 1, SameSite::Strict)
            .is_none());
        assert!(f.build("a", "b", "/x\n", 1, SameSite::Strict).is_none());
    }

    #[test]
    fn csrf_needs_the_cookie_an_equal_field_and_no_cross_site_post() {
        let csrf = Csrf::issue(&CookieFactory::new(false), "/p");
        let t = csrf.token.clone();
        assert!(csrf.field().contains(&format!("value=\"{t}\"")));
        let cookie = format!("other=1; {CSRF_COOKIE}={t}");
        assert!(Csrf::verify(&headers(&[("cookie", &cookie)]), &t));
        assert!(!Csrf::verify(&headers(&[]), &t), "no cookie");
        assert!(!Csrf::verify(&headers(&[("cookie", &cookie)]), "forged"));
        assert!(
            !Csrf::verify(&headers(&[("cookie", "tf_csrf=")]), ""),
            "empty"
        );
        assert!(!Csrf::verify(
            &headers(&[("cookie", &cookie), ("sec-fetch-site", "cross-site")]),
            &t
        ));
        assert!(Csrf::verify(
            &headers(&[("cookie", &cookie), ("sec-fetch-site", "same-origin")]),
            &t
        ));
    }
}
