//! Web hardening for every hosted page, in one place: the page layout, HTML escaping, the
//! security headers, the static stylesheet, the cookie factory and the CSRF check.
//!
//! A page module builds its body with [`escape`] and [`Csrf`], wraps it with [`page`], and
//! puts its routes through [`hardened`], so that no page can forget a header (OWASP Secure
//! Headers; CSP Level 3 without inline script or style; WCAG 2.2 AA basics: `lang`, a
//! viewport for phones, colour contrast checked in `assets`, a visible focus outline).

mod assets;
mod cookies;
pub mod forms;
mod headers;
pub mod keys;

pub use assets::{
    stylesheet_href, stylesheet_version, PRINT_SCRIPT, PRINT_STYLESHEET, STYLESHEET,
    STYLESHEET_PATH, WEBAUTHN_SCRIPT,
};
pub use cookies::{
    read_cookie, CookieFactory, Csrf, SameSite, CSRF_COOKIE, CSRF_FIELD, CSRF_MAX_AGE,
};
pub use headers::{
    csp_with_form_action, csp_with_own_scripts, set_security_headers, CSP, PERMISSIONS_POLICY,
};

use crate::state::AppState;
use axum::extract::Query;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// The static assets pages link (the stylesheet; the print stylesheet and script).
pub fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for asset in assets::ASSETS {
        let serve = move |q: Query<assets::AssetQuery>| async move { asset.serve(q.0) };
        router = router.route(asset.path, get(serve));
    }
    hardened(router)
}

/// `pages` with the security headers on every response they give, errors included.
pub fn hardened(pages: Router<AppState>) -> Router<AppState> {
    pages.layer(axum::middleware::map_response(headers::harden))
}

/// HTML-escapes text for element content and double- or single-quoted attribute values.
pub use twofold_delivery::templates::escape_html as escape;

/// A whole page around `body` (already escaped HTML) with the security headers. `title` is
/// plain text: it is escaped here, and is both the document title and the `<h1>`.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    page_with_head(status, title, "", body)
}

/// The `<head>` lines of a page with printable content and a Print button (see
/// [`PRINT_STYLESHEET`] and [`PRINT_SCRIPT`]); the page's answer needs
/// [`csp_with_own_scripts`] for the button to appear.
pub fn print_support_head() -> String {
    format!(
        "<link rel=\"stylesheet\" media=\"print\" href=\"{}\">\n\
         <script src=\"{}\" defer></script>\n",
        PRINT_STYLESHEET.href(),
        PRINT_SCRIPT.href()
    )
}

/// [`page`] with more lines in `<head>` (trusted HTML, such as [`print_support_head`]). A
/// body with a security-key form ([`keys::key_form`]) gets the key script and a CSP that runs
/// it.
pub fn page_with_head(status: StatusCode, title: &str, head: &str, body: &str) -> Response {
    let keys = body.contains(keys::KEY_FORM_MARK);
    let head = if keys {
        format!("{head}{}", keys::key_script_head())
    } else {
        head.to_string()
    };
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n\
         <link rel=\"stylesheet\" href=\"{css}\">\n\
         <link rel=\"icon\" href=\"data:,\">\n\
         {head}</head>\n<body>\n<main>\n<h1>{title}</h1>\n{body}\n</main>\n</body>\n</html>\n",
        title = escape(title),
        css = stylesheet_href(),
    );
    let mut resp = (status, html).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    set_security_headers(h);
    if keys {
        keys::allow_own_scripts(&mut resp);
    }
    resp
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A page with a key form runs the key script (and only scripts from here); text that
    /// merely looks like one, escaped, switches nothing on.
    #[test]
    fn only_a_real_key_form_turns_the_key_script_on() {
        let csp = |r: &Response| {
            r.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .to_string()
        };
        let lookalike = escape("<form data-webauthn=\"get\">");
        let plain = page(StatusCode::OK, "t", &format!("<p>{lookalike}</p>"));
        assert_eq!(csp(&plain), CSP);
        let ceremony = twofold_core::service::KeyCeremony {
            id: "wac_x".into(),
            options: "{\"publicKey\":{}}".into(),
        };
        let form = keys::key_form("/a\"b", keys::KeyMode::SignIn, &ceremony, "", "", "Go");
        assert!(form.contains("action=\"/a&quot;b\""), "{form}");
        assert!(
            form.contains("data-options=\"{&quot;publicKey&quot;:{}}\""),
            "{form}"
        );
        let with_key = page(StatusCode::OK, "t", &form);
        let c = csp(&with_key);
        assert!(
            c.contains("script-src 'self'") && !c.contains("unsafe"),
            "{c}"
        );
    }

    #[test]
    fn escape_covers_element_and_attribute_contexts() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[tokio::test]
    async fn a_page_has_lang_viewport_stylesheet_headers_and_no_inline_style() {
        let resp = page(StatusCode::OK, "A <title>", "<p>x</p>");
        let h = resp.headers().clone();
        assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(html.contains("<html lang=\"en\">"));
        assert!(html.contains("name=\"viewport\" content=\"width=device-width, initial-scale=1\""));
        assert!(html.contains("<title>A &lt;title&gt;</title>"));
        assert!(html.contains(&format!("href=\"{}\"", stylesheet_href())));
        for inline in ["<style", "<script", " style=", " on"] {
            assert!(!html.contains(inline), "{inline} in {html}");
        }
    }
}
