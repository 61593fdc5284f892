//! On-disk interoperability (issue 4): an upper layer written by ovlfuse
//! mounts under the kernel overlayfs showing the same tree, and the other
//! way round; a rootless (user.overlay.*) upper mounts under the kernel with
//! `userxattr`; fuse-overlayfs and OCI/AUFS layers read correctly; and image
//! layers stack in a chain, each step equal to the kernel's.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A fresh layout: lower `l` (from a spec), upper `u`, work dirs per side.
struct Site {
    _t: tempfile::TempDir,
    b: PathBuf,
}

impl Site {
    fn new(lower: &Layer) -> Site {
        let t = tempdir();
        let b = t.path().to_path_buf();
        for d in ["l", "u", "w1", "w2", "m"] {
            fs::create_dir(b.join(d)).unwrap();
        }
        lower.apply(&b.join("l"));
        Site { _t: t, b }
    }
    fn p(&self, s: &str) -> PathBuf {
        self.b.join(s)
    }
}

fn lower_spec() -> Layer {
    layer()
        .file("keep", "keep\n")
        .file("del", "delete me\n")
        .file("mod", "modify me\n")
        .file("dir/a", "a\n")
        .file("dir/b", "b\n")
        .file("tree/x", "x\n")
        .file("tree/y/z", "z\n")
        .symlink("link", "keep")
}

/// The same changes, whichever implementation serves `m`.
fn changes(m: &Path) {
    fs::remove_file(m.join("del")).unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join("mod"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"more\n").unwrap();
    drop(f);
    fs::remove_file(m.join("dir/a")).unwrap();
    fs::write(m.join("dir/new"), "new\n").unwrap();
    fs::remove_dir_all(m.join("tree")).unwrap();
    fs::create_dir(m.join("tree")).unwrap();
    fs::write(m.join("tree/fresh"), "fresh\n").unwrap();
    fs::create_dir(m.join("newdir")).unwrap();
    fs::rename(m.join("keep"), m.join("kept")).unwrap();
}

fn fuse_mount(s: &Site, work: &str, extra: &[&str], user: Option<(u32, u32)>) -> FuseMount {
    let o = ovlfuse_options(&[s.p("l")], Some((&s.p("u"), &s.p(work))), extra);
    FuseMount::try_mount(&o, &s.p("m"), user).unwrap()
}

fn kernel_mount(s: &Site, work: &str, extra: &[&str]) -> KernelOverlay {
    KernelOverlay::mount(&[s.p("l")], Some((&s.p("u"), &s.p(work))), &s.p("m"), extra)
}

#[test]
fn upper_written_by_ovlfuse_mounts_under_kernel_unchanged() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let s = Site::new(&lower_spec());
    let fm = fuse_mount(&s, "w1", &[], None);
    changes(&s.p("m"));
    let seen_by_ovlfuse = snapshot(&s.p("m"));
    drop(fm);
    let k = kernel_mount(&s, "w2", &[]);
    assert_same_tree_labeled(&seen_by_ovlfuse, &snapshot(&s.p("m")), "ovlfuse", "kernel");
    drop(k);
}

#[test]
fn upper_written_by_kernel_mounts_under_ovlfuse_unchanged() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let s = Site::new(&lower_spec());
    let k = kernel_mount(&s, "w1", &["redirect_dir=off"]);
    changes(&s.p("m"));
    let seen_by_kernel = snapshot(&s.p("m"));
    drop(k);
    let fm = fuse_mount(&s, "w2", &[], None);
    assert_same_tree_labeled(&snapshot(&s.p("m")), &seen_by_kernel, "ovlfuse", "kernel");
    drop(fm);
}

