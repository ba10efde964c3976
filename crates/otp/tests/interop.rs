#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Interoperability with implementations nobody here wrote: `oathtool` (OATH Toolkit), Python's
//! `pyotp`, and `zbarimg` (ZBar) reading our QR codes.
//!
//! These tests fail, rather than skip, when a tool is missing: a skipped interop test looks
//! exactly like a passing one. `scripts/test.sh` installs the tools; by hand:
//! `apt-get install oathtool zbar-tools python3-pip && pip install pyotp`.

use std::path::PathBuf;
use std::process::{Command, Output};

use twofold_otp::{
    base32, hotp, qr, totp_at_time, verify_steps, Algorithm, KeyUri, OtpKind, OtpParams,
};

const INSTALL_HINT: &str =
    "run scripts/test.sh, or install the tools: apt-get install oathtool zbar-tools && pip install pyotp";

const ALGORITHMS: [Algorithm; 3] = [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512];
const DIGITS: [u8; 2] = [6, 8];
const PERIODS: [u32; 2] = [30, 60];
/// Includes the RFC 6238 times, one just past 2^31 (2038), one past 2^32 and one in year 9999.
const TIMES: [u64; 7] = [
    59,
    1_111_111_109,
    1_234_567_890,
    2_147_483_648,
    4_294_967_296 + 17,
    20_000_000_000,
    253_402_300_799,
];

fn run(program: &str, args: &[&str]) -> Output {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}); {INSTALL_HINT}"));
    assert!(
        output.status.success(),
        "`{program} {}` failed: {}\n{INSTALL_HINT}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .trim()
        .to_owned()
}

