//! The crate layering of docs/architecture.md, checked from `cargo metadata`: no service
//! crate (under services/) depends on another, except the `relance` binary, the composition
//! root that runs them all; no shared crate (under shared/) depends on a service; and the
//! transport (`relance-messaging`) sits below the sequence rules (`relance-sequence`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The crate that may depend on services: it runs them all (`relance run all`).
const COMPOSITION_ROOT: &str = "relance";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Shared,
    Service,
    Other,
}

struct Crate {
    layer: Layer,
    /// Every dependency (normal, dev and build) by package name.
    dependencies: Vec<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf()
}

/// The workspace's crates by name, each with its layer (from the folder it lives in).
fn workspace_crates() -> BTreeMap<String, Crate> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(root.join("Cargo.toml"))
        .output()
        .expect("running cargo metadata");
    assert!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata's JSON");
    let packages = metadata["packages"].as_array().expect("a list of packages");
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("a package name").to_string();
            let manifest = Path::new(package["manifest_path"].as_str().expect("a manifest path"));
            let relative = manifest.strip_prefix(&root).unwrap_or(manifest);
            let layer = match relative.components().next().and_then(|c| c.as_os_str().to_str()) {
                Some("shared") => Layer::Shared,
                Some("services") => Layer::Service,
                _ => Layer::Other,
            };
            let dependencies = package["dependencies"]
                .as_array()
                .expect("a list of dependencies")
                .iter()
                .map(|d| d["name"].as_str().expect("a dependency name").to_string())
                .collect();
            (name, Crate { layer, dependencies })
        })
        .collect()
}

/// The dependencies of `layer`'s crates on crates of `on`, as `from -> to`.
fn dependencies_between(crates: &BTreeMap<String, Crate>, layer: Layer, on: Layer) -> Vec<String> {
    crates
        .iter()
        .filter(|(name, c)| c.layer == layer && name.as_str() != COMPOSITION_ROOT)
        .flat_map(|(name, c)| {
            c.dependencies
                .iter()
                .filter(|d| crates.get(d.as_str()).is_some_and(|dep| dep.layer == on))
                .map(move |d| format!("{name} -> {d}"))
        })
        .collect()
}

#[test]
fn the_layers_are_found() {
    let crates = workspace_crates();
    let count = |layer: Layer| crates.values().filter(|c| c.layer == layer).count();
    // Guards the checks below against a metadata layout they would silently pass on.
    assert!(
        count(Layer::Shared) >= 7,
        "shared crates: {}",
        count(Layer::Shared)
    );
    assert!(
        count(Layer::Service) >= 5,
        "service crates: {}",
        count(Layer::Service)
    );
    assert_eq!(
        crates.get(COMPOSITION_ROOT).map(|c| c.layer),
        Some(Layer::Service)
    );
}

#[test]
fn no_service_depends_on_another_service_but_the_composition_root() {
    let crossed = dependencies_between(&workspace_crates(), Layer::Service, Layer::Service);
    assert!(
        crossed.is_empty(),
        "services share code through shared/ crates (e.g. relance-sequence), not through each other: {crossed:?}"
    );
}

#[test]
fn no_shared_crate_depends_on_a_service() {
    let upward = dependencies_between(&workspace_crates(), Layer::Shared, Layer::Service);
    assert!(
        upward.is_empty(),
        "shared crates sit below the services: {upward:?}"
    );
}

#[test]
fn messaging_only_carries_and_sits_below_the_sequence_rules() {
    let crates = workspace_crates();
    let messaging = crates
        .get("relance-messaging")
        .expect("relance-messaging in the workspace");
    assert!(
        !messaging.dependencies.iter().any(|d| d == "relance-sequence"),
        "relance-messaging must not depend on relance-sequence"
    );
    let sequence = crates
        .get("relance-sequence")
        .expect("relance-sequence in the workspace");
    assert_eq!(sequence.layer, Layer::Shared);
}
