//! README's commands, run as a newcomer would: in a fresh clone of the
//! repository (only what git tracks, with this tree's edits), its own target
//! directory and no network. Each block README marks with
//! `<!-- tested: tests/readme.rs ... -->` runs here, with the changes its
//! marker names (no apt-get; the install into a temporary root).

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const README: &str = include_str!("../README.md");

/// The ```sh blocks that follow a `tested:` marker, in order.
fn tested_blocks() -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = README.lines();
    while let Some(l) = lines.next() {
        if !l.starts_with("<!-- tested: tests/readme.rs") {
            continue;
        }
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "a tested block must follow {l:?}"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        out.push(body.join("\n"));
    }
    out
}

/// A clone of this repository with the working tree's tracked files.
fn fresh_clone(dst: &Path) -> bool {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !need(
        "git and a git checkout of ovlfuse",
        src.join(".git").exists() && Command::new("git").arg("--version").output().is_ok(),
    ) {
        return false;
    }
    let st = Command::new("git")
        .args(["clone", "-q", "--no-hardlinks"])
        .arg(src)
        .arg(dst)
        .status()
        .unwrap();
    assert!(st.success(), "git clone");
    // Uncommitted edits of tracked files too, so the test checks this tree.
    let ls = Command::new("git")
        .arg("-C")
        .arg(src)
        .args(["ls-files", "-z"])
        .output()
        .unwrap();
    for f in ls.stdout.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let rel = Path::new(std::str::from_utf8(f).unwrap());
        let from = src.join(rel);
        if from.is_file() {
            fs::create_dir_all(dst.join(rel).parent().unwrap()).unwrap();
            fs::copy(&from, dst.join(rel)).unwrap();
        }
    }
    true
}

/// Run one block with bash -e in the clone; stdout+stderr on success.
fn run_block(clone: &Path, block: &str, env: &[(&str, &Path)]) -> String {
    // As root, `sudo` is the command itself (sudo may not be installed).
    let script = format!("set -euo pipefail\nsudo() {{ \"$@\"; }}\n{block}\n");
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(clone)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", clone.join("target"))
        .env_remove("RUSTFLAGS");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        o.status.success(),
        "README block failed:\n{block}\n--- output:\n{text}"
    );
    text
}

#[test]
fn readme_commands_work_in_a_fresh_clone() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::Tool("git"),
        Need::Tool("cargo"),
    ]) {
        return;
    }
    let blocks = tested_blocks();
    assert_eq!(
        blocks.len(),
        3,
        "README's tested blocks: demo, install, library"
    );
    let t = tempdir();
    let clone = t.path().join("ovlfuse");
    if !fresh_clone(&clone) {
        return;
    }
    // 1. The demo (fuse3 is installed by .ci/run, not here).
    let demo = blocks[0].replace("sudo apt-get install -y fuse3 && ", "");
    assert!(demo.contains("cargo run --release -- demo"), "{demo}");
    let out = run_block(&clone, &demo, &[]);
    for want in [
        "Step 1",
        "whiteout (0/0 character device)",
        "EXDEV",
        "ovlfuse demo --dir DIR",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }

    // 2. Install, into a temporary root instead of /usr/local.
    let root: PathBuf = t.path().join("root");
    let install = blocks[1].replace("/usr/local", &root.display().to_string());
    let path = format!(
        "{}:{}",
        root.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    run_block(&clone, &install, &[("PATH", Path::new(&path))]);
    let v = Command::new(root.join("bin/ovlfuse"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).starts_with("ovlfuse "));
    for page in ["ovlfuse.1", "ovlfuse-which.1", "ovlfuse-export.1"] {
        let p = root.join("share/man/man1").join(page);
        assert!(
            fs::read_to_string(&p).is_ok_and(|s| s.contains(".TH")),
            "{}",
            p.display()
        );
    }
    let comp = root.join("share/bash-completion/completions/ovlfuse");
    assert!(fs::read_to_string(&comp).is_ok_and(|s| s.contains("complete")));

    // 3. The library examples: resolve without a mount, then mount from code.
    let out = run_block(&clone, &blocks[2], &[]);
    assert!(out.contains("dir: found in layer 0"), "{out}");
    assert!(
        out.contains("a (from layer 0)") && out.contains("b (from layer 1)"),
        "{out}"
    );
    assert!(
        out.contains("new\nbelow\n"),
        "merged dir/a and dir/b: {out}"
    );
}

/// README's option tables name every option the parser acts on and every
/// flag it ignores (the same tables feed --help and the man page).
#[test]
fn readme_names_every_option() {
    for (names, _) in ovlfuse::options::EFFECTIVE {
        for n in names.split(", ") {
            let key = n.split('=').next().unwrap();
            assert!(
                README.contains(&format!("`{key}")),
                "README lacks option {key}"
            );
        }
    }
    for (names, _) in ovlfuse::options::IGNORED {
        for n in *names {
            assert!(
                README.contains(&format!("`{n}`")),
                "README lacks ignored flag {n}"
            );
        }
    }
}
