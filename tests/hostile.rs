//! Hostile inputs (issue 5): names at the limits, malformed markers,
//! lowers that vanish and an upper that turns read-only while mounted,
//! private xattrs refused to another user, and a daemon killed during a
//! burst of fsynced work.

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Materialize a layer spec into a new directory.
fn put_layer(l: Layer, dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    l.apply(dir);
}

fn need_twin() -> bool {
    env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay])
}

#[test]
fn names_at_the_limits_behave_as_on_the_kernel() {
    if !need_twin() {
        return;
    }
    let long = "n".repeat(255);
    let too_long = "n".repeat(256);
    let twin = Twin::builder()
        .lower(layer().file(format!("d/{long}"), "lower\n"))
        .mount();
    let odd_names: Vec<&[u8]> = vec![
        b"new\nline",
        b"\xff\xfe not utf8",
        b" lead and trail ",
        b"tab\there",
    ];
    let r = assert_both_eq!(twin, |r: &Path| {
        let mut out = vec![
            probe_append(&r.join("d").join(&long), b"x").map(|_| ()),
            probe_create(&r.join(&long), 0o644),
            probe_create(&r.join(&too_long), 0o644),
            probe_mkdir(&r.join(&too_long), 0o755),
        ];
        for n in &odd_names {
            let p = r.join(OsStr::from_bytes(n));
            out.push(probe_create(&p, 0o644));
            out.push(probe_rename(
                &p,
                &r.join(OsStr::from_bytes(&[n, &b"2"[..]].concat())),
                0,
            ));
        }
        out.push(probe_unlink(&r.join("d").join(&long)));
        out
    });
    assert_eq!(r[2], Err(libc::ENAMETOOLONG));
    // A path near PATH_MAX: nested 200-byte components.
    let comp = "p".repeat(200);
    let r = assert_both_eq!(twin, |root: &Path| {
        let mut p = root.to_path_buf();
        let mut res = Vec::new();
        while p.as_os_str().len() + 201 < 4096 {
            p.push(&comp);
            res.push(probe_mkdir(&p, 0o755));
        }
        p.push("f");
        res.push(probe_create(&p, 0o644));
        p.pop();
        p.push(&comp);
        p.push("g");
        res.push(probe_create(&p, 0o644));
        res
    });
    assert_eq!(*r.last().unwrap(), Err(libc::ENAMETOOLONG));
    twin.assert_same_view();
    twin.assert_same_upper();
}

#[test]
fn malformed_markers_are_read_as_the_kernel_reads_them() {
    if !need_twin() {
        return;
    }
    // A 1/3 device is not a whiteout; odd opaque values are not opaque; an
    // empty file with an odd whiteout value in an unmarked dir is a file.
    let top = layer()
        .chardev("notwh", 1, 3)
        .dir("o1")
        .xattr("o1", "trusted.overlay.opaque", "n")
        .dir("o2")
        .xattr("o2", "trusted.overlay.opaque", "")
        .dir("o3")
        .xattr("o3", "trusted.overlay.opaque", "yes")
        .file("nonempty_wh", "data")
        .xattr("nonempty_wh", "trusted.overlay.whiteout", "");
    let bottom = layer()
        .file("notwh", "hidden?\n")
        .file("o1/below", "b")
        .file("o2/below", "b")
        .file("o3/below", "b")
        .file("nonempty_wh", "bottom");
    let twin = Twin::builder().lower(top).lower(bottom).no_upper().mount();
    twin.assert_same_view();
}

#[test]
fn aufs_marker_that_is_a_directory_does_not_crash_and_hides_the_name() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    put_layer(
        layer()
            .dir(".wh.x")
            .file(".wh.x/inside", "i")
            .dir(".wh..wh..opq"),
        &b.join("top"),
    );
    put_layer(layer().file("x", "x\n").file("y", "y\n"), &b.join("bottom"));
    fs::create_dir(b.join("m")).unwrap();
    // AUFS marks are read only when asked for.
    let o = ovlfuse_options(&[b.join("top"), b.join("bottom")], None, &["marks=all"]);
    let _fm = FuseMount::try_mount(&o, &b.join("m"), None).unwrap();
    let names = probe_readdir(&b.join("m")).unwrap();
    assert_eq!(names, [".", "..", "y"], "markers hidden, x whited out");
    assert_eq!(probe_lstat(&b.join("m/x")).map(|_| ()), Err(libc::ENOENT));
}