#[test]
fn rootless_upper_mounts_under_kernel_with_userxattr() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let s = Site::new(&lower_spec());
    chown_tree(&[&s.b], uid, gid);
    let fm = fuse_mount(&s, "w1", &[], Some((uid, gid)));
    let m = s.p("m");
    let seen = with_creds(uid, gid, || {
        changes(&m);
        snapshot(&m)
    });
    drop(fm);
    // The opaque mark is in the user namespace.
    assert_eq!(
        probe_lgetxattr(&s.p("u/tree"), "user.overlay.opaque")
            .ok()
            .as_deref(),
        Some(&b"y"[..])
    );
    let k = kernel_mount(&s, "w2", &["userxattr"]);
    assert_same_tree_labeled(
        &seen,
        &snapshot(&s.p("m")),
        "ovlfuse (rootless)",
        "kernel (userxattr)",
    );
    drop(k);
}

#[test]
fn userxattr_option_forces_user_namespace_for_root() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let s = Site::new(&lower_spec());
    let fm = fuse_mount(&s, "w1", &["userxattr"], None);
    changes(&s.p("m"));
    let seen = snapshot(&s.p("m"));
    drop(fm);
    assert!(probe_lgetxattr(&s.p("u/tree"), "trusted.overlay.opaque").is_err());
    assert_eq!(
        probe_lgetxattr(&s.p("u/tree"), "user.overlay.opaque")
            .ok()
            .as_deref(),
        Some(&b"y"[..])
    );
    let k = kernel_mount(&s, "w2", &["userxattr"]);
    assert_same_tree_labeled(&seen, &snapshot(&s.p("m")), "ovlfuse", "kernel");
    drop(k);
}

#[test]
fn oci_aufs_markers_read_like_the_kernel_forms() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    // An unpacked OCI layer over a base: .wh.NAME deletes, .wh..wh..opq
    // makes a directory opaque. The kernel reads the same change written in
    // its own forms.
    let oci = layer()
        .aufs_whiteout("gone")
        .opaque("d", Opaque::Aufs)
        .file("d/new", "new\n")
        .file("added", "a\n");
    let base = layer()
        .file("gone", "g\n")
        .file("d/old", "old\n")
        .file("kept", "k\n");
    let twin = Twin::builder()
        .lower_each(oci.clone(), oci.for_kernel(XattrNs::Trusted))
        .lower(base)
        .no_upper()
        .fuse_opt("marks=all")
        .mount();
    twin.assert_same_view();
    let names = assert_both_eq!(twin, |r: &Path| probe_readdir(r)).unwrap();
    assert_eq!(names, [".", "..", "added", "d", "kept"]);
}

#[test]
fn fuse_overlayfs_written_layer_reads_the_same_under_ovlfuse() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::Tool("fuse-overlayfs")]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let s = Site::new(&lower_spec());
    chown_tree(&[&s.b], uid, gid);
    // fuse-overlayfs, unprivileged, writes its own marker forms.
    let o = format!(
        "lowerdir={},upperdir={},workdir={}",
        s.p("l").display(),
        s.p("u").display(),
        s.p("w1").display()
    );
    let fo = FuseMount::try_mount_bin(Path::new("fuse-overlayfs"), &o, &s.p("m"), Some((uid, gid)))
        .unwrap();
    let m = s.p("m");
    let seen = with_creds(uid, gid, || {
        changes(&m);
        snapshot(&m)
    });
    drop(fo);
    let fm = fuse_mount(&s, "w2", &[], Some((uid, gid)));
    let again = with_creds(uid, gid, || snapshot(&m));
    assert_same_tree_labeled(&again, &seen, "ovlfuse", "fuse-overlayfs");
    drop(fm);
}

