//! `cairn backup FILE`: a consistent copy of a host's SQLite database,
//! made while the host serves, through SQLite's online backup API.
//!
//! The copy is taken in one step, inside one read transaction of the
//! source: in WAL mode the host's writer goes on meanwhile, and the copy
//! is the database as of one commit. It is written beside `FILE`, synced,
//! then renamed over it, so `FILE` is the old copy or the whole new one.

use std::ffi::{CStr, CString, c_int};
use std::path::{Path, PathBuf};
use std::ptr;
use std::time::Duration;

use libsqlite3_sys as ffi;

/// How long the backup waits for a lock the host holds (a checkpoint).
const BUSY_TIMEOUT_MS: c_int = 10_000;

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

/// An open database handle, closed when dropped.
struct Handle(*mut ffi::sqlite3);

impl Handle {
    fn open(path: &Path, flags: c_int) -> Result<Handle, String> {
        let name = CString::new(path.to_string_lossy().as_bytes())
            .map_err(|_| format!("{} has a NUL byte in its name", path.display()))?;
        let mut db = ptr::null_mut();
        // SAFETY: `name` is a valid C string and `db` an out-pointer; the
        // handle is closed by `Drop` even when opening failed.
        let code = unsafe { ffi::sqlite3_open_v2(name.as_ptr(), &mut db, flags, ptr::null()) };
        let handle = Handle(db);
        if code != ffi::SQLITE_OK {
            return Err(format!(
                "cannot open {}: {}",
                path.display(),
                handle.error()
            ));
        }
        // SAFETY: the handle is open.
        unsafe { ffi::sqlite3_busy_timeout(db, BUSY_TIMEOUT_MS) };
        Ok(handle)
    }

    fn error(&self) -> String {
        if self.0.is_null() {
            return "out of memory".into();
        }
        // SAFETY: the handle is valid; the message is copied at once.
        unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.0)) }
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: the handle came from `sqlite3_open_v2` and is closed once
        // (its backup object is finished before); closing NULL is a no-op.
        unsafe { ffi::sqlite3_close(self.0) };
    }
}

fn copy(source: &Path, destination: &Path) -> Result<BackupReport, String> {
    let from = Handle::open(source, ffi::SQLITE_OPEN_READONLY)?;
    let to = Handle::open(
        destination,
        ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE,
    )?;
    let main = c"main";
    // SAFETY: both handles are open; the backup object is finished below
    // on every path.
    let backup = unsafe { ffi::sqlite3_backup_init(to.0, main.as_ptr(), from.0, main.as_ptr()) };
    if backup.is_null() {
        return Err(format!("cannot start the backup: {}", to.error()));
    }
    let outcome = loop {
        // -1: every page in one step, in one read transaction of the
        // source, so the copy is of one moment.
        // SAFETY: `backup` is live until `sqlite3_backup_finish`.
        match unsafe { ffi::sqlite3_backup_step(backup, -1) } {
            ffi::SQLITE_DONE => break Ok(()),
            ffi::SQLITE_BUSY | ffi::SQLITE_LOCKED => std::thread::sleep(Duration::from_millis(50)),
            ffi::SQLITE_OK => {}
            code => break Err(code),
        }
    };
    // SAFETY: as above; read before finishing frees the object.
    let pages = unsafe { ffi::sqlite3_backup_pagecount(backup) }.max(0) as u64;
    // SAFETY: finished exactly once.
    let finished = unsafe { ffi::sqlite3_backup_finish(backup) };
    match outcome {
        Err(code) => Err(format!(
            "the backup failed (SQLite code {code}): {}",
            to.error()
        )),
        Ok(()) if finished != ffi::SQLITE_OK => Err(format!("the backup failed: {}", to.error())),
        Ok(()) => {
            let bytes = std::fs::metadata(destination).map_or(0, |m| m.len());
            Ok(BackupReport { pages, bytes })
        }
    }
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