#[test]
fn vanished_lower_and_read_only_upper_give_errors_not_crashes() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    put_layer(
        layer()
            .file("d/a", "a\n")
            .file("d/b", "b\n")
            .file("keep", "k\n"),
        &b.join("l"),
    );
    let up = b.join("up");
    fs::create_dir(&up).unwrap();
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&up)
            .status()
            .unwrap()
            .success()
    );
    fs::create_dir(up.join("u")).unwrap();
    fs::create_dir(up.join("w")).unwrap();
    fs::create_dir(b.join("m")).unwrap();
    let m = b.join("m");
    let o = ovlfuse_options(
        &[b.join("l")],
        Some((&up.join("u"), &up.join("w"))),
        &[] as &[&str],
    );
    let fm = FuseMount::try_mount(&o, &m, None).unwrap();
    let d = fs::File::open(m.join("d")).unwrap();
    // The lower directory disappears under a live mount.
    fs::remove_dir_all(b.join("l/d")).unwrap();
    let _ = fs::read_dir(m.join("d")).map(|r| r.count());
    // Either the cached old content or an error: never other bytes.
    match fs::read_to_string(m.join("d/a")) {
        Ok(c) => assert_eq!(c, "a\n"),
        Err(e) => assert!(
            matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESTALE)),
            "{e}"
        ),
    }
    let e = fs::write(m.join("d/new"), "n").map_err(|e| e.raw_os_error());
    assert!(
        matches!(
            e,
            Err(Some(libc::ENOENT)) | Err(Some(libc::ESTALE)) | Ok(())
        ),
        "{e:?}"
    );
    drop(d);
    // The upper filesystem turns read-only.
    assert!(
        Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(&up)
            .status()
            .unwrap()
            .success()
    );
    let e = fs::write(m.join("x"), "x").map_err(|e| e.raw_os_error());
    assert_eq!(e, Err(Some(libc::EROFS)));
    let e = fs::OpenOptions::new()
        .append(true)
        .open(m.join("keep"))
        .map(|_| ())
        .map_err(|e| e.raw_os_error());
    assert_eq!(e, Err(Some(libc::EROFS)));
    assert_eq!(
        fs::read_to_string(m.join("keep")).unwrap(),
        "k\n",
        "reads still served"
    );
    assert!(
        fm.daemon_pid().is_some_and(process_alive),
        "daemon survived"
    );
    drop(fm);
    let _ = Command::new("umount").arg(&up).status();
}

#[test]
fn another_user_cannot_set_or_see_private_xattrs() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let t = tempdir();
    let b = t.path();
    put_layer(layer().dir("pub").chmod("pub", 0o777), &b.join("l"));
    for d in ["u", "w", "m"] {
        fs::create_dir(b.join(d)).unwrap();
    }
    let o = ovlfuse_options(
        &[b.join("l")],
        Some((&b.join("u"), &b.join("w"))),
        &["allow_other"],
    );
    let _fm = FuseMount::try_mount(&o, &b.join("m"), None).unwrap();
    let m = b.join("m");
    let (set, get, list) = with_creds(uid, gid, || {
        let f = m.join("pub/mine");
        fs::write(&f, "x").unwrap();
        (
            probe_setxattr(&f, "user.overlay.opaque", b"y", 0),
            probe_getxattr(&f, "user.overlay.opaque"),
            probe_listxattr(&f),
        )
    });
    assert_eq!(set, Err(libc::EOPNOTSUPP));
    assert_eq!(get, Err(libc::ENODATA));
    assert!(list.unwrap().iter().all(|n| !n.contains("overlay")));
}