#[test]
fn image_layer_chain_matches_kernel_at_every_step() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    // Each step: mount the stack so far with a fresh upper on both sides,
    // change things, compare, unmount; the upper becomes the next lower.
    let t = tempdir();
    let b = t.path();
    let base = lower_spec();
    let mut fuse_lowers = vec![b.join("f0")];
    let mut kern_lowers = vec![b.join("k0")];
    fs::create_dir(&fuse_lowers[0]).unwrap();
    fs::create_dir(&kern_lowers[0]).unwrap();
    base.apply(&fuse_lowers[0]);
    base.apply(&kern_lowers[0]);
    for step in 1..=4 {
        let (fu, fw, km, kw) = (
            b.join(format!("f{step}")),
            b.join(format!("fw{step}")),
            b.join(format!("km{step}")),
            b.join(format!("kw{step}")),
        );
        let (fk, fmnt, kmnt) = (b.join(format!("k{step}")), b.join(format!("fm{step}")), km);
        for d in [&fu, &fw, &fk, &kw, &fmnt, &kmnt] {
            fs::create_dir_all(d).unwrap();
        }
        let fm = FuseMount::mount(&fuse_lowers, Some((&fu, &fw)), &fmnt, &[] as &[&str]);
        let km = KernelOverlay::mount(&kern_lowers, Some((&fk, &kw)), &kmnt, &["redirect_dir=off"]);
        for r in [&fmnt, &kmnt] {
            fs::write(r.join(format!("step{step}")), format!("{step}\n")).unwrap();
            let victim = format!("step{}", step - 1);
            if step > 1 {
                fs::remove_file(r.join(&victim)).unwrap();
            }
            if step == 2 {
                fs::remove_dir_all(r.join("dir")).unwrap();
            }
            if step == 3 {
                fs::create_dir(r.join("dir")).unwrap();
                fs::write(r.join("dir/again"), "again\n").unwrap();
            }
            let mut f = fs::OpenOptions::new()
                .append(true)
                .open(r.join("mod"))
                .unwrap();
            std::io::Write::write_all(&mut f, format!("step {step}\n").as_bytes()).unwrap();
        }
        assert_same_tree(&snapshot(&fmnt), &snapshot(&kmnt));
        drop(fm);
        drop(km);
        // Newest layer on top.
        fuse_lowers.insert(0, fu);
        kern_lowers.insert(0, fk);
    }
}

/// A lower whose directories the kernel renames with redirect_dir=on.
fn redirect_lower() -> Layer {
    layer()
        .file("a/f", "fa\n")
        .file("a/sub/g", "g\n")
        .file("x/y/h", "h\n")
        .file("x/keep", "xk\n")
        .file("c/k", "k\n")
        .file("c/d/e", "e\n")
        .file("w/keep", "wk\n")
        .file("w/gone", "wg\n")
        .file("o/old", "o\n")
        .file_mode("m/secret", "s\n", 0o600)
        .dir_mode("m/sub", 0o710)
}

/// Directory renames of every kind, on a kernel mount with
/// redirect_dir=on: each leaves an `overlay.redirect` in the upper.
fn kernel_redirect_renames(m: &Path) {
    let mv = |a: &str, b: &str| fs::rename(m.join(a), m.join(b)).unwrap();
    // A new name in the same parent: a relative redirect ("a").
    mv("a", "b");
    // Into another directory: an absolute one ("/x/y").
    mv("x/y", "z");
    // A redirect inside a redirected directory.
    mv("c", "c2");
    mv("c2/d", "c2/d2");
    // A redirected directory moved again, into a redirected one.
    mv("z", "b/zz");
    // A redirected directory whose upper part holds a whiteout.
    fs::remove_file(m.join("w/gone")).unwrap();
    mv("w", "w2");
    // A directory made in the upper, given a lower one, then moved.
    fs::create_dir(m.join("n")).unwrap();
    fs::write(m.join("n/own"), "own\n").unwrap();
    mv("b/sub", "n/sub2");
    mv("n", "n2");
    // An opaque directory holding a redirected one.
    fs::remove_dir_all(m.join("o")).unwrap();
    fs::create_dir(m.join("o")).unwrap();
    fs::write(m.join("o/q"), "q\n").unwrap();
    mv("c2/d2", "o/d3");
    mv("m", "mm");
}

