//! Core behaviours compared against the kernel overlayfs on identical layers:
//! the classic worked example (issue 3), lookup/readdir basics (issue 2) and
//! the rootless path (issue 4). Each test names the rule it proves.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn need_twin() -> bool {
    env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay])
}

/// Worked example: material2 over material, upper build.
#[test]
fn worked_example_copy_up_whiteout_and_new_file_match_kernel() {
    if !need_twin() {
        return;
    }
    let material2 = layer()
        .file("concrete", "good concrete\n")
        .file("marble", "marble\n");
    let material = layer()
        .file("concrete", "bad concrete\n")
        .file("rebar", "rebar\n");
    let twin = Twin::builder().lower(material2).lower(material).mount();
    // The merge shows concrete (good), marble, rebar.
    let names = assert_both_eq!(twin, |r: &Path| probe_readdir(r));
    assert_eq!(names.unwrap(), [".", "..", "concrete", "marble", "rebar"]);
    let c = assert_both_eq!(twin, |r: &Path| fs::read_to_string(r.join("concrete")).ok());
    assert_eq!(c.as_deref(), Some("good concrete\n"));
    // A new file lands in the upper layer only.
    twin.both(|r| fs::write(r.join("frame"), "main structure\n").unwrap());
    assert_eq!(
        fs::read_to_string(twin.fuse_upper().join("frame")).unwrap(),
        "main structure\n"
    );
    // Deleting a lower file leaves a 0/0 character device; material2 untouched.
    assert_eq!(
        assert_both_eq!(twin, |r: &Path| probe_unlink(&r.join("marble"))),
        Ok(())
    );
    let m = fs::symlink_metadata(twin.fuse_upper().join("marble")).unwrap();
    assert!(
        m.file_type().is_char_device() && m.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert!(
        twin.fuse_lower(0).join("marble").exists(),
        "lower layer untouched"
    );
    // Appending copies the whole file up.
    assert_eq!(
        assert_both_eq!(twin, |r: &Path| probe_append(&r.join("rebar"), b"more\n")),
        Ok(5)
    );
    assert_eq!(
        fs::read_to_string(twin.fuse_upper().join("rebar")).unwrap(),
        "rebar\nmore\n"
    );
    twin.assert_same_view();
    twin.assert_same_upper();
}

#[test]
fn lookup_top_down_whiteouts_and_opaque_dirs_match_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer()
        .file("a", "top a\n")
        .whiteout("gone")
        .dir("merged")
        .file("merged/t", "t\n")
        .whiteout("merged/hidden")
        .opaque("op", Opaque::TrustedY)
        .file("op/new", "new\n")
        .file("dir_over_file", "file wins\n");
    let mid = layer()
        .file("a", "mid a\n")
        .file("gone", "x\n")
        .file("merged/m", "m\n")
        .file("merged/hidden", "h\n")
        .xattr_whiteout("xw")
        .file("op/old", "old\n");
    let bottom = layer()
        .file("bottom_only", "b\n")
        .file("xw", "should be hidden\n")
        .file("merged/b", "b\n")
        .dir("dir_over_file")
        .file("dir_over_file/x", "x\n");
    let twin = Twin::builder().lower(top).lower(mid).lower(bottom).mount();
    twin.assert_same_view();
    for p in [
        "a",
        "gone",
        "bottom_only",
        "xw",
        "merged/hidden",
        "op/old",
        "dir_over_file/x",
    ] {
        let st = assert_both_eq!(twin, |r: &Path| probe_lstat(&r.join(p)), "lstat {p}");
        let hidden = ["gone", "xw", "merged/hidden", "op/old", "dir_over_file/x"].contains(&p);
        assert_eq!(st.is_err(), hidden, "{p}: {st:?}");
    }
    for d in [".", "merged", "op"] {
        let names = assert_both_eq!(twin, |r: &Path| probe_readdir(&r.join(d)), "readdir {d}");
        let names = names.unwrap();
        assert!(
            !names
                .iter()
                .any(|n| n.starts_with(".wh.") || n == "hidden" || n == "old"),
            "{names:?}"
        );
    }
}

