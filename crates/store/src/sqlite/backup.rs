//! Online backups of the embedded database (`twofold backup`).
//!
//! # Why the online backup API, inside one read transaction
//!
//! The server keeps writing while a backup runs, so the copy must be one consistent snapshot
//! that never blocks the writer. Two SQLite mechanisms give that in WAL mode:
//!
//! - `VACUUM INTO` reads the whole database in one read transaction and writes a rebuilt,
//!   compacted copy. It is consistent, but it is one opaque statement: no progress can be
//!   shown, and it rebuilds every table and index (CPU the server would rather have).
//! - The online backup API (`sqlite3_backup_*`) copies pages, a chunk per step, so progress is
//!   "pages copied of pages total". On its own, each step takes and drops its own read lock,
//!   and a write by another connection between two steps makes the next step start over: under
//!   steady traffic a large backup might never finish.
//!
//! We use the backup API and open a read transaction on the source connection *before* the
//! first step: `sqlite3_backup_step` then reuses it instead of opening one per step, so every
//! step reads the same WAL snapshot and nothing restarts. In WAL mode a reader never blocks the
//! writer (and the writer never blocks a reader), so the server keeps committing beside it.
//! The only cost is that checkpoints cannot move past the snapshot until the backup ends, so
//! the `-wal` file grows for that long.
//!
//! The copy is written to a temporary file beside the target (created mode 0600: it holds
//! sealed seeds and keyed hashes), switched to a self-contained rollback-journal file (no
//! `-wal` needed to read it), checked with `PRAGMA quick_check`, synced, and only then moved
//! into place: a hard link that fails if the target exists, or a rename over it when replacing
//! is allowed. A failed or interrupted backup never leaves a half-written file under the
//! target's name.
//!
//! The backup holds the database only. The master key (which seals every TOTP seed) and the
//! hashing key (API keys, codes) are not in it and must be backed up separately.

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How a backup is taken.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Replace an existing file at the target.
    pub overwrite: bool,
    /// Pages copied per step; progress is reported after each step.
    pub pages_per_step: i32,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            overwrite: false,
            // 4 MiB per step with the default 4 KiB pages.
            pages_per_step: 1024,
        }
    }
}

/// Where a running backup stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupProgress {
    pub pages_done: u64,
    pub pages_total: u64,
    pub page_size: u64,
}

/// A finished backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    pub pages: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("there is no database at {0}")]
    NoSource(PathBuf),
    #[error("cannot read the database {path}: {reason}")]
    Source { path: PathBuf, reason: String },
    #[error("cannot write the backup {path}: {reason}")]
    Dest { path: PathBuf, reason: String },
}

/// Removes the temporary copy (and a journal SQLite may have left beside it) unless disarmed.
struct Partial {
    path: Option<PathBuf>,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            for suffix in ["", "-journal", "-wal", "-shm"] {
                let mut name = p.clone().into_os_string();
                name.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(name));
            }
        }
    }
}

/// Copies the database at `src` to `dest` as one consistent snapshot, safe while a server
/// writes to it (see the module docs). `progress` is called after every step.
pub fn backup(
    src: &Path,
    dest: &Path,
    opts: &BackupOptions,
    progress: &mut dyn FnMut(BackupProgress),
) -> Result<BackupReport, BackupError> {
    if !src.is_file() {
        return Err(BackupError::NoSource(src.to_path_buf()));
    }
    if dest.exists() && !opts.overwrite {
        return Err(BackupError::Exists(dest.to_path_buf()));
    }
    let dest_err = |reason: String| BackupError::Dest {
        path: dest.to_path_buf(),
        reason,
    };
    let src_err = |e: rusqlite::Error| BackupError::Source {
        path: src.to_path_buf(),
        reason: e.to_string(),
    };
    let name = dest
        .file_name()
        .ok_or_else(|| dest_err("not a file name".into()))?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".partial-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let mut partial = Partial {
        path: Some(tmp.clone()),
    };
    create_new_private(&tmp).map_err(|e| dest_err(e.to_string()))?;

    // Read-write without CREATE: a missing file is an error, never a new empty database.
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(src_err)?;
    source
        .busy_timeout(Duration::from_secs(5))
        .map_err(src_err)?;
    // The snapshot every step reads (see the module docs): BEGIN is deferred, the first read
    // opens the read transaction.
    source.execute_batch("BEGIN").map_err(src_err)?;
    source
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(src_err)?;
    let page_size: i64 = source
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(src_err)?;

    let sql_dest_err = |e: rusqlite::Error| dest_err(e.to_string());
    let mut copy = Connection::open(&tmp).map_err(sql_dest_err)?;
    let pages = {
        let job = Backup::new(&source, &mut copy).map_err(sql_dest_err)?;
        loop {
            let step = job.step(opts.pages_per_step.max(1)).map_err(sql_dest_err)?;
            let p = job.progress();
            let total = u64::try_from(p.pagecount).unwrap_or(0);
            let left = u64::try_from(p.remaining).unwrap_or(0);
            progress(BackupProgress {
                pages_done: total.saturating_sub(left),
                pages_total: total,
                page_size: page_size as u64,
            });
            match step {
                StepResult::Done => break total,
                StepResult::More => {}
                // Another connection holds a lock the step needs for a moment: wait, retry.
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    };
    source.execute_batch("COMMIT").map_err(src_err)?;
    drop(source);
    drop(copy);

    // The pages carry the source's WAL flag: make the copy one self-contained file, check it.
    let copy = Connection::open(&tmp).map_err(sql_dest_err)?;
    copy.query_row("PRAGMA journal_mode = DELETE", [], |r| {
        r.get::<_, String>(0)
    })
    .map_err(sql_dest_err)?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(sql_dest_err)?;
    if check != "ok" {
        return Err(dest_err(format!("the copy failed its check: {check}")));
    }
    drop(copy);
    let file = std::fs::File::open(&tmp).map_err(|e| dest_err(e.to_string()))?;
    file.sync_all().map_err(|e| dest_err(e.to_string()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);

    if opts.overwrite {
        std::fs::rename(&tmp, dest).map_err(|e| dest_err(e.to_string()))?;
    } else {
        // A hard link never replaces an existing file, so a file created meanwhile is kept.
        std::fs::hard_link(&tmp, dest).map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => BackupError::Exists(dest.to_path_buf()),
            _ => dest_err(e.to_string()),
        })?;
        let _ = std::fs::remove_file(&tmp);
    }
    partial.path = None;
    // The new name must survive a crash too.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(BackupReport { pages, bytes })
}

/// Creates an empty file readable by its owner only; an existing one is an error.
pub(super) fn create_new_private(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map(|_| ())
}
