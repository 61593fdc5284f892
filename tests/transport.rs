//! The FUSE transport: io_uring when the kernel offers it, /dev/fuse
//! otherwise, `-o uring` / `-o nouring` to insist or refuse, and what each
//! says about itself. These tests flip the kernel's switch
//! (/sys/module/fuse/parameters/enable_uring), so they run one at a time and
//! the harness puts the switch back when the binary exits.

mod common;

use common::transport::{SWITCH, of_mount, set_switch, stat_of_mount, switch};
use common::*;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn env() -> bool {
    env_ok(&[Need::Root, Need::Fuse])
        && need(
            &format!("FUSE over io_uring ({SWITCH}; Linux 6.14+)"),
            switch().is_some(),
        )
}

/// `Dirs` with a lower file `f` and a lower directory `d` holding `g`.
fn dirs() -> Dirs {
    let d = Dirs::new();
    fs::write(d.p("l/f"), "lower\n").unwrap();
    fs::create_dir(d.p("l/d")).unwrap();
    fs::write(d.p("l/d/g"), "g").unwrap();
    d
}

fn queues() -> usize {
    let s = fs::read_to_string("/sys/devices/system/cpu/possible").unwrap();
    s.trim()
        .split(',')
        .filter_map(|r| r.rsplit('-').next()?.parse::<usize>().ok())
        .max()
        .unwrap()
        + 1
}

/// The transport line, once the rings have had a moment to register.
fn settled_transport(mnt: &Path) -> String {
    settled_transport_as(mnt, None)
}

/// `settled_transport`, asked by `user` (only they may use their mount).
fn settled_transport_as(mnt: &Path, user: Option<(u32, u32)>) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = match user {
            Some((uid, gid)) => with_creds(uid, gid, || of_mount(&ovlfuse_bin(), mnt)),
            None => of_mount(&ovlfuse_bin(), mnt),
        };
        if !t.contains("starting") && !t.contains("registering") || Instant::now() > deadline {
            return t;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Copy-up, whiteout and opaque directory through a mount, checked in its
/// upper layer: the overlay works over whichever transport it has.
fn exercise(d: &Dirs) {
    let m = d.p("m");
    assert_eq!(fs::read_to_string(m.join("f")).unwrap(), "lower\n");
    fs::OpenOptions::new()
        .append(true)
        .open(m.join("f"))
        .unwrap()
        .write_all(b"upper\n")
        .unwrap();
    assert_eq!(fs::read_to_string(d.p("u/f")).unwrap(), "lower\nupper\n");
    assert_eq!(fs::read_to_string(d.p("l/f")).unwrap(), "lower\n");
    fs::remove_dir_all(m.join("d")).unwrap();
    fs::create_dir(m.join("d")).unwrap();
    assert_eq!(fs::read_dir(m.join("d")).unwrap().count(), 0);
    assert!(d.p("l/d/g").exists());
    fs::remove_file(m.join("f")).unwrap();
    assert!(!m.join("f").exists());
    let wh = fs::symlink_metadata(d.p("u/f")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
}

#[test]
fn io_uring_is_taken_when_offered_and_dev_fuse_when_not() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let d = dirs();
    let fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), None).unwrap();
    let t = settled_transport(&d.p("m"));
    let n = queues();
    assert_eq!(t, format!("io_uring ({n} queues x 8 entries)"));
    exercise(&d);
    drop(fm);

    set_switch(false).unwrap();
    let d = dirs();
    let fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), None).unwrap();
    let t = settled_transport(&d.p("m"));
    assert!(
        t.starts_with("/dev/fuse (the kernel did not offer FUSE over io_uring")
            && t.contains(SWITCH),
        "{t}"
    );
    exercise(&d);
    drop(fm);
}

