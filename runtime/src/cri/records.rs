//! What the CRI service remembers about each container beyond the runtime's
//! own state: its CRI config (names, labels, annotations, image), its sandbox,
//! log path and times. One JSON file per container, written atomically.

use std::path::{Path, PathBuf};

use k8s_cri::v1::ContainerConfig;
use serde::{Deserialize, Serialize};

use super::error::{io, CriError};

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

#[derive(Debug, Clone)]
pub struct ContainerRecords {
    dir: PathBuf,
}

impl ContainerRecords {
    pub fn open(dir: &Path) -> Result<Self, CriError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        Ok(Self { dir: dir.to_path_buf() })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    pub fn get(&self, id: &str) -> Result<ContainerRecord, CriError> {
        if !crate::config::valid_id(id) {
            return Err(CriError::NotFound(format!("no container {id:?}")));
        }
        crate::state::read_json(&self.path(id))
            .map_err(io(format!("reading container {id}")))?
            .ok_or_else(|| CriError::NotFound(format!("no container {id}")))
    }

    pub fn save(&self, record: &ContainerRecord) -> Result<(), CriError> {
        crate::state::write_json(&self.path(&record.id), record).map_err(io(format!("writing container {}", record.id)))
    }

    pub fn remove(&self, id: &str) -> Result<(), CriError> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(format!("removing container {id}"))(e)),
            _ => Ok(()),
        }
    }

    pub fn list(&self) -> Result<Vec<ContainerRecord>, CriError> {
        let entries = std::fs::read_dir(&self.dir).map_err(io("listing containers"))?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                if let Some(record) = crate::state::read_json::<ContainerRecord>(&path).map_err(io("reading a container"))? {
                    records.push(record);
                }
            }
        }
        records.sort_by_key(|r| r.created_at);
        Ok(records)
    }
}
