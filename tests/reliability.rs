//! Reliability and security (issue 5): a panicking handler answers EIO and
//! the daemon keeps serving; SIGKILL mid copy-up leaves no partial file;
//! ENOSPC leaves nothing behind and the mount recovers; swapping layer
//! directories for symlinks never steers an operation outside the layers.

mod common;

use common::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Dirs {
    _t: tempfile::TempDir,
    b: PathBuf,
}

impl Dirs {
    fn new() -> Dirs {
        let t = tempdir();
        let b = t.path().to_path_buf();
        for d in ["l", "u", "w", "m"] {
            fs::create_dir(b.join(d)).unwrap();
        }
        Dirs { _t: t, b }
    }
    fn opts(&self) -> String {
        ovlfuse_options(
            &[self.b.join("l")],
            Some((&self.b.join("u"), &self.b.join("w"))),
            &[] as &[&str],
        )
    }
}

fn errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn handler_panic_answers_eio_and_daemon_keeps_serving() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    fs::write(d.b.join("l/ok"), "fine\n").unwrap();
    let m = d.b.join("m");
    let st = Command::new(ovlfuse_bin())
        .env("OVLFUSE_PANIC_ON_LOOKUP", "boom")
        .args(["-o", &d.opts()])
        .arg(&m)
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(errno(fs::metadata(m.join("boom"))), Some(libc::EIO));
    // Again, and other requests still work.
    assert_eq!(errno(fs::metadata(m.join("boom"))), Some(libc::EIO));
    assert_eq!(fs::read_to_string(m.join("ok")).unwrap(), "fine\n");
    fs::write(m.join("new"), "n").unwrap();
    assert!(force_unmount(&m));
}

#[test]
fn sigkill_mid_copy_up_leaves_no_partial_file_and_workdir_is_cleared() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    // 256 MiB of non-zero data, so the copy takes a while and has no holes.
    let big = d.b.join("l/big");
    {
        let mut f = fs::File::create(&big).unwrap();
        let chunk: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8 + 1).collect();
        for _ in 0..256 {
            f.write_all(&chunk).unwrap();
        }
    }
    let lower_len = fs::metadata(&big).unwrap().len();
    let m = d.b.join("m");
    let fm = FuseMount::try_mount(&d.opts(), &m, None).unwrap();
    let pid = fm.daemon_pid().expect("daemon pid");
    // Opening for write triggers the copy-up; kill the daemon during it.
    let target = m.join("big");
    let writer =
        std::thread::spawn(move || fs::OpenOptions::new().append(true).open(target).map(|_| ()));
    let start = Instant::now();
    while !fs::read_dir(d.b.join("w/work"))
        .map(|r| r.count() > 0)
        .unwrap_or(false)
        && start.elapsed() < Duration::from_secs(5)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let _ = writer.join();
    std::mem::forget(fm);
    // Never a partial file under the real name.
    if let Ok(up) = fs::metadata(d.b.join("u/big")) {
        assert_eq!(up.len(), lower_len, "upper copy is complete or absent");
    }
    let again = FuseMount::try_mount(&d.opts(), &m, None).unwrap();
    assert_eq!(
        fs::read_dir(d.b.join("w/work")).unwrap().count(),
        0,
        "leftovers cleared at mount"
    );
    assert_eq!(fs::metadata(m.join("big")).unwrap().len(), lower_len);
    let mut f = fs::File::open(m.join("big")).unwrap();
    let mut buf = vec![0u8; 4096];
    std::io::Read::read_exact(&mut f, &mut buf).unwrap();
    assert!(
        buf.iter()
            .enumerate()
            .all(|(i, b)| *b == (i % 251) as u8 + 1)
    );
    drop(f);
    drop(again);
}

