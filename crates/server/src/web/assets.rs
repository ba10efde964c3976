//! The pages' static files, served from the binary: the stylesheet at `/assets/twofold.css`,
//! and for the recovery codes page a print stylesheet and the script of its Print button.
//!
//! They are files rather than inline `<style>` or `<script>` so the CSP can say `style-src
//! 'self'` (and, on the one page with a script, `script-src 'self'`) and allow nothing
//! inline. Pages link each as `<path>?v=<hash of its bytes>`: that URL changes whenever the
//! file does, so it may be cached for a year (`immutable`); a request naming another version
//! (an old page in a cache, a guess) gets the current bytes with `no-cache`, so a stale URL
//! never pins new content for a year.

use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::LazyLock;

/// The stylesheet's bytes, compiled in.
pub const STYLESHEET: &str = include_str!("twofold.css");

/// The path the stylesheet is served at.
pub const STYLESHEET_PATH: &str = "/assets/twofold.css";

/// How long a versioned asset may be cached: a year, the longest lifetime caches honour.
const ONE_YEAR: &str = "public, max-age=31536000, immutable";

/// FNV-1a over a file: computed at compile time, identical on every node built from the same
/// source (a version tag, not a security measure, so a fast non-cryptographic hash).
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

/// A file compiled into the binary that pages link under a URL versioned by its bytes.
pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static str,
    hash: u64,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, bytes: &'static str) -> Asset {
        Asset {
            path,
            content_type,
            bytes,
            hash: fnv1a(bytes.as_bytes()),
        }
    }

    /// The hash of the bytes, as 16 hex digits.
    pub fn version(&self) -> String {
        format!("{:016x}", self.hash)
    }

    /// The URL pages link: path plus version, so caches can keep it for a year.
    pub fn href(&self) -> String {
        format!("{}?v={}", self.path, self.version())
    }

    /// `GET <path>`: long-lived under the current version, revalidated otherwise.
    pub fn serve(&self, q: AssetQuery) -> Response {
        let cache = if q.v == self.version() {
            ONE_YEAR
        } else {
            "no-cache"
        };
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
            ],
            self.bytes,
        )
            .into_response()
    }
}

pub static STYLESHEET_ASSET: Asset =
    Asset::new(STYLESHEET_PATH, "text/css; charset=utf-8", STYLESHEET);

/// Linked with `media="print"`: printing the page prints only its `.printable` part.
pub static PRINT_STYLESHEET: Asset = Asset::new(
    "/assets/print.css",
    "text/css; charset=utf-8",
    include_str!("print.css"),
);

/// Shows and wires a page's Print button (`#print`, `hidden` until then): without script the
/// page works the same, through the browser's own Print command.
pub static PRINT_SCRIPT: Asset = Asset::new(
    "/assets/print.js",
    "text/javascript; charset=utf-8",
    include_str!("print.js"),
);

/// Runs the security-key ceremony of a page's key form (see `web::keys`).
pub static WEBAUTHN_SCRIPT: Asset = Asset::new(
    "/assets/webauthn.js",
    "text/javascript; charset=utf-8",
    include_str!("webauthn.js"),
);

/// Every asset, each served at its path.
pub static ASSETS: [&Asset; 4] = [
    &STYLESHEET_ASSET,
    &PRINT_STYLESHEET,
    &PRINT_SCRIPT,
    &WEBAUTHN_SCRIPT,
];

static VERSION: LazyLock<String> = LazyLock::new(|| STYLESHEET_ASSET.version());

/// The stylesheet's version: the hash of its bytes, as 16 hex digits.
pub fn stylesheet_version() -> &'static str {
    &VERSION
}

/// The URL pages link: path plus version, so caches can keep it for a year.
pub fn stylesheet_href() -> String {
    STYLESHEET_ASSET.href()
}

#[derive(Deserialize)]
pub struct AssetQuery {
    #[serde(default)]
    v: String,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    //! Accessibility of the colours (WCAG 2.2 AA), computed from the stylesheet itself so a
    //! colour change that breaks contrast fails here, not in a user's eyes.
    use super::*;

    /// The boxes text sits on: a colour set without a background of its own is checked
    /// against each of these.
    const SURFACES: [&str; 3] = ["body", "main", ".what"];

    struct Rule {
        selector: String,
        decls: Vec<(String, String)>,
    }

    impl Rule {
        fn get(&self, prop: &str) -> Option<&str> {
            self.decls
                .iter()
                .find(|(k, _)| k == prop)
                .map(|(_, v)| v.as_str())
        }
        fn background(&self) -> Option<Rgb> {
            self.get("background")
                .or(self.get("background-color"))
                .map(|v| {
                    hex_in(v).unwrap_or_else(|| panic!("{}: {v} is not #rrggbb", self.selector))
                })
        }
        fn color(&self) -> Option<Rgb> {
            self.get("color").map(|v| {
                hex_in(v).unwrap_or_else(|| panic!("{}: {v} is not #rrggbb", self.selector))
            })
        }
    }

    type Rgb = [u8; 3];

