//! `cairn backup FILE`: a consistent copy of a host's SQLite database,
//! made while the host serves, through SQLite's online backup API.
//!
//! The copy is taken in one step, inside one read transaction of the
//! source: in WAL mode the host's writer goes on meanwhile, and the copy
//! is the database as of one commit. It is written beside `FILE`, synced,
//! then renamed over it, so `FILE` is the old copy or the whole new one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

/// How long the backup waits for a lock the host holds (a checkpoint).
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a backup copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupReport {
    pub pages: u64,
    pub bytes: u64,
}

/// Copy the database at `source` to `destination`.
pub fn backup(source: &Path, destination: &Path) -> Result<BackupReport, String> {
    if !source.exists() {
        return Err(format!(
            "there is no database at {}; give the host's --data-dir (the database is cairn.db in it)",
            source.display()
        ));
    }
    let partial = partial_path(destination);
    let _ = std::fs::remove_file(&partial);
    let copied = copy(source, &partial);
    let report = match copied {
        Ok(report) => report,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    let file = std::fs::File::open(&partial).map_err(|e| e.to_string())?;
    file.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&partial, destination)
        .map_err(|e| format!("cannot move the copy to {}: {e}", destination.display()))?;
    if let Some(dir) = destination.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = std::fs::File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(report)
}

fn partial_path(destination: &Path) -> PathBuf {
    let mut name = destination.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

fn open(path: &Path, flags: OpenFlags) -> Result<Connection, String> {
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    Ok(conn)
}

fn copy(source: &Path, destination: &Path) -> Result<BackupReport, String> {
    let from = open(source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let mut to = open(
        destination,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE,
    )?;
    let pages = {
        let backup =
            Backup::new(&from, &mut to).map_err(|e| format!("cannot start the backup: {e}"))?;
        // -1: every page in one step, in one read transaction of the
        // source, so the copy is of one moment. (rusqlite's
        // `run_to_completion` takes only a positive number of pages.)
        loop {
            match backup.step(-1) {
                Ok(StepResult::Done) => break,
                // A lock the host holds: waited out, step after step.
                Ok(StepResult::Busy | StepResult::Locked) => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("the backup failed: {e}")),
            }
        }
        backup.progress().pagecount.max(0) as u64
    };
    to.close()
        .map_err(|(_, e)| format!("cannot close the copy: {e}"))?;
    let bytes = std::fs::metadata(destination).map_or(0, |m| m.len());
    Ok(BackupReport { pages, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_database_says_where_it_looked() {
        let dir = tempfile::tempdir().unwrap();
        let error = backup(&dir.path().join("cairn.db"), &dir.path().join("copy.db")).unwrap_err();
        assert!(error.contains("--data-dir"), "{error}");
        assert!(!dir.path().join("copy.db").exists());
    }
}
