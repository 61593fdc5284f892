//! Self-tests of the shared harness (tests/common). They use only the kernel
//! overlay (mounted on both sides of a twin), so they pass without ovlfuse.

mod common;

use std::os::unix::fs::MetadataExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn kernel_env() -> bool {
    env_ok(&[Need::Root, Need::KernelOverlay, Need::Xattrs])
}

/// A kernel-only twin: both sides are kernel overlays.
fn ktwin() -> TwinBuilder {
    Twin::builder().kernel_on_both_sides()
}

/// A layer using every item kind and marker form the spec offers.
fn every_form() -> Layer {
    layer()
        .file("a/b/file", "hello")
        .file_mode("suid", "x", 0o4755)
        .dir_mode("sticky", 0o1777)
        .symlink("link", "a/b/file")
        .hardlink("a/hard", "a/b/file")
        .fifo("fifo")
        .chardev("null", 1, 3)
        .whiteout("wh")
        .xattr_whiteout("xw/gone")
        .opaque("o_trusted", Opaque::TrustedY)
        .opaque("o_user", Opaque::UserY)
        .opaque("o_fov", Opaque::FuseOverlayfs)
        .opaque("o_aufs", Opaque::Aufs)
        .aufs_whiteout("d/gone")
        .xattr("a/b/file", "user.color", "blue")
        .chown("suid", 1234, 5678)
        .sparse("big", 3 << 20)
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[test]
fn env_checks_pass_on_this_machine() {
    assert!(need("always satisfied", true));
    if !require_root() {
        return;
    }
    assert!(env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::KernelOverlay,
        Need::Xattrs,
        Need::Tool("mount")
    ]));
    assert!(check_need(Need::Tool("no-such-tool-ovt")).is_err());
}

#[test]
fn layer_spec_writes_every_marker_form() {
    if !env_ok(&[Need::Root, Need::Xattrs]) {
        return;
    }
    let d = tempdir();
    every_form().apply(d.path());
    let t = snapshot(d.path());
    let n = |p: &str| {
        t.get(p)
            .unwrap_or_else(|| panic!("{p} missing from {:?}", t.paths()))
    };

    let wh = n("wh");
    assert_eq!(
        (wh.kind, wh.rdev, wh.perm),
        (Kind::CharDev, Some((0, 0)), 0)
    );
    let xw = n("xw/gone");
    assert_eq!((xw.kind, xw.size), (Kind::File, Some(0)));
    assert_eq!(xw.xattrs.get("trusted.overlay.whiteout"), Some(&Ok(vec![])));
    assert_eq!(
        n("xw").xattrs.get("trusted.overlay.opaque"),
        Some(&Ok(b"x".to_vec()))
    );
    assert_eq!(
        n("o_trusted").xattrs.get("trusted.overlay.opaque"),
        Some(&Ok(b"y".to_vec()))
    );
    assert_eq!(
        n("o_user").xattrs.get("user.overlay.opaque"),
        Some(&Ok(b"y".to_vec()))
    );
    assert_eq!(
        n("o_fov").xattrs.get("user.fuseoverlayfs.opaque"),
        Some(&Ok(b"y".to_vec()))
    );
    assert_eq!(n("o_aufs/.wh..wh..opq").kind, Kind::File);
    assert_eq!(n("d/.wh.gone").size, Some(0));
    assert!(t.get("d/gone").is_none());

    let suid = n("suid");
    assert_eq!(
        (suid.uid, suid.gid, suid.perm),
        (1234, 5678, 0o4755),
        "chown must keep suid"
    );
    assert_eq!(n("sticky").perm, 0o1777);
    assert_eq!((n("a").perm, n("a/b").perm), (0o755, 0o755));
    let file = n("a/b/file");
    assert_eq!(file.content, Some(Content::Bytes(b"hello".to_vec())));
    assert_eq!(file.nlink, Some(2));
    assert_eq!(file.xattrs.get("user.color"), Some(&Ok(b"blue".to_vec())));
    assert_eq!(n("link").target, Some(PathBuf::from("a/b/file")));
    assert_eq!(n("fifo").kind, Kind::Fifo);
    assert_eq!(
        (n("null").kind, n("null").rdev),
        (Kind::CharDev, Some((1, 3)))
    );
    assert!(matches!(n("big").content, Some(Content::Digest { len, .. }) if len == 3 << 20));
    assert_eq!(n(".").kind, Kind::Dir);

    let escape = catch_unwind(|| layer().file("../evil", "x").apply(d.path()));
    assert!(escape.is_err(), "a spec path with .. must be refused");
}

