//! The on-disk cache of compiled components. A file is named by the SHA-256
//! of the component's bytes and a hash of the engine's compatibility
//! settings (wasmtime version, target, config), and starts with the SHA-256
//! of the artefact after it. Owns the file layout; must never hand wasmtime
//! bytes it did not write itself or that fail their checksum, because
//! deserializing is only sound for artefacts this host produced.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::PluginError;

const DIGEST_BYTES: usize = 32;

pub(crate) struct DiskCache {
    dir: PathBuf,
    engine_key: String,
}

impl DiskCache {
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, PluginError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| PluginError::io(format!("create cache dir {}", dir.display()), e))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    pub(crate) fn path_for(&self, component_digest: &str) -> PathBuf {
        self.dir
            .join(format!("{component_digest}-{}.cwasm", self.engine_key))
    }

    /// The cached component, or `None` when absent, damaged or built by an
    /// incompatible engine (the caller then recompiles and overwrites it).
    pub(crate) fn load(&self, engine: &Engine, component_digest: &str) -> Option<Component> {
        let path = self.path_for(component_digest);
        let bytes = std::fs::read(&path).ok()?;
        if bytes.len() < DIGEST_BYTES {
            tracing::warn!(path = %path.display(), "cached plugin artefact is truncated; recompiling");
            return None;
        }
        let (stored, artefact) = bytes.split_at(DIGEST_BYTES);
        if Sha256::digest(artefact).as_slice() != stored {
            tracing::warn!(path = %path.display(), "cached plugin artefact fails its checksum; recompiling");
            return None;
        }
        // SAFETY: the checksum above proves these are the exact bytes this
        // host wrote from `Component::serialize`, and wasmtime rejects an
        // artefact from an incompatible engine with an error.
        match unsafe { Component::deserialize(engine, artefact) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cached plugin artefact unusable; recompiling");
                None
            }
        }
    }

    /// Writes atomically (temp file, fsync, rename) so a crash never leaves a
    /// half-written artefact under the final name.
    pub(crate) fn store(
        &self,
        component_digest: &str,
        component: &Component,
    ) -> Result<(), PluginError> {
        let artefact = component
            .serialize()
            .map_err(|e| PluginError::Host(format!("serialize compiled plugin: {e}")))?;
        let path = self.path_for(component_digest);
        // Unique per writer, so two hosts (or threads) storing the same
        // plugin never interleave writes into one temporary file.
        static WRITES: AtomicU64 = AtomicU64::new(0);
        let tmp = path.with_extension(format!(
            "tmp{}-{}",
            std::process::id(),
            WRITES.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&Sha256::digest(&artefact))?;
            file.write_all(&artefact)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            PluginError::io(format!("write {}", path.display()), e)
        })
    }
}

/// Hex SHA-256 of a component's bytes: the plugin's content address.
pub(crate) fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