#[test]
fn hundred_lowers_bottom_file_found_and_shadowing_matches_kernel() {
    if !need_twin() {
        return;
    }
    let mut b = Twin::builder();
    for i in 0..100 {
        let mut l = layer()
            .file(format!("f{i}"), format!("{i}\n"))
            .file("shadow", format!("layer {i}\n"));
        if i == 99 {
            l = l.file("deep/bottom", "bottom\n");
        } else {
            l = l.dir("deep");
        }
        b = b.lower(l);
    }
    let twin = b.mount();
    let v = assert_both_eq!(twin, |r: &Path| fs::read_to_string(r.join("deep/bottom"))
        .ok());
    assert_eq!(v.as_deref(), Some("bottom\n"));
    let v = assert_both_eq!(twin, |r: &Path| fs::read_to_string(r.join("shadow")).ok());
    assert_eq!(v.as_deref(), Some("layer 0\n"));
    twin.assert_same_view();
}

#[test]
fn rmdir_mkdir_over_lower_dir_is_opaque_after_remount() {
    if !need_twin() {
        return;
    }
    let lower = layer().file("tools/hammer", "h\n").file("tools/saw", "s\n");
    let mut twin = Twin::builder().lower(lower).mount();
    twin.both(|r| fs::remove_dir_all(r.join("tools")).unwrap());
    assert_eq!(
        assert_both_eq!(twin, |r: &Path| probe_mkdir(&r.join("tools"), 0o755)),
        Ok(())
    );
    let fresh = assert_both_eq!(twin, |r: &Path| probe_readdir(&r.join("tools")));
    assert_eq!(fresh.unwrap(), [".", ".."]);
    twin.assert_same_upper();
    twin.remount();
    let names = assert_both_eq!(twin, |r: &Path| probe_readdir(&r.join("tools")));
    assert_eq!(names.unwrap(), [".", ".."]);
    twin.assert_same_view();
}

#[test]
fn rename_lower_dir_is_exdev_and_mv_falls_back() {
    if !need_twin() {
        return;
    }
    let lower = layer().file("plans/floor1", "1\n").file("f", "file\n");
    let twin = Twin::builder().lower(lower).mount();
    let (fu, _k) = twin.both(|r| probe_rename(&r.join("plans"), &r.join("p2"), 0));
    assert_eq!(fu, Err(libc::EXDEV), "designed EXDEV for a lower directory");
    // Files rename anywhere, leaving a whiteout at the old name.
    assert_eq!(
        assert_both_eq!(twin, |r: &Path| probe_rename(&r.join("f"), &r.join("g"), 0)),
        Ok(())
    );
    twin.both(|r| {
        let st = std::process::Command::new("mv")
            .arg(r.join("plans"))
            .arg(r.join("p2"))
            .status()
            .unwrap();
        assert!(st.success());
    });
    twin.assert_same_view();
}

#[test]
fn rootless_mount_writes_and_unmounts_as_ordinary_user() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    let b = t.path();
    for d in ["l1", "l2", "u", "w", "m"] {
        fs::create_dir(b.join(d)).unwrap();
    }
    layer()
        .file("a", "a\n")
        .dir("d")
        .file("d/x", "x\n")
        .apply(&b.join("l2"));
    layer().file("top", "t\n").apply(&b.join("l1"));
    chown_tree(&[b], uid, gid);
    let opts = ovlfuse_options(
        &[b.join("l1"), b.join("l2")],
        Some((&b.join("u"), &b.join("w"))),
        &[] as &[&str],
    );
    let mut fm = FuseMount::try_mount(&opts, &b.join("m"), Some((uid, gid))).unwrap();
    let m = b.join("m");
    with_creds(uid, gid, || {
        fs::write(m.join("new"), "n\n").unwrap();
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(m.join("a"))
            .unwrap();
        std::io::Write::write_all(&mut f, b"more\n").unwrap();
        fs::remove_file(m.join("d/x")).unwrap();
        fs::remove_dir(m.join("d")).unwrap();
        fs::create_dir(m.join("d")).unwrap();
        assert_eq!(fs::read_dir(m.join("d")).unwrap().count(), 0);
        assert_eq!(
            fs::rename(m.join("d"), m.join("d2")).map_err(|e| e.raw_os_error()),
            Ok(())
        );
    });
    // Whiteouts are 0/0 devices even unprivileged; opaque marks are user.overlay.
    let wh = fs::symlink_metadata(b.join("u/top")).ok();
    assert!(wh.is_none());
    let up = b.join("u");
    assert_eq!(fs::read_to_string(up.join("a")).unwrap(), "a\nmore\n");
    let d2 = probe_lgetxattr(&up.join("d2"), "user.overlay.opaque");
    assert_eq!(
        d2.ok().as_deref(),
        Some(&b"y"[..]),
        "opaque mark in user.overlay"
    );
    assert_eq!(fs::metadata(up.join("new")).unwrap().uid(), uid);
    assert!(fm.unmount(), "fusermount3 -u as the user");
}