#[test]
fn kernel_honours_the_kernel_marker_forms() {
    if !kernel_env() {
        return;
    }
    let top = layer()
        .whiteout("gone")
        .xattr_whiteout("xw/gone2")
        .opaque("opq", Opaque::TrustedY)
        .file("opq/new", "n")
        .file("shadow", "top");
    let bottom = layer()
        .file("gone", "g")
        .file("xw/gone2", "g")
        .file("xw/stays", "s")
        .file("opq/old", "o")
        .file("shadow", "bottom")
        .file("keep", "k");
    let twin = ktwin().lower(top).lower(bottom).mount();
    let r = twin.fuse_mnt();
    assert_eq!(probe_stat(&r.join("gone")), Err(libc::ENOENT));
    assert_eq!(probe_stat(&r.join("xw/gone2")), Err(libc::ENOENT));
    assert_eq!(probe_readdir(&r.join("xw")).unwrap(), [".", "..", "stays"]);
    assert_eq!(probe_readdir(&r.join("opq")).unwrap(), [".", "..", "new"]);
    assert_eq!(probe_read(&r.join("shadow")).unwrap(), b"top");
    assert_eq!(
        probe_readdir(r).unwrap(),
        [".", "..", "keep", "opq", "shadow", "xw"]
    );
    twin.assert_same_view();

    // The user.overlay.* forms count only with userxattr.
    let top = layer()
        .xattr_whiteout_ns("d/gone", XattrNs::User)
        .opaque("o", Opaque::UserY);
    let bottom = layer()
        .file("d/gone", "g")
        .file("d/stays", "s")
        .file("o/hidden", "h");
    let twin = ktwin().lower(top).lower(bottom).opt("userxattr").mount();
    let r = twin.kern_mnt();
    assert_eq!(probe_readdir(&r.join("d")).unwrap(), [".", "..", "stays"]);
    assert_eq!(probe_readdir(&r.join("o")).unwrap(), [".", ".."]);
    let (f, _) = twin.snapshots();
    for (p, node) in f
        .entries
        .iter()
        .filter_map(|(p, n)| Some((p, n.as_ref().ok()?)))
    {
        assert!(
            !node.xattrs.keys().any(|k| k.starts_with("user.overlay.")),
            "{p} shows a private xattr"
        );
    }
    twin.assert_same_view();
}

