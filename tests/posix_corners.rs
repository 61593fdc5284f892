//! POSIX corners where ovlfuse once differed from the kernel overlayfs
//! (issue 19, items 11, 13, 14, 16, 17, 18): each test runs the same calls on ovlfuse and
//! on the kernel overlay over identical layers (a `Twin`) and compares.

mod common;

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use common::sys::{check, cpath};
use common::*;

fn twin_env() -> bool {
    env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay])
}

fn open_fd(p: &Path, flags: i32) -> Result<OwnedFd, i32> {
    let c = cpath(p);
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, 0o644) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fstat_nlink(fd: &OwnedFd) -> Result<u64, i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st.st_nlink)
}

fn io(r: std::io::Result<()>) -> Result<(), i32> {
    r.map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

// ------------------------------------------------------------- item 18

/// A time before 1970 with a fraction: tv_nsec counts forward from a
/// negative tv_sec, so {-2, 250 ms} is 1969-12-31 23:59:58.25.
#[test]
fn times_before_1970_keep_their_fraction() {
    if !twin_env() {
        return;
    }
    let t = Twin::new([layer().file("low", "l")]);
    let got = assert_both_eq!(t, |r| {
        std::fs::write(r.join("new"), b"n").unwrap();
        let mut out = Vec::new();
        for name in ["new", "low"] {
            let c = cpath(&r.join(name));
            let ts = [
                libc::timespec {
                    tv_sec: -2,
                    tv_nsec: 250_000_000,
                },
                libc::timespec {
                    tv_sec: -1,
                    tv_nsec: 999_999_999,
                },
            ];
            check(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) }).unwrap();
            let st = probe_stat_raw(&r.join(name)).unwrap();
            out.push((st.st_atime, st.st_atime_nsec, st.st_mtime, st.st_mtime_nsec));
        }
        out
    });
    assert_eq!(got[0], (-2, 250_000_000, -1, 999_999_999));
}

// ------------------------------------------------------------- item 13

/// fstat through a descriptor opened before its object was removed shows
/// the real object's link count, as the kernel reports it: 0 for an upper
/// object removed (rename over it, unlink, rmdir), the lower's own count
/// for a lower object (which is only whited out).
#[test]
fn fstat_of_a_removed_open_object_shows_the_kernels_nlink() {
    if !twin_env() {
        return;
    }
    let t = Twin::new([layer()
        .file("f", "f")
        .file("g", "g")
        .dir("e")
        .dir("d2")
        .dir("d3/sub")]);
    let dir = libc::O_RDONLY | libc::O_DIRECTORY;
    type Act = fn(&Path) -> std::io::Result<()>;
    let cases: [(&str, &str, i32, Act); 9] = [
        ("lower file renamed over", "f", libc::O_RDONLY, |r| {
            std::fs::rename(r.join("g"), r.join("f"))
        }),
        ("upper file renamed over", "uf", libc::O_RDONLY, |r| {
            std::fs::rename(r.join("ug"), r.join("uf"))
        }),
        ("upper file unlinked", "ua", libc::O_RDONLY, |r| {
            std::fs::remove_file(r.join("ua"))
        }),
        ("one of two links unlinked", "ub", libc::O_RDONLY, |r| {
            std::fs::remove_file(r.join("ub"))
        }),
        ("lower dir removed", "e", dir, |r| {
            std::fs::remove_dir(r.join("e"))
        }),
        ("upper dir renamed over", "nd", dir, |r| {
            std::fs::rename(r.join("nd2"), r.join("nd"))
        }),
        ("upper dir removed", "nd3", dir, |r| {
            std::fs::remove_dir(r.join("nd3"))
        }),
        ("lower dir renamed over", "d2", dir, |r| {
            std::fs::rename(r.join("nd4"), r.join("d2"))
        }),
        ("copied-up dir removed", "d3/sub", dir, |r| {
            std::fs::remove_dir(r.join("d3/sub"))
        }),
    ];
    t.both(|r| {
        for n in ["uf", "ug", "ua", "ub"] {
            std::fs::write(r.join(n), n).unwrap();
        }
        std::fs::hard_link(r.join("ub"), r.join("ub2")).unwrap();
        for n in ["nd", "nd2", "nd3", "nd4"] {
            std::fs::create_dir(r.join(n)).unwrap();
        }
        // Copy d3/sub up: a change inside it.
        std::fs::write(r.join("d3/sub/x"), "x").unwrap();
        std::fs::remove_file(r.join("d3/sub/x")).unwrap();
    });
    for (what, name, flags, act) in cases {
        let _ = assert_both_eq!(
            t,
            |r| {
                let fd = open_fd(&r.join(name), flags)?;
                io(act(r))?;
                fstat_nlink(&fd)
            },
            "fstat nlink after: {what}"
        );
    }
}

// ------------------------------------------------------------- item 17

