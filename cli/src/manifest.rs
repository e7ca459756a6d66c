//! Reading `-f FILE|DIR|-`: every object of every YAML or JSON document, with
//! `kind: List` unpacked, in the order written (the decoding is `api`'s).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// One object from a manifest, and where it came from (for error messages).
pub struct Document {
    pub source: String,
    pub object: Value,
}

pub fn read_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Document>> {
    let mut documents = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
            documents.extend(parse("<stdin>", &text)?);
        } else if path.is_dir() {
            for file in manifest_files(path)? {
                documents.extend(read_file(&file)?);
            }
        } else {
            documents.extend(read_file(path)?);
        }
    }
    if documents.is_empty() {
        anyhow::bail!("no objects passed to apply");
    }
    Ok(documents)
}

/// The `.yaml`, `.yml` and `.json` files of a directory, sorted by name, as kubectl
/// takes them (not recursive).
fn manifest_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml" | "json")))
        .collect();
    files.sort();
    Ok(files)
}

fn read_file(path: &Path) -> anyhow::Result<Vec<Document>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("the path \"{}\" does not exist", path.display()))?;
    parse(&path.display().to_string(), &text)
}

fn parse(source: &str, text: &str) -> anyhow::Result<Vec<Document>> {
    let values = api::decode::parse_manifest(text.as_bytes()).map_err(|e| anyhow::anyhow!("error parsing {source}: {e}"))?;
    Ok(values.into_iter().map(|object| Document { source: source.to_string(), object }).collect())
}
