//! What the CRI service remembers about each container beyond the runtime's
//! own state: its CRI config (names, labels, annotations, image), its sandbox,
//! log path and times. One JSON file per container, written atomically, and
//! held in memory for reading (see [`RecordCache`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_cri::v1::ContainerConfig;
use serde::{Deserialize, Serialize};

use super::error::{io, CriError};
use crate::record_cache::RecordCache;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    /// The image's id (`sha256:...`), CRI's `image_ref`.
    pub image_ref: String,
    /// The image's `name:tag`.
    pub image_name: String,
    pub log_path: Option<PathBuf>,
    /// Nanoseconds since the epoch.
    pub created_at: i64,
    pub started_at: Option<i64>,
}

impl ContainerRecord {
    pub fn name(&self) -> &str {
        self.config.metadata.as_ref().map_or("", |m| m.name.as_str())
    }

    /// CRI's uniqueness key inside a sandbox: name and attempt.
    pub fn name_key(sandbox_id: &str, config: &ContainerConfig) -> String {
        let (name, attempt) = config.metadata.as_ref().map_or(("", 0), |m| (m.name.as_str(), m.attempt));
        format!("container/{sandbox_id}/{name}/{attempt}")
    }
}

#[derive(Clone)]
pub struct ContainerRecords {
    dir: PathBuf,
    cache: Arc<RecordCache<ContainerRecord>>,
}

impl ContainerRecords {
    pub fn open(dir: &Path) -> Result<Self, CriError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let records = read_all(dir)?.into_iter().map(|r| (r.id.clone(), r));
        Ok(Self { dir: dir.to_path_buf(), cache: Arc::new(RecordCache::new(records)) })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn get(&self, id: &str) -> Result<ContainerRecord, CriError> {
        self.cache.get(id).ok_or_else(|| CriError::NotFound(format!("no container {id}")))
    }

    pub fn save(&self, record: &ContainerRecord) -> Result<(), CriError> {
        crate::state::write_json(&self.path(&record.id), record).map_err(io(format!("writing container {}", record.id)))?;
        self.cache.insert(record.id.clone(), record.clone());
        Ok(())
    }

    pub fn remove(&self, id: &str) -> Result<(), CriError> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(format!("removing container {id}"))(e)),
            _ => {}
        }
        self.cache.remove(id);
        Ok(())
    }

    /// Every container, oldest first.
    pub fn list(&self) -> Vec<ContainerRecord> {
        self.matching(|_| true)
    }

    /// The containers for which `keep` holds, oldest first.
    pub fn matching(&self, keep: impl Fn(&ContainerRecord) -> bool) -> Vec<ContainerRecord> {
        let mut records = self.cache.filtered(keep);
        records.sort_by_key(|r| r.created_at);
        records
    }
}

/// The records on disk, read once when the store opens.
fn read_all(dir: &Path) -> Result<Vec<ContainerRecord>, CriError> {
    let entries = std::fs::read_dir(dir).map_err(io("listing containers"))?;
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "json") {
            if let Some(record) = crate::state::read_json::<ContainerRecord>(&path).map_err(io("reading a container"))? {
                records.push(record);
            }
        }
    }
    Ok(records)
}
