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

/// renameat2 with RENAME_WHITEOUT, which a kernel overlay mounted with its
/// upper inside this mount needs (its mount refuses a FUSE upper without
/// it). The kernel overlayfs answers EINVAL to it, so the reference for what
/// ovlfuse does is a plain filesystem holding the merged tree: the source
/// moves and a 0/0 device is left at its old name, shown as a device (it is
/// the nested overlay's whiteout, not ours) and still there after a remount.
/// WHITEOUT with EXCHANGE is EINVAL, as renameat2(2) says.
#[test]
fn rename_whiteout_leaves_a_0_0_device_as_on_a_plain_filesystem() {
    if !twin_env() {
        return;
    }
    let tree = layer()
        .file("low", "l")
        .file("keep", "k")
        .dir("ld")
        .file("ld/x", "x");
    let mut t = Twin::new([tree.clone()]);
    let plain_base = tempdir();
    let plain = plain_base.path().join("p");
    std::fs::create_dir(&plain).unwrap();
    tree.apply(&plain);
    let prepare = |r: &Path| {
        std::fs::write(r.join("new"), "n").unwrap();
        std::fs::create_dir(r.join("nd")).unwrap();
    };
    let w = libc::RENAME_WHITEOUT;
    let ops = |r: &Path| {
        let mv = |a: &str, b: &str, f: u32| probe_rename(&r.join(a), &r.join(b), f);
        vec![
            ("lower file", mv("low", "low2", w)),
            ("upper file", mv("new", "new2", w)),
            ("upper dir", mv("nd", "nd2", w)),
            (
                "noreplace over a file",
                mv("keep", "new2", w | libc::RENAME_NOREPLACE),
            ),
            (
                "with exchange",
                mv("keep", "new2", w | libc::RENAME_EXCHANGE),
            ),
            (
                "noreplace to a free name",
                mv("keep", "keep2", w | libc::RENAME_NOREPLACE),
            ),
        ]
    };
    t.both(prepare);
    prepare(&plain);
    let kern_before = snapshot(t.kern_mnt());
    let kern_upper_before = snapshot(t.kern_upper());
    let fuse = ops(t.fuse_mnt());
    let reference = ops(&plain);
    assert_eq!(
        fuse, reference,
        "renameat2(RENAME_WHITEOUT): ovlfuse vs a plain fs"
    );
    assert_eq!(
        reference.iter().map(|(_, r)| *r).collect::<Vec<_>>(),
        [
            Ok(()),
            Ok(()),
            Ok(()),
            Err(libc::EEXIST),
            Err(libc::EINVAL),
            Ok(())
        ]
    );
    // The kernel overlayfs refuses every one, EINVAL even before EEXIST,
    // and changes nothing.
    let kern = ops(t.kern_mnt());
    assert!(
        kern.iter().all(|(_, r)| *r == Err(libc::EINVAL)),
        "kernel overlayfs: {kern:?}"
    );
    assert_same_tree_labeled(
        &snapshot(t.kern_mnt()),
        &kern_before,
        "kernel after",
        "before",
    );
    assert_same_tree_labeled(
        &snapshot(t.kern_upper()),
        &kern_upper_before,
        "kernel upper after",
        "before",
    );
    // A lower directory still answers EXDEV, before any whiteout is made.
    assert_eq!(
        probe_rename(&t.fuse_mnt().join("ld"), &t.fuse_mnt().join("ld2"), w),
        Err(libc::EXDEV)
    );
    assert_same_tree_labeled(
        &snapshot(t.fuse_mnt()),
        &snapshot(&plain),
        "fuse",
        "plain fs",
    );
    // In the upper each old name is a 0/0 device carrying the escaped
    // whiteout mark, which tells it from our own whiteouts.
    for n in ["low", "new", "nd", "keep"] {
        let p = t.fuse_upper().join(n);
        let st = probe_lstat_raw(&p).unwrap();
        assert_eq!(
            (st.st_mode & libc::S_IFMT, st.st_rdev),
            (libc::S_IFCHR, 0),
            "{n}"
        );
        assert_eq!(
            probe_lgetxattr(&p, "trusted.overlay.overlay.whiteout"),
            Ok(b"y".to_vec()),
            "{n}"
        );
    }
    assert_eq!(probe_read(&t.fuse_lower(0).join("low")), Ok(b"l".to_vec()));
    t.remount();
    assert_same_tree_labeled(
        &snapshot(t.fuse_mnt()),
        &snapshot(&plain),
        "fuse after remount",
        "plain fs",
    );
    // Removing such a device where a lower has the name leaves our own
    // whiteout: the lower file stays hidden.
    for r in [t.fuse_mnt(), plain.as_path()] {
        std::fs::remove_file(r.join("low")).unwrap();
    }
    assert_eq!(probe_lstat(&t.fuse_mnt().join("low")), Err(libc::ENOENT));
    assert_same_tree_labeled(
        &snapshot(t.fuse_mnt()),
        &snapshot(&plain),
        "fuse",
        "plain fs",
    );
}

