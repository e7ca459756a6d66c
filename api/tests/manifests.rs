//! Every example manifest of the repository is accepted as Kubernetes would accept it:
//! it parses, has no unknown fields, and is valid once defaulted.

use std::path::Path;

use api::decode::parse_manifest;
use api::Object;

#[test]
fn example_manifests_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("manifests folder") {
        let path = entry.expect("manifest entry").path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml" | "json")
        ) {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable manifest");
        let documents =
            parse_manifest(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for document in documents {
            let mut object = Object::from_value(document.clone())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let unknown = object.info().unknown_fields(&document);
            assert!(
                unknown.is_empty(),
                "{}: unknown fields {unknown:?}",
                path.display()
            );
            object.apply_defaults();
            let errors: Vec<String> = object.validate().iter().map(ToString::to_string).collect();
            assert!(
                errors.is_empty(),
                "{} {}: {errors:?}",
                path.display(),
                object.kind()
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no manifests found in {}", dir.display());
}
