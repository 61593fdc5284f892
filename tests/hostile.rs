//! Hostile inputs (issue 5): names at the limits, malformed markers,
//! lowers that vanish and an upper that turns read-only while mounted,
//! private xattrs refused to another user, and a daemon killed during a
//! burst of fsynced work. Issue 19: symlinks, FIFOs and devices swapped
//! into the layers behind the daemon, paths deeper than PATH_MAX, and
//! chown's set-id rule.
//!
//! The swap races (`fchmod_while_a_symlink_is_exchanged_in_...`,
//! `opens_racing_a_fifo_exchange_...`) run for `OVLFUSE_SWAP_SECS` seconds
//! per mount (default 2; the window they hunt is about 1 in 3000 tries):
//!
//!     OVLFUSE_SWAP_SECS=120 cargo test --release --test hostile -- racing --nocapture

mod common;

use common::*;
use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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

/// How long each swap race runs on each mount (see the module doc).
fn swap_secs() -> Duration {
    let s = std::env::var("OVLFUSE_SWAP_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s)
}

fn mkfifo(p: &Path) {
    sys::mknod(p, libc::S_IFIFO | 0o666, 0, 0).unwrap();
}

/// Exchange `a` and `b` (RENAME_EXCHANGE) until `stop`; returns the count.
fn exchange_until(a: PathBuf, b: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            probe_rename(&a, &b, libc::RENAME_EXCHANGE).unwrap();
            n += 1;
        }
        n
    })
}

#[test]
fn fchmod_while_a_symlink_is_exchanged_in_never_changes_a_file_outside() {
    if !need_twin() {
        return;
    }
    let twin = Twin::builder()
        .lower(layer().file("keep", "k\n"))
        .upper(layer().file("f", "data\n"))
        .mount();
    let outside = tempdir();
    let victim = outside.path().join("victim");
    fs::write(&victim, "outside the layers\n").unwrap();
    sys::chmod(&victim, 0o600).unwrap();
    for (mnt, upper) in [
        (twin.fuse_mnt(), twin.fuse_upper()),
        (twin.kern_mnt(), twin.kern_upper()),
    ] {
        std::os::unix::fs::symlink(&victim, upper.join("link")).unwrap();
        // Opened before the swaps begin; fchmod then asks by inode.
        let file = fs::File::open(mnt.join("f")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = exchange_until(upper.join("f"), upper.join("link"), stop.clone());
        let end = Instant::now() + swap_secs();
        let mut tries = 0u64;
        while Instant::now() < end {
            let mode = if tries.is_multiple_of(2) {
                0o640
            } else {
                0o604
            };
            unsafe { libc::fchmod(file.as_raw_fd(), mode) };
            tries += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        let perm = probe_lstat(&victim).unwrap().perm;
        assert_eq!(
            perm,
            0o600,
            "{}: a file outside the layers changed mode ({tries} fchmods, {swaps} swaps)",
            mnt.display()
        );
    }
}

/// Open every FIFO among `paths` for writing, without blocking: releases
/// a reader stuck opening one.
fn release_fifos(paths: &[PathBuf]) {
    for p in paths {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_NONBLOCK) };
        if fd >= 0 {
            unsafe { libc::close(fd) };
        }
    }
}

/// Run `f` on a thread; its result if it returns within `limit`.
fn within<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> (std::thread::JoinHandle<T>, bool) {
    let t = std::thread::spawn(f);
    let end = Instant::now() + limit;
    while !t.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(10));
    }
    let done = t.is_finished();
    (t, done)
}