#[test]
fn identical_twins_compare_equal_and_edits_are_detected() {
    if !kernel_env() {
        return;
    }
    let twin = ktwin()
        .lower(every_form())
        .lower(layer().file("wh", "hidden").file("low", "l"))
        .mount();
    let (f, k) = twin.snapshots();
    assert!(f.entries.len() > 15, "snapshot too small: {:?}", f.paths());
    assert_same_tree(&f, &k);
    assert!(f.get("wh").is_none() && f.get("xw/gone").is_none());

    // Edit the "fuse" side only, through the merged view.
    let r = twin.fuse_mnt();
    std::fs::write(r.join("a/b/file"), "HELLO").unwrap();
    probe_chmod(&r.join("sticky"), 0o755).unwrap();
    probe_setxattr(&r.join("low"), "user.tag", b"1", 0).unwrap();
    probe_unlink(&r.join("null")).unwrap();
    probe_mkdir(&r.join("newdir"), 0o755).unwrap();
    probe_create(&r.join("newdir/inner"), 0o644).unwrap();

    let (f, k) = twin.snapshots();
    let diffs = diff_trees(&f, &k);
    let fields: Vec<String> = diffs
        .iter()
        .map(|d| format!("{} {}", d.path, d.field))
        .collect();
    // Copy-up without index breaks the lower hard link: nlink drops to 1.
    assert_eq!(
        fields,
        [
            "a/b/file nlink",
            "a/b/file content (first difference at byte 0)",
            "low xattr user.tag",
            "newdir presence",
            "null presence",
            "sticky mode",
        ],
        "children of a one-sided dir (newdir/inner) are not repeated"
    );
    assert_eq!(
        (diffs[3].left.as_str(), diffs[3].right.as_str()),
        ("dir", "missing")
    );

    let report = catch_unwind(|| assert_same_tree(&f, &k))
        .map_err(panic_message)
        .unwrap_err();
    assert!(
        report.contains("a/b/file: content") && report.contains("fuse=\"HELLO\""),
        "{report}"
    );
    assert!(
        report.contains("sticky: mode: fuse=0755 kernel=1777"),
        "{report}"
    );

    // Fields the walk records but no edit above touched.
    let mut g = k.clone();
    let node = g.get_mut("suid").unwrap();
    node.uid = 1;
    node.nlink = Some(9);
    g.get_mut("link").unwrap().target = Some(PathBuf::from("elsewhere"));
    g.get_mut("o_aufs")
        .unwrap()
        .xattrs
        .insert("user.extra".into(), Ok(vec![]));
    let fields: Vec<String> = diff_trees(&k, &g)
        .into_iter()
        .map(|d| format!("{} {}", d.path, d.field))
        .collect();
    assert_eq!(
        fields,
        [
            "link symlink target",
            "o_aufs xattr user.extra",
            "suid uid",
            "suid nlink"
        ]
    );
}

#[test]
fn upper_layers_compare_modulo_bookkeeping() {
    if !kernel_env() {
        return;
    }
    let lower = layer()
        .file("f", "data")
        .file("g", "gone")
        .file("d/x", "x")
        .file("m", "move")
        .dir("e");
    let twin = ktwin()
        .lower(lower)
        .upper(layer().file("pre", "existing"))
        .mount();
    let ops = |r: &Path| {
        (
            probe_append(&r.join("f"), b"+more"),
            probe_unlink(&r.join("g")),
            probe_unlink(&r.join("d/x")).and_then(|_| probe_rmdir(&r.join("d"))),
            probe_mkdir(&r.join("d"), 0o700),
            probe_rename(&r.join("m"), &r.join("moved"), 0),
            probe_symlink("f", &r.join("sl")),
            probe_chmod(&r.join("e"), 0o711),
        )
    };
    let (a, b) = twin.both(ops);
    assert_eq!(a, b);
    assert_eq!(a.0, Ok(5));

    // The kernel's origin/uuid xattrs differ between the two sides...
    let (fu, ku) = (snapshot(twin.fuse_upper()), snapshot(twin.kern_upper()));
    let raw = diff_trees(&fu, &ku);
    assert!(
        raw.iter()
            .any(|d| d.field == "xattr trusted.overlay.origin"),
        "{raw:#?}"
    );
    // ...yet the layers are the same once bookkeeping is ignored.
    twin.assert_same_upper();
    let up = snapshot_upper(twin.kern_upper(), XattrNs::Trusted);
    let g = up.get("g").unwrap();
    assert_eq!((g.kind, g.rdev), (Kind::CharDev, Some((0, 0))));
    assert_eq!(
        up.get("d").unwrap().xattrs.get("overlay.opaque"),
        Some(&Ok(b"y".to_vec()))
    );
    assert_eq!(up.get("d").unwrap().perm, 0o700);
    assert!(up.get("moved").is_some() && up.get("m").is_some() && up.get("pre").is_some());

    // A change on one side only is caught.
    probe_setxattr(&twin.fuse_mnt().join("pre"), "user.only", b"here", 0).unwrap();
    let err = catch_unwind(AssertUnwindSafe(|| twin.assert_same_upper()))
        .map_err(panic_message)
        .unwrap_err();
    assert!(err.contains("pre: xattr user.only"), "{err}");

    // Namespaces are normalized per side.
    let (t, u) = (tempdir(), tempdir());
    layer()
        .opaque("o", Opaque::TrustedY)
        .xattr_whiteout("o/w")
        .apply(t.path());
    layer()
        .opaque("o", Opaque::UserY)
        .xattr_whiteout_ns("o/w", XattrNs::User)
        .apply(u.path());
    let (st, su) = (
        snapshot_upper(t.path(), XattrNs::Trusted),
        snapshot_upper(u.path(), XattrNs::User),
    );
    // The opaque marks disagree ("y" vs the "x" an xattr whiteout sets) only
    // if namespaces are mixed up; with the right ones both read overlay.opaque=x.
    assert_eq!(diff_trees(&st, &su), vec![]);
    assert_eq!(
        st.get("o").unwrap().xattrs.get("overlay.opaque"),
        Some(&Ok(b"x".to_vec()))
    );
    assert!(!diff_trees(&st, &snapshot_upper(u.path(), XattrNs::Trusted)).is_empty());
    assert_same_upper(t.path(), XattrNs::Trusted, u.path(), XattrNs::User);
}