fn lsetxattr(p: &Path, name: &str, v: &[u8]) -> Result<(), i32> {
    probe_lsetxattr(p, name, v, 0)
}

/// The mount's own private names set through the mount are stored escaped
/// (`trusted.overlay.overlay.*` in the upper, kernel >= 6.7) and read and
/// listed back under the name given; with `userxattr` the same for
/// `user.overlay.*`.
#[test]
fn own_overlay_xattrs_set_through_the_mount_are_stored_escaped() {
    if !twin_env() {
        return;
    }
    for (ns, opt) in [("trusted", None), ("user", Some("userxattr"))] {
        let mut b = Twin::builder().lower(layer().file("low", "l").dir("d"));
        if let Some(o) = opt {
            b = b.opt(o);
        }
        let t = b.mount();
        let own = format!("{ns}.overlay.opaque");
        let escaped = format!("{ns}.overlay.overlay.opaque");
        for n in ["low", "d"] {
            let _ = assert_both_eq!(t, |r| {
                let p = r.join(n);
                let set = lsetxattr(&p, &own, b"y");
                let got = probe_lgetxattr(&p, &own);
                let mut list = probe_llistxattr(&p).unwrap_or_default();
                list.sort();
                let removed = probe_lremovexattr(&p, &own);
                let gone = probe_lgetxattr(&p, &own);
                let again = lsetxattr(&p, &own, b"y");
                (set, got, list, removed, gone, again)
            });
            // In the upper, the escaped name holds the value; the real
            // mark is not set (d is still merged with the lower).
            let up = t.fuse_upper().join(n);
            assert_eq!(probe_lgetxattr(&up, &escaped), Ok(b"y".to_vec()), "{n}");
            assert_eq!(probe_lgetxattr(&up, &own), Err(libc::ENODATA), "{n}");
        }
        t.assert_same_view();
    }
}

// ------------------------------------------------------------- item 16

const FS_NODUMP_FL: u32 = 0x40;

fn get_flags(p: &Path) -> Result<u32, i32> {
    let fd = open_fd(p, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let mut f: libc::c_int = 0;
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut f) })?;
    Ok(f as u32)
}

fn set_flags(p: &Path, flags: u32) -> Result<(), i32> {
    let fd = open_fd(p, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let f = flags as libc::c_int;
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_SETFLAGS, &f) })?;
    Ok(())
}

/// lsattr reads the real file's flags; chattr copies the object up and
/// sets them there, as the kernel overlayfs does.
#[test]
fn inode_flags_read_the_real_file_and_chattr_copies_up() {
    if !twin_env() {
        return;
    }
    let t = Twin::new([layer().file("low", "l").dir("ld").file("ld/x", "x")]);
    // The lower file carries a flag to read through the mount.
    for l in [t.fuse_lower(0), t.kern_lower(0)] {
        let p = l.join("low");
        let f = get_flags(&p).expect("layer filesystem has inode flags");
        set_flags(&p, f | FS_NODUMP_FL).unwrap();
    }
    assert_both_eq!(t, |r| {
        std::fs::write(r.join("new"), "n").unwrap();
        let mut out = Vec::new();
        for n in ["low", "ld", "new"] {
            let p = r.join(n);
            let before = get_flags(&p);
            let set = before.and_then(|f| set_flags(&p, f ^ FS_NODUMP_FL));
            out.push((n, before, set, get_flags(&p)));
        }
        out
    });
    t.assert_same_upper();
    assert_eq!(
        get_flags(&t.fuse_upper().join("ld")).map(|f| f & FS_NODUMP_FL),
        Ok(FS_NODUMP_FL)
    );
    // A symlink has no flags to ask for on either.
    let _ = assert_both_eq!(t, |r| {
        std::os::unix::fs::symlink("low", r.join("sl")).unwrap();
        let c = CString::new(r.join("sl").as_os_str().as_encoded_bytes()).unwrap();
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_NOFOLLOW) })
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .unwrap();
        let mut f: libc::c_int = 0;
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut f) }).map(|_| ())
    });
}

// ------------------------------------------------------------- item 14