/// Wait for `threads`, opening `fifos` for writing meanwhile so that none
/// stays blocked in an open.
fn join_releasing<T>(threads: Vec<std::thread::JoinHandle<T>>, fifos: &[PathBuf]) -> Vec<T> {
    while threads.iter().any(|t| !t.is_finished()) {
        release_fifos(fifos);
        std::thread::sleep(Duration::from_millis(10));
    }
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

/// open(2) and read(2) only: no stat, which after a read would ask the
/// daemon for the inode's attributes (the atime went stale) and find the
/// swapped-in object's type, which the kernel answers by marking the inode
/// bad (EIO from then on): the race would stop reaching the daemon.
fn read_plain(p: &Path) -> Result<Vec<u8>, i32> {
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(sys::errno());
    }
    let mut buf = vec![0u8; 64];
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    let e = sys::errno();
    unsafe { libc::close(fd) };
    if n < 0 {
        return Err(e);
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// An O_PATH fd on `p` through a mount: `/proc/self/fd/N` then reopens
/// that very inode, so an open reaches the filesystem as an OPEN of it
/// with no new lookup (which would see what was swapped in, and leave a
/// FIFO's open to the kernel).
fn hold(p: &Path) -> (std::os::fd::OwnedFd, PathBuf) {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    assert!(fd >= 0, "{}: {}", p.display(), sys::errno());
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let again = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
    (fd, again)
}

/// FIFOs and devices swapped in behind the daemon for regular files of the
/// upper and of a lower, then the files reopened (by inode, see [`hold`]).
/// The kernel overlayfs opens the objects it holds and reads their bytes;
/// ovlfuse must never block in a FIFO's open nor open or read a device:
/// ESTALE. Both keep serving.
#[test]
fn a_fifo_or_device_swapped_in_for_a_file_is_never_opened_or_read() {
    if !need_twin() {
        return;
    }
    let twin = Twin::builder()
        .lower(layer().file("lf", "lower\n").file("lz", "lower z\n"))
        .upper(
            layer()
                .file("uf", "upper\n")
                .file("uz", "upper z\n")
                .file("keep", "keep\n"),
        )
        .mount();
    let want: [(&str, &[u8]); 4] = [
        ("uf", b"upper\n"),
        ("lf", b"lower\n"),
        ("uz", b"upper z\n"),
        ("lz", b"lower z\n"),
    ];
    for (mnt, upper, lower) in [
        (twin.fuse_mnt(), twin.fuse_upper(), twin.fuse_lower(0)),
        (twin.kern_mnt(), twin.kern_upper(), twin.kern_lower(0)),
    ] {
        let held: Vec<_> = want.iter().map(|(n, _)| hold(&mnt.join(n))).collect();
        // Behind the daemon: FIFOs over uf and lf, /dev/zero (1/5) over
        // uz and lz.
        let mut fifos = Vec::new();
        for (dir, f, z) in [(upper, "uf", "uz"), (lower, "lf", "lz")] {
            mkfifo(&dir.join("new"));
            fs::rename(dir.join("new"), dir.join(f)).unwrap();
            fifos.push(dir.join(f));
            sys::mknod(&dir.join("new"), libc::S_IFCHR | 0o666, 1, 5).unwrap();
            fs::rename(dir.join("new"), dir.join(z)).unwrap();
        }
        // More opens of the FIFOs than the daemon has event loops.
        let openers: Vec<_> = (0..10)
            .map(|i| {
                let p = held[i % 2].1.clone();
                std::thread::spawn(move || probe_read(&p))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        let keep = mnt.join("keep");
        let (t, served) = within(Duration::from_secs(5), move || probe_read(&keep));
        let openers_done = openers.iter().all(|t| t.is_finished());
        let opened = join_releasing(openers, &fifos);
        let keep = join_releasing(vec![t], &fifos);
        let m = mnt.display();
        assert!(served, "{m}: the mount stopped serving");
        assert_eq!(keep[0].as_deref(), Ok(&b"keep\n"[..]), "{m}");
        assert!(openers_done, "{m}: opens blocked in a FIFO: {opened:?}");
        for (i, r) in opened.iter().enumerate() {
            let data = want[i % 2].1;
            assert!(
                *r == Err(libc::ESTALE) || r.as_deref() == Ok(data),
                "{m}: {r:?}"
            );
        }
        for (i, (n, data)) in want.iter().enumerate().skip(2) {
            let r = probe_read(&held[i].1);
            assert!(
                r == Err(libc::ESTALE) || r.as_deref() == Ok(*data),
                "{m}: read {n} through a device: {r:?}"
            );
        }
    }
}

#[test]
fn opens_racing_a_fifo_exchange_never_block_the_daemon() {
    if !need_twin() {
        return;
    }
    let twin = Twin::builder()
        .lower(layer().file("g", "lower\n"))
        .upper(layer().file("f", "upper\n"))
        .mount();
    for (mnt, upper, lower) in [
        (twin.fuse_mnt(), twin.fuse_upper(), twin.fuse_lower(0)),
        (twin.kern_mnt(), twin.kern_upper(), twin.kern_lower(0)),
    ] {
        let held = [hold(&mnt.join("f")), hold(&mnt.join("g"))];
        let paths = [held[0].1.clone(), held[1].1.clone()];
        mkfifo(&upper.join("p"));
        mkfifo(&lower.join("q"));
        let fifos = [
            upper.join("f"),
            upper.join("p"),
            lower.join("g"),
            lower.join("q"),
        ];
        let stop = Arc::new(AtomicBool::new(false));
        let swappers = [
            exchange_until(upper.join("f"), upper.join("p"), stop.clone()),
            exchange_until(lower.join("g"), lower.join("q"), stop.clone()),
        ];
        let done = Arc::new(AtomicU64::new(0));
        let bad: Arc<std::sync::Mutex<Vec<String>>> = Default::default();
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (stop, done, bad) = (stop.clone(), done.clone(), bad.clone());
                let paths = paths.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        for (p, want) in paths.iter().zip([&b"upper\n"[..], &b"lower\n"[..]]) {
                            match read_plain(p) {
                                Err(libc::ESTALE) => {}
                                Ok(v) if v == want => {}
                                r => bad.lock().unwrap().push(format!("{r:?}")),
                            }
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        let end = Instant::now() + swap_secs();
        let (mut seen, mut since) = (0, Instant::now());
        let mut hung = false;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(20));
            let d = done.load(Ordering::Relaxed);
            if d != seen {
                (seen, since) = (d, Instant::now());
            } else if since.elapsed() > Duration::from_secs(5) {
                hung = true;
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps: u64 = swappers.into_iter().map(|s| s.join().unwrap()).sum();
        join_releasing(readers, &fifos);
        let m = mnt.display();
        assert!(
            !hung,
            "{m}: opens blocked for 5 s ({seen} opens, {swaps} swaps)"
        );
        assert!(seen > 0, "{m}: no open completed");
        let bad = bad.lock().unwrap();
        assert!(
            bad.is_empty(),
            "{m}: {} bad reads, e.g. {:?}",
            bad.len(),
            bad.first()
        );
        drop(held);
    }
}

/// Open the directory `rel` under `root` (possibly longer than PATH_MAX)
/// one component at a time: returns its fd, to be reached as
/// /proc/self/fd/N, a short path.
fn open_deep(root: &Path, rel: &Path) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    let mut cur: std::os::fd::OwnedFd = fs::File::open(root)
        .map_err(|e| e.raw_os_error().unwrap())?
        .into();
    for c in rel.iter() {
        let n = std::ffi::CString::new(c.as_bytes()).unwrap();
        let fd = unsafe {
            libc::openat(
                cur.as_raw_fd(),
                n.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(sys::errno());
        }
        cur = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    }
    Ok(cur)
}

/// Make the directories of `rel` (and a file `f` with `data`) under `root`,
/// one component at a time.
fn make_deep(root: &Path, rel: &Path, data: &[u8]) {
    let mut sofar = PathBuf::new();
    for c in rel.iter() {
        let d = open_deep(root, &sofar).unwrap();
        let n = std::ffi::CString::new(c.as_bytes()).unwrap();
        assert_eq!(
            unsafe { libc::mkdirat(d.as_raw_fd(), n.as_ptr(), 0o755) },
            0
        );
        sofar.push(c);
    }
    let d = open_deep(root, rel).unwrap();
    fs::write(format!("/proc/self/fd/{}/f", d.as_raw_fd()), data).unwrap();
}

#[test]
fn paths_deeper_than_path_max_work_as_on_the_kernel() {
    if !need_twin() {
        return;
    }
    let twin = Twin::builder()
        .lower(layer().dir("deep").file("top", "t\n"))
        .mount();
    // 30 nested 200-byte names: over 6000 bytes below the mount.
    let rel: PathBuf = (0..30)
        .map(|i| format!("{i:02}{}", "d".repeat(198)))
        .collect();
    assert!(rel.as_os_str().len() > 6000);
    // Behind both mounts, before anything below `deep` was looked up.
    for l in [twin.fuse_lower(0), twin.kern_lower(0)] {
        make_deep(&l.join("deep"), &rel, b"bottom\n");
    }
    let r = assert_both_eq!(twin, |m: &Path| {
        let d = open_deep(&m.join("deep"), &rel)?;
        let at = |n: &str| PathBuf::from(format!("/proc/self/fd/{}/{n}", d.as_raw_fd()));
        Ok::<_, i32>(vec![
            probe_read(&at("f")).map(|v| String::from_utf8_lossy(&v).into_owned()),
            probe_append(&at("f"), b"appended\n").map(|n| n.to_string()),
            probe_read(&at("f")).map(|v| String::from_utf8_lossy(&v).into_owned()),
            probe_lstat(&at("f")).map(|s| format!("{:o} {:?}", s.perm, s.size)),
            probe_create(&at("new"), 0o644).map(|_| String::new()),
            probe_readdir(&at("")).map(|v| v.join(",")),
            probe_unlink(&at("f")).map(|_| String::new()),
            probe_readdir(&at("")).map(|v| v.join(",")),
        ])
    });
    let r = r.expect("the bottom directory opens");
    assert_eq!(r[2], Ok("bottom\nappended\n".to_string()));
}

#[test]
fn chown_by_root_keeps_setgid_without_group_execute_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let lower = layer()
        .file("plain", "p\n")
        .chown("plain", uid, gid)
        .chmod("plain", 0o6640)
        .file("gexec", "g\n")
        .chown("gexec", uid, gid)
        .chmod("gexec", 0o6750);
    let twin = Twin::builder().lower(lower).mount();
    let r = assert_both_eq!(twin, |m: &Path| {
        ["plain", "gexec"].map(|n| {
            probe_chown(&m.join(n), 0, u32::MAX)?;
            probe_lstat(&m.join(n)).map(|s| s.perm)
        })
    });
    // setuid always goes; setgid stays without group execute (root has
    // CAP_FSETID), and goes with it.
    assert_eq!(r, [Ok(0o2640), Ok(0o750)]);
    twin.assert_same_upper();
}
