//! The JSON Schemas committed under `docs/schema/` are those the contract's types generate:
//! a change of the contract is always a visible diff there. `RELANCE_UPDATE_SCHEMAS=1`
//! rewrites them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use relance_contracts::schema::message_schemas;

fn schema_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/schema")
}

/// The committed `.json` files, relative to `docs/schema/`.
fn committed_files(dir: &Path) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    for folder in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !folder.path().is_dir() {
            continue;
        }
        for file in std::fs::read_dir(folder.path()).into_iter().flatten().flatten() {
            let path = file.path();
            if path.extension().is_some_and(|e| e == "json") {
                let relative = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                files.insert(relative);
            }
        }
    }
    files
}

#[test]
fn committed_schemas_are_the_generated_ones() {
    let dir = schema_dir();
    let generated = message_schemas();
    let update = std::env::var("RELANCE_UPDATE_SCHEMAS").is_ok_and(|v| v == "1");
    let expected: BTreeSet<String> = generated.iter().map(|s| s.file.clone()).collect();
    assert_eq!(
        expected.len(),
        generated.len(),
        "two messages share a schema file"
    );
    let mut problems = Vec::new();
    if update {
        for stale in committed_files(&dir).difference(&expected) {
            std::fs::remove_file(dir.join(stale)).unwrap();
        }
    }
    for message in &generated {
        let path = dir.join(&message.file);
        let text = serde_json::to_string_pretty(&message.schema).unwrap() + "\n";
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == text => {}
            Ok(_) => problems.push(format!("{} differs from the generated schema", message.file)),
            Err(_) => problems.push(format!("{} is missing", message.file)),
        }
    }
    for stale in committed_files(&dir).difference(&expected) {
        problems.push(format!("{stale} describes no message of the contract"));
    }
    assert!(
        problems.is_empty(),
        "docs/schema/ is not what shared/contracts generates:\n  {}\n\
         If the contract change is intended, regenerate the schemas and commit them:\n  \
         RELANCE_UPDATE_SCHEMAS=1 cargo test -p relance-contracts --test schemas",
        problems.join("\n  ")
    );
}

#[test]
fn every_schema_is_a_valid_json_schema() {
    for message in message_schemas() {
        if let Err(e) = jsonschema::validator_for(&message.schema) {
            panic!("{}: not a valid JSON Schema: {e}", message.file);
        }
    }
}