fn atime_of(p: &Path) -> (i64, i64) {
    let st = probe_lstat_raw(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (st.st_atime, st.st_atime_nsec)
}

/// Reading, executing and listing through the mount move the access times
/// the mount's rule says (relatime, noatime, strictatime, nodiratime), in
/// the merged view and in the upper; lower objects' never move. `r*`
/// objects were read after their last change, so relatime leaves them.
#[test]
fn atime_follows_the_mounts_rule() {
    if !twin_env() {
        return;
    }
    let exe = std::fs::read("/bin/true").unwrap();
    for opt in [
        None,
        Some("noatime"),
        Some("strictatime"),
        Some("nodiratime"),
    ] {
        // mount(8): the new API's fsconfig takes no mount flags.
        let mut b = Twin::builder().kernel_api(KernelApi::Legacy).lower(
            layer()
                .file("lf", "l")
                .dir("ld")
                .file("ld/x", "x")
                .file_mode("lexe", &exe, 0o755),
        );
        if let Some(o) = opt {
            b = b.opt(o);
        }
        let t = b.mount();
        let read = |p: &Path| {
            if p.is_dir() {
                std::fs::read_dir(p).unwrap().for_each(drop);
            } else {
                std::fs::read(p).unwrap();
            }
        };
        t.both(|r| {
            std::fs::write(r.join("uf"), "u").unwrap();
            std::fs::create_dir(r.join("ud")).unwrap();
            std::fs::write(r.join("ud/y"), "y").unwrap();
            std::fs::write(r.join("uexe"), &exe).unwrap();
            probe_chmod(&r.join("uexe"), 0o755).unwrap();
            // atime newer than mtime but a year old: relatime moves it.
            for n in ["uf", "ud", "uexe"] {
                probe_utimens(&r.join(n), (978_307_200, 0), (946_684_800, 0)).unwrap();
            }
            std::fs::write(r.join("rf"), "r").unwrap();
            std::fs::create_dir(r.join("rd")).unwrap();
        });
        // Read once after the last change (a tick later, the clock being
        // coarse), so that the atime is newer than mtime and ctime.
        std::thread::sleep(std::time::Duration::from_millis(50));
        t.both(|r| ["rf", "rd"].iter().for_each(|n| read(&r.join(n))));
        std::thread::sleep(std::time::Duration::from_millis(50));
        let names = ["lf", "ld", "lexe", "uf", "ud", "uexe", "rf", "rd"];
        let _ = assert_both_eq!(
            t,
            |r| {
                let (upper, lower) = if r == t.fuse_mnt() {
                    (t.fuse_upper(), t.fuse_lower(0))
                } else {
                    (t.kern_upper(), t.kern_lower(0))
                };
                let real = |n: &str| if n.starts_with('l') { lower } else { upper }.join(n);
                let before: Vec<_> = names
                    .iter()
                    .map(|n| (atime_of(&r.join(n)), atime_of(&real(n))))
                    .collect();
                for n in ["lf", "uf", "rf", "ld", "ud", "rd"] {
                    read(&r.join(n));
                }
                for n in ["lexe", "uexe"] {
                    let st = std::process::Command::new(r.join(n)).status().unwrap();
                    assert!(st.success());
                }
                names
                    .iter()
                    .zip(before)
                    .map(|(n, (m, l))| {
                        let moved = (atime_of(&r.join(n)) != m, atime_of(&real(n)) != l);
                        (*n, moved)
                    })
                    .collect::<Vec<_>>()
            },
            "atimes moved (merged, layer) with {opt:?}"
        );
    }
}

// ------------------------------------------------------------- item 11

/// A write through a shared mmap moves mtime and ctime, seen by fstat of
/// the open file and by stat after close, as on the kernel overlayfs. Run
/// with passthrough (the root default) and without it. (Reported as
/// failing with passthrough; not reproduced on this kernel, 6.18, before
/// or after this session's changes: the test guards it.)
#[test]
fn a_shared_mmap_write_moves_mtime_and_ctime_as_on_the_kernel() {
    if !twin_env() {
        return;
    }
    for opt in ["", "nopassthrough"] {
        let mut b = Twin::builder().lower(layer().file("f", "x".repeat(8192)));
        if !opt.is_empty() {
            b = b.fuse_opt(opt);
        }
        let t = b.mount();
        let got = assert_both_eq!(
            t,
            |r| {
                let p = r.join("f");
                std::fs::OpenOptions::new().append(true).open(&p).unwrap(); // copy-up first
                let before = probe_stat_raw(&p).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(1100));
                let fd = open_fd(&p, libc::O_RDWR).unwrap();
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                unsafe {
                    let m = libc::mmap(
                        std::ptr::null_mut(),
                        4096,
                        libc::PROT_READ | libc::PROT_WRITE,
                        libc::MAP_SHARED,
                        fd.as_raw_fd(),
                        0,
                    );
                    assert_ne!(m, libc::MAP_FAILED);
                    *(m as *mut u8) = b'Z';
                    libc::msync(m, 4096, libc::MS_SYNC);
                    libc::munmap(m, 4096);
                    libc::fstat(fd.as_raw_fd(), &mut st);
                }
                drop(fd);
                let after = probe_stat_raw(&p).unwrap();
                (
                    st.st_mtime > before.st_mtime || st.st_mtime_nsec != before.st_mtime_nsec,
                    after.st_mtime != before.st_mtime
                        || after.st_mtime_nsec != before.st_mtime_nsec,
                    after.st_ctime != before.st_ctime
                        || after.st_ctime_nsec != before.st_ctime_nsec,
                )
            },
            "mmap write ({opt})"
        );
        assert_eq!(got, (true, true, true), "{opt}");
    }
}