    /// The flat rules of a stylesheet without at-rules (this one has none; the test says so).
    fn rules(css: &str) -> Vec<Rule> {
        let mut text = String::new();
        let mut rest = css;
        while let Some(start) = rest.find("/*") {
            text.push_str(&rest[..start]);
            let end = rest[start..].find("*/").expect("comment closed") + start + 2;
            rest = &rest[end..];
        }
        text.push_str(rest);
        assert!(
            !text.contains('@'),
            "the contrast check reads flat rules only"
        );
        text.split('}')
            .filter(|chunk| !chunk.trim().is_empty())
            .map(|chunk| {
                let (selector, body) = chunk.split_once('{').expect("a rule has a body");
                let decls = body
                    .split(';')
                    .filter_map(|d| d.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect();
                Rule {
                    selector: selector.trim().to_string(),
                    decls,
                }
            })
            .collect()
    }

    /// The first `#rrggbb` in a declaration value.
    fn hex_in(value: &str) -> Option<Rgb> {
        let at = value.find('#')?;
        let hex = value.get(at + 1..at + 7)?;
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some([byte(0)?, byte(2)?, byte(4)?])
    }

    /// WCAG 2.x relative luminance of an sRGB colour.
    fn luminance(c: Rgb) -> f64 {
        let lin = |v: u8| {
            let s = f64::from(v) / 255.0;
            if s <= 0.040_45 {
                s / 12.92
            } else {
                ((s + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * lin(c[0]) + 0.7152 * lin(c[1]) + 0.0722 * lin(c[2])
    }

    fn contrast(a: Rgb, b: Rgb) -> f64 {
        let (la, lb) = (luminance(a), luminance(b));
        (la.max(lb) + 0.05) / (la.min(lb) + 0.05)
    }

    #[test]
    fn contrast_formula_matches_known_values() {
        assert!((contrast([0, 0, 0], [255, 255, 255]) - 21.0).abs() < 1e-9);
        assert!((contrast([0x77; 3], [255, 255, 255]) - 4.48).abs() < 0.01);
        assert_eq!(contrast([9, 9, 9], [9, 9, 9]), 1.0);
    }

    #[test]
    fn every_text_colour_meets_wcag_aa_on_every_background_it_can_sit_on() {
        let rules = rules(STYLESHEET);
        let surfaces: Vec<(&str, Rgb)> = SURFACES
            .iter()
            .map(|s| {
                let rule = rules
                    .iter()
                    .find(|r| r.selector == *s)
                    .unwrap_or_else(|| panic!("surface {s} missing from the stylesheet"));
                (
                    *s,
                    rule.background().expect("a surface paints a background"),
                )
            })
            .collect();
        let mut checked = 0;
        for rule in &rules {
            match (rule.color(), rule.background()) {
                (Some(fg), Some(bg)) => {
                    let c = contrast(fg, bg);
                    assert!(c >= 4.5, "{}: text contrast {c:.2} < 4.5", rule.selector);
                    checked += 1;
                }
                (None, Some(_)) => panic!(
                    "{} paints a background without setting its text colour",
                    rule.selector
                ),
                (Some(fg), None) => {
                    for (surface, bg) in &surfaces {
                        let c = contrast(fg, *bg);
                        assert!(
                            c >= 4.5,
                            "{} on {surface}: text contrast {c:.2} < 4.5",
                            rule.selector
                        );
                        checked += 1;
                    }
                }
                (None, None) => {}
            }
            // Focus indicators are non-text contrast (WCAG 1.4.11, 2.4.13): 3:1 against the
            // surface around them (they are offset outside the element).
            if let Some(outline) = rule.get("outline").and_then(hex_in) {
                for (surface, bg) in &surfaces {
                    let c = contrast(outline, *bg);
                    assert!(
                        c >= 3.0,
                        "{} outline on {surface}: {c:.2} < 3",
                        rule.selector
                    );
                    checked += 1;
                }
            }
        }
        assert!(
            checked >= 10,
            "only {checked} colour pairs found: parser broken?"
        );
    }

    #[test]
    fn focus_is_visible_on_every_element() {
        let rules = rules(STYLESHEET);
        let focus = rules
            .iter()
            .find(|r| r.selector == ":focus-visible")
            .expect("a :focus-visible rule");
        let outline = focus.get("outline").expect("it draws an outline");
        assert!(
            outline.contains("solid") && outline.starts_with("3px"),
            "{outline}"
        );
        assert!(
            rules
                .iter()
                .all(|r| !matches!(r.get("outline"), Some("none" | "0"))),
            "no rule may remove the focus outline"
        );
    }

    #[test]
    fn every_asset_has_its_own_path_and_the_print_files_do_what_the_page_needs() {
        let paths: std::collections::HashSet<&str> = ASSETS.iter().map(|a| a.path).collect();
        assert_eq!(paths.len(), ASSETS.len());
        assert!(ASSETS.iter().all(|a| a.path.starts_with("/assets/")));
        assert_eq!(
            PRINT_SCRIPT.href(),
            format!("/assets/print.js?v={}", PRINT_SCRIPT.version())
        );
        // The script only reveals and wires the button; the stylesheet hides all but the codes.
        let js = PRINT_SCRIPT.bytes;
        assert!(js.contains("getElementById('print')") && js.contains("window.print()"));
        assert!(!js.contains("innerHTML") && !js.contains("eval("));
        let css = rules(PRINT_STYLESHEET.bytes);
        assert!(css
            .iter()
            .any(|r| r.selector == "main > :not(.printable)" && r.get("display") == Some("none")));
    }

    #[test]
    fn the_version_is_the_hash_of_the_bytes() {
        assert_eq!(stylesheet_version().len(), 16);
        assert_eq!(
            stylesheet_version(),
            format!("{:016x}", fnv1a(STYLESHEET.as_bytes()))
        );
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(
            stylesheet_href(),
            format!("/assets/twofold.css?v={}", stylesheet_version())
        );
    }
}
