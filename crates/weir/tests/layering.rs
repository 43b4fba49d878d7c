//! Holds the crate layering of ARCHITECTURE.md with `cargo metadata`: the core crates pull in no
//! network stack, HTTP server, SQL driver or JSON, and the client does not depend on the broker or
//! the storage engine.

use std::process::Command;

use serde_json::Value;

/// Direct (non-dev) dependencies of a workspace package: (name, features).
fn dependencies(metadata: &Value, package: &str) -> Vec<(String, Vec<String>)> {
    let pkg = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == package)
        .unwrap_or_else(|| panic!("package {package} is in the workspace"));
    pkg["dependencies"]
        .as_array()
        .expect("dependencies")
        .iter()
        .filter(|d| d["kind"].is_null() || d["kind"] == "build")
        .map(|d| {
            let features = d["features"]
                .as_array()
                .map(|f| {
                    f.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            (d["name"].as_str().expect("name").to_string(), features)
        })
        .collect()
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("metadata is JSON")
}

const FORBIDDEN_IN_CORE: [&str; 12] = [
    "axum",
    "hyper",
    "reqwest",
    "tokio-postgres",
    "postgres",
    "rusqlite",
    "sqlx",
    "serde_json",
    "weir-server",
    "weir-client",
    "weir-tasks",
    "tokio-util",
];

#[test]
fn core_crates_do_no_network_io_and_speak_no_json() {
    let metadata = metadata();
    for core in ["weir-proto", "weir-store", "weir-log", "weir-broker"] {
        for (name, features) in dependencies(&metadata, core) {
            assert!(
                !FORBIDDEN_IN_CORE.contains(&name.as_str()),
                "{core} depends on {name}, which the layering forbids"
            );
            if name == "tokio" {
                for f in &features {
                    assert!(
                        matches!(f.as_str(), "sync" | "time" | "macros"),
                        "{core} enables tokio feature {f:?}; core crates may use only sync/time"
                    );
                }
            }
        }
    }
    for (name, features) in dependencies(&metadata, "weir-proto") {
        assert!(
            !matches!(name.as_str(), "tokio" | "futures" | "weir-store"),
            "weir-proto is sans-IO but depends on {name} {features:?}"
        );
    }
}

#[test]
fn client_does_not_depend_on_broker_or_storage() {
    let metadata = metadata();
    for (name, _) in dependencies(&metadata, "weir-client") {
        assert!(
            !matches!(
                name.as_str(),
                "weir-broker" | "weir-store" | "weir-log" | "weir-server"
            ),
            "weir-client depends on {name}"
        );
    }
}

#[test]
fn dependencies_point_down_the_stack() {
    let metadata = metadata();
    // Guard against a vacuous pass: the metadata does list the dependencies we expect.
    let names = |p: &str| {
        dependencies(&metadata, p)
            .into_iter()
            .map(|(n, _)| n)
            .collect::<Vec<_>>()
    };
    assert!(names("weir-server").contains(&"axum".to_string()));
    assert!(names("weir-broker").contains(&"weir-store".to_string()));
    let order = [
        "weir-proto",
        "weir-store",
        "weir-log",
        "weir-broker",
        "weir-tasks",
        "weir-server",
    ];
    for (i, upper) in order.iter().enumerate() {
        for lower in &order[..i] {
            let deps = dependencies(&metadata, lower);
            assert!(
                deps.iter().all(|(n, _)| n != upper),
                "{lower} depends on {upper}: dependencies must point down the stack"
            );
        }
    }
}