#[test]
fn the_debug_log_says_which_transport_serves_and_why() {
    if !env() {
        return;
    }
    let _s = serial();
    for (on, says) in [
        (true, "FUSE over io_uring: "),
        (false, "serving through /dev/fuse: the kernel did not offer"),
    ] {
        set_switch(on).unwrap();
        let d = dirs();
        let mut child = Command::new(ovlfuse_bin())
            .arg("-d")
            .arg("-o")
            .arg(d.opts(""))
            .arg(d.p("m"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        while Instant::now() < deadline && !seen.iter().any(|l: &String| l.contains(says)) {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                seen.push(l);
            }
        }
        assert!(
            seen.iter().any(|l| l.contains(says)),
            "no {says:?} in the -d log:\n{}",
            seen.join("\n")
        );
        force_unmount(&d.p("m"));
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn uring_insists_and_fails_in_one_line_naming_the_switch() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(false).unwrap();
    let d = dirs();
    let e = FuseMount::try_mount(&d.opts("uring"), &d.p("m"), None)
        .map(|_| ())
        .unwrap_err();
    let out: Vec<&str> = e
        .split("output:\n")
        .nth(1)
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert_eq!(out.len(), 1, "{e}");
    assert!(
        out[0].starts_with("ovlfuse: -o uring: ") && out[0].contains(SWITCH),
        "{e}"
    );
    assert!(!is_mounted(&d.p("m")));

    set_switch(true).unwrap();
    let fm = FuseMount::try_mount(&d.opts("uring"), &d.p("m"), None).unwrap();
    assert!(settled_transport(&d.p("m")).starts_with("io_uring ("));
    exercise(&d);
    drop(fm);
}

#[test]
fn nouring_serves_through_dev_fuse_though_offered() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let d = dirs();
    let fm = FuseMount::try_mount(&d.opts("nouring"), &d.p("m"), None).unwrap();
    assert_eq!(
        settled_transport(&d.p("m")),
        "/dev/fuse (io_uring not asked for)"
    );
    exercise(&d);
    drop(fm);

    // auto_unmount keeps /dev/fuse (fusermount3 must find the connection
    // gone the moment the daemon dies), and refuses an insisted uring.
    let d = dirs();
    let fm = FuseMount::try_mount(&d.opts("auto_unmount"), &d.p("m"), None).unwrap();
    assert!(
        settled_transport(&d.p("m")).starts_with("/dev/fuse (auto_unmount: "),
        "{}",
        settled_transport(&d.p("m"))
    );
    drop(fm);
    let e = FuseMount::try_mount(&d.opts("auto_unmount,uring"), &d.p("m"), None)
        .map(|_| ())
        .unwrap_err();
    assert!(
        e.contains("uring and auto_unmount do not go together"),
        "{e}"
    );
    assert!(!is_mounted(&d.p("m")));
}

#[test]
fn uring_depth_sets_the_entries_and_more_requests_than_entries_wait_their_turn() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let d = dirs();
    for bad in ["uring_depth=0", "uring_depth=5000", "uring_depth=x"] {
        let e = FuseMount::try_mount(&d.opts(bad), &d.p("m"), None)
            .map(|_| ())
            .unwrap_err();
        assert!(e.contains("uring_depth="), "{e}");
    }
    for i in 0..64 {
        fs::write(d.p(&format!("l/n{i}")), format!("{i}")).unwrap();
    }
    let fm = FuseMount::try_mount(&d.opts("uring_depth=1"), &d.p("m"), None).unwrap();
    assert_eq!(
        settled_transport(&d.p("m")),
        format!("io_uring ({} queues x 1 entries)", queues())
    );
    let m = d.p("m");
    std::thread::scope(|s| {
        for t in 0..16 {
            let m = &m;
            s.spawn(move || {
                for r in 0..20 {
                    let i = (t * 7 + r) % 64;
                    let p = m.join(format!("n{i}"));
                    assert_eq!(fs::read_to_string(&p).unwrap(), format!("{i}"));
                    fs::write(m.join(format!("t{t}")), format!("{r}")).unwrap();
                }
            });
        }
    });
    assert_eq!(fs::read_dir(&m).unwrap().count(), 64 + 16 + 2);
    drop(fm);
}