#[test]
fn enospc_copy_up_leaves_nothing_and_succeeds_after_space_is_freed() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    // Upper and workdir on a 2 MiB tmpfs; the lower file needs 4 MiB.
    let small = d.b.join("small");
    fs::create_dir(&small).unwrap();
    assert!(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
            .arg(&small)
            .status()
            .unwrap()
            .success()
    );
    fs::create_dir(small.join("u")).unwrap();
    fs::create_dir(small.join("w")).unwrap();
    fs::write(d.b.join("l/four"), vec![7u8; 4 << 20]).unwrap();
    fs::write(d.b.join("l/tiny"), "t\n").unwrap();
    let m = d.b.join("m");
    let opts = ovlfuse_options(
        &[d.b.join("l")],
        Some((&small.join("u"), &small.join("w"))),
        &[] as &[&str],
    );
    let fm = FuseMount::try_mount(&opts, &m, None).unwrap();
    let e = fs::OpenOptions::new()
        .append(true)
        .open(m.join("four"))
        .map(|_| ());
    assert_eq!(errno(e), Some(libc::ENOSPC));
    assert!(
        !small.join("u/four").exists(),
        "failed copy-up left a file in upper"
    );
    assert_eq!(
        fs::read_dir(small.join("w/work")).unwrap().count(),
        0,
        "failed copy-up left a temp file"
    );
    // Still usable, and the lower content is intact.
    fs::write(m.join("note"), "still here\n").unwrap();
    assert_eq!(fs::metadata(m.join("four")).unwrap().len(), 4 << 20);
    // A write that fills the upper fails with ENOSPC too.
    let mut f = fs::File::create(m.join("fill")).unwrap();
    let chunk = vec![1u8; 1 << 20];
    let mut err = None;
    for _ in 0..4 {
        if let Err(e) = f.write_all(&chunk).and_then(|_| f.sync_all()) {
            err = e.raw_os_error();
            break;
        }
    }
    assert_eq!(err, Some(libc::ENOSPC));
    drop(f);
    fs::remove_file(m.join("fill")).unwrap();
    // Free space: grow the tmpfs; the same copy-up now succeeds.
    assert!(
        Command::new("mount")
            .args(["-o", "remount,size=32m"])
            .arg(&small)
            .status()
            .unwrap()
            .success()
    );
    let mut w = fs::OpenOptions::new()
        .append(true)
        .open(m.join("four"))
        .unwrap();
    w.write_all(b"!").unwrap();
    drop(w);
    assert_eq!(
        fs::metadata(small.join("u/four")).unwrap().len(),
        (4 << 20) + 1
    );
    drop(fm);
    let _ = Command::new("umount").arg(&small).status();
}

fn snapshot_outside(p: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `*at` calls on a directory fd opened through the mount before the swap:
/// these reach the daemon with the directory's node, so only the daemon's
/// own resolution is tested (a fresh path walk would see the new symlink in
/// the merged view and follow it in the caller, as on any filesystem).
struct AtDir(std::os::fd::OwnedFd);
impl AtDir {
    fn open(p: &Path) -> AtDir {
        AtDir(fs::File::open(p).unwrap().into())
    }
    fn c(name: &str) -> std::ffi::CString {
        std::ffi::CString::new(name).unwrap()
    }
    fn raw(&self) -> i32 {
        std::os::fd::AsRawFd::as_raw_fd(&self.0)
    }
    fn create(&self, name: &str) -> i32 {
        let fd = unsafe {
            libc::openat(
                self.raw(),
                Self::c(name).as_ptr(),
                libc::O_CREAT | libc::O_WRONLY,
                0o644,
            )
        };
        if fd >= 0 {
            unsafe { libc::write(fd, b"x".as_ptr() as *const libc::c_void, 1) };
            unsafe { libc::close(fd) };
        }
        fd
    }
    fn append(&self, name: &str) -> i32 {
        let fd = unsafe {
            libc::openat(
                self.raw(),
                Self::c(name).as_ptr(),
                libc::O_APPEND | libc::O_WRONLY,
            )
        };
        if fd >= 0 {
            unsafe { libc::write(fd, b"x".as_ptr() as *const libc::c_void, 1) };
            unsafe { libc::close(fd) };
        }
        fd
    }
    fn unlink(&self, name: &str) -> i32 {
        unsafe { libc::unlinkat(self.raw(), Self::c(name).as_ptr(), 0) }
    }
    fn mkdir(&self, name: &str) -> i32 {
        unsafe { libc::mkdirat(self.raw(), Self::c(name).as_ptr(), 0o755) }
    }
}

#[test]
fn layer_dirs_swapped_for_symlinks_never_reach_outside() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let d = Dirs::new();
    let outside = d.b.join("outside");
    fs::create_dir(&outside).unwrap();
    for n in ["f", "victim", "a"] {
        fs::write(outside.join(n), format!("outside {n}\n")).unwrap();
    }
    fs::create_dir(d.b.join("l/d")).unwrap();
    fs::write(d.b.join("l/d/f"), "lower f\n").unwrap();
    fs::write(d.b.join("l/d/victim"), "lower victim\n").unwrap();
    let m = d.b.join("m");
    let fm = FuseMount::try_mount(&d.opts(), &m, None).unwrap();
    let before = snapshot_outside(&outside);
    // Lower layer: its directory d becomes a symlink to outside.
    let dd = AtDir::open(&m.join("d"));
    fs::rename(d.b.join("l/d"), d.b.join("l/d.real")).unwrap();
    std::os::unix::fs::symlink(&outside, d.b.join("l/d")).unwrap();
    let results = [
        dd.append("f"),
        dd.create("new"),
        dd.unlink("victim"),
        dd.mkdir("sub"),
    ];
    assert_eq!(
        snapshot_outside(&outside),
        before,
        "outside changed through a lower symlink: {results:?}"
    );
    // Upper layer: a copied-up directory becomes a symlink to outside.
    fs::create_dir(m.join("up")).unwrap();
    fs::write(m.join("up/a"), "a").unwrap();
    let ud = AtDir::open(&m.join("up"));
    fs::rename(d.b.join("u/up"), d.b.join("u/up.real")).unwrap();
    std::os::unix::fs::symlink(&outside, d.b.join("u/up")).unwrap();
    let results = [
        ud.create("new"),
        ud.unlink("victim"),
        ud.unlink("a"),
        ud.append("f"),
        ud.mkdir("sub"),
    ];
    assert_eq!(
        snapshot_outside(&outside),
        before,
        "outside changed through an upper symlink: {results:?}"
    );
    // The daemon answered errors, not success, and still serves.
    assert!(results.iter().all(|r| *r < 0), "{results:?}");
    fs::write(m.join("still"), "ok").unwrap();
    drop(fm);
}