/// The RFC 6238 seed for each hash: 20, 32 or 64 bytes of the ASCII digits.
fn seed(algorithm: Algorithm) -> Vec<u8> {
    b"1234567890"
        .iter()
        .cycle()
        .take(twofold_otp::recommended_secret_len(algorithm))
        .copied()
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn totp_matches_oathtool() {
    let mut checked = 0;
    for algorithm in ALGORITHMS {
        let secret = seed(algorithm);
        for digits in DIGITS {
            for period in PERIODS {
                let params = OtpParams::new(algorithm, digits, period).unwrap();
                for time in TIMES {
                    let out = run(
                        "oathtool",
                        &[
                            &format!("--totp={}", algorithm.as_str()),
                            "--digits",
                            &digits.to_string(),
                            "--time-step-size",
                            &format!("{period}s"),
                            "--now",
                            &format!("@{time}"),
                            &hex(&secret),
                        ],
                    );
                    let theirs = stdout(&out);
                    assert_eq!(
                        totp_at_time(&secret, time, &params),
                        theirs,
                        "{algorithm} digits {digits} period {period} at {time}"
                    );
                    let step = params.step_at(time);
                    assert_eq!(
                        verify_steps(&secret, &theirs, &params, &[step, step.saturating_sub(1)]),
                        Some(step)
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 3 * 2 * 2 * TIMES.len());
}

#[test]
fn hotp_matches_oathtool() {
    let secret = seed(Algorithm::Sha1);
    for digits in [6u8, 7, 8] {
        for counter in [0u64, 1, 9, 36, 44, 1 << 33, u64::MAX] {
            let out = run(
                "oathtool",
                &[
                    "--hotp",
                    "--digits",
                    &digits.to_string(),
                    "--counter",
                    &counter.to_string(),
                    &hex(&secret),
                ],
            );
            assert_eq!(
                hotp(&secret, counter, Algorithm::Sha1, digits),
                stdout(&out),
                "digits {digits} counter {counter}"
            );
        }
    }
}

/// oathtool's HOTP mode is SHA-1 only, but TOTP with a one-second step at time `c` is HOTP
/// with counter `c`, which covers SHA-256 and SHA-512.
#[test]
fn hotp_sha2_matches_oathtool_via_one_second_steps() {
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let secret = seed(algorithm);
        for counter in [0u64, 1, 44, 1 << 33] {
            let out = run(
                "oathtool",
                &[
                    &format!("--totp={}", algorithm.as_str()),
                    "--digits",
                    "7",
                    "--time-step-size",
                    "1s",
                    "--now",
                    &format!("@{counter}"),
                    &hex(&secret),
                ],
            );
            assert_eq!(
                hotp(&secret, counter, algorithm, 7),
                stdout(&out),
                "{algorithm} counter {counter}"
            );
        }
    }
}

/// One `python3` run for the whole matrix; each line is `algorithm digits period time code`.
#[test]
fn totp_matches_pyotp() {
    let mut cases = Vec::new();
    for algorithm in ALGORITHMS {
        for digits in DIGITS {
            for period in PERIODS {
                for time in TIMES {
                    cases.push((algorithm, digits, period, time));
                }
            }
        }
    }
    let script = format!(
        "import hashlib, pyotp\n\
         cases = [{}]\n\
         for b32, alg, digits, period, t in cases:\n    \
             print(pyotp.TOTP(b32, digits=digits, digest=getattr(hashlib, alg), interval=period).at(t))\n\
         print(pyotp.HOTP('{}', digits=7).at(2**40))\n",
        cases
            .iter()
            .map(|(a, d, p, t)| format!(
                "('{}', '{}', {d}, {p}, {t})",
                base32::encode(&seed(*a)),
                a.as_str().to_lowercase()
            ))
            .collect::<Vec<_>>()
            .join(", "),
        base32::encode(&seed(Algorithm::Sha1)),
    );
    let out = run("python3", &["-c", &script]);
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), cases.len() + 1);
    for ((algorithm, digits, period, time), theirs) in cases.iter().zip(&lines) {
        let params = OtpParams::new(*algorithm, *digits, *period).unwrap();
        let secret = seed(*algorithm);
        assert_eq!(
            &totp_at_time(&secret, *time, &params),
            theirs,
            "{algorithm} digits {digits} period {period} at {time}"
        );
        let step = params.step_at(*time);
        assert_eq!(verify_steps(&secret, theirs, &params, &[step]), Some(step));
    }
    assert_eq!(
        hotp(&seed(Algorithm::Sha1), 1 << 40, Algorithm::Sha1, 7),
        lines[cases.len()]
    );
}

/// pyotp also parses Key URIs; our output must mean the same thing to it.
#[test]
fn pyotp_reads_our_key_uri() {
    let uri = KeyUri {
        kind: OtpKind::Totp { period: 60 },
        issuer: Some("ACME Co & Söhne".into()),
        account: "jürgen+2fa@example.com".into(),
        secret: seed(Algorithm::Sha256),
        algorithm: Algorithm::Sha256,
        digits: 8,
    };
    let s = uri.to_uri().unwrap();
    let script = "import sys, pyotp\n\
                  t = pyotp.parse_uri(sys.argv[1])\n\
                  print(t.issuer)\nprint(t.name)\nprint(t.digits)\nprint(t.interval)\n\
                  print(t.at(20000000000))\n";
    let out = run("python3", &["-c", script, &s]);
    let params = uri.params();
    let expected = format!(
        "ACME Co & Söhne\njürgen+2fa@example.com\n8\n60\n{}",
        totp_at_time(&uri.secret, 20_000_000_000, &params)
    );
    assert_eq!(stdout(&out), expected);
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, bytes: &[u8]) -> TempFile {
        let path = std::env::temp_dir().join(format!("twofold-otp-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn zbar_reads(png: &[u8], name: &str) -> String {
    let file = TempFile::new(name, png);
    let out = run("zbarimg", &["--raw", "-q", file.0.to_str().unwrap()]);
    String::from_utf8(out.stdout)
        .unwrap()
        .trim_end_matches('\n')
        .to_owned()
}

#[test]
fn zbarimg_reads_our_png() {
    let uris = [
        KeyUri::parse(
            "otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
        )
        .unwrap(),
        KeyUri {
            kind: OtpKind::Totp { period: 30 },
            issuer: Some("Bücher & Co 中文 😀".into()),
            account: "jürgen@example.com".into(),
            secret: seed(Algorithm::Sha512),
            algorithm: Algorithm::Sha512,
            digits: 8,
        },
        KeyUri {
            kind: OtpKind::Hotp { counter: 7 },
            issuer: None,
            account: "bob".into(),
            secret: seed(Algorithm::Sha1),
            algorithm: Algorithm::Sha1,
            digits: 6,
        },
    ];
    for (i, uri) in uris.iter().enumerate() {
        let s = uri.to_uri().unwrap();
        for module_px in [2, 4] {
            let png = qr::png(&s, module_px).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
            let read = zbar_reads(&png, &format!("{i}-{module_px}.png"));
            assert_eq!(read, s, "module size {module_px}");
            assert_eq!(KeyUri::parse(&read).unwrap(), *uri);
        }
    }
}

#[test]
fn svg_is_a_standalone_document() {
    let s = KeyUri::parse("otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP")
        .unwrap()
        .to_uri()
        .unwrap();
    let svg = qr::svg(&s).unwrap();
    assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
    assert!(svg.contains("<svg"));
    assert!(svg.contains("viewBox=\"0 0 "));
    assert!(svg.contains("xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.trim_end().ends_with("</svg>"));
    // The URI must not leak into the markup (it would be the secret in clear text).
    assert!(!svg.contains("JBSWY3DPEHPK3PXP"));
    // Width is at least 256 px.
    let width: u32 = svg
        .split("width=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(width >= 256, "{width}");
}

#[test]
fn png_geometry_and_errors() {
    let png = qr::png("otpauth://totp/a?secret=MY", 3).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let reader = decoder.read_info().unwrap();
    let info = reader.info();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    assert_eq!(info.bit_depth, png::BitDepth::Eight);
    assert_eq!(info.width, info.height);
    // Version 2 (25 modules) plus a 4-module quiet zone each side, 3 px per module.
    assert_eq!(info.width % 3, 0);
    assert!((info.width / 3 - 8) >= 21);
    assert_eq!(qr::png("x", 0), Err(qr::QrError::InvalidModuleSize(0)));
    assert_eq!(
        qr::png("x", qr::MAX_MODULE_PX + 1),
        Err(qr::QrError::InvalidModuleSize(qr::MAX_MODULE_PX + 1))
    );
    let too_long = "x".repeat(8000);
    assert_eq!(qr::png(&too_long, 1), Err(qr::QrError::DataTooLong));
    assert_eq!(qr::svg(&too_long), Err(qr::QrError::DataTooLong));
}