#[test]
fn large_replies_reads_writes_xattrs_listings_and_splice_over_io_uring() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let d = dirs();
    // 3 MiB and a bit, in a pattern that shows misplaced bytes.
    let big: Vec<u8> = (0..3 * 1024 * 1024 + 4099u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    fs::write(d.p("l/big"), &big).unwrap();
    // As large as ext4 takes without ea_inode.
    let value = vec![0x5au8; 3000];
    xattr_set(&d.p("l/big"), "user.big", &value);
    // As many as one ext4 block holds.
    for i in 0..80 {
        xattr_set(&d.p("l/f"), &format!("user.name{i:03}"), b"v");
    }
    fs::create_dir(d.p("l/many")).unwrap();
    for i in 0..3000 {
        fs::write(d.p(&format!("l/many/entry-with-a-long-name-{i:05}")), "").unwrap();
    }
    // nopassthrough: every byte of I/O crosses the ring.
    for extra in ["uring,nopassthrough", "uring"] {
        let fm = FuseMount::try_mount(&d.opts(extra), &d.p("m"), None).unwrap();
        let m = d.p("m");
        let mut got = Vec::new();
        let mut f = fs::File::open(m.join("big")).unwrap();
        let mut chunk = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        assert!(got == big, "{extra}: read differs");
        assert_eq!(xattr_get(&m.join("big"), "user.big"), value, "{extra}");
        let names = xattr_list(&m.join("f"));
        assert_eq!(
            names.iter().filter(|n| n.starts_with("user.name")).count(),
            80
        );
        assert_eq!(fs::read_dir(m.join("many")).unwrap().count(), 3000);

        // sendfile: the kernel splices from the mount's page cache.
        let src = fs::File::open(m.join("big")).unwrap();
        let dst_path = d.p(&format!("sent-{}", extra.len()));
        let dst = fs::File::create(&dst_path).unwrap();
        let mut left = big.len();
        while left > 0 {
            // SAFETY: two open fds, a null offset (the file position).
            let n = unsafe {
                libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), std::ptr::null_mut(), left)
            };
            assert!(n > 0, "sendfile: {}", std::io::Error::last_os_error());
            left -= n as usize;
        }
        drop(dst);
        assert!(
            fs::read(&dst_path).unwrap() == big,
            "{extra}: sendfile differs"
        );

        // Writes of 1 MiB, then read back through the mount.
        let w = m.join(format!("w-{}", extra.len()));
        let mut out = fs::File::create(&w).unwrap();
        for c in big.chunks(1 << 20) {
            out.write_all(c).unwrap();
        }
        out.sync_all().unwrap();
        drop(out);
        drop(fm);
        let upper = d.p(&format!("u/w-{}", extra.len()));
        assert!(
            fs::read(&upper).unwrap() == big,
            "{extra}: written data differs"
        );
        fs::remove_file(upper).unwrap();
    }
}

fn xattr_set(p: &Path, name: &str, v: &[u8]) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

fn xattr_get(p: &Path, name: &str) -> Vec<u8> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 70000];
    // SAFETY: valid C strings and a buffer of the given length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(
        r >= 0,
        "getxattr {name}: {}",
        std::io::Error::last_os_error()
    );
    buf.truncate(r as usize);
    buf
}

fn xattr_list(p: &Path) -> Vec<String> {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: a valid C string and a buffer of the given length.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(r >= 0, "listxattr: {}", std::io::Error::last_os_error());
    buf[..r as usize]
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

#[test]
fn a_rootless_mount_takes_io_uring_too() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let (uid, gid) = ensure_user("ovltest");
    let d = dirs();
    chown_tree(&[&d.base], uid, gid);
    let fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), Some((uid, gid))).unwrap();
    let t = settled_transport_as(&d.p("m"), Some((uid, gid)));
    assert_eq!(t, format!("io_uring ({} queues x 8 entries)", queues()));
    let out = run_as(
        uid,
        gid,
        Command::new("sh").arg("-c").arg(format!(
            "echo more >> {m}/f && rm -r {m}/d && mkdir {m}/d && cat {m}/f",
            m = d.p("m").display()
        )),
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "lower\nmore\n");
    assert_eq!(fs::read_to_string(d.p("u/f")).unwrap(), "lower\nmore\n");
    drop(fm);
}

