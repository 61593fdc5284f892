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
