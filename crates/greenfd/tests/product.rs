//! What the product promises about itself as a package: it links product crates only,
//! and nothing in the repository points at design files a user of it does not have.

use std::path::Path;
use std::process::Command;

/// The workspace root (two levels above this crate).
fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/greenfd sits two levels below the workspace root")
}

#[test]
fn product_binary_links_no_bench_peer() {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree",
            "--offline",
            "-p",
            "greenfd",
            "-e",
            "normal",
            "--prefix",
            "none",
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.contains("greenfd-engine"), "unexpected tree:\n{tree}");
    for peer in ["tokio ", "mio ", "greenfd-bench "] {
        assert!(
            !tree.lines().any(|l| l.starts_with(peer)),
            "greenfd links {peer}:\n{tree}"
        );
    }
}

#[test]
fn nothing_in_the_repository_points_outside_it() {
    let Ok(out) = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(workspace())
        .output()
    else {
        eprintln!("skipped: git is not installed");
        return;
    };
    if !out.status.success() {
        eprintln!("skipped: not a git checkout");
        return;
    }
    // Built from parts so this file does not match itself.
    let needle = format!("../{}", "shared");
    let mut offenders = Vec::new();
    for name in out.stdout.split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let path = workspace().join(String::from_utf8_lossy(name).as_ref());
        if let Ok(text) = std::fs::read_to_string(&path) {
            if text.contains(&needle) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(offenders.is_empty(), "{needle} named in {offenders:?}");
    assert!(workspace().join("ARCHITECTURE.md").is_file());
}