#[test]
fn hundred_lowers_mount_with_each_kernel_api() {
    if !kernel_env() {
        return;
    }
    for api in [KernelApi::NewApi, KernelApi::Legacy] {
        let lowers = (0..100).map(|i| {
            layer()
                .file(format!("f{i}"), i.to_string())
                .file("x", i.to_string())
        });
        let twin = ktwin().lowers(lowers).kernel_api(api).mount();
        let names = twin.same("readdir of 100 lowers", probe_readdir).unwrap();
        assert_eq!(names.len(), 103, "{api:?}: {names:?}");
        assert_eq!(
            probe_read(&twin.kern_mnt().join("x")).unwrap(),
            b"0",
            "{api:?}: topmost lower wins"
        );
        assert_eq!(probe_read(&twin.kern_mnt().join("f99")).unwrap(), b"99");
        assert_eq!(twin.kern_lowers().len(), 100);
        assert_eq!(twin.kern_lower(99).file_name().unwrap(), "99");
        let opts = mount_options(twin.kern_mnt()).unwrap();
        match api {
            KernelApi::Legacy => assert!(opts.contains("lowerdir=l/0:l/1:"), "{opts}"),
            _ => assert!(
                opts.contains(&format!("lowerdir+={}", twin.kern_lower(99).display())),
                "{opts}"
            ),
        }
        twin.assert_same_view();
    }
}

