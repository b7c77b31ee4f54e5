//! Builds the guest examples (`../guest-examples`, a workspace of its own) for
//! wasm32-wasip2 and tells the tests where the components are.

use std::path::{Path, PathBuf};
use std::process::Command;

const EXAMPLES: &[&str] = &[
    "steps",
    "orders",
    "faulty",
    "approvals",
    "fanout",
    "hostile",
    "hostile-fs",
    "event-listener",
    "payments",
    "streams",
];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap();
    let examples = root.join("guest-examples");
    for watched in [
        "guest-examples",
        "guest-sdk/src",
        "guest-sdk/Cargo.toml",
        "wit",
    ] {
        rerun_if_changed(&root.join(watched));
    }
    // A target directory of its own, so this nested build never waits on the
    // lock of the build that runs this script.
    let target_dir = root.join("target").join("guest-examples");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(examples.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target_dir);
    // What the outer build sets for its own target must not leak into this one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        command.env_remove(var);
    }
    let status = command
        .status()
        .expect("cannot run cargo to build guest-examples");
    if !status.success() {
        panic!(
            "building guest-examples for wasm32-wasip2 failed; if the target is missing, run `rustup target add wasm32-wasip2`"
        );
    }
    for name in EXAMPLES {
        let artifact = target_dir
            .join("wasm32-wasip2")
            .join("release")
            .join(format!("{}.wasm", name.replace('-', "_")));
        assert!(artifact.exists(), "{} was not built", artifact.display());
        println!(
            "cargo:rustc-env=CAIRN_EXAMPLE_{}={}",
            name.to_uppercase().replace('-', "_"),
            artifact.display()
        );
    }
}

fn rerun_if_changed(path: &Path) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            let path = entry.path();
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rerun_if_changed(&path);
        }
    } else {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