/// A site whose upper the kernel wrote with redirect_dir=on; returns it
/// and the tree the kernel showed.
fn kernel_redirected_site() -> (Site, Tree) {
    let s = Site::new(&redirect_lower());
    let k = kernel_mount(&s, "w1", &["redirect_dir=on"]);
    kernel_redirect_renames(&s.p("m"));
    let seen = snapshot(&s.p("m"));
    drop(k);
    // The kernel did write redirects, or this proves nothing.
    let redirect = |p: &str| probe_lgetxattr(&s.p(p), "trusted.overlay.redirect");
    assert_eq!(redirect("u/b"), Ok(b"a".to_vec()));
    assert_eq!(redirect("u/b/zz"), Ok(b"/x/y".to_vec()));
    assert_eq!(redirect("u/n2/sub2"), Ok(b"/a/sub".to_vec()));
    (s, seen)
}

#[test]
fn upper_the_kernel_wrote_with_redirect_dir_on_shows_the_same_under_ovlfuse() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (s, seen) = kernel_redirected_site();
    let m = s.p("m");
    for extra in [&[][..], &["redirect_dir=follow"][..]] {
        let fm = fuse_mount(&s, "w2", extra, None);
        assert_same_tree_labeled(&snapshot(&m), &seen, "ovlfuse", "kernel");
        // Again, with every lower directory and mark cached.
        assert_same_tree_labeled(&snapshot(&m), &seen, "ovlfuse (warm)", "kernel");
        assert_eq!(fs::read(m.join("b/zz/h")).unwrap(), b"h\n");
        assert_eq!(fs::read(m.join("o/d3/e")).unwrap(), b"e\n");
        assert_eq!(probe_stat(&m.join("w2/gone")), Err(libc::ENOENT));
        drop(fm);
    }
    // And the kernel, mounting the same layers again, still shows it.
    let k = kernel_mount(&s, "w1", &["redirect_dir=follow"]);
    assert_same_tree_labeled(&snapshot(&m), &seen, "kernel again", "kernel");
    drop(k);
}

#[test]
fn redirect_dir_nofollow_refuses_redirected_dirs_like_the_kernel() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (s, _) = kernel_redirected_site();
    let m = s.p("m");
    let k = kernel_mount(&s, "w1", &["redirect_dir=nofollow"]);
    let names = ["b", "c2", "w2", "mm", "n2", "n2/sub2", "o", "o/d3", "x"];
    let kern: Vec<_> = names.iter().map(|n| probe_lstat(&m.join(n))).collect();
    drop(k);
    let fm = fuse_mount(&s, "w2", &["redirect_dir=nofollow"], None);
    let fuse: Vec<_> = names.iter().map(|n| probe_lstat(&m.join(n))).collect();
    drop(fm);
    assert_eq!(fuse, kern, "{names:?}");
    assert_eq!(kern[0].as_ref().err(), Some(&libc::EPERM));
}