/// The daemon's threads, by name.
fn threads_of(pid: i32) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|r| {
            r.filter_map(|e| fs::read_to_string(e.ok()?.path().join("comm")).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unmount_sigterm_and_sigkill_end_an_io_uring_daemon_without_a_hang() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let n = queues();
    // fusermount3 -u: the rings see the connection go, every thread ends.
    for how in ["umount", "sigterm", "sigkill"] {
        let d = dirs();
        let mut fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), None).unwrap();
        assert!(settled_transport(&d.p("m")).starts_with("io_uring ("));
        let pid = fm.daemon_pid().expect("daemon pid");
        let rings = threads_of(pid)
            .iter()
            .filter(|t| t.starts_with("fuser-uring-"))
            .count();
        assert_eq!(rings, n, "{:?}", threads_of(pid));
        // A request in flight on a ring while it goes.
        let m = d.p("m");
        let reader = std::thread::spawn(move || {
            for _ in 0..200 {
                if fs::read_to_string(m.join("f")).is_err() {
                    break;
                }
            }
        });
        match how {
            "umount" => assert!(fm.unmount()),
            // SAFETY: signalling a child daemon we started.
            "sigterm" => unsafe {
                libc::kill(pid, libc::SIGTERM);
            },
            // SAFETY: as above.
            _ => unsafe {
                libc::kill(pid, libc::SIGKILL);
            },
        }
        reader.join().unwrap();
        wait_until(
            &format!("{how}: daemon {pid} exits"),
            Duration::from_secs(10),
            || !process_alive(pid),
        );
        if how == "sigkill" {
            // As on /dev/fuse: the mount answers ENOTCONN until unmounted
            // (a request caught in the abort itself gets ECONNABORTED, or
            // ECANCELED when it was on its way to the dead daemon's ring).
            wait_until(
                "ENOTCONN after SIGKILL",
                Duration::from_secs(5),
                || match fs::File::open(d.p("m")) {
                    Ok(_) => false,
                    Err(e) => {
                        let n = e.raw_os_error();
                        assert!(
                            matches!(
                                n,
                                Some(libc::ENOTCONN | libc::ECONNABORTED | libc::ECANCELED)
                            ),
                            "{e}"
                        );
                        n == Some(libc::ENOTCONN)
                    }
                },
            );
        }
        force_unmount(&d.p("m"));
        wait_until(
            &format!("{how}: mount gone"),
            Duration::from_secs(10),
            || !is_mounted(&d.p("m")),
        );
        drop(fm);
    }
}

/// `cached_inodes` from `ovlfuse stats`.
fn cached_inodes(mnt: &Path) -> u64 {
    stat_of_mount(&ovlfuse_bin(), mnt, "cached_inodes")
        .trim()
        .parse()
        .expect("cached_inodes in ovlfuse stats")
}

#[test]
fn forgets_still_come_through_dev_fuse_beside_the_rings() {
    if !env() {
        return;
    }
    let _s = serial();
    set_switch(true).unwrap();
    let d = dirs();
    for i in 0..2000 {
        fs::write(d.p(&format!("l/x{i}")), "").unwrap();
    }
    let fm = FuseMount::try_mount(&d.opts(""), &d.p("m"), None).unwrap();
    assert!(settled_transport(&d.p("m")).starts_with("io_uring ("));
    for i in 0..2000 {
        fs::metadata(d.p(&format!("m/x{i}"))).unwrap();
    }
    let before = cached_inodes(&d.p("m"));
    assert!(before >= 2000, "{before}");
    // The kernel drops its dentries and inodes and sends FORGETs, which
    // only /dev/fuse carries.
    wait_until("FORGETs to arrive", Duration::from_secs(10), || {
        fs::write("/proc/sys/vm/drop_caches", "2").unwrap();
        cached_inodes(&d.p("m")) < 100
    });
    // And the mount still answers over the rings.
    assert_eq!(fs::read_to_string(d.p("m/f")).unwrap(), "lower\n");
    drop(fm);
}
