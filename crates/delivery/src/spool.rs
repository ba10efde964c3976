//! Writing development messages to files, shared by [`crate::email::DevMailbox`] and
//! [`crate::sms::DevSms`].
//!
//! Files are written atomically (a hidden temporary file in the same directory, fsynced, then
//! renamed), so a developer tailing the folder or a test polling it never sees half a message.
//! They are created with mode 0600 because they hold one-time codes in clear, and named
//! `<UTC time>-<message id>.<ext>` so `ls` lists them in the order they were sent.

use crate::SendError;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How a development transport names its files, its errors and its log lines.
pub(crate) struct DevOutput {
    /// The files' extension.
    pub ext: &'static str,
    /// Who failed to write, in errors: `dev mailbox`.
    pub name: &'static str,
    /// The log line for each message written.
    pub written: &'static str,
}

/// Writes one development message to `dir` with [`write_atomic`] and logs where it went. A
/// failed write is transient: the folder may be fixed, and the message is then written.
pub(crate) async fn spool(
    dir: &Path,
    out: &DevOutput,
    message_id: &str,
    bytes: Vec<u8>,
) -> Result<(), SendError> {
    let path = write_atomic(dir.to_path_buf(), message_id, out.ext, bytes)
        .await
        .map_err(|e| {
            SendError::Transient(format!(
                "{} cannot write to {}: {e}",
                out.name,
                dir.display()
            ))
        })?;
    tracing::info!(
        message_id = %message_id,
        path = %path.display(),
        "{}",
        out.written
    );
    Ok(())
}

/// Writes `bytes` to `<dir>/<time>-<message_id>.<ext>` and returns the path.
pub(crate) async fn write_atomic(
    dir: PathBuf,
    message_id: &str,
    ext: &'static str,
    bytes: Vec<u8>,
) -> std::io::Result<PathBuf> {
    let name = format!(
        "{}-{}.{ext}",
        file_timestamp(SystemTime::now()),
        file_safe(message_id)
    );
    // Plain blocking file I/O on the blocking pool: std gives us `mode` and `create_new`.
    tokio::task::spawn_blocking(move || write_atomic_blocking(&dir, &name, &bytes))
        .await
        .map_err(std::io::Error::other)?
}

fn write_atomic_blocking(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    let final_path = dir.join(name);
    let tmp_path = dir.join(format!(".{name}.{:08x}.tmp", rand::random::<u32>()));
    let result = (|| {
        let mut file = open_private(&tmp_path)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp_path, &final_path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp_path);
    }
    result.map(|()| final_path)
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn open_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Keeps letters, digits and `.-_@`; anything else (a `/` above all) becomes `_`.
pub(crate) fn file_safe(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@') {
                c
            } else {
                '_'
            }
        })
        .collect();
    // A leading dot would hide the file (and `..` must never be a name).
    cleaned.trim_start_matches('.').to_string()
}

/// `20250102T030405.123456Z`: fixed width, so names sort by time.
pub(crate) fn file_timestamp(t: SystemTime) -> String {
    let Utc {
        date: (y, m, d),
        time: (hh, mm, ss),
        micros,
    } = utc(t);
    format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}.{micros:06}Z")
}

/// `2025-01-02 03:04:05 UTC`, for the headers of development files.
pub(crate) fn human_timestamp(t: SystemTime) -> String {
    let Utc {
        date: (y, m, d),
        time: (hh, mm, ss),
        ..
    } = utc(t);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02} UTC")
}

/// A point in time in UTC.
struct Utc {
    /// Year, month (1-12), day (1-31).
    date: (i64, u32, u32),
    /// Hour, minute, second.
    time: (i64, i64, i64),
    /// Microseconds into the second.
    micros: u32,
}

/// `t` in UTC; a time before the epoch counts as the epoch.
fn utc(t: SystemTime) -> Utc {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let rem = secs.rem_euclid(86_400);
    Utc {
        date: civil_from_days(secs.div_euclid(86_400)),
        time: (rem / 3600, rem % 3600 / 60, rem % 60),
        micros: d.subsec_micros(),
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_are_utc_and_fixed_width() {
        let t = UNIX_EPOCH + Duration::from_micros(1_735_787_045_123_456);
        assert_eq!(file_timestamp(t), "20250102T030405.123456Z");
        assert_eq!(human_timestamp(t), "2025-01-02 03:04:05 UTC");
        // A leap day, and the epoch itself.
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(human_timestamp(leap), "2000-02-29 00:00:00 UTC");
        assert_eq!(file_timestamp(UNIX_EPOCH), "19700101T000000.000000Z");
    }

    #[test]
    fn file_names_cannot_escape_the_directory() {
        assert_eq!(file_safe("../../etc/passwd"), "_.._etc_passwd");
        assert_eq!(file_safe("..hidden"), "hidden");
        assert_eq!(file_safe("abc@twofold"), "abc@twofold");
    }

    #[tokio::test]
    async fn writes_atomically_with_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("outbox");
        let path = write_atomic(sub.clone(), "m1@twofold", "txt", b"hello".to_vec())
            .await
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"hello");
        assert!(path
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .ends_with("-m1@twofold.txt"));
        let entries: Vec<_> = std::fs::read_dir(&sub).unwrap().collect();
        assert_eq!(entries.len(), 1, "no temporary file is left behind");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