#[test]
fn copy_up_inside_a_redirected_dir_copies_the_redirected_lower() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (s, _) = kernel_redirected_site();
    let m = s.p("m");
    let fm = fuse_mount(&s, "w2", &[], None);
    // A file of the renamed directory (lower a/f): appended, so copied up.
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(m.join("b/f"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"more\n").unwrap();
    drop(f);
    // Below an absolute redirect (lower x/y/h), and below a directory that
    // has no upper part yet (lower a/sub, reached as n2/sub2).
    sys::chmod(&m.join("b/zz/h"), 0o640).unwrap();
    sys::chmod(&m.join("n2/sub2/g"), 0o604).unwrap();
    fs::write(m.join("c2/new"), "new\n").unwrap();
    fs::remove_file(m.join("c2/k")).unwrap();
    assert_eq!(fs::read(m.join("b/f")).unwrap(), b"fa\nmore\n");
    // stat and the listing agree on the inode of a redirected lower file.
    let st = probe_lstat_raw(&m.join("o/d3/e")).unwrap();
    let listed = fs::read_dir(m.join("o/d3"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(std::os::unix::fs::DirEntryExt::ino(&listed), st.st_ino);
    let seen = snapshot(&m);
    drop(fm);
    assert_eq!(fs::read(s.p("u/b/f")).unwrap(), b"fa\nmore\n");
    assert_eq!(fs::read(s.p("u/n2/sub2/g")).unwrap(), b"g\n");
    // The lower is untouched.
    assert_eq!(fs::read(s.p("l/a/f")).unwrap(), b"fa\n");
    let k = kernel_mount(&s, "w1", &["redirect_dir=follow"]);
    assert_same_tree_labeled(&snapshot(&m), &seen, "kernel", "ovlfuse");
    drop(k);
}

#[test]
fn redirects_in_a_lower_layer_are_followed_like_the_kernel() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (s, _) = kernel_redirected_site();
    // The kernel's upper, now the top lower over the original one.
    for d in ["u2", "w3", "w4"] {
        fs::create_dir(s.p(d)).unwrap();
    }
    let lowers = [s.p("u"), s.p("l")];
    let m = s.p("m");
    let k = KernelOverlay::mount(&lowers, None, &m, &["redirect_dir=follow"]);
    let seen = snapshot(&m);
    drop(k);
    let fm = FuseMount::mount(&lowers, Some((&s.p("u2"), &s.p("w4"))), &m, &[] as &[&str]);
    assert_same_tree_labeled(&snapshot(&m), &seen, "ovlfuse", "kernel");
    drop(fm);
}

#[test]
fn user_overlay_redirects_are_refused_as_the_kernel_refuses_them_with_userxattr() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let (s, seen) = kernel_redirected_site();
    // The same upper with every mark in the user namespace.
    let mut todo = vec![s.p("u")];
    while let Some(p) = todo.pop() {
        for x in sys::listxattr(&p, false).unwrap() {
            if let Some(rest) = x.strip_prefix("trusted.overlay.") {
                let v = sys::getxattr(&p, &x, false).unwrap();
                sys::setxattr(&p, &format!("user.overlay.{rest}"), &v, 0, false).unwrap();
                sys::removexattr(&p, &x, false).unwrap();
            }
        }
        if p.is_dir() && !p.is_symlink() {
            todo.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    let m = s.p("m");
    // With userxattr the kernel follows no redirect (they are anyone's to
    // write there): a directory whose redirect finds a lower answers EPERM.
    // Compared name by name: the kernel's listing of a merged directory
    // holding one fails as a whole (EPERM), where ovlfuse lists the name
    // and fails its lookup (docs/semantics.md, Differences).
    fs::create_dir(s.p("w5")).unwrap();
    let names: Vec<String> = seen.entries.keys().cloned().collect();
    let look = |m: &Path| -> Vec<(String, Result<Kind, i32>)> {
        names
            .iter()
            .map(|n| (n.clone(), probe_stat(&m.join(n)).map(|st| st.kind)))
            .collect()
    };
    let k = kernel_mount(&s, "w5", &["userxattr"]);
    let (kern, kern_root) = (look(&m), probe_readdir(&m));
    drop(k);
    assert!(
        kern.iter().any(|(_, r)| *r == Err(libc::EPERM)),
        "some redirect is refused: {kern:?}"
    );
    assert_eq!(
        kern_root,
        Err(libc::EPERM),
        "the kernel's listing of the root"
    );
    let fm = fuse_mount(&s, "w2", &["userxattr"], None);
    assert_eq!(
        look(&m),
        kern,
        "ovlfuse userxattr against the kernel userxattr"
    );
    assert!(probe_readdir(&m).is_ok());
    drop(fm);
    // As the kernel, no redirect_dir but nofollow goes with them.
    for v in ["on", "follow", "off"] {
        let o = ovlfuse_options(
            &[s.p("l")],
            Some((&s.p("u"), &s.p("w2"))),
            &["userxattr", &format!("redirect_dir={v}")],
        );
        let out = std::process::Command::new(ovlfuse_bin())
            .args(["-o", &o])
            .arg(&m)
            .output()
            .unwrap();
        assert_refusal(
            &format!("userxattr,redirect_dir={v}"),
            &out,
            "redirect_dir=",
        );
        assert!(!is_mounted(&m));
    }
    // A root mount's own namespace is trusted: a user.overlay.redirect is
    // anyone's to write, and is not followed.
    let fm = fuse_mount(&s, "w2", &[], None);
    assert_eq!(probe_stat(&m.join("b/f")), Err(libc::ENOENT));
    drop(fm);
}

#[test]
fn redirect_dir_on_renames_lower_dirs_as_the_kernel_and_the_kernel_reads_them() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    // The kernel's upper for these renames, and the tree it showed.
    let (ks, kseen) = kernel_redirected_site();
    // The same renames through ovlfuse with redirect_dir=on.
    let s = Site::new(&redirect_lower());
    let m = s.p("m");
    let fm = fuse_mount(&s, "w1", &["redirect_dir=on"], None);
    kernel_redirect_renames(&m);
    let seen = snapshot(&m);
    drop(fm);
    assert_same_tree_labeled(&seen, &kseen, "ovlfuse", "kernel");
    // The same redirects, with the same values, where the kernel wrote one.
    let name = "trusted.overlay.redirect";
    for d in ["b", "b/zz", "c2", "w2", "n2/sub2", "o/d3", "mm", "n2", "x"] {
        assert_eq!(
            probe_lgetxattr(&s.p(&format!("u/{d}")), name),
            probe_lgetxattr(&ks.p(&format!("u/{d}")), name),
            "{d}"
        );
    }
    assert_same_upper(&s.p("u"), XattrNs::Trusted, &ks.p("u"), XattrNs::Trusted);
    // Mounted again, by the kernel and by ovlfuse: the same tree.
    let k = kernel_mount(&s, "w2", &["redirect_dir=on"]);
    assert_same_tree_labeled(&snapshot(&m), &seen, "kernel", "ovlfuse");
    drop(k);
    let fm = fuse_mount(&s, "w1", &["redirect_dir=on"], None);
    assert_same_tree_labeled(&snapshot(&m), &seen, "ovlfuse again", "ovlfuse");
    drop(fm);
}

/// Redirect values the kernel never writes (empty, a relative one with a
/// slash, `.`/`..` components, a trailing slash, one that leads nowhere or
/// to a file): what lookup, listing and stat answer through ovlfuse must be
/// what the kernel answers, value by value.
#[test]
fn malformed_redirects_answer_as_the_kernel_does() {
    if !env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay]) {
        return;
    }
    let values: &[&[u8]] = &[
        b"",
        b"x/f",
        b".",
        b"..",
        b"/x/../x",
        b"/./x",
        b"/x/",
        b"//x",
        b"/nowhere",
        b"/x/f",
        b"f",
        b"x\0y",
        b"/",
        b"/nowhere/..",
        b"/f/..",
        b"\0",
    ];
    let mut diffs = Vec::new();
    for v in values {
        let d = Dirs::new();
        fs::create_dir_all(d.p("l/x")).unwrap();
        fs::write(d.p("l/x/f"), "f").unwrap();
        fs::write(d.p("l/f"), "top").unwrap();
        fs::create_dir(d.p("u/y")).unwrap();
        probe_setxattr(&d.p("u/y"), "trusted.overlay.redirect", v, 0).unwrap();
        let (lowers, m) = ([d.p("l")], d.p("m"));
        let look = |m: &Path| {
            (
                probe_stat(&m.join("y")).map(|s| (s.kind, s.size)),
                probe_readdir(&m.join("y")),
                probe_stat(&m.join("y/f")).map(|s| (s.kind, s.size)),
            )
        };
        fs::create_dir_all(d.p("kw")).unwrap();
        let k = KernelOverlay::mount(
            &lowers,
            Some((&d.p("u"), &d.p("kw"))),
            &m,
            &["redirect_dir=follow"],
        );
        let kern = look(&m);
        drop(k);
        let fm = FuseMount::mount(&lowers, Some((&d.p("u"), &d.p("w"))), &m, &[] as &[&str]);
        let ours = look(&m);
        drop(fm);
        if ours != kern {
            diffs.push(format!(
                "redirect {:?}: ovlfuse {ours:?}, kernel {kern:?}",
                v.escape_ascii().to_string()
            ));
        }
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
