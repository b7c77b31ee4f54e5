//! Compiled components kept on disk across restarts, by version and engine
//! build, so a restarted host does not compile its modules again.

use std::path::{Path, PathBuf};

use wasmtime::component::Component;

use super::{Runtime, WorkflowImports};

impl<H: WorkflowImports> Runtime<H> {
    fn cache_path(&self, version: &str) -> Option<PathBuf> {
        let digest = version.strip_prefix("sha256:").unwrap_or(version);
        self.inner
            .cache_dir
            .as_ref()
            .map(|dir| dir.join(format!("{digest}-{}.cwasm", self.inner.engine_hash)))
    }

    pub(super) fn store_compiled(&self, version: &str, component: &Component) {
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

    pub(super) fn load_compiled(&self, version: &str) -> Option<Component> {
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

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