#[test]
fn probes_return_kernel_errnos() {
    if !kernel_env() {
        return;
    }
    let lower = layer()
        .file("f", "hello")
        .file("d/inner", "i")
        .symlink("s", "f")
        .xattr("f", "user.k", "v");
    let twin = ktwin().lower(lower).mount();
    let j = |r: &Path, p: &str| r.join(p);

    assert_eq!(
        assert_both_eq!(twin, |r| probe_stat(&j(r, "f")))
            .unwrap()
            .size,
        Some(5)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_lstat(&j(r, "s")))
            .unwrap()
            .kind,
        Kind::Symlink
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_open(&j(r, "nope"), libc::O_RDONLY)),
        Err(libc::ENOENT)
    );
    assert_eq!(
        assert_both_eq!(twin, probe_readdir),
        Ok(vec![
            ".".into(),
            "..".into(),
            "d".into(),
            "f".into(),
            "s".into()
        ])
    );
    let typed = assert_both_eq!(twin, probe_readdir_typed).unwrap();
    assert!(
        typed.contains(&("s".to_string(), libc::DT_LNK)),
        "{typed:?}"
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_readlink(&j(r, "s"))),
        Ok(PathBuf::from("f"))
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_getxattr(&j(r, "f"), "user.k")),
        Ok(b"v".to_vec())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_getxattr(&j(r, "f"), "user.none")),
        Err(libc::ENODATA)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_listxattr(&j(r, "s"))),
        Ok(vec!["user.k".to_string()])
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_llistxattr(&j(r, "s"))),
        Ok(vec![])
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_access(&j(r, "f"), libc::W_OK)),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_rmdir(&j(r, "d"))),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_unlink(&j(r, "d"))),
        Err(libc::EISDIR)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_create(&j(r, "f"), 0o644)),
        Err(libc::EEXIST)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_mkdir(&j(r, "d"), 0o755)),
        Err(libc::EEXIST)
    );
    let noreplace = |r: &Path| probe_rename(&j(r, "f"), &j(r, "s"), libc::RENAME_NOREPLACE);
    assert_eq!(
        assert_both_eq!(
            twin,
            noreplace,
            "rename {} over {} with NOREPLACE",
            "f",
            "s"
        ),
        Err(libc::EEXIST)
    );
    // A lower directory cannot be renamed with redirect_dir off.
    assert_eq!(
        assert_both_eq!(twin, |r| probe_rename(&j(r, "d"), &j(r, "d2"), 0)),
        Err(libc::EXDEV)
    );

    assert_eq!(
        assert_both_eq!(twin, |r| probe_link(&j(r, "f"), &j(r, "h"))),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_symlink("f", &j(r, "s2"))),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_chmod(&j(r, "f"), 0o600)),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_lchown(&j(r, "s2"), 7, 8)),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_truncate(&j(r, "f"), 2)),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_write_at(&j(r, "f"), 4, b"zz")),
        Ok(2)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_append(&j(r, "f"), b"!")),
        Ok(1)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_read(&j(r, "h"))),
        Ok(b"he\0\0zz!".to_vec())
    );
    let create = |r: &Path| probe_setxattr(&j(r, "f"), "user.n", b"1", libc::XATTR_CREATE);
    assert_eq!(assert_both_eq!(twin, create), Ok(()));
    assert_eq!(assert_both_eq!(twin, create), Err(libc::EEXIST));
    assert_eq!(
        assert_both_eq!(twin, |r| probe_removexattr(&j(r, "f"), "user.n")),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_removexattr(&j(r, "f"), "user.n")),
        Err(libc::ENODATA)
    );
    let exchange = |r: &Path| probe_rename(&j(r, "h"), &j(r, "s2"), libc::RENAME_EXCHANGE);
    assert_eq!(assert_both_eq!(twin, exchange), Ok(()));
    assert_eq!(
        assert_both_eq!(twin, |r| probe_readlink(&j(r, "h"))),
        Ok(PathBuf::from("f"))
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_mknod(
            &j(r, "p"),
            libc::S_IFIFO | 0o600,
            0,
            0
        )),
        Ok(())
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_utimens(&j(r, "p"), (1, 0), (2, 0))),
        Ok(())
    );
    assert_eq!(errno_name(libc::EXDEV), "EXDEV");

    // Inode numbers are stable across copy-up on the kernel.
    let before = probe_ino(&twin.kern_mnt().join("d/inner")).unwrap();
    probe_append(&twin.kern_mnt().join("d/inner"), b"+").unwrap();
    assert_eq!(probe_ino(&twin.kern_mnt().join("d/inner")), Ok(before));
    probe_append(&twin.fuse_mnt().join("d/inner"), b"+").unwrap();

    twin.assert_same_view();
    twin.assert_same_upper();

    // Divergent results are reported with the operation's text.
    let msg = catch_unwind(AssertUnwindSafe(|| {
        twin.same("which side", |r| r == twin.fuse_mnt());
    }))
    .map_err(panic_message)
    .unwrap_err();
    assert!(
        msg.contains("differ on which side") && msg.contains("fuse:   true"),
        "{msg}"
    );
}