#[test]
fn sigkill_during_a_burst_loses_nothing_fsynced_and_leaves_no_half_markers() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path().to_path_buf();
    let mut spec = layer();
    for i in 0..200 {
        spec = spec.file(format!("old{i}"), format!("old {i}\n"));
    }
    put_layer(spec, &b.join("l"));
    for d in ["u", "w", "m"] {
        fs::create_dir(b.join(d)).unwrap();
    }
    let o = ovlfuse_options(
        &[b.join("l")],
        Some((&b.join("u"), &b.join("w"))),
        &[] as &[&str],
    );
    let m = b.join("m");
    let fm = FuseMount::try_mount(&o, &m, None).unwrap();
    let pid = fm.daemon_pid().unwrap();
    let done: std::sync::Arc<std::sync::Mutex<Vec<usize>>> = Default::default();
    let d2 = done.clone();
    let m2 = m.clone();
    let worker = std::thread::spawn(move || {
        for i in 0.. {
            let r = (|| -> std::io::Result<()> {
                let mut f = fs::File::create(m2.join(format!("new{i}")))?;
                f.write_all(format!("new {i}\n").as_bytes())?;
                f.sync_all()?;
                d2.lock().unwrap().push(i);
                if i < 200 {
                    fs::remove_file(m2.join(format!("old{i}")))?;
                    fs::rename(m2.join(format!("new{i}")), m2.join(format!("ren{i}")))?;
                }
                Ok(())
            })();
            if r.is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    while done.lock().unwrap().len() < 50 && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    worker.join().unwrap();
    std::mem::forget(fm);
    let synced = done.lock().unwrap().clone();
    assert!(synced.len() >= 50, "burst too short: {}", synced.len());
    // Upper: no temp names, every char device a 0/0 whiteout.
    for e in fs::read_dir(b.join("u")).unwrap() {
        let e = e.unwrap();
        let n = e.file_name().to_string_lossy().into_owned();
        assert!(!n.starts_with('#'), "temp file under its name: {n}");
        let md = fs::symlink_metadata(e.path()).unwrap();
        if std::os::unix::fs::FileTypeExt::is_char_device(&md.file_type()) {
            assert_eq!(std::os::unix::fs::MetadataExt::rdev(&md), 0, "{n}");
        }
    }
    let _again = FuseMount::try_mount(&o, &m, None).unwrap();
    for i in synced {
        let candidates: Vec<PathBuf> = vec![m.join(format!("new{i}")), m.join(format!("ren{i}"))];
        let found = candidates.iter().find_map(|p| fs::read_to_string(p).ok());
        assert_eq!(
            found.as_deref(),
            Some(format!("new {i}\n").as_str()),
            "fsynced file {i} lost"
        );
    }
}

#[test]
fn write_drops_security_capability_and_setid_bits_like_the_kernel() {
    if !need_twin() {
        return;
    }
    // vfs_cap_data v2: magic, then permitted/inheritable pairs; CAP_NET_RAW.
    let mut cap = Vec::new();
    cap.extend_from_slice(&0x0200_0000u32.to_le_bytes());
    cap.extend_from_slice(&(1u32 << 13).to_le_bytes());
    cap.extend_from_slice(&[0u8; 12]);
    let lower = layer()
        .file("capped", "bin\n")
        .xattr("capped", "security.capability", &cap)
        .file_mode("setid", "s\n", 0o6755);
    let (uid, gid) = ensure_user("ovltest");
    let twin = Twin::builder().lower(lower).fuse_opt("allow_other").mount();
    // Root writes the capped file; an ordinary user writes the set-id one
    // (world-writable first, so the user may).
    let r = assert_both_eq!(twin, |r: &Path| {
        probe_append(&r.join("capped"), b"x")?;
        probe_getxattr(&r.join("capped"), "security.capability")
    });
    assert_eq!(r, Err(libc::ENODATA), "capability dropped on write");
    twin.both(|r| probe_chmod(&r.join("setid"), 0o6777).unwrap());
    let (f, k) = twin.both_as(uid, gid, |r| {
        probe_append(&r.join("setid"), b"y").map(|_| ())
    });
    assert_eq!(f, k);
    let modes = assert_both_eq!(twin, |r: &Path| probe_lstat(&r.join("setid"))
        .map(|s| s.perm));
    assert_eq!(
        modes.unwrap() & 0o6000,
        0,
        "set-id bits cleared by an unprivileged write"
    );
}
