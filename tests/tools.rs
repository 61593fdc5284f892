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

/// A parent diffID for the chainID check (any digest will do).
const PARENT: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

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
        "-f",
        tarf.to_str().unwrap(),
        "--parent-chain",
        PARENT,
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
        .arg(format!("printf '%s' '{PARENT} sha256:{sum}' | sha256sum"))
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
    // The extracted layer carries AUFS marks: a mount reads them when asked.
    let o = ovlfuse_options(&[x.clone(), s.p("l")], None, &["marks=all"]);
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
    // The upper whites out mod and has an opaque dir over the lower's dir/a.
    layer()
        .file("keep", "upper\n")
        .whiteout("mod")
        .opaque("dir", Opaque::TrustedY)
        .file("dir/c", "c\n")
        .apply(&s.p("u"));
    let o = format!(
        "lowerdir={}:{},upperdir={}",
        top.display(),
        s.p("l").display(),
        s.p("u").display()
    );
    let which = |path: &str| run(&["which", "-o", &o, path]);
    // The line of layer [i], as `stats` numbers layers.
    fn line(out: &str, i: usize) -> &str {
        let want = format!("[{i}] ");
        out.lines()
            .find(|l| l.trim_start().starts_with(&want))
            .unwrap_or_else(|| panic!("no layer [{i}] in {out}"))
    }
    let canon = |p: PathBuf| fs::canonicalize(p).unwrap().display().to_string();
    let (u, t, l) = (canon(s.p("u")), canon(top.clone()), canon(s.p("l")));

    let (ok, out) = which("keep");
    assert!(ok, "{out}");
    // Index as stats, role as the options name it: no `[1] lower2`.
    for (i, role, path, why) in [
        (0, "upper", &u, "<- wins"),
        (1, "lowerdir #1", &t, "shadowed by layer [0]"),
        (2, "lowerdir #2", &l, "shadowed by layer [0]"),
    ] {
        let x = line(&out, i);
        let head = format!("[{i}] {role} ");
        assert!(x.trim_start().starts_with(&head), "{x:?} in {out}");
        assert!(
            x.contains(path.as_str()) && x.ends_with(why),
            "{x:?} in {out}"
        );
    }
    assert!(
        out.contains("result: /keep exists: the file from layer [0] wins"),
        "{out}"
    );

    // The root prints as `/`, however it is spelt, and merges every layer.
    for root in ["/", ".", "./"] {
        let (ok, out) = which(root);
        assert!(ok, "{root}: {out}");
        assert_eq!(
            out.lines().next(),
            Some("/ in 3 layers (top first):"),
            "{out}"
        );
        assert!(line(&out, 0).ends_with("<- wins"), "{out}");
        assert!(line(&out, 1).ends_with("merged") && line(&out, 2).ends_with("merged"));
        assert!(
            out.contains(
                "result: / exists: the directory from layer [0] wins, merged from layers [0] [1] [2]"
            ),
            "{out}"
        );
    }

    // A whiteout: the verdict names its layer and its form.
    let (ok, out) = which("del");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "result: /del does not exist in the merged view: whited out by layer [1] (0/0 character device)"
        ),
        "{out}"
    );
    assert!(
        line(&out, 1).contains("whiteout (0/0 character device)"),
        "{out}"
    );
    assert!(
        line(&out, 2).ends_with("below the whiteout in layer [1]"),
        "{out}"
    );
    let (ok, out) = which("/mod");
    assert!(!ok, "{out}");
    assert!(
        out.contains("whited out by layer [0] (0/0 character device)"),
        "{out}"
    );

    // A file below an opaque directory is hidden, and the verdict says by what.
    let (ok, out) = which("dir/a");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "result: /dir/a does not exist in the merged view: hidden: an ancestor directory /dir in layer [0] is opaque"
        ),
        "{out}"
    );
    let x = line(&out, 2);
    assert!(
        x.contains("file 644") && x.ends_with("below opaque directory /dir in layer [0]"),
        "{out}"
    );
    // The opaque directory itself: where its merge stops.
    let (ok, out) = which("dir");
    assert!(ok, "{out}");
    assert!(
        line(&out, 0).contains("opaque (trusted.overlay.opaque=y)"),
        "{out}"
    );
    assert!(
        line(&out, 2).ends_with("below opaque directory /dir in layer [0]"),
        "{out}"
    );
    assert!(
        out.contains(
            "the directory from layer [0] wins, merged from layers [0]; the opaque directory in layer [0] stops the merge"
        ),
        "{out}"
    );
}