#[test]
fn read_only_twin_answers_erofs() {
    if !kernel_env() {
        return;
    }
    let twin = ktwin()
        .lower(layer().file("f", "x").dir("d"))
        .lower(layer().file("g", "y"))
        .no_upper()
        .mount();
    assert_eq!(
        assert_both_eq!(twin, |r| probe_create(&r.join("n"), 0o644)),
        Err(libc::EROFS)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_unlink(&r.join("g"))),
        Err(libc::EROFS)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_open(&r.join("f"), libc::O_WRONLY)),
        Err(libc::EROFS)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_read(&r.join("g"))),
        Ok(b"y".to_vec())
    );
    assert!(twin.fuse_dirs().upper.is_none());
    assert!(catch_unwind(AssertUnwindSafe(|| twin.kern_upper().to_path_buf())).is_err());
    twin.assert_same_view();
}

#[test]
fn twin_unmounts_on_drop_even_when_panicking_and_remounts() {
    if !kernel_env() {
        return;
    }
    let mut seen: Option<(PathBuf, PathBuf, PathBuf)> = None;
    let res = catch_unwind(AssertUnwindSafe(|| {
        let twin = ktwin().lower(layer().file("f", "x")).mount();
        seen = Some((
            twin.fuse_mnt().into(),
            twin.kern_mnt().into(),
            twin.base().into(),
        ));
        assert!(is_mounted(twin.fuse_mnt()) && is_mounted(twin.kern_mnt()));
        panic!("deliberate");
    }));
    assert!(res.is_err());
    let (f, k, base) = seen.unwrap();
    assert!(!is_mounted(&f) && !is_mounted(&k), "mounts left behind");
    assert!(!base.exists(), "temp dir left behind");

    let mut twin = ktwin().lower(layer().file("f", "x")).mount();
    twin.both(|r| std::fs::write(r.join("new"), "persisted").unwrap());
    twin.unmount();
    assert!(!is_mounted(twin.kern_mnt()));
    assert_eq!(
        std::fs::read(twin.fuse_upper().join("new")).unwrap(),
        b"persisted"
    );
    twin.remount();
    assert_eq!(mount_fstype(twin.kern_mnt()).as_deref(), Some("overlay"));
    assert_eq!(
        assert_both_eq!(twin, |r| probe_read(&r.join("new"))),
        Ok(b"persisted".to_vec())
    );
    twin.assert_same_view();
}

#[test]
fn fuse_mount_failure_is_reported_without_leaving_a_mount() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = tempdir();
    let mnt = d.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    let opts = ovlfuse_options(&[d.path().join("no-such-lower")], None, &[] as &[&str]);
    let err = FuseMount::try_mount(&opts, &mnt, None)
        .err()
        .expect("a missing lowerdir must not mount");
    assert!(
        err.contains("command:") && err.contains("no-such-lower"),
        "{err}"
    );
    assert!(!is_mounted(&mnt));
    assert_eq!(
        ovlfuse_options(&[PathBuf::from("/a:b")], None, &["ro"]),
        "lowerdir=/a\\:b,ro"
    );
}

#[test]
fn unprivileged_user_helpers() {
    if !require_root() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    assert_ne!(uid, 0);
    assert_eq!(ensure_user("ovltest"), (uid, gid));
    assert_eq!(
        std::fs::metadata("/dev/fuse").unwrap().mode() & 0o777,
        0o666
    );

    let out = run_as(uid, gid, Command::new("id").arg("-u"));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), uid.to_string());
    let out = run_as(uid, gid, Command::new("id").arg("-G"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        gid.to_string(),
        "no root groups kept"
    );

    let d = tempdir();
    let private = d.path().join("private");
    std::fs::create_dir(&private).unwrap();
    sys::chmod(&private, 0o700).unwrap();
    assert_eq!(
        with_creds(uid, gid, || probe_access(&private, libc::R_OK)),
        Err(libc::EACCES)
    );
    assert_eq!(
        with_creds(uid, gid, || probe_create(&d.path().join("x"), 0o644)),
        Err(libc::EACCES)
    );
    assert_eq!(
        with_creds(uid, gid, || probe_access(d.path(), libc::X_OK)),
        Ok(()),
        "temp dirs are 0755"
    );
    assert_eq!(sys::geteuid(), 0, "the test thread stays root");
    assert_eq!(probe_access(&private, libc::R_OK), Ok(()));
}

fn on_path(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{tool} not on PATH"))
}

