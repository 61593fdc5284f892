//! The teaching tools (issue 7): demo (root and unprivileged), which, diff,
//! export (round trip through a standard tar and back through a mount),
//! stats of a live mount.

mod common;

use common::*;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

struct Site {
    _t: tempfile::TempDir,
    b: PathBuf,
}

impl Site {
    fn new() -> Site {
        let t = tempdir();
        let b = t.path().to_path_buf();
        for d in ["l", "u", "w", "m"] {
            fs::create_dir(b.join(d)).unwrap();
        }
        layer()
            .file("keep", "keep\n")
            .file("del", "del\n")
            .file("mod", "mod\n")
            .file("dir/a", "a\n")
            .file("dir/b", "b\n")
            .xattr("keep", "user.color", "blue")
            .apply(&b.join("l"));
        Site { _t: t, b }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.b.join(s)
    }
    fn opts(&self) -> String {
        ovlfuse_options(
            &[self.p("l")],
            Some((&self.p("u"), &self.p("w"))),
            &[] as &[&str],
        )
    }
    /// Mount, make the standard changes, return the merged view, unmount.
    fn change(&self) -> Tree {
        let fm = FuseMount::try_mount(&self.opts(), &self.p("m"), None).unwrap();
        let m = self.p("m");
        fs::remove_file(m.join("del")).unwrap();
        fs::write(m.join("mod"), "changed\n").unwrap();
        fs::write(m.join("added"), "added\n").unwrap();
        fs::remove_dir_all(m.join("dir")).unwrap();
        fs::create_dir(m.join("dir")).unwrap();
        fs::write(m.join("dir/c"), "c\n").unwrap();
        fs::hard_link(m.join("added"), m.join("added2")).unwrap();
        std::os::unix::fs::symlink("keep", m.join("sl")).unwrap();
        probe_setxattr(&m.join("keep"), "user.color", b"red", 0).unwrap();
        let t = snapshot(&m);
        drop(fm);
        t
    }
}

fn run(args: &[&str]) -> (bool, String) {
    let o = Command::new(ovlfuse_bin()).args(args).output().unwrap();
    let s = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), s)
}

#[test]
fn diff_lists_added_changed_deleted_and_opaque() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let s = Site::new();
    s.change();
    let (ok, out) = run(&[
        "diff",
        s.p("u").to_str().unwrap(),
        "--lower",
        s.p("l").to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "A /added",
            "A /added2",
            "D /del",
            "C /dir (opaque)",
            "A /dir/c",
            "C /keep",
            "C /mod",
            "A /sl"
        ],
        "{out}"
    );
}

#[test]
fn export_round_trips_through_tar_and_a_mount() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::Tool("tar"),
        Need::Tool("sha256sum"),
    ]) {
        return;
    }
    let s = Site::new();
    let merged = s.change();
    let tarf = s.p("layer.tar");
    let (ok, out) = run(&[
        "export",
        s.p("u").to_str().unwrap(),
        "-o",
        tarf.to_str().unwrap(),
        "--parent-chain",
        "sha256:aaaa",
    ]);
    assert!(ok, "{out}");
    // diffID is the sha256 of the tar as written.
    let sum = Command::new("sha256sum").arg(&tarf).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("diffID sha256:{sum}")), "{out}");
    // chainID = sha256("<parent> <diffID>").
    let want = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf '%s' 'sha256:aaaa sha256:{sum}' | sha256sum"
        ))
        .output()
        .unwrap();
    let want = String::from_utf8_lossy(&want.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("chainID sha256:{want}")), "{out}");
    // Extract with GNU tar, then stack the extracted layer over the lower:
    // the merged view must equal what the mount showed.
    let x = s.p("x");
    fs::create_dir(&x).unwrap();
    let st = Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xpf"])
        .arg(&tarf)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(x.join(".wh.del").exists() && x.join("dir/.wh..wh..opq").exists());
    let m2 = s.p("m2");
    fs::create_dir(&m2).unwrap();
    let o = ovlfuse_options(&[x.clone(), s.p("l")], None, &[] as &[&str]);
    let fm = FuseMount::try_mount(&o, &m2, None).unwrap();
    assert_same_tree_labeled(&snapshot(&m2), &merged, "export extracted", "mounted");
    drop(fm);
}

#[test]
fn stats_report_copy_ups_whiteouts_and_exdev_of_a_live_mount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let s = Site::new();
    let fm = FuseMount::try_mount(&s.opts(), &s.p("m"), None).unwrap();
    let m = s.p("m");
    // Append: the copy-up carries the 4 lower bytes (O_TRUNC would copy none).
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join("mod"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"x").unwrap();
    drop(f);
    fs::remove_file(m.join("del")).unwrap();
    assert_eq!(
        fs::rename(m.join("dir"), m.join("dir2"))
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EXDEV)
    );
    let (ok, out) = run(&["stats", m.to_str().unwrap()]);
    assert!(ok, "{out}");
    let get = |k: &str| -> u64 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k} ")))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| panic!("{k} missing in {out}"))
    };
    assert_eq!(get("copy_ups"), 1);
    assert_eq!(get("copy_up_bytes"), 4);
    assert_eq!(get("whiteouts_created"), 1);
    assert_eq!(get("exdev_refusals"), 1);
    assert!(get("requests") > 0);
    let (ok, out) = run(&["stats", s.p("l").to_str().unwrap()]);
    assert!(!ok && out.contains("not an ovlfuse mount"), "{out}");
    drop(fm);
}

#[test]
fn which_shows_every_layer_and_the_winner() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let s = Site::new();
    let top = s.p("top");
    fs::create_dir(&top).unwrap();
    layer().file("keep", "shadow\n").whiteout("del").apply(&top);
    let o = format!("lowerdir={}:{}", top.display(), s.p("l").display());
    let (ok, out) = run(&["which", "-o", &o, "keep"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("[0]") && out.contains("[1]") && out.contains("layer [0] wins"),
        "{out}"
    );
    let (ok, out) = run(&["which", "-o", &o, "del"]);
    assert!(
        !ok && out.contains("whiteout") && out.contains("does not exist"),
        "{out}"
    );
}

fn demo_ok(out: &str) {
    for want in [
        "Step 1",
        "whiteout (0/0 character device)",
        "overlay.opaque=y",
        "EXDEV",
        "mv exited with 0",
        "copied up 12 bytes",
    ] {
        assert!(out.contains(want), "demo output lacks {want:?}:\n{out}");
    }
}

#[test]
fn demo_runs_as_root_and_unprivileged() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (ok, out) = run(&["demo"]);
    assert!(ok, "{out}");
    demo_ok(&out);
    assert!(out.contains("trusted.overlay.opaque=y"), "{out}");
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    std::os::unix::fs::chown(t.path(), Some(uid), Some(gid)).unwrap();
    let dir = t.path().join("demo");
    let mut cmd = Command::new(ovlfuse_bin());
    cmd.arg("demo").arg("--dir").arg(&dir).current_dir(t.path());
    let o = run_as(uid, gid, &mut cmd);
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{out}");
    demo_ok(&out);
    assert!(out.contains("user.overlay.opaque=y"), "{out}");
    assert!(!is_mounted(&dir.join("merged")));
}