#[test]
fn which_explains_ancestors_that_end_the_search() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let p = |n: &str| t.path().join(n);
    for d in ["a", "b", "c"] {
        fs::create_dir(p(d)).unwrap();
    }
    // No upper: lowerdir #1 is layer [0].
    layer().dir("d/keep").file("f", "f\n").apply(&p("a"));
    layer().whiteout("d").aufs_whiteout("g").apply(&p("b"));
    layer()
        .file("d/x", "x\n")
        .file("f/y", "y\n")
        .file("g", "g\n")
        .apply(&p("c"));
    let o = format!(
        "lowerdir={}:{}:{}",
        p("a").display(),
        p("b").display(),
        p("c").display()
    );
    let which = |path: &str| run(&["which", "-o", &o, path]);
    fn line(out: &str, i: usize) -> &str {
        let want = format!("[{i}] ");
        out.lines()
            .find(|l| l.trim_start().starts_with(&want))
            .unwrap_or_else(|| panic!("no layer [{i}] in {out}"))
    }

    let (ok, out) = which("f");
    assert!(ok, "{out}");
    for (i, role) in [(0, "lowerdir #1"), (1, "lowerdir #2"), (2, "lowerdir #3")] {
        let head = format!("[{i}] {role} ");
        assert!(line(&out, i).trim_start().starts_with(&head), "{out}");
    }
    assert!(line(&out, 2).ends_with("shadowed by layer [0]"), "{out}");

    // A directory merged above a whiteout: the whiteout ends its merge, and
    // what lies below the whiteout stays hidden.
    let (ok, out) = which("d");
    assert!(ok, "{out}");
    assert!(
        out.contains("merged from layers [0]; the whiteout in layer [1] (0/0 character device) stops the merge"),
        "{out}"
    );
    let (ok, out) = which("d/x");
    assert!(!ok, "{out}");
    assert!(
        out.contains("hidden: an ancestor /d is whited out by layer [1] (0/0 character device"),
        "{out}"
    );
    assert!(
        line(&out, 2).ends_with("parent /d is whited out in layer [1]"),
        "{out}"
    );

    // A non-directory ancestor ends the search.
    let (ok, out) = which("f/y");
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "does not exist in the merged view: an ancestor /f is not a directory in layer [0]"
        ),
        "{out}"
    );
    assert!(
        line(&out, 2).ends_with("parent /f is not a directory in layer [0]"),
        "{out}"
    );

    // An AUFS whiteout, and a name no layer has.
    let (ok, out) = which("g");
    assert!(
        !ok && out.contains("whited out by layer [1] (AUFS .wh.g)"),
        "{out}"
    );
    let (ok, out) = which("nowhere");
    assert!(
        !ok && out.contains("/nowhere does not exist in the merged view: absent from every layer"),
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

#[test]
fn which_names_where_a_redirect_sent_the_lookup() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let p = |n: &str| t.path().join(n);
    for d in ["a", "b"] {
        fs::create_dir(p(d)).unwrap();
    }
    // A directory the kernel renamed from "old" to "new", as a lower.
    layer()
        .dir("new")
        .xattr("new", "trusted.overlay.redirect", "old")
        .apply(&p("a"));
    layer().file("old/f", "f\n").apply(&p("b"));
    let o = format!("lowerdir={}:{}", p("a").display(), p("b").display());
    let (ok, out) = run(&["which", "-o", &o, "new/f"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("through overlay.redirect: [1] at /old/f"),
        "{out}"
    );
    assert!(!out.contains("a bug"), "{out}");
}