/// The fuse side's guard, exercised with fuse-overlayfs standing in for
/// ovlfuse (same CLI), as root and as an unprivileged user.
#[test]
fn fuse_side_runs_a_stand_in_daemon() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::KernelOverlay,
        Need::Xattrs,
        Need::Tool("fuse-overlayfs"),
    ]) {
        return;
    }
    let bin = on_path("fuse-overlayfs");
    let lowers = || {
        [
            layer().file("f", "x").file("d/g", "g"),
            layer().file("low", "l").file("d/h", "h"),
        ]
    };

    let mut twin = Twin::builder().fuse_bin(&bin).lowers(lowers()).mount();
    assert!(mount_fstype(twin.fuse_mnt()).unwrap().starts_with("fuse"));
    let pid = twin.fuse_daemon_pid().expect("daemon pid found");
    assert!(process_alive(pid));
    assert_eq!(
        assert_both_eq!(twin, |r| probe_readdir(&r.join("d"))).unwrap(),
        [".", "..", "g", "h"]
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_append(&r.join("low"), b"+")),
        Ok(1)
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_read(&r.join("low"))),
        Ok(b"l+".to_vec())
    );
    twin.unmount();
    assert!(
        !is_mounted(twin.fuse_mnt()) && !process_alive(pid),
        "daemon must be gone after unmount"
    );
    assert_eq!(std::fs::read(twin.fuse_upper().join("low")).unwrap(), b"l+");
    twin.remount();
    assert_eq!(
        assert_both_eq!(twin, |r| probe_read(&r.join("low"))),
        Ok(b"l+".to_vec())
    );
    drop(twin);

    let (uid, gid) = ensure_user("ovltest");
    let twin = Twin::builder()
        .fuse_bin(&bin)
        .fuse_as(uid, gid)
        .lowers(lowers())
        .mount();
    let (f, k) = twin.both_as(uid, gid, |r| {
        probe_create(&r.join("new"), 0o644).and_then(|_| probe_stat(&r.join("new")))
    });
    assert_eq!(f, k);
    assert_eq!(f.unwrap().uid, uid);
    // Without allow_other even root is kept out of a user's FUSE mount.
    assert_eq!(probe_stat(&twin.fuse_mnt().join("f")), Err(libc::EACCES));
    let (fm, base) = (twin.fuse_mnt().to_path_buf(), twin.base().to_path_buf());
    drop(twin);
    assert!(!is_mounted(&fm) && !base.exists());
}

#[test]
fn per_side_specs_translate_foreign_markers_for_the_kernel() {
    if !kernel_env() {
        return;
    }
    let foreign = layer()
        .aufs_whiteout("gone")
        .opaque("o1", Opaque::Aufs)
        .opaque("o2", Opaque::FuseOverlayfs)
        .file("o2/new", "n");
    let native = foreign.for_kernel(XattrNs::Trusted);
    assert_eq!(
        native.items[0],
        Item::Whiteout {
            path: "gone".into()
        }
    );
    assert_eq!(
        native.items[2],
        Item::Opaque {
            path: "o2".into(),
            form: Opaque::TrustedY
        }
    );
    let bottom = layer()
        .file("gone", "g")
        .file("o1/old", "o")
        .file("o2/old", "o");
    let twin = ktwin().lower_each(foreign, native).lower(bottom).mount();
    assert!(twin.fuse_lower(0).join(".wh.gone").exists());
    let wh = snapshot(twin.kern_lower(0));
    assert_eq!(wh.get("gone").unwrap().rdev, Some((0, 0)));
    assert!(twin.fuse_lower(1).join("gone").exists() && twin.kern_lower(1).join("gone").exists());
    // The kernel reads its native forms: what ovlfuse must show for the foreign ones.
    assert_eq!(
        probe_readdir(twin.kern_mnt()).unwrap(),
        [".", "..", "o1", "o2"]
    );
    assert_eq!(
        probe_readdir(&twin.kern_mnt().join("o2")).unwrap(),
        [".", "..", "new"]
    );
}