/// ovlfuse's request counter `name` from the stats xattr.
fn stat_count(m: &Path, name: &str) -> u64 {
    let v = probe_getxattr(m, "ovlfuse.stats").expect("stats xattr");
    String::from_utf8_lossy(&v)
        .lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn upper_files_are_passed_through_as_root_and_nopassthrough_turns_it_off() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    for (opts, passed) in [(&[] as &[&str], true), (&["nopassthrough"], false)] {
        let t = tempdir();
        let (l, u, w, m) = (
            t.path().join("l"),
            t.path().join("u"),
            t.path().join("w"),
            t.path().join("m"),
        );
        for d in [&l, &u, &w, &m] {
            fs::create_dir_all(d).unwrap();
        }
        fs::write(l.join("lower"), b"lower data").unwrap();
        let _fm = FuseMount::mount(std::slice::from_ref(&l), Some((&u, &w)), &m, opts);
        // A new file, and a lower file opened for reading, then copied up
        // by a writer while the reader still holds it open.
        let mut f = fs::File::create(m.join("new")).unwrap();
        f.write_all(&vec![b'n'; 1 << 20]).unwrap();
        f.sync_all().unwrap();
        drop(f);
        let reader = fs::File::open(m.join("lower")).unwrap();
        let mut wr = fs::OpenOptions::new()
            .append(true)
            .open(m.join("lower"))
            .unwrap();
        wr.write_all(b", appended").unwrap();
        let mut buf = vec![0u8; 64];
        let n = std::os::unix::fs::FileExt::read_at(&reader, &mut buf, 0).unwrap();
        assert_eq!(
            &buf[..n],
            b"lower data, appended",
            "the reader follows the copy-up"
        );
        drop((reader, wr));
        assert_eq!(fs::read(m.join("new")).unwrap().len(), 1 << 20);
        assert_eq!(fs::read(u.join("lower")).unwrap(), b"lower data, appended");
        let writes = stat_count(&m, "requests_write ");
        if passed {
            // The new file went straight to the upper; the copied-up file
            // had a page-cache reader open, so its write came to us.
            assert_eq!(writes, 1, "only the write beside a cached reader is served");
        } else {
            assert!(
                writes > 1,
                "nopassthrough: every write is served ({writes})"
            );
        }
    }
}
