//! Compiled components kept on disk across restarts, by version and engine
//! build, so a restarted host does not compile its modules again.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::{Runtime, WorkflowImports};
use crate::domain::ModuleDigest;

impl<H: WorkflowImports> Runtime<H> {
    fn cache_path(&self, version: &ModuleDigest) -> Option<PathBuf> {
        let digest = version.hex();
        self.inner
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.inner.engine_hash)))
    }

    pub(super) fn store_compiled(&self, version: &ModuleDigest, component: &Component) {
        let Some(path) = self.cache_path(version) else {
            return;
        };
        if path.exists() {
            return;
        }
        let written = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|bytes| write_atomically(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(error) = written {
            // Only a cost: the next start compiles the module again.
            tracing::warn!(%error, path = %path.display(), "cannot cache a compiled module");
        }
    }

    /// Forget module `version`, deleted from the store: its ready form in
    /// memory and its compiled file on disk.
    pub fn forget(&self, version: &ModuleDigest) {
        self.inner
            .modules
            .lock()
            .expect("module cache lock")
            .remove(version);
        if let Some(path) = self.cache_path(version)
            && let Err(error) = std::fs::remove_file(&path)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(%error, path = %path.display(), "cannot delete a compiled module");
        }
    }

    pub(super) fn load_compiled(&self, version: &ModuleDigest) -> Option<Component> {
        let path = self.cache_path(version)?;
        if !path.exists() {
            return None;
        }
        // SAFETY: the file was written by `store_compiled` of an engine with
        // the same compatibility hash (it is in the file name), in a
        // directory owned by this host; wasmtime checks its header as well.
        #[expect(unsafe_code, reason = "loading our own precompiled artifact")]
        let loaded = unsafe { Component::deserialize_file(&self.inner.engine, &path) };
        match loaded {
            Ok(component) => {
                tracing::info!(%version, "loaded a compiled module from the cache");
                Some(component)
            }
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), "ignoring an unusable compiled module");
                None
            }
        }
    }
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file of
/// its own (two compiles of one version, in one process or two, never
/// share one), synced before the rename, and the rename synced in its
/// directory, so a crash leaves the old state or the new, never a torn file.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::write_atomically;

    #[test]
    fn concurrent_writes_of_one_file_each_use_their_own_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("module.cwasm");
        let writers: Vec<_> = (0..8u8)
            .map(|n| {
                let path = path.clone();
                std::thread::spawn(move || write_atomically(&path, &vec![n; 1 << 20]))
            })
            .collect();
        for writer in writers {
            writer.join().unwrap().unwrap();
        }
        // Whole: one writer's bytes, not a mix, and no temporary file left.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes.iter().all(|b| *b == bytes[0]));
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