/// Messages the kernel logged after `marker` was written to /dev/kmsg.
fn kmsg_after(marker: &str) -> Vec<String> {
    let fd = open_fd(Path::new("/dev/kmsg"), libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match common::sys::errno() {
                // A record overwritten while we read: go on with the next.
                libc::EPIPE => continue,
                libc::EAGAIN => break,
                e => panic!("read /dev/kmsg: {}", errno_name(e)),
            }
        }
        let rec = String::from_utf8_lossy(&buf[..n as usize]).into_owned();
        let msg = rec.split_once(';').map_or("", |(_, m)| m);
        let msg = msg.lines().next().unwrap_or("").to_string();
        if msg == marker {
            out.clear();
        } else {
            out.push(msg);
        }
    }
    out
}

fn kmsg_mark(marker: &str) {
    std::fs::write("/dev/kmsg", format!("{marker}\n")).unwrap();
}

/// What the kernel overlayfs logged about its upper fs while mounting
/// `lower` under `upper`/`work` at `mnt`, and the mount.
fn mount_nested(
    lower: &Path,
    upper: &Path,
    work: &Path,
    mnt: &Path,
) -> (Result<KernelOverlay, String>, Vec<String>) {
    let marker = format!("ovlfuse-test: nested mount at {}", mnt.display());
    kmsg_mark(&marker);
    let m = KernelOverlay::try_mount(
        &[lower.to_path_buf()],
        Some((upper, work)),
        mnt,
        &[] as &[&str],
        KernelApi::Auto,
    );
    let said = kmsg_after(&marker)
        .into_iter()
        .filter(|l| l.starts_with("overlay") && (l.contains("upper") || l.contains("work")))
        .collect();
    (m, said)
}