/// Divergences the randomized differential test found, each pinned here
/// (kernel mounted with redirect_dir=off, as in that test).
fn regression_twin(lower: Layer) -> Twin {
    Twin::builder()
        .lower(lower)
        .kern_opt("redirect_dir=off")
        .mount()
}

#[test]
fn regression_removexattr_of_absent_name_does_not_copy_up() {
    if !need_twin() {
        return;
    }
    let twin = regression_twin(layer().file("b", "b\n"));
    let r = assert_both_eq!(twin, |r: &Path| probe_lremovexattr(&r.join("b"), "user.t"));
    assert_eq!(r, Err(libc::ENODATA));
    twin.assert_same_upper();
    assert!(!twin.fuse_upper().join("b").exists());
}

#[test]
fn regression_rename_lower_dir_over_nonempty_dir_is_exdev_first() {
    if !need_twin() {
        return;
    }
    let twin = regression_twin(layer().file("d/a", "a\n").file("e/a", "a\n"));
    let r = assert_both_eq!(twin, |r: &Path| probe_rename(&r.join("e"), &r.join("d"), 0));
    assert_eq!(r, Err(libc::EXDEV));
}

#[test]
fn regression_upper_dir_moved_into_merged_parent_becomes_opaque() {
    if !need_twin() {
        return;
    }
    let twin = regression_twin(layer().dir("d/h").file("x", "x\n"));
    let r = assert_both_eq!(twin, |r: &Path| {
        probe_mkdir(&r.join("d/f"), 0o755)?;
        probe_rename(&r.join("d/f"), &r.join("b"), 1)
    });
    assert_eq!(r, Ok(()));
    twin.assert_same_upper();
}

#[test]
fn regression_rename_over_nonempty_upper_dir_marks_source_then_enotempty() {
    if !need_twin() {
        return;
    }
    let twin = regression_twin(layer().dir("d/h"));
    let r = assert_both_eq!(twin, |r: &Path| {
        probe_mkdir(&r.join("c"), 0o755)?;
        probe_mkdir(&r.join("e"), 0o755)?;
        probe_mkdir(&r.join("e/g"), 0o755)?;
        probe_rename(&r.join("c"), &r.join("e"), 0)
    });
    assert_eq!(r, Err(libc::ENOTEMPTY));
    twin.assert_same_view();
    twin.assert_same_upper();
}

/// With redirect_dir=on on both sides, renames of directories with a lower
/// part answer as the kernel's and leave the same redirects: exchange,
/// over an empty merged directory, a second move, and a path past the
/// kernel's redirect_max (EXDEV).
#[test]
fn redirect_dir_on_exchange_overwrite_and_long_paths_match_kernel() {
    if !need_twin() {
        return;
    }
    let long = "d".repeat(200);
    let twin = Twin::builder()
        .lower(
            layer()
                .file("p/a/f", "a\n")
                .file("q/b/g", "b\n")
                .dir("q/empty")
                .file("r/e/h", "e\n")
                .file(format!("{long}/{long}/deep/k"), "k\n"),
        )
        .opt("redirect_dir=on")
        .mount();
    let r = assert_both_eq!(twin, |r: &Path| {
        probe_rename(&r.join("p/a"), &r.join("q/b"), libc::RENAME_EXCHANGE)?;
        probe_rename(&r.join("r/e"), &r.join("q/empty"), 0)?;
        probe_rename(&r.join("q/empty"), &r.join("p/again"), 0)
    });
    assert_eq!(r, Ok(()));
    let r = assert_both_eq!(twin, |r: &Path| {
        probe_rename(&r.join(format!("{long}/{long}/deep")), &r.join("far"), 0)
    });
    assert_eq!(r, Err(libc::EXDEV));
    twin.assert_same_view();
    twin.assert_same_upper();
    let name = "trusted.overlay.redirect";
    for d in ["p/a", "q/b", "p/again"] {
        let kern = probe_lgetxattr(&twin.kern_upper().join(d), name);
        assert!(kern.is_ok(), "{d}: the kernel wrote a redirect");
        assert_eq!(
            probe_lgetxattr(&twin.fuse_upper().join(d), name),
            kern,
            "{d}"
        );
    }
}