/// A kernel overlay whose upperdir and workdir live inside an ovlfuse
/// mount (a container running its own overlay) mounts and works as the same
/// overlay over a plain directory does (a kernel overlay cannot be the
/// reference: it refuses an overlay as upperdir). The kernel needs of a
/// FUSE upper RENAME_WHITEOUT, 0/0 whiteouts it makes by mknod and by
/// RENAME_WHITEOUT, its `trusted.overlay.*` marks, and xattrs on its
/// O_TMPFILE copy-ups before they get a name. Compared: each operation's
/// result, the nested merged view, the nested upper as the ovlfuse mount
/// shows it, the kernel's messages about the upper fs, and all of it again
/// after both mounts are remounted.
#[test]
fn a_kernel_overlay_with_its_upper_inside_the_mount_works_as_on_a_plain_dir() {
    if !twin_env() {
        return;
    }
    let base = tempdir();
    let b = base.path();
    for d in ["l", "u", "w", "m", "nl", "plain", "xa", "xb"] {
        std::fs::create_dir(b.join(d)).unwrap();
    }
    std::fs::write(b.join("l/own"), "ovlfuse's own lower").unwrap();
    layer()
        .file("f", "f")
        .file("gone", "g")
        .file("mv", "m")
        .dir("d")
        .file("d/x", "x")
        .apply(&b.join("nl"));
    let (l, u, w, m) = (b.join("l"), b.join("u"), b.join("w"), b.join("m"));
    let mount_ovlfuse =
        || FuseMount::mount(std::slice::from_ref(&l), Some((&u, &w)), &m, &[] as &[&str]);
    let mut fm = mount_ovlfuse();
    let (plain, nl) = (b.join("plain"), b.join("nl"));
    for side in [&m, &plain] {
        std::fs::create_dir(side.join("u")).unwrap();
        std::fs::create_dir(side.join("w")).unwrap();
    }
    let (xa, xb) = (b.join("xa"), b.join("xb"));
    let (nested, said_nested) = mount_nested(&nl, &m.join("u"), &m.join("w"), &xa);
    let mut nested = nested.unwrap_or_else(|e| {
        panic!("overlay with its upper in ovlfuse: {e}; the kernel said {said_nested:?}")
    });
    let (reference, said_reference) = mount_nested(&nl, &plain.join("u"), &plain.join("w"), &xb);
    let mut reference = reference.unwrap_or_else(|e| panic!("reference overlay: {e}"));
    assert_eq!(
        said_nested, said_reference,
        "kernel messages about the upper fs"
    );

    let ops = |r: &Path| {
        vec![
            ("create", io(std::fs::write(r.join("new"), "new"))),
            (
                "append to a lower file",
                probe_append(&r.join("f"), b"+").map(|_| ()),
            ),
            ("delete a lower file", probe_unlink(&r.join("gone"))),
            (
                "rm -r a lower dir",
                io(std::fs::remove_dir_all(r.join("d"))),
            ),
            ("mkdir over it", probe_mkdir(&r.join("d"), 0o755)),
            ("create in it", io(std::fs::write(r.join("d/y"), "y"))),
            (
                "rename a lower file",
                io(std::fs::rename(r.join("mv"), r.join("mv2"))),
            ),
            (
                "rename a new file",
                io(std::fs::rename(r.join("new"), r.join("new2"))),
            ),
        ]
    };
    let got = ops(&xa);
    assert_eq!(
        got,
        ops(&xb),
        "operations in the nested overlay vs the reference"
    );
    assert!(got.iter().all(|(_, r)| r.is_ok()), "{got:?}");
    let compare = |when: &str| {
        assert_same_tree_labeled(
            &snapshot(&xa),
            &snapshot(&xb),
            &format!("nested in ovlfuse {when}"),
            "reference",
        );
        assert_same_tree_labeled(
            &snapshot_upper(&m.join("u"), XattrNs::Trusted),
            &snapshot_upper(&plain.join("u"), XattrNs::Trusted),
            &format!("nested upper in ovlfuse {when}"),
            "reference upper",
        );
    };
    compare("");
    let view = snapshot(&xa);
    assert_eq!(
        view.get("f").and_then(|n| n.content.clone()),
        Some(Content::Bytes(b"f+".to_vec()))
    );
    assert!(view.get("gone").is_none() && view.get("mv").is_none() && view.get("d/x").is_none());
    // ovlfuse stores the nested marks escaped and its whiteouts as marked
    // devices; its own lower is untouched.
    assert_eq!(
        probe_lgetxattr(&u.join("u/d"), "trusted.overlay.overlay.opaque"),
        Ok(b"y".to_vec())
    );
    for n in ["gone", "mv"] {
        let p = u.join("u").join(n);
        assert_eq!(
            probe_lstat_raw(&p).map(|s| (s.st_mode & libc::S_IFMT, s.st_rdev)),
            Ok((libc::S_IFCHR, 0))
        );
        assert_eq!(
            probe_lgetxattr(&p, "trusted.overlay.overlay.whiteout"),
            Ok(b"y".to_vec())
        );
    }
    assert_eq!(
        probe_read(&m.join("own")),
        Ok(b"ovlfuse's own lower".to_vec())
    );

    // Everything lasts: remount ovlfuse and both nested overlays.
    assert!(nested.unmount() && reference.unmount());
    assert!(fm.unmount());
    let _fm = mount_ovlfuse();
    let (n2, said_again) = mount_nested(&nl, &m.join("u"), &m.join("w"), &xa);
    let _nested = n2.unwrap_or_else(|e| panic!("nested overlay again: {e}; {said_again:?}"));
    let (r2, said_reference_again) = mount_nested(&nl, &plain.join("u"), &plain.join("w"), &xb);
    let _reference = r2.unwrap_or_else(|e| panic!("reference overlay again: {e}"));
    assert_eq!(
        said_again, said_reference_again,
        "kernel messages on remount"
    );
    compare("after remount");
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
