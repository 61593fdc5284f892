//! The write path: every change made through the merged view, run with the
//! same operations on ovlfuse and on the kernel's overlayfs over identical
//! layers (a `Twin`). Each test compares the result (value or errno) of every
//! call, then the merged views, the upper layers left on disk (the kernel's
//! bookkeeping xattrs aside) and checks that ovlfuse never wrote a lower
//! layer: contents, modes, owners, xattrs and the raw mtime/ctime of every
//! lower entry are the same before and after.
//!
//! Tests are named after the rule (docs/semantics.md) they prove. The
//! kernel is the oracle; explicit expectations (an errno, a 0/0 whiteout)
//! are added where the rule book states them, so that a sequence that fails
//! the same way on both sides cannot pass unnoticed.

mod common;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Barrier;

use common::sys::{check, cpath};
use common::*;

// ------------------------------------------------------------------ helpers

fn io_errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn open_fd(p: &Path, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let c = cpath(p);
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn pwrite_fd(fd: &OwnedFd, off: u64, data: &[u8]) -> Result<usize, i32> {
    let n = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            off as libc::off_t,
        )
    };
    check(n).map(|n| n as usize)
}

fn write_fd(fd: &OwnedFd, data: &[u8]) -> Result<usize, i32> {
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    check(n).map(|n| n as usize)
}

fn pread_fd(fd: &OwnedFd, off: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let n = unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            off as libc::off_t,
        )
    };
    let n = check(n)? as usize;
    buf.truncate(n);
    Ok(buf)
}

fn fstat_fd(fd: &OwnedFd) -> Result<libc::stat, i32> {
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// `echo > p`: create or truncate, then write.
fn write_file(p: &Path, data: &[u8]) -> Result<usize, i32> {
    let fd = open_fd(p, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC, 0o644)?;
    write_fd(&fd, data)
}

fn mtime(st: &libc::stat) -> (i64, i64) {
    (st.st_mtime, st.st_mtime_nsec)
}

fn lmtime(p: &Path) -> Result<(i64, i64), i32> {
    probe_lstat_raw(p).map(|st| mtime(&st))
}

fn show<T: Debug>(r: &Result<T, i32>) -> String {
    match r {
        Ok(v) => format!("Ok({v:?})"),
        Err(e) => format!("Err({})", errno_name(*e)),
    }
}

/// Raw times of one entry of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Times {
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// Everything a lower layer holds: a tree snapshot (contents, modes,
/// owners, xattrs) plus the raw mtime/ctime of every entry.
struct LayerState {
    tree: Tree,
    times: BTreeMap<String, Times>,
}

fn layer_state(root: &Path) -> LayerState {
    let tree = snapshot(root);
    let times = tree
        .entries
        .keys()
        .map(|rel| {
            let p = if rel == "." {
                root.to_path_buf()
            } else {
                root.join(rel)
            };
            let st = probe_lstat_raw(&p)
                .unwrap_or_else(|e| panic!("lstat {}: {}", p.display(), errno_name(e)));
            let t = Times {
                mtime: mtime(&st),
                ctime: (st.st_ctime, st.st_ctime_nsec),
            };
            (rel.clone(), t)
        })
        .collect();
    LayerState { tree, times }
}

/// A twin plus the state of ovlfuse's lower layers at mount time.
struct Case {
    twin: Twin,
    lowers: Vec<LayerState>,
}

impl Deref for Case {
    type Target = Twin;
    fn deref(&self) -> &Twin {
        &self.twin
    }
}

impl DerefMut for Case {
    fn deref_mut(&mut self) -> &mut Twin {
        &mut self.twin
    }
}

fn case(b: TwinBuilder) -> Case {
    let twin = b.mount();
    let lowers = twin.fuse_lowers().iter().map(|l| layer_state(l)).collect();
    Case { twin, lowers }
}

impl Case {
    /// Run `f` on both mounts; the results must be equal. Returns fuse's.
    fn op<T: PartialEq + Debug>(
        &self,
        what: &str,
        f: impl FnMut(&Path) -> Result<T, i32>,
    ) -> Result<T, i32> {
        let (a, b) = self.twin.both(f);
        assert!(
            a == b,
            "fuse and kernel differ on {what}\n  fuse:   {}\n  kernel: {}",
            show(&a),
            show(&b)
        );
        a
    }

    /// `op` that records a divergence in `diffs` instead of panicking, so
    /// that independent sequences of one test are all reported.
    fn soft<T: PartialEq + Debug>(
        &self,
        diffs: &mut Vec<String>,
        what: &str,
        f: impl FnMut(&Path) -> Result<T, i32>,
    ) -> Result<T, i32> {
        let (a, b) = self.twin.both(f);
        if a != b {
            diffs.push(format!(
                "{what}\n  fuse:   {}\n  kernel: {}",
                show(&a),
                show(&b)
            ));
        }
        a
    }

    /// `op` that must succeed.
    fn ok<T: PartialEq + Debug>(&self, what: &str, f: impl FnMut(&Path) -> Result<T, i32>) -> T {
        self.op(what, f)
            .unwrap_or_else(|e| panic!("{what}: failed on both sides with {}", errno_name(e)))
    }

    /// `op` run as uid/gid.
    fn op_as<T: PartialEq + Debug + Send>(
        &self,
        (uid, gid): (u32, u32),
        what: &str,
        f: impl FnMut(&Path) -> Result<T, i32> + Send,
    ) -> Result<T, i32> {
        let (a, b) = self.twin.both_as(uid, gid, f);
        assert!(
            a == b,
            "fuse and kernel differ on {what} (as {uid}:{gid})\n  fuse:   {}\n  kernel: {}",
            show(&a),
            show(&b)
        );
        a
    }

    /// The directories of the side whose mountpoint is `r`.
    fn side(&self, r: &Path) -> &SideDirs {
        if r == self.fuse_mnt() {
            self.fuse_dirs()
        } else {
            self.kern_dirs()
        }
    }

    fn upper_of(&self, r: &Path) -> PathBuf {
        self.side(r).upper.clone().expect("twin has an upper")
    }

    fn lower_of(&self, r: &Path, i: usize) -> PathBuf {
        self.side(r).lowers[i].clone()
    }

    /// (merged mtime == lower mtime, upper-on-disk mtime == lower mtime) for
    /// `rel`, which lives in lower `i`.
    fn keeps_lower_mtime(&self, r: &Path, rel: &str, i: usize) -> Result<(bool, bool), i32> {
        let low = lmtime(&self.lower_of(r, i).join(rel))?;
        let merged = lmtime(&r.join(rel))?;
        let upper = lmtime(&self.upper_of(r).join(rel))?;
        Ok((merged == low, upper == low))
    }

    /// Copy-ups ovlfuse counted so far (None for a daemon without stats).
    fn fuse_copy_ups(&self) -> Option<u64> {
        let n = probe_getxattr(self.fuse_mnt(), "ovlfuse.stats")
            .ok()
            .and_then(|v| {
                String::from_utf8_lossy(&v)
                    .lines()
                    .find_map(|l| l.strip_prefix("copy_ups ")?.trim().parse().ok())
            });
        assert!(
            n.is_some() || std::env::var_os("OVLFUSE_TEST_BIN").is_some(),
            "ovlfuse's stats xattr has no copy_ups counter"
        );
        n
    }

    fn assert_lowers_untouched(&self) {
        for (i, (dir, before)) in self.fuse_lowers().iter().zip(&self.lowers).enumerate() {
            let now = layer_state(dir);
            let d = diff_trees(&before.tree, &now.tree);
            assert!(
                d.is_empty(),
                "ovlfuse wrote its lower layer {i} ({}):\n{}",
                dir.display(),
                format_diff(&d, "before", "after", 40)
            );
            let changed: Vec<String> = before
                .times
                .iter()
                .filter(|(p, t)| now.times.get(*p) != Some(*t))
                .map(|(p, t)| format!("{p}: {t:?} -> {:?}", now.times.get(p)))
                .collect();
            assert!(
                changed.is_empty(),
                "ovlfuse changed times in its lower layer {i} ({}):\n{changed:#?}",
                dir.display()
            );
        }
    }

    /// Same merged view, same upper layer, lowers untouched.
    fn check(&self) {
        // Lowers first: that rule holds whatever else diverged.
        self.assert_lowers_untouched();
        self.assert_same_view();
        self.assert_same_upper();
    }
}

/// The node ovlfuse's upper layer holds at `rel`, if any.
fn fuse_upper_node(c: &Case, rel: &str) -> Option<Node> {
    snapshot(c.fuse_upper()).get(rel).cloned()
}

fn assert_fuse_whiteout(c: &Case, rel: &str) {
    let n = fuse_upper_node(c, rel)
        .unwrap_or_else(|| panic!("ovlfuse left no whiteout at upper/{rel}"));
    assert_eq!(
        (n.kind, n.rdev),
        (Kind::CharDev, Some((0, 0))),
        "upper/{rel} must be a 0/0 character device"
    );
}

fn assert_fuse_upper_lacks(c: &Case, rel: &str) {
    assert!(
        fuse_upper_node(c, rel).is_none(),
        "ovlfuse's upper layer must hold nothing at {rel}"
    );
}

fn names(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = [".", ".."].iter().chain(v).map(|s| s.to_string()).collect();
    v.sort();
    v
}

fn rm_rf(r: &Path, rel: &str) -> Result<(), i32> {
    let out = Command::new("rm")
        .arg("-rf")
        .arg(r.join(rel))
        .output()
        .map_err(io_errno)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(libc::EIO)
    }
}

// ------------------------------------------------------------------ creation

#[test]
fn create_makes_new_files_in_the_upper_layer_only() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("low", "lower data")
                    .dir_mode("d", 0o750)
                    .file("d/x", "x")
                    .dir("d/sub")
                    .chown("d", 1234, 5678)
                    .xattr("d", "user.dir", "x"),
            )
            .lower(layer().file("deep/down", "dd")),
    );
    assert_eq!(
        c.ok("create new 0640 and write", |r| {
            let fd = open_fd(
                &r.join("new"),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o640,
            )?;
            pwrite_fd(&fd, 0, b"fresh")
        }),
        5
    );
    assert_eq!(
        c.op("O_EXCL create over a lower file", |r| probe_create(
            &r.join("low"),
            0o644
        )),
        Err(libc::EEXIST)
    );
    assert_eq!(
        c.op("O_EXCL create over a new file", |r| probe_create(
            &r.join("new"),
            0o644
        )),
        Err(libc::EEXIST)
    );
    c.ok("create in a lower dir (parent chain copied up)", |r| {
        probe_create(&r.join("d/sub/n"), 0o600)
    });
    c.ok("create in a dir of the second lower", |r| {
        probe_create(&r.join("deep/n2"), 0o644)
    });
    assert_eq!(
        c.op("create under a missing dir", |r| probe_create(
            &r.join("nope/x"),
            0o644
        )),
        Err(libc::ENOENT)
    );
    assert_eq!(
        c.op("create under a file", |r| probe_create(
            &r.join("low/x"),
            0o644
        )),
        Err(libc::ENOTDIR)
    );
    let n255 = "a".repeat(255);
    c.ok("create a 255-byte name", |r| {
        probe_create(&r.join(&n255), 0o644)
    });
    let n256 = "b".repeat(256);
    assert_eq!(
        c.op("create a 256-byte name", |r| probe_create(
            &r.join(&n256),
            0o644
        )),
        Err(libc::ENAMETOOLONG)
    );
    c.ok("stat new", |r| probe_stat(&r.join("new")));
    c.ok("read new", |r| probe_read(&r.join("new")));
    assert!(fuse_upper_node(&c, "new").is_some());
    assert!(fuse_upper_node(&c, "d/sub/n").is_some());
    c.check();
}

#[test]
fn mkdir_creates_upper_directories_and_copies_up_parents_first() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .dir_mode("a", 0o711)
                    .dir_mode("a/b", 0o750)
                    .file("a/b/f", "f")
                    .chown("a/b", 4321, 8765)
                    .xattr("a", "user.a", "1")
                    .xattr("a/b", "user.b", "2")
                    .file("file", "x"),
            )
            .lower(layer().dir("a/from1").file("a/from1/g", "g")),
    );
    c.ok("mkdir nd 0755", |r| probe_mkdir(&r.join("nd"), 0o755));
    c.ok("mkdir nd/inner 0700", |r| {
        probe_mkdir(&r.join("nd/inner"), 0o700)
    });
    c.ok("mkdir sticky 01777", |r| {
        probe_mkdir(&r.join("sticky"), 0o1777)
    });
    c.ok("mkdir a/b/new under lower dirs", |r| {
        probe_mkdir(&r.join("a/b/new"), 0o755)
    });
    c.ok("mkdir a/from1/new under the second lower", |r| {
        probe_mkdir(&r.join("a/from1/new"), 0o755)
    });
    assert_eq!(
        c.op("mkdir over a lower dir", |r| probe_mkdir(
            &r.join("a"),
            0o755
        )),
        Err(libc::EEXIST)
    );
    assert_eq!(
        c.op("mkdir over a lower file", |r| probe_mkdir(
            &r.join("file"),
            0o755
        )),
        Err(libc::EEXIST)
    );
    assert_eq!(
        c.op("mkdir under a file", |r| probe_mkdir(
            &r.join("file/x"),
            0o755
        )),
        Err(libc::ENOTDIR)
    );
    c.ok("mkdir over the whiteout of a lower file", |r| {
        probe_unlink(&r.join("file"))?;
        probe_mkdir(&r.join("file"), 0o755)
    });
    c.ok("readdir a/b", |r| probe_readdir(&r.join("a/b")));
    c.ok("readdir a/from1/new", |r| {
        probe_readdir(&r.join("a/from1/new"))
    });
    // No opaque mark on a plain mkdir, nor on the copied-up parents.
    let up = snapshot_upper(c.fuse_upper(), XattrNs::Trusted);
    for d in ["nd", "a", "a/b", "a/from1", "a/b/new"] {
        let n = up.get(d).unwrap_or_else(|| panic!("upper/{d} missing"));
        assert!(
            !n.xattrs.contains_key("overlay.opaque"),
            "upper/{d} must not be opaque"
        );
    }
    c.check();
}

#[test]
fn create_in_a_dir_with_a_default_acl_inherits_it_like_the_kernel() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::KernelOverlay,
        Need::Xattrs,
        Need::Tool("sh"),
    ]) {
        return;
    }
    const ANY: u32 = u32::MAX;
    // user::rwx user:1234:rwx group::r-x mask::rwx other::r-x
    let default = posix_acl(&[
        (0x01, 7, ANY),
        (0x02, 7, 1234),
        (0x04, 5, ANY),
        (0x10, 7, ANY),
        (0x20, 5, ANY),
    ]);
    // user::rw- user:1234:rw- group::r-- mask::rw- other::r--
    let access = posix_acl(&[
        (0x01, 6, ANY),
        (0x02, 6, 1234),
        (0x04, 4, ANY),
        (0x10, 6, ANY),
        (0x20, 4, ANY),
    ]);
    let c = case(
        Twin::builder().lower(
            layer()
                .dir("acl")
                .xattr("acl", "system.posix_acl_default", &default)
                .file_mode("withacl", "x", 0o664)
                .xattr("withacl", "system.posix_acl_access", &access),
        ),
    );
    // A child shell with a known umask: an ACL default replaces the umask.
    let sh = |r: &Path, script: &str| -> Result<(), i32> {
        let st = Command::new("sh")
            .arg("-c")
            .arg(format!("umask 022 && {script}"))
            .current_dir(r)
            .status()
            .map_err(io_errno)?;
        st.success().then_some(()).ok_or(libc::EIO)
    };
    c.ok("touch acl/f && mkdir acl/d (umask 022)", |r| {
        sh(r, "touch acl/f && mkdir acl/d && mkdir acl/d/e")
    });
    let modes = c.ok("modes of the new objects", |r| {
        ["acl/f", "acl/d", "acl/d/e"]
            .iter()
            .map(|n| probe_lstat(&r.join(n)).map(|s| s.perm))
            .collect::<Result<Vec<_>, i32>>()
    });
    assert_eq!(modes[0], 0o664, "the default ACL, not the umask, decides");
    c.ok("chmod a lower file with an access ACL", |r| {
        probe_chmod(&r.join("withacl"), 0o640)
    });
    c.ok("ACL xattrs", |r| {
        Ok((
            probe_getxattr(&r.join("acl/f"), "system.posix_acl_access")?,
            probe_getxattr(&r.join("acl/d"), "system.posix_acl_default")?,
            probe_getxattr(&r.join("withacl"), "system.posix_acl_access")?,
        ))
    });
    c.check();
}

#[test]
fn mknod_makes_fifos_sockets_and_device_nodes() {
    if !require_twin() {
        return;
    }
    let c = case(Twin::builder().lower(layer().file("low", "l").dir("d")));
    c.ok("mknod fifo", |r| {
        probe_mknod(&r.join("fifo"), libc::S_IFIFO | 0o640, 0, 0)
    });
    c.ok("mknod S_IFSOCK", |r| {
        probe_mknod(&r.join("sock"), libc::S_IFSOCK | 0o755, 0, 0)
    });
    c.ok("bind a unix socket", |r| {
        std::os::unix::net::UnixListener::bind(r.join("bound"))
            .map(|_| ())
            .map_err(io_errno)
    });
    c.ok("mknod char device 1:3", |r| {
        probe_mknod(&r.join("chr"), libc::S_IFCHR | 0o666, 1, 3)
    });
    c.ok("mknod block device 7:0", |r| {
        probe_mknod(&r.join("blk"), libc::S_IFBLK | 0o660, 7, 0)
    });
    c.ok("mknod S_IFREG", |r| {
        probe_mknod(&r.join("reg"), libc::S_IFREG | 0o600, 0, 0)
    });
    c.ok("mknod fifo in a lower dir", |r| {
        probe_mknod(&r.join("d/fifo2"), libc::S_IFIFO | 0o600, 0, 0)
    });
    assert_eq!(
        c.op("mknod over a lower file", |r| probe_mknod(
            &r.join("low"),
            libc::S_IFIFO | 0o600,
            0,
            0
        )),
        Err(libc::EEXIST)
    );
    c.ok("unlink low", |r| probe_unlink(&r.join("low")));
    c.ok("mknod over the whiteout of low", |r| {
        probe_mknod(&r.join("low"), libc::S_IFCHR | 0o600, 1, 5)
    });
    let kinds = c.ok("lstat every node", |r| {
        [
            "fifo", "sock", "bound", "chr", "blk", "reg", "d/fifo2", "low",
        ]
        .iter()
        .map(|n| probe_lstat(&r.join(n)))
        .collect::<Result<Vec<_>, i32>>()
    });
    assert_eq!(
        kinds.iter().map(|s| s.kind).collect::<Vec<_>>(),
        [
            Kind::Fifo,
            Kind::Socket,
            Kind::Socket,
            Kind::CharDev,
            Kind::BlockDev,
            Kind::File,
            Kind::Fifo,
            Kind::CharDev
        ]
    );
    c.check();
}

/// The kernel overlayfs refuses a 0/0 device through the mount (its upper
/// could hold one only as a whiteout), so no overlay can keep its upper in
/// it. ovlfuse makes the device, as a plain filesystem does, stored with
/// the escaped whiteout mark: it is a nested overlay's whiteout, not ours.
#[test]
fn mknod_of_a_0_0_char_device_makes_a_device_where_the_kernel_refuses() {
    if !require_twin() {
        return;
    }
    let t = Twin::new([layer().file("low", "l").file("gone", "g")]);
    let mknod00 = |p: &Path| {
        probe_mknod(p, libc::S_IFCHR | 0o600, 0, 0)?;
        probe_lstat_raw(p).map(|st| (st.st_mode, st.st_rdev))
    };
    let (f, k) = t.both(|r| mknod00(&r.join("w00")));
    assert_eq!(k, Err(libc::EPERM), "kernel");
    assert_eq!(f, Ok((libc::S_IFCHR | 0o600, 0)), "ovlfuse");
    assert_eq!(
        t.both(|r| mknod00(&r.join("low"))),
        (Err(libc::EEXIST), Err(libc::EEXIST))
    );
    // Over a whited-out lower name, the device replaces our whiteout and
    // the lower file stays hidden.
    let (f, _) = t.both(|r| {
        probe_unlink(&r.join("gone"))?;
        mknod00(&r.join("gone"))
    });
    assert_eq!(f, Ok((libc::S_IFCHR | 0o600, 0)));
    let mut names = probe_readdir(t.fuse_mnt()).unwrap();
    names.sort();
    assert_eq!(names, [".", "..", "gone", "low", "w00"]);
    for n in ["w00", "gone"] {
        let up = t.fuse_upper().join(n);
        assert_eq!(
            probe_lgetxattr(&up, "trusted.overlay.overlay.whiteout"),
            Ok(b"y".to_vec()),
            "{n}"
        );
        // The mark is ours: the merged view shows the device without it.
        assert_eq!(probe_llistxattr(&t.fuse_mnt().join(n)), Ok(vec![]), "{n}");
    }
    // Removed, w00 leaves nothing (no lower has it), gone our whiteout.
    probe_unlink(&t.fuse_mnt().join("w00")).unwrap();
    probe_unlink(&t.fuse_mnt().join("gone")).unwrap();
    assert_eq!(
        probe_lstat_raw(&t.fuse_upper().join("w00")).err(),
        Some(libc::ENOENT)
    );
    assert_eq!(probe_lstat(&t.fuse_mnt().join("gone")), Err(libc::ENOENT));
    t.assert_same_view();
    t.assert_same_upper();
}

#[test]
fn symlink_creates_upper_symlinks_and_lchown_copies_a_lower_symlink_up() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("low", "l")
                .dir("d")
                .symlink("lsl", "low")
                .xattr("lsl", "trusted.sl", "on the link")
                .file("gone", "g"),
        ),
    );
    c.ok("symlink dangling", |r| {
        probe_symlink("nowhere/at/all", &r.join("sl"))
    });
    c.ok("symlink in a lower dir", |r| {
        probe_symlink("../low", &r.join("d/sl2"))
    });
    assert_eq!(
        c.op("symlink over a lower file", |r| probe_symlink(
            "x",
            &r.join("low")
        )),
        Err(libc::EEXIST)
    );
    c.ok("unlink gone", |r| probe_unlink(&r.join("gone")));
    c.ok("symlink over a whiteout", |r| {
        probe_symlink("low", &r.join("gone"))
    });
    c.ok("readlink d/sl2", |r| probe_readlink(&r.join("d/sl2")));
    c.ok("read through d/sl2", |r| probe_read(&r.join("d/sl2")));
    c.ok("lchown a lower symlink", |r| {
        probe_lchown(&r.join("lsl"), 7, 8)
    });
    assert_eq!(
        c.ok("lower symlink keeps its mtime on copy-up", |r| {
            c.keeps_lower_mtime(r, "lsl", 0)
        }),
        (true, true)
    );
    c.ok("lstat lsl", |r| probe_lstat(&r.join("lsl")));
    c.check();
}

// ------------------------------------------------------------------ data

#[test]
fn write_to_a_lower_file_copies_it_up_whole() {
    if !require_twin() {
        return;
    }
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let huge: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("f", &big)
                    .file("d/e/g", "deep file")
                    .file("huge", &huge)
                    .file("cfr_src", &big),
            )
            .upper(layer().file("u", "upper file")),
    );
    c.ok("pwrite in the middle of a lower file", |r| {
        probe_write_at(&r.join("f"), 50_000, b"XYZ")
    });
    c.ok("pwrite past the end of a lower file", |r| {
        probe_write_at(&r.join("d/e/g"), 20, b"tail")
    });
    c.ok("pwrite to an upper file", |r| {
        probe_write_at(&r.join("u"), 0, b"U")
    });
    c.ok("append to a 3 MB lower file", |r| {
        probe_append(&r.join("huge"), b"tail")
    });
    c.ok("copy_file_range from a lower file into a new file", |r| {
        let src = open_fd(&r.join("cfr_src"), libc::O_RDONLY, 0)?;
        let dst = open_fd(&r.join("cfr_dst"), libc::O_WRONLY | libc::O_CREAT, 0o644)?;
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                std::ptr::null_mut(),
                dst.as_raw_fd(),
                std::ptr::null_mut(),
                100_000,
                0,
            )
        };
        check(n)
    });
    let f = c.ok("read f", |r| probe_read(&r.join("f")));
    assert_eq!(f.len(), big.len());
    assert_eq!(&f[50_000..50_003], b"XYZ");
    assert_eq!(&f[..50_000], &big[..50_000], "the whole file was copied up");
    c.check();
}

#[test]
fn truncate_copies_up_and_sets_the_size() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("t1", "0123456789")
                .file("t2", "0123456789")
                .file("t3", "0123456789")
                .file("t4", "0123456789")
                .xattr("t3", "user.keep", "me")
                .dir("d"),
        ),
    );
    c.ok("truncate shorter", |r| probe_truncate(&r.join("t1"), 3));
    c.ok("truncate longer", |r| probe_truncate(&r.join("t2"), 50_000));
    c.ok("truncate to 0", |r| probe_truncate(&r.join("t3"), 0));
    c.ok("ftruncate through an O_WRONLY fd", |r| {
        let fd = open_fd(&r.join("t4"), libc::O_WRONLY, 0)?;
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), 5) })
    });
    assert_eq!(
        c.op("truncate a dir", |r| probe_truncate(&r.join("d"), 0)),
        Err(libc::EISDIR)
    );
    assert_eq!(
        c.op("truncate a missing file", |r| probe_truncate(
            &r.join("nope"),
            0
        )),
        Err(libc::ENOENT)
    );
    c.ok("getxattr user.keep after truncate to 0", |r| {
        probe_getxattr(&r.join("t3"), "user.keep")
    });
    c.check();
}

#[test]
fn fallocate_on_a_copied_up_file_matches_the_kernel() {
    if !require_twin() {
        return;
    }
    let c =
        case(Twin::builder().lower(layer().file("fa", vec![b'a'; 8192]).file("ro", "read only")));
    let fall = |p: &Path, mode: i32, off: i64, len: i64| -> Result<(i64, Vec<u8>), i32> {
        let fd = open_fd(p, libc::O_RDWR, 0)?;
        check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) })?;
        let st = fstat_fd(&fd)?;
        Ok((st.st_size, pread_fd(&fd, 0, 8192)?))
    };
    c.ok("fallocate mode 0 extends", |r| {
        fall(&r.join("fa"), 0, 0, 65536)
    });
    c.ok("fallocate KEEP_SIZE", |r| {
        fall(&r.join("fa"), libc::FALLOC_FL_KEEP_SIZE, 100_000, 4096)
    });
    c.ok("fallocate PUNCH_HOLE", |r| {
        fall(
            &r.join("fa"),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            0,
            4096,
        )
    });
    let _ = c.op("fallocate ZERO_RANGE", |r| {
        fall(&r.join("fa"), libc::FALLOC_FL_ZERO_RANGE, 4096, 4096)
    });
    assert_eq!(
        c.op("fallocate through an O_RDONLY fd", |r| {
            let fd = open_fd(&r.join("ro"), libc::O_RDONLY, 0)?;
            check(unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, 4096) })
        }),
        Err(libc::EBADF)
    );
    assert_fuse_upper_lacks(&c, "ro");
    c.check();
}

// ------------------------------------------------------------------ attributes

#[test]
fn chmod_chown_and_utimes_copy_up_and_keep_the_lowers_mtime() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("cm", "chmod me")
                .file("co", "chown me")
                .file("co2", "chown gid only")
                .file("ut", "utimes")
                .file("ut2", "omit mtime")
                .file("ut3", "now")
                .file("fc", "fchmod me")
                .fifo("fifo")
                .dir("dir")
                .file("dir/inner", "i")
                .xattr("cm", "user.x", "kept"),
        ),
    );
    c.ok("chmod 0600", |r| probe_chmod(&r.join("cm"), 0o600));
    c.ok("chmod 04755 (setuid)", |r| {
        probe_chmod(&r.join("cm"), 0o4755)
    });
    c.ok("chown 1234:5678", |r| {
        probe_chown(&r.join("co"), 1234, 5678)
    });
    c.ok("chown -1:99", |r| probe_chown(&r.join("co2"), u32::MAX, 99));
    c.ok("chmod a lower fifo", |r| {
        probe_chmod(&r.join("fifo"), 0o600)
    });
    c.ok("chmod a lower dir", |r| probe_chmod(&r.join("dir"), 0o700));
    for (rel, what) in [
        ("cm", "chmod"),
        ("co", "chown"),
        ("co2", "chown gid"),
        ("fifo", "fifo chmod"),
        ("dir", "dir chmod"),
    ] {
        assert_eq!(
            c.ok(
                &format!("{what}: copied-up {rel} keeps the lower mtime"),
                |r| { c.keeps_lower_mtime(r, rel, 0) }
            ),
            (true, true),
            "{rel}"
        );
    }
    c.ok(
        "fchmod through an O_RDONLY fd of a lower file, then read it",
        |r| {
            let fd = open_fd(&r.join("fc"), libc::O_RDONLY, 0)?;
            check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o604) })?;
            Ok((pread_fd(&fd, 0, 100)?, fstat_fd(&fd)?.st_mode))
        },
    );
    c.ok("utimensat explicit times", |r| {
        probe_utimens(&r.join("ut"), (1000, 5), (2000, 7))
    });
    let st = c.ok("lstat ut", |r| {
        probe_lstat_raw(&r.join("ut")).map(|s| mtime(&s))
    });
    assert_eq!(st, (2000, 7));
    c.ok("utimensat atime only (UTIME_OMIT mtime)", |r| {
        probe_utimens(&r.join("ut2"), (3000, 0), (0, libc::UTIME_OMIT))
    });
    assert_eq!(
        c.ok("UTIME_OMIT: copied-up ut2 keeps the lower mtime", |r| {
            c.keeps_lower_mtime(r, "ut2", 0)
        }),
        (true, true)
    );
    c.ok("utimensat UTIME_NOW", |r| {
        probe_utimens(&r.join("ut3"), (0, libc::UTIME_NOW), (0, libc::UTIME_NOW))
    });
    assert_eq!(
        c.op("chmod a missing file", |r| probe_chmod(
            &r.join("nope"),
            0o600
        )),
        Err(libc::ENOENT)
    );
    c.ok("stat all", |r| {
        ["cm", "co", "co2", "fifo", "dir", "ut", "ut2", "ut3"]
            .iter()
            .map(|n| probe_lstat(&r.join(n)))
            .collect::<Result<Vec<_>, i32>>()
    });
    c.check();
}

#[test]
fn setxattr_and_removexattr_copy_up_with_user_names() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("x1", "1")
                .file("x2", "2")
                .file("x3", "3")
                .file("x4", "4")
                .file("x5", "5")
                .dir("xd")
                .symlink("sl", "x1")
                .xattr("x1", "user.a", "1")
                .xattr("x2", "user.a", "1")
                .xattr("x2", "user.b", "2")
                .xattr("x3", "user.a", "1")
                .xattr("xd", "user.d", "dir"),
        ),
    );
    c.ok("setxattr user.new", |r| {
        probe_setxattr(&r.join("x1"), "user.new", b"v", 0)
    });
    assert_eq!(
        c.ok("setxattr copy-up keeps the lower mtime", |r| {
            c.keeps_lower_mtime(r, "x1", 0)
        }),
        (true, true)
    );
    c.ok("removexattr user.a", |r| {
        probe_removexattr(&r.join("x2"), "user.a")
    });
    c.ok("setxattr on a lower dir", |r| {
        probe_setxattr(&r.join("xd"), "user.e", b"E", 0)
    });
    c.ok("removexattr on a lower dir", |r| {
        probe_removexattr(&r.join("xd"), "user.d")
    });
    // Failing calls on objects not yet copied up: whether they copy up is
    // visible in the upper layer.
    assert_eq!(
        c.op("XATTR_CREATE of an existing name", |r| probe_setxattr(
            &r.join("x3"),
            "user.a",
            b"z",
            libc::XATTR_CREATE
        )),
        Err(libc::EEXIST)
    );
    assert_eq!(
        c.op("XATTR_REPLACE of a missing name", |r| probe_setxattr(
            &r.join("x4"),
            "user.zz",
            b"z",
            libc::XATTR_REPLACE
        )),
        Err(libc::ENODATA)
    );
    assert_eq!(
        c.op("removexattr of a missing name", |r| probe_removexattr(
            &r.join("x5"),
            "user.zz"
        )),
        Err(libc::ENODATA)
    );
    assert_eq!(
        c.op("lsetxattr user.* on a symlink", |r| {
            probe_lsetxattr(&r.join("sl"), "user.s", b"s", 0)
        }),
        Err(libc::EPERM)
    );
    c.ok("listxattr x1 x2 xd", |r| {
        ["x1", "x2", "xd"]
            .iter()
            .map(|n| probe_listxattr(&r.join(n)))
            .collect::<Result<Vec<_>, i32>>()
    });
    c.check();
}

// ------------------------------------------------------------------ removal

#[test]
fn unlink_of_a_lower_name_leaves_a_whiteout_and_of_an_upper_name_nothing() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("lf", "l")
                    .file("d/lf2", "l2")
                    .file("both", "lower"),
            )
            .lower(layer().file("deep", "second lower"))
            .upper(layer().file("uf", "upper only").file("both", "upper")),
    );
    c.ok("unlink a lower file", |r| probe_unlink(&r.join("lf")));
    assert_fuse_whiteout(&c, "lf");
    c.ok("unlink a file of the second lower", |r| {
        probe_unlink(&r.join("deep"))
    });
    assert_fuse_whiteout(&c, "deep");
    c.ok("create then unlink a new file", |r| {
        probe_create(&r.join("new"), 0o644)?;
        probe_unlink(&r.join("new"))
    });
    assert_fuse_upper_lacks(&c, "new");
    c.ok("unlink a pre-existing upper-only file", |r| {
        probe_unlink(&r.join("uf"))
    });
    assert_fuse_upper_lacks(&c, "uf");
    c.ok("copy up then unlink", |r| {
        probe_append(&r.join("d/lf2"), b"+")?;
        probe_unlink(&r.join("d/lf2"))
    });
    assert_fuse_whiteout(&c, "d/lf2");
    c.ok("unlink an upper file that shadows a lower one", |r| {
        probe_unlink(&r.join("both"))
    });
    assert_fuse_whiteout(&c, "both");
    assert_eq!(
        c.op("unlink twice", |r| probe_unlink(&r.join("lf"))),
        Err(libc::ENOENT)
    );
    assert_eq!(
        c.op("unlink a dir", |r| probe_unlink(&r.join("d"))),
        Err(libc::EISDIR)
    );
    c.ok("create over the whiteout", |r| {
        write_file(&r.join("lf"), b"again")
    });
    let n = fuse_upper_node(&c, "lf").expect("upper/lf");
    assert_eq!(n.kind, Kind::File, "the whiteout was replaced");
    c.ok("readdir /", probe_readdir);
    c.check();
}

#[test]
fn rmdir_of_an_empty_merged_dir_leaves_a_whiteout_and_enotempty_otherwise() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .dir("e")
                    .file("f/x", "x")
                    .file("g/x", "x")
                    .dir("m")
                    .file("file", "f"),
            )
            .lower(layer().file("g/y", "y").dir("m")),
    );
    c.ok("rmdir an empty lower dir", |r| probe_rmdir(&r.join("e")));
    assert_fuse_whiteout(&c, "e");
    assert_eq!(
        c.op("rmdir a non-empty lower dir", |r| probe_rmdir(&r.join("f"))),
        Err(libc::ENOTEMPTY)
    );
    c.ok("unlink f/x then rmdir f", |r| {
        probe_unlink(&r.join("f/x"))?;
        probe_rmdir(&r.join("f"))
    });
    assert_fuse_whiteout(&c, "f");
    assert_fuse_upper_lacks(&c, "f/x");
    assert_eq!(
        c.op("rmdir g (entries in two lowers)", |r| probe_rmdir(
            &r.join("g")
        )),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(
        c.op("unlink g/x, rmdir g while g/y remains below", |r| {
            probe_unlink(&r.join("g/x"))?;
            probe_rmdir(&r.join("g"))
        }),
        Err(libc::ENOTEMPTY)
    );
    c.ok("unlink g/y then rmdir g", |r| {
        probe_unlink(&r.join("g/y"))?;
        probe_rmdir(&r.join("g"))
    });
    assert_fuse_whiteout(&c, "g");
    c.ok("rmdir a dir merged from two empty lowers", |r| {
        probe_rmdir(&r.join("m"))
    });
    assert_fuse_whiteout(&c, "m");
    c.ok("mkdir then rmdir a pure upper dir", |r| {
        probe_mkdir(&r.join("p"), 0o755)?;
        probe_rmdir(&r.join("p"))
    });
    assert_fuse_upper_lacks(&c, "p");
    assert_eq!(
        c.op("rmdir a non-empty pure upper dir", |r| {
            probe_mkdir(&r.join("p2"), 0o755)?;
            probe_create(&r.join("p2/f"), 0o644)?;
            probe_rmdir(&r.join("p2"))
        }),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(
        c.op("rmdir a file", |r| probe_rmdir(&r.join("file"))),
        Err(libc::ENOTDIR)
    );
    assert_eq!(
        c.op("rmdir a missing dir", |r| probe_rmdir(&r.join("nope"))),
        Err(libc::ENOENT)
    );
    c.ok("readdir /", probe_readdir);
    c.check();
}

#[test]
fn mkdir_over_a_whited_out_dir_is_opaque_and_old_entries_never_reappear() {
    if !require_twin() {
        return;
    }
    let mut c = case(
        Twin::builder()
            .lower(layer().file("o/a", "a").file("o/sub/b", "b"))
            .lower(layer().file("o/c", "c")),
    );
    c.ok("rm -r o", |r| rm_rf(r, "o"));
    assert_fuse_whiteout(&c, "o");
    c.ok("mkdir o over its whiteout", |r| {
        probe_mkdir(&r.join("o"), 0o755)
    });
    assert_eq!(
        c.ok("readdir o", |r| probe_readdir(&r.join("o"))),
        names(&[])
    );
    let up = snapshot_upper(c.fuse_upper(), XattrNs::Trusted);
    assert_eq!(
        up.get("o").and_then(|n| n.xattrs.get("overlay.opaque")),
        Some(&Ok(b"y".to_vec())),
        "the new o must be opaque in ovlfuse's upper"
    );
    c.ok("create o/new", |r| write_file(&r.join("o/new"), b"n"));
    assert_eq!(
        c.op("stat o/a", |r| probe_stat(&r.join("o/a"))),
        Err(libc::ENOENT)
    );
    c.check();
    c.remount();
    assert_eq!(
        c.ok("readdir o after remount", |r| probe_readdir(&r.join("o"))),
        names(&["new"])
    );
    for old in ["o/a", "o/c", "o/sub"] {
        assert_eq!(
            c.op(&format!("stat {old} after remount"), |r| probe_stat(
                &r.join(old)
            )),
            Err(libc::ENOENT)
        );
    }
    c.check();
}

// ------------------------------------------------------------------ rename

#[test]
fn rename_of_a_lower_file_copies_it_up_and_whites_out_the_old_name() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("a", "a")
                    .file("d1/b", "b")
                    .dir("d2")
                    .file("d2/c", "c"),
            )
            .lower(layer().file("x", "from the second lower")),
    );
    let ino = probe_ino(&c.fuse_mnt().join("a")).unwrap();
    c.ok("rename a lower file", |r| {
        probe_rename(&r.join("a"), &r.join("a2"), 0)
    });
    assert_fuse_whiteout(&c, "a");
    assert_eq!(fuse_upper_node(&c, "a2").map(|n| n.kind), Some(Kind::File));
    assert_eq!(
        probe_ino(&c.fuse_mnt().join("a2")),
        Ok(ino),
        "st_ino survives the copy-up of a rename"
    );
    c.ok("rename across two lower dirs", |r| {
        probe_rename(&r.join("d1/b"), &r.join("d2/b"), 0)
    });
    c.ok("rename a file of the second lower into a dir", |r| {
        probe_rename(&r.join("x"), &r.join("d1/x"), 0)
    });
    c.ok("rename a pure upper file", |r| {
        write_file(&r.join("n"), b"n")?;
        probe_rename(&r.join("n"), &r.join("n2"), 0)
    });
    assert_fuse_upper_lacks(&c, "n");
    assert_eq!(
        c.op("rename a missing file", |r| probe_rename(
            &r.join("nope"),
            &r.join("n3"),
            0
        )),
        Err(libc::ENOENT)
    );
    c.ok("readdir / d1 d2", |r| {
        Ok((
            probe_readdir(r)?,
            probe_readdir(&r.join("d1"))?,
            probe_readdir(&r.join("d2"))?,
        ))
    });
    c.check();
}

#[test]
fn rename_of_a_file_over_a_file_replaces_it() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("src", "src")
                    .file("dst", "dst")
                    .file("src2", "src2")
                    .dir("dir")
                    .file("dir/in", "in"),
            )
            .upper(layer().file("udst", "upper dst").file("usrc", "upper src")),
    );
    c.ok("rename lower over lower", |r| {
        probe_rename(&r.join("src"), &r.join("dst"), 0)
    });
    assert_fuse_whiteout(&c, "src");
    c.ok("rename lower over upper", |r| {
        probe_rename(&r.join("src2"), &r.join("udst"), 0)
    });
    c.ok("rename upper over lower-copied", |r| {
        probe_rename(&r.join("usrc"), &r.join("dst"), 0)
    });
    assert_eq!(
        c.op("rename a file over a dir", |r| probe_rename(
            &r.join("dst"),
            &r.join("dir"),
            0
        )),
        Err(libc::EISDIR)
    );
    c.ok("rename a file onto itself", |r| {
        probe_rename(&r.join("dst"), &r.join("dst"), 0)
    });
    c.ok("rename a hard link onto its other name", |r| {
        probe_link(&r.join("dir/in"), &r.join("dir/in2"))?;
        probe_rename(&r.join("dir/in"), &r.join("dir/in2"), 0)
    });
    c.ok("read results", |r| {
        Ok((
            probe_read(&r.join("dst"))?,
            probe_read(&r.join("udst"))?,
            probe_readdir(r)?,
            probe_readdir(&r.join("dir"))?,
        ))
    });
    c.check();
}

#[test]
fn rename_noreplace_and_exchange_behave_as_on_a_plain_filesystem() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("f", "f")
                .file("g", "g")
                .file("p", "p")
                .file("q", "q")
                .file("gone", "gone")
                .file("h", "h"),
        ),
    );
    assert_eq!(
        c.op("NOREPLACE over an existing lower file", |r| probe_rename(
            &r.join("f"),
            &r.join("g"),
            libc::RENAME_NOREPLACE
        )),
        Err(libc::EEXIST)
    );
    c.ok("NOREPLACE to a new name", |r| {
        probe_rename(&r.join("f"), &r.join("f2"), libc::RENAME_NOREPLACE)
    });
    c.ok("unlink gone; NOREPLACE onto its whiteout", |r| {
        probe_unlink(&r.join("gone"))?;
        probe_rename(&r.join("h"), &r.join("gone"), libc::RENAME_NOREPLACE)
    });
    c.ok("EXCHANGE two lower files", |r| {
        probe_rename(&r.join("p"), &r.join("q"), libc::RENAME_EXCHANGE)
    });
    assert_eq!(
        c.op("EXCHANGE with a missing name", |r| probe_rename(
            &r.join("p"),
            &r.join("nope"),
            libc::RENAME_EXCHANGE
        )),
        Err(libc::ENOENT)
    );
    c.ok("EXCHANGE a lower file with a pure upper dir", |r| {
        probe_mkdir(&r.join("ud"), 0o755)?;
        probe_create(&r.join("ud/in"), 0o644)?;
        probe_rename(&r.join("g"), &r.join("ud"), libc::RENAME_EXCHANGE)
    });
    c.ok("EXCHANGE two pure upper dirs", |r| {
        probe_mkdir(&r.join("ua"), 0o700)?;
        probe_mkdir(&r.join("ub"), 0o755)?;
        probe_create(&r.join("ub/x"), 0o644)?;
        probe_rename(&r.join("ua"), &r.join("ub"), libc::RENAME_EXCHANGE)
    });
    assert_eq!(
        c.op("NOREPLACE|EXCHANGE", |r| probe_rename(
            &r.join("p"),
            &r.join("q"),
            libc::RENAME_NOREPLACE | libc::RENAME_EXCHANGE
        )),
        Err(libc::EINVAL)
    );
    // RENAME_WHITEOUT, which the kernel overlayfs refuses and ovlfuse
    // serves: posix_corners `rename_whiteout_leaves_a_0_0_device_as_on_a_plain_filesystem`.
    c.ok("read results", |r| {
        Ok((
            probe_read(&r.join("p"))?,
            probe_read(&r.join("q"))?,
            probe_read(&r.join("gone"))?,
            probe_readdir(r)?,
            probe_readdir(&r.join("ub"))?,
        ))
    });
    c.check();
}

#[test]
fn rename_onto_a_whited_out_name_replaces_the_whiteout() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("gone", "g")
                .file("gone2", "g2")
                .file("lf", "lower file")
                .file("gdir/x", "x")
                .file("gdir/sub/y", "y"),
        ),
    );
    c.ok("upper file onto a whiteout", |r| {
        probe_unlink(&r.join("gone"))?;
        write_file(&r.join("nf"), b"new")?;
        probe_rename(&r.join("nf"), &r.join("gone"), 0)
    });
    assert_eq!(
        fuse_upper_node(&c, "gone").map(|n| n.kind),
        Some(Kind::File)
    );
    c.ok("lower file onto a whiteout", |r| {
        probe_unlink(&r.join("gone2"))?;
        probe_rename(&r.join("lf"), &r.join("gone2"), 0)
    });
    assert_fuse_whiteout(&c, "lf");
    c.ok("pure upper dir onto a whited-out lower dir", |r| {
        rm_rf(r, "gdir")?;
        probe_mkdir(&r.join("pd"), 0o750)?;
        write_file(&r.join("pd/in"), b"in")?;
        probe_rename(&r.join("pd"), &r.join("gdir"), 0)
    });
    assert_eq!(
        c.ok("readdir gdir", |r| probe_readdir(&r.join("gdir"))),
        names(&["in"])
    );
    c.check();
}

#[test]
fn rename_of_a_directory_over_an_empty_directory_replaces_it() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .dir("le")
                .file("ld/x", "x")
                .file("full/y", "y")
                .file("file", "f"),
        ),
    );
    c.ok("pure upper dir over an empty pure upper dir", |r| {
        probe_mkdir(&r.join("a"), 0o755)?;
        write_file(&r.join("a/f"), b"a")?;
        probe_mkdir(&r.join("b"), 0o700)?;
        probe_rename(&r.join("a"), &r.join("b"), 0)
    });
    c.ok("pure upper dir over an empty lower dir", |r| {
        probe_mkdir(&r.join("c"), 0o755)?;
        write_file(&r.join("c/f"), b"c")?;
        probe_rename(&r.join("c"), &r.join("le"), 0)
    });
    c.ok(
        "pure upper dir over a lower dir emptied through the mount",
        |r| {
            probe_unlink(&r.join("ld/x"))?;
            probe_mkdir(&r.join("e"), 0o755)?;
            write_file(&r.join("e/g"), b"e")?;
            probe_rename(&r.join("e"), &r.join("ld"), 0)
        },
    );
    assert_eq!(
        c.op("dir over a non-empty lower dir", |r| {
            probe_mkdir(&r.join("k"), 0o755)?;
            probe_rename(&r.join("k"), &r.join("full"), 0)
        }),
        Err(libc::ENOTEMPTY)
    );
    assert_eq!(
        c.op("dir over a file", |r| probe_rename(
            &r.join("k"),
            &r.join("file"),
            0
        )),
        Err(libc::ENOTDIR)
    );
    c.ok("readdir everything", |r| {
        Ok((
            probe_readdir(r)?,
            probe_readdir(&r.join("b"))?,
            probe_readdir(&r.join("le"))?,
            probe_readdir(&r.join("ld"))?,
        ))
    });
    c.check();
}

#[test]
fn rename_of_a_pure_upper_directory_works() {
    if !require_twin() {
        return;
    }
    let c = case(Twin::builder().lower(layer().file("d/f", "f").file("od/x", "x")));
    c.ok("mkdir pd/sub, file inside, rename pd", |r| {
        probe_mkdir(&r.join("pd"), 0o755)?;
        probe_mkdir(&r.join("pd/sub"), 0o700)?;
        write_file(&r.join("pd/sub/f"), b"deep")?;
        probe_rename(&r.join("pd"), &r.join("pd2"), 0)
    });
    c.ok("rename a pure upper dir into a lower dir", |r| {
        probe_rename(&r.join("pd2"), &r.join("d/pd3"), 0)
    });
    c.ok("rename an opaque dir (made over a whiteout)", |r| {
        rm_rf(r, "od")?;
        probe_mkdir(&r.join("od"), 0o755)?;
        write_file(&r.join("od/new"), b"n")?;
        probe_rename(&r.join("od"), &r.join("od2"), 0)
    });
    c.ok("readdir everything", |r| {
        Ok((
            probe_readdir(r)?,
            probe_readdir(&r.join("d"))?,
            probe_readdir(&r.join("d/pd3/sub"))?,
            probe_readdir(&r.join("od2"))?,
        ))
    });
    c.check();
}

#[test]
fn rename_of_a_lower_directory_answers_exdev_and_mv_falls_back_to_copy() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::KernelOverlay,
        Need::Xattrs,
        Need::Tool("mv"),
    ]) {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .dir_mode("ld", 0o750)
                    .file("ld/f1", "one")
                    .file_mode("ld/sub/f2", "two", 0o600)
                    .symlink("ld/sl", "f1")
                    .xattr("ld/f1", "user.k", "v")
                    .file("md/top", "t")
                    .file("cu/c", "c"),
            )
            .lower(layer().file("md/bottom", "b").file("ld/from1", "1")),
    );
    let f = c.fuse_mnt();
    let k = c.kern_mnt();
    c.ok("chmod cu (copy up a lower dir)", |r| {
        probe_chmod(&r.join("cu"), 0o700)
    });
    c.ok("mkdir pu", |r| probe_mkdir(&r.join("pu"), 0o755));
    let attempts: [(&str, &str, u32); 6] = [
        ("ld", "ld2", 0),
        ("md", "md2", 0),
        ("ld", "pu/ld", 0),
        ("cu", "cu2", 0),
        ("ld", "pu", libc::RENAME_EXCHANGE),
        ("md", "md3", libc::RENAME_NOREPLACE),
    ];
    let mut kernel_all_exdev = true;
    for (from, to, flags) in attempts {
        let fr = probe_rename(&f.join(from), &f.join(to), flags);
        let kr = probe_rename(&k.join(from), &k.join(to), flags);
        eprintln!(
            "rename({from}, {to}, {flags:#x}): fuse {} kernel {}",
            show(&fr),
            show(&kr)
        );
        assert_eq!(
            fr,
            Err(libc::EXDEV),
            "ovlfuse must refuse rename({from}, {to}, {flags:#x}) of a lower directory"
        );
        kernel_all_exdev &= kr == Err(libc::EXDEV);
    }
    let mv = |r: &Path, from: &str, to: &str| -> Result<(), String> {
        let out = Command::new("mv")
            .arg(r.join(from))
            .arg(r.join(to))
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    };
    for (from, to) in [("ld", "ld2"), ("md", "pu/md"), ("cu", "cu2")] {
        let (a, b) = c.both(|r| mv(r, from, to));
        assert_eq!(a, Ok(()), "mv {from} {to} on ovlfuse");
        assert_eq!(a, b, "mv {from} {to}");
    }
    c.ok("readdir after mv", |r| {
        Ok((
            probe_readdir(r)?,
            probe_readdir(&r.join("ld2"))?,
            probe_readdir(&r.join("pu/md"))?,
        ))
    });
    c.assert_same_view();
    c.assert_lowers_untouched();
    if kernel_all_exdev {
        // The kernel (redirect_dir off) took the same copy-and-delete path.
        c.assert_same_upper();
        assert_fuse_whiteout(&c, "ld");
        assert_fuse_whiteout(&c, "md");
    }
}

// ------------------------------------------------------------------ misc calls

#[test]
fn fsync_and_fdatasync_answer_like_the_kernel_and_copy_nothing_up() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("rw", "rw")
                .file("ro", "ro")
                .dir("d")
                .file("d/f", "f"),
        ),
    );
    let sync = |fd: &OwnedFd| -> Result<(i32, i32), i32> {
        Ok((
            check(unsafe { libc::fsync(fd.as_raw_fd()) })?,
            check(unsafe { libc::fdatasync(fd.as_raw_fd()) })?,
        ))
    };
    c.ok("fsync+fdatasync after a write to a lower file", |r| {
        let fd = open_fd(&r.join("rw"), libc::O_RDWR, 0)?;
        pwrite_fd(&fd, 2, b"++")?;
        sync(&fd)
    });
    c.ok("fsync+fdatasync of a read-only lower fd", |r| {
        let fd = open_fd(&r.join("ro"), libc::O_RDONLY, 0)?;
        sync(&fd)
    });
    c.ok("fsync+fdatasync of a lower dir", |r| {
        let fd = open_fd(&r.join("d"), libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        sync(&fd)
    });
    c.ok("fsync of a new file", |r| {
        let fd = open_fd(
            &r.join("new"),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            0o644,
        )?;
        write_fd(&fd, b"new")?;
        sync(&fd)
    });
    c.ok("O_SYNC write to a lower file", |r| {
        let fd = open_fd(&r.join("d/f"), libc::O_WRONLY | libc::O_SYNC, 0)?;
        write_fd(&fd, b"S")
    });
    assert_fuse_upper_lacks(&c, "ro");
    c.check();
}

#[test]
fn statfs_reports_the_upper_filesystem() {
    if !require_twin() {
        return;
    }
    let c = case(Twin::builder().lower(layer().file("f", "f")));
    let sfs = |p: &Path| -> Result<(i64, u64, u64, i64, i64), i32> {
        let cp = cpath(p);
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        check(unsafe { libc::statfs(cp.as_ptr(), &mut s) })?;
        Ok((s.f_bsize, s.f_blocks, s.f_files, s.f_namelen, s.f_frsize))
    };
    let got = c.ok("statfs of the mount root", sfs);
    c.ok("statfs of a lower file", |r| sfs(&r.join("f")));
    assert_eq!(
        Ok(got),
        sfs(c.fuse_upper()),
        "the upper filesystem's geometry"
    );
    c.check();
}

#[test]
fn shared_writable_mmap_of_a_lower_file_copies_up_and_writes_through() {
    if !require_twin() {
        return;
    }
    let data: Vec<u8> = (0..8192u32).map(|i| b'a' + (i % 26) as u8).collect();
    let c = case(Twin::builder().lower(layer().file("mm", &data).file("ro", &data)));
    let len = data.len();
    c.ok("mmap MAP_SHARED, store, msync, read back", |r| {
        let fd = open_fd(&r.join("mm"), libc::O_RDWR, 0)?;
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(common::sys::errno());
        }
        let s = unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), len) };
        s[100..105].copy_from_slice(b"HELLO");
        s[5000..5005].copy_from_slice(b"WORLD");
        let synced = check(unsafe { libc::msync(p, len, libc::MS_SYNC) });
        let other =
            open_fd(&r.join("mm"), libc::O_RDONLY, 0).and_then(|o| pread_fd(&o, 0, len + 10));
        unsafe { libc::munmap(p, len) };
        drop(fd);
        Ok((synced?, other?, probe_read(&r.join("mm"))?))
    });
    let back = probe_read(&c.fuse_mnt().join("mm")).unwrap();
    assert_eq!(&back[100..105], b"HELLO");
    assert_eq!(&back[5000..5005], b"WORLD");
    assert_eq!(
        c.op("MAP_SHARED PROT_WRITE of an O_RDONLY fd", |r| {
            let fd = open_fd(&r.join("ro"), libc::O_RDONLY, 0)?;
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    fd.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(common::sys::errno());
            }
            unsafe { libc::munmap(p, len) };
            Ok(())
        }),
        Err(libc::EACCES)
    );
    assert_fuse_upper_lacks(&c, "ro");
    c.check();
}

#[test]
fn open_flags_o_append_o_trunc_and_o_excl_behave_like_the_kernel() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("ap", "appended to: ")
                .file("ap2", "0123456789")
                .file_mode("tr", "to be truncated", 0o640)
                .xattr("tr", "user.k", "kept")
                .file("tr2", "read-only truncate")
                .file("gone", "g")
                .symlink("dang", "dtarget")
                .symlink("dang2", "dtarget2"),
        ),
    );
    c.ok("O_APPEND write to a lower file", |r| {
        let fd = open_fd(&r.join("ap"), libc::O_WRONLY | libc::O_APPEND, 0)?;
        Ok((write_fd(&fd, b"one ")?, write_fd(&fd, b"two")?))
    });
    c.ok("O_APPEND ignores the pwrite offset", |r| {
        let fd = open_fd(&r.join("ap2"), libc::O_RDWR | libc::O_APPEND, 0)?;
        pwrite_fd(&fd, 0, b"END")
    });
    c.ok("O_WRONLY|O_TRUNC of a lower file", |r| {
        let fd = open_fd(&r.join("tr"), libc::O_WRONLY | libc::O_TRUNC, 0)?;
        fstat_fd(&fd).map(|s| s.st_size)
    });
    c.ok("O_RDONLY|O_TRUNC of a lower file", |r| {
        let fd = open_fd(&r.join("tr2"), libc::O_RDONLY | libc::O_TRUNC, 0)?;
        fstat_fd(&fd).map(|s| s.st_size)
    });
    assert_eq!(
        c.op("O_CREAT|O_EXCL over a lower file", |r| probe_open(
            &r.join("ap"),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY
        )),
        Err(libc::EEXIST)
    );
    assert_eq!(
        c.op("O_CREAT|O_EXCL over a dangling lower symlink", |r| {
            probe_open(
                &r.join("dang"),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
            )
        }),
        Err(libc::EEXIST)
    );
    c.ok("O_CREAT|O_EXCL over a whiteout", |r| {
        probe_unlink(&r.join("gone"))?;
        probe_open(
            &r.join("gone"),
            libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
        )
    });
    c.ok("O_CREAT through a dangling lower symlink", |r| {
        let fd = open_fd(&r.join("dang2"), libc::O_CREAT | libc::O_WRONLY, 0o600)?;
        write_fd(&fd, b"via symlink")
    });
    c.ok("O_CREAT without O_EXCL on a lower file opens it", |r| {
        let fd = open_fd(&r.join("ap2"), libc::O_CREAT | libc::O_RDONLY, 0o600)?;
        pread_fd(&fd, 0, 100)
    });
    let tr = fuse_upper_node(&c, "tr").expect("upper/tr");
    assert_eq!((tr.size, tr.perm), (Some(0), 0o640));
    assert_eq!(tr.xattrs.get("user.k"), Some(&Ok(b"kept".to_vec())));
    c.check();
}

/// linkat() of an open fd to `dst`: AT_EMPTY_PATH as root, through the
/// fd's /proc link otherwise (AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH).
fn link_fd_to(fd: &OwnedFd, dst: &Path) -> Result<(), i32> {
    let d = cpath(dst);
    if unsafe { libc::geteuid() } == 0 {
        check(unsafe {
            libc::linkat(
                fd.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                d.as_ptr(),
                libc::AT_EMPTY_PATH,
            )
        })?;
    } else {
        let src = cpath(Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())));
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                src.as_ptr(),
                libc::AT_FDCWD,
                d.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })?;
    }
    Ok(())
}

/// (size, mode, nlink) as fstat says.
fn fstat_brief(fd: &OwnedFd) -> Result<(i64, u32, u64), i32> {
    let st = fstat_fd(fd)?;
    Ok((st.st_size, st.st_mode, st.st_nlink))
}

#[test]
fn o_tmpfile_and_linkat_work_as_on_the_kernel() {
    if !require_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let c = case(
        Twin::builder().fuse_opt("allow_other").lower(
            layer()
                .dir("d")
                .file("d/f", "lower f")
                .file("d/taken", "taken")
                .dir_mode("pub", 0o777)
                .file("gone/x", "x"),
        ),
    );
    // An unnamed file in a lower directory: the directory is copied up,
    // the file has no name (nlink 0) until linkat gives it one.
    let linked = c.ok("O_TMPFILE, write, fchmod, ftruncate, linkat", |r| {
        let fd = open_fd(&r.join("d"), libc::O_TMPFILE | libc::O_RDWR, 0o600)?;
        write_fd(&fd, b"anonymous data")?;
        // Reopened by its /proc link while it has no name.
        let again = open_fd(
            Path::new(&format!("/proc/self/fd/{}", fd.as_raw_fd())),
            libc::O_RDONLY,
            0,
        )?;
        let reread = pread_fd(&again, 0, 64)?;
        let before = fstat_brief(&fd)?;
        check(unsafe { libc::fchmod(fd.as_raw_fd(), 0o640) })?;
        check(unsafe { libc::ftruncate(fd.as_raw_fd(), 9) })?;
        let unnamed = fstat_brief(&fd)?;
        link_fd_to(&fd, &r.join("d/linked"))?;
        let named = fstat_brief(&fd)?;
        let content = probe_read(&r.join("d/linked"))?;
        Ok((before, unnamed, named, content, reread))
    });
    assert_eq!(linked.0.2, 0, "an O_TMPFILE file has no link yet");
    assert_eq!(linked.2.2, 1);
    assert_eq!(linked.3, b"anonymous");
    assert_eq!(linked.4, b"anonymous data", "reopened through /proc");
    // Linked over a whiteout: the name comes back with the new content.
    c.ok("rm a lower file", |r| probe_unlink(&r.join("d/f")));
    c.ok("O_TMPFILE linked over the whiteout", |r| {
        let fd = open_fd(&r.join("d"), libc::O_TMPFILE | libc::O_WRONLY, 0o644)?;
        write_fd(&fd, b"new f")?;
        link_fd_to(&fd, &r.join("d/f"))?;
        probe_read(&r.join("d/f"))
    });
    // Into a directory that is gone, and onto a name the merge has.
    c.ok("rm -r a lower dir", |r| rm_rf(r, "gone"));
    c.op("linkat into a removed directory", |r| {
        let fd = open_fd(&r.join("d"), libc::O_TMPFILE | libc::O_RDWR, 0o600)?;
        link_fd_to(&fd, &r.join("gone/x"))
    })
    .unwrap_err();
    c.op("linkat onto an existing name", |r| {
        let fd = open_fd(&r.join("d"), libc::O_TMPFILE | libc::O_RDWR, 0o600)?;
        link_fd_to(&fd, &r.join("d/taken"))
    })
    .unwrap_err();
    // O_EXCL forbids linking; never linked, the file leaves nothing behind.
    let excl = c.op("O_TMPFILE|O_EXCL cannot be linked", |r| {
        let fd = open_fd(
            &r.join("d"),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_EXCL,
            0o600,
        )?;
        write_fd(&fd, b"never named")?;
        link_fd_to(&fd, &r.join("d/excl"))
    });
    assert_eq!(excl, Err(libc::ENOENT));
    c.ok("O_TMPFILE closed unlinked", |r| {
        let fd = open_fd(&r.join("d"), libc::O_TMPFILE | libc::O_RDWR, 0o600)?;
        write_fd(&fd, b"dropped")
    });
    c.op("O_TMPFILE in a file is ENOTDIR", |r| {
        open_fd(&r.join("d/taken"), libc::O_TMPFILE | libc::O_RDWR, 0o600).map(drop)
    })
    .unwrap_err();
    // An ordinary user's unnamed file is theirs, linked through /proc.
    let mine = c.op_as((uid, gid), "O_TMPFILE + linkat as an ordinary user", |r| {
        let fd = open_fd(&r.join("pub"), libc::O_TMPFILE | libc::O_RDWR, 0o600)?;
        write_fd(&fd, b"user's")?;
        link_fd_to(&fd, &r.join("pub/mine"))?;
        let st = probe_lstat_raw(&r.join("pub/mine"))?;
        Ok((st.st_uid, st.st_gid, probe_read(&r.join("pub/mine"))?))
    });
    assert_eq!(mine, Ok((uid, gid, b"user's".to_vec())));
    c.check();
}

// ------------------------------------------------------------------ copy-up

#[test]
fn every_copy_up_trigger_copies_the_object_up_and_reads_do_not() {
    if !require_twin() {
        return;
    }
    let triggers = [
        "wronly", "rdwr", "otrunc", "truncate", "chmod", "chown", "utimes", "setx", "remx", "link",
        "rename",
    ];
    let mut low = layer().dir_mode("sub", 0o750).chown("sub", 1234, 5678);
    for t in triggers.iter().chain(&["ro"]) {
        let p = format!("sub/{t}");
        low = low
            .file_mode(&p, format!("content of {t}"), 0o640)
            .chown(&p, 4321, 8765)
            .xattr(&p, "user.tag", *t)
            .xattr(&p, "user.r", "removable")
            .xattr(&p, "trusted.custom", "root only");
    }
    let low = low
        .dir("ldir")
        .file("ldir/child", "c")
        .file_mode("m0000", "unreadable to all but root", 0o000)
        .file_mode("m0444", "read-only", 0o444);
    let c = case(Twin::builder().lower(low));
    let j = |r: &Path, t: &str| r.join("sub").join(t);
    c.ok("root writes a mode 0000 lower file", |r| {
        probe_append(&r.join("m0000"), b"+")
    });
    c.ok("root writes a mode 0444 lower file", |r| {
        probe_write_at(&r.join("m0444"), 0, b"R")
    });
    c.ok("open O_WRONLY", |r| {
        open_fd(&j(r, "wronly"), libc::O_WRONLY, 0).map(drop)
    });
    c.ok("open O_RDWR", |r| {
        open_fd(&j(r, "rdwr"), libc::O_RDWR, 0).map(drop)
    });
    c.ok("open O_WRONLY|O_TRUNC", |r| {
        open_fd(&j(r, "otrunc"), libc::O_WRONLY | libc::O_TRUNC, 0).map(drop)
    });
    c.ok("truncate to the same size", |r| {
        probe_truncate(&j(r, "truncate"), "content of truncate".len() as u64)
    });
    c.ok("chmod", |r| probe_chmod(&j(r, "chmod"), 0o604));
    c.ok("chown", |r| probe_chown(&j(r, "chown"), 1, 2));
    c.ok("utimes", |r| probe_utimens(&j(r, "utimes"), (5, 0), (6, 0)));
    c.ok("setxattr", |r| {
        probe_setxattr(&j(r, "setx"), "user.n", b"1", 0)
    });
    c.ok("removexattr", |r| {
        probe_removexattr(&j(r, "remx"), "user.r")
    });
    c.ok("link source", |r| {
        probe_link(&j(r, "link"), &r.join("hard"))
    });
    c.ok("rename source", |r| {
        probe_rename(&j(r, "rename"), &r.join("renamed"), 0)
    });
    c.ok("chmod a lower dir", |r| probe_chmod(&r.join("ldir"), 0o711));
    // Reads: none of these may copy "ro" up.
    c.ok("reads of ro", |r| {
        let p = j(r, "ro");
        let fd = open_fd(&p, libc::O_RDONLY, 0)?;
        Ok((
            pread_fd(&fd, 0, 100)?,
            probe_stat(&p)?,
            probe_getxattr(&p, "user.tag")?,
            probe_listxattr(&p)?,
            probe_access(&p, libc::W_OK)?,
        ))
    });
    for t in triggers {
        let rel = if t == "rename" {
            "renamed".to_string()
        } else {
            format!("sub/{t}")
        };
        let n = fuse_upper_node(&c, &rel).unwrap_or_else(|| panic!("{t} was not copied up"));
        assert_eq!(
            n.xattrs.get("user.tag"),
            Some(&Ok(t.as_bytes().to_vec())),
            "{t}: xattrs copied"
        );
        assert!(
            n.xattrs.contains_key("trusted.custom"),
            "{t}: trusted.* copied"
        );
    }
    assert_fuse_upper_lacks(&c, "sub/ro");
    assert_fuse_upper_lacks(&c, "ldir/child");
    let sub = fuse_upper_node(&c, "sub").expect("upper/sub");
    assert_eq!((sub.perm, sub.uid, sub.gid), (0o750, 1234, 5678));
    c.check();
}

#[test]
fn copy_up_copies_the_parent_chain_first_with_mode_owner_xattrs_and_times() {
    if !require_twin() {
        return;
    }
    let mut c = case(
        Twin::builder()
            .lower(
                layer()
                    .dir_mode("p", 0o751)
                    .dir_mode("p/q", 0o700)
                    .dir_mode("p/q/r", 0o1777)
                    .file("p/q/r/f", "leaf")
                    .file("p/q/sibling", "s")
                    .chown("p", 1111, 2222)
                    .chown("p/q", 3333, 4444)
                    .xattr("p", "user.p", "P")
                    .xattr("p/q", "user.q", "Q")
                    .xattr("p/q/r", "user.r", "R")
                    .xattr("p/q", "trusted.q", "TQ"),
            )
            .lower(layer().file("p/other", "o").file("p/q/r/below", "b")),
    );
    c.ok("append to p/q/r/f", |r| {
        probe_append(&r.join("p/q/r/f"), b"+")
    });
    let up = snapshot(c.fuse_upper());
    for (d, perm, uid, gid, x) in [
        ("p", 0o751, 1111, 2222, "user.p"),
        ("p/q", 0o700, 3333, 4444, "user.q"),
        ("p/q/r", 0o1777, 0, 0, "user.r"),
    ] {
        let n = up.get(d).unwrap_or_else(|| panic!("upper/{d} missing"));
        assert_eq!((n.perm, n.uid, n.gid), (perm, uid, gid), "upper/{d}");
        assert!(n.xattrs.contains_key(x), "upper/{d} lacks {x}");
    }
    assert!(up.get("p/other").is_none() && up.get("p/q/sibling").is_none());
    // Times: the copied-up directories keep the lower's mtime on disk (the
    // kernel restores a parent's times after putting a child in it).
    let dir_times = |c: &Case, what: &str| {
        c.ok(what, |r| {
            ["p", "p/q", "p/q/r"]
                .iter()
                .map(|d| {
                    let low = lmtime(&c.lower_of(r, 0).join(d))?;
                    Ok((
                        *d,
                        lmtime(&c.upper_of(r).join(d))? == low,
                        lmtime(&r.join(d))? == low,
                    ))
                })
                .collect::<Result<Vec<_>, i32>>()
        })
    };
    let t = dir_times(&c, "parent dir mtimes == lower's (upper on disk, merged)");
    assert!(
        t.iter().all(|(_, u, m)| *u && *m),
        "copied-up parents must keep the lower's mtime: {t:?}"
    );
    c.check();
    c.remount();
    let t = dir_times(&c, "parent dir mtimes after remount");
    assert!(t.iter().all(|(_, u, m)| *u && *m), "{t:?}");
    c.check();
}

#[test]
fn copy_up_keeps_holes_sparse() {
    if !require_twin() {
        return;
    }
    const LEN: u64 = 64 << 20;
    let c = case(
        Twin::builder().lower(
            layer()
                .sparse("holes", LEN)
                .sparse("holes2", LEN)
                .sparse("holes3", LEN)
                .data_then_hole("tail", &[b'd'; 8192], LEN),
        ),
    );
    // The copy ends where the data does: the size must still be whole.
    c.ok("append to a lower file that ends in a hole", |r| {
        probe_append(&r.join("tail"), b"end")
    });
    c.ok("chmod a sparse lower file", |r| {
        probe_chmod(&r.join("holes"), 0o600)
    });
    c.ok("write one byte in the middle of a sparse lower file", |r| {
        probe_write_at(&r.join("holes2"), LEN / 2, b"x")
    });
    c.ok("append to a sparse lower file", |r| {
        probe_append(&r.join("holes3"), b"end")
    });
    // Allow a few blocks of metadata/data; a dense copy would hold 131072.
    let small = |blocks: i64| blocks < 512;
    for f in ["holes", "holes2", "holes3", "tail"] {
        let (fb, kb) = (
            probe_lstat_raw(&c.fuse_upper().join(f)).unwrap().st_blocks,
            probe_lstat_raw(&c.kern_upper().join(f)).unwrap().st_blocks,
        );
        assert!(
            small(fb),
            "ovlfuse's upper copy of {f} is dense: {fb} blocks (kernel's: {kb})"
        );
        let merged = probe_stat_raw(&c.fuse_mnt().join(f)).unwrap();
        assert!(
            small(merged.st_blocks),
            "merged {f}: {} blocks",
            merged.st_blocks
        );
    }
    c.check();
}

#[test]
fn st_ino_is_unchanged_by_copy_up() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("f", "f")
                .symlink("s", "f")
                .dir("d")
                .file("d/child", "c")
                .fifo("fifo")
                .file("x", "x"),
        ),
    );
    let objs = ["f", "s", "d", "d/child", "fifo", "x"];
    let inos = |r: &Path| -> Result<Vec<u64>, i32> {
        objs.iter().map(|o| probe_ino(&r.join(o))).collect()
    };
    let (fb, kb) = c.both(inos);
    let (fb, kb) = (fb.unwrap(), kb.unwrap());
    c.ok("copy up every object", |r| {
        probe_append(&r.join("f"), b"+")?;
        probe_lchown(&r.join("s"), 1, 1)?;
        probe_append(&r.join("d/child"), b"+")?;
        probe_chmod(&r.join("fifo"), 0o600)?;
        probe_setxattr(&r.join("x"), "user.x", b"x", 0)
    });
    let (fa, ka) = c.both(inos);
    assert_eq!(ka.as_ref(), Ok(&kb), "the kernel keeps st_ino");
    assert_eq!(
        fa.as_ref(),
        Ok(&fb),
        "ovlfuse must keep st_ino across copy-up"
    );
    // d_ino agrees with st_ino after the copy-up.
    let d_inos = |r: &Path| -> Result<Vec<(String, bool)>, i32> {
        let mut v = Vec::new();
        for e in std::fs::read_dir(r).map_err(io_errno)? {
            let e = e.map_err(io_errno)?;
            let name = e.file_name().to_string_lossy().into_owned();
            v.push((name.clone(), probe_ino(&r.join(&name))? == e.ino()));
        }
        v.sort();
        Ok(v)
    };
    let got = c.ok("d_ino == st_ino after copy-up", d_inos);
    assert!(got.iter().all(|(_, same)| *same), "{got:?}");
    c.check();
}

#[test]
fn a_read_only_fd_opened_before_copy_up_reads_what_the_kernel_reads() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("f", "0123456789")
                .file("g", "0123456789")
                .file("h", "0123456789"),
        ),
    );
    c.ok("read, copy-up+write via another fd, read again", |r| {
        let p = r.join("f");
        let ro = open_fd(&p, libc::O_RDONLY, 0)?;
        let before = pread_fd(&ro, 0, 64)?;
        {
            let w = open_fd(&p, libc::O_WRONLY, 0)?;
            pwrite_fd(&w, 0, b"AB")?;
        }
        let after = pread_fd(&ro, 0, 64)?;
        {
            let a = open_fd(&p, libc::O_WRONLY | libc::O_APPEND, 0)?;
            write_fd(&a, b"XYZ")?;
        }
        let after_append = pread_fd(&ro, 0, 64)?;
        let size = fstat_fd(&ro)?.st_size;
        Ok((before, after, after_append, size))
    });
    c.ok("unread fd, truncate by path, read", |r| {
        let p = r.join("g");
        let ro = open_fd(&p, libc::O_RDONLY, 0)?;
        probe_truncate(&p, 3)?;
        Ok((pread_fd(&ro, 0, 64)?, fstat_fd(&ro)?.st_size))
    });
    c.ok("fd, chmod (metadata copy-up), read and fstat", |r| {
        let p = r.join("h");
        let ro = open_fd(&p, libc::O_RDONLY, 0)?;
        probe_chmod(&p, 0o600)?;
        let st = fstat_fd(&ro)?;
        Ok((pread_fd(&ro, 0, 64)?, st.st_mode, st.st_size))
    });
    c.check();
}

#[test]
fn racing_writers_copy_up_once_and_both_writes_land() {
    if !require_twin() {
        return;
    }
    const N: usize = 8;
    let mut low = layer();
    for i in 0..N {
        low = low.file(format!("r{i}"), vec![b'a'; 65536]);
    }
    let c = case(Twin::builder().lower(low));
    let before = c.fuse_copy_ups();
    c.ok("two threads race to write one lower file", |r| {
        let mut out = Vec::new();
        for i in 0..N {
            let p = r.join(format!("r{i}"));
            let barrier = Barrier::new(2);
            let writer = |off: u64, byte: u8| {
                barrier.wait();
                let fd = open_fd(&p, libc::O_WRONLY, 0)?;
                pwrite_fd(&fd, off, &[byte; 4096])
            };
            let (a, b) = std::thread::scope(|s| {
                let h1 = s.spawn(|| writer(0, b'A'));
                let h2 = s.spawn(|| writer(32768, b'B'));
                (h1.join().unwrap(), h2.join().unwrap())
            });
            out.push((a?, b?));
        }
        Ok(out)
    });
    for i in 0..N {
        let d = probe_read(&c.fuse_mnt().join(format!("r{i}"))).unwrap();
        assert_eq!(d.len(), 65536);
        assert!(
            d[..4096].iter().all(|b| *b == b'A'),
            "r{i}: first write lost"
        );
        assert!(
            d[32768..36864].iter().all(|b| *b == b'B'),
            "r{i}: second write lost"
        );
        assert!(d[4096..32768].iter().all(|b| *b == b'a'));
    }
    if let (Some(b), Some(a)) = (before, c.fuse_copy_ups()) {
        assert_eq!(a - b, N as u64, "each raced file is copied up exactly once");
    }
    c.check();
}

// ------------------------------------------------------------------ links

#[test]
fn hard_link_of_a_lower_file_copies_it_up_once_and_shares_st_ino() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("f", "linked")
                .file("pair1", "pair")
                .hardlink("pair2", "pair1")
                .dir("d")
                .file("gone", "g"),
        ),
    );
    let ino = probe_ino(&c.fuse_mnt().join("f")).unwrap();
    let before = c.fuse_copy_ups();
    c.ok("link f g", |r| probe_link(&r.join("f"), &r.join("g")));
    c.ok("link f d/h", |r| probe_link(&r.join("f"), &r.join("d/h")));
    if let (Some(b), Some(a)) = (before, c.fuse_copy_ups()) {
        assert_eq!(a - b, 1, "two links of one lower file copy it up once");
    }
    let inos = c.ok("st_ino of f g d/h", |r| {
        let v = [
            probe_ino(&r.join("f"))?,
            probe_ino(&r.join("g"))?,
            probe_ino(&r.join("d/h"))?,
        ];
        Ok(v[0] == v[1] && v[1] == v[2])
    });
    assert!(inos, "hard links share st_ino");
    assert_eq!(probe_ino(&c.fuse_mnt().join("g")), Ok(ino), "st_ino kept");
    c.ok("nlink of f", |r| probe_stat(&r.join("f")).map(|s| s.nlink));
    c.ok("write via g, read via f", |r| {
        probe_append(&r.join("g"), b"+")?;
        probe_read(&r.join("f"))
    });
    c.ok("link a lower hard-linked file", |r| {
        probe_link(&r.join("pair1"), &r.join("pair3"))
    });
    c.ok("nlink of pair1 pair2 pair3", |r| {
        Ok((
            probe_stat(&r.join("pair1"))?.nlink,
            probe_stat(&r.join("pair2"))?.nlink,
            probe_stat(&r.join("pair3"))?.nlink,
        ))
    });
    c.ok("unlink f; nlink of g", |r| {
        probe_unlink(&r.join("f"))?;
        probe_stat(&r.join("g")).map(|s| s.nlink)
    });
    c.ok("link onto a whiteout", |r| {
        probe_unlink(&r.join("gone"))?;
        probe_link(&r.join("g"), &r.join("gone"))
    });
    assert_eq!(
        c.op("link a dir", |r| probe_link(&r.join("d"), &r.join("d2"))),
        Err(libc::EPERM)
    );
    assert_eq!(
        c.op("link onto an existing name", |r| probe_link(
            &r.join("g"),
            &r.join("pair1")
        )),
        Err(libc::EEXIST)
    );
    c.check();
}

#[test]
fn copy_up_of_one_lower_hard_link_leaves_the_other_names_unchanged() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder().lower(
            layer()
                .file("h1", "shared data")
                .hardlink("h2", "h1")
                .hardlink("d/h3", "h1"),
        ),
    );
    // Look every name up first, so the mount has seen them as one file.
    c.ok("stat h1 h2 d/h3", |r| {
        Ok((
            probe_stat(&r.join("h1"))?,
            probe_stat(&r.join("h2"))?,
            probe_stat(&r.join("d/h3"))?,
        ))
    });
    c.ok("read h2 (fills the page cache)", |r| {
        probe_read(&r.join("h2"))
    });
    c.ok("write through h1 (copy-up of h1 only)", |r| {
        probe_write_at(&r.join("h1"), 0, b"CHANGED")
    });
    c.ok("read every name after the copy-up", |r| {
        Ok((
            probe_read(&r.join("h1"))?,
            probe_read(&r.join("h2"))?,
            probe_read(&r.join("d/h3"))?,
        ))
    });
    c.ok("stat every name after the copy-up", |r| {
        Ok((
            probe_stat(&r.join("h1"))?,
            probe_stat(&r.join("h2"))?,
            probe_stat(&r.join("d/h3"))?,
        ))
    });
    c.ok("truncate h2 (a second, separate copy-up)", |r| {
        probe_truncate(&r.join("h2"), 3)?;
        Ok((
            probe_read(&r.join("h1"))?,
            probe_read(&r.join("h2"))?,
            probe_read(&r.join("d/h3"))?,
        ))
    });
    assert_eq!(
        probe_read(&c.fuse_mnt().join("d/h3")).unwrap(),
        b"shared data",
        "the untouched lower link keeps the lower data"
    );
    c.check();
}

#[test]
fn a_dot_wh_name_created_through_the_mount_is_an_ordinary_file() {
    if !require_twin() {
        return;
    }
    // AUFS markers are read (with marks=all) in lower layers only; a file
    // the user creates in the upper layer is a file, as on the kernel.
    let c = case(
        Twin::builder()
            .lower(layer().file("d/low", "l").file("d/other", "o"))
            .fuse_opt("marks=all"),
    );
    c.ok("create d/.wh.low", |r| {
        write_file(&r.join("d/.wh.low"), b"user data")
    });
    c.ok("create .wh.top", |r| write_file(&r.join(".wh.top"), b"t"));
    assert_eq!(
        c.ok("readdir d", |r| probe_readdir(&r.join("d"))),
        names(&[".wh.low", "low", "other"])
    );
    // Deliberate difference (README), with marks=all only: `.wh..wh..opq`
    // is the opaque mark ovlfuse then honours in an upper (fuse-overlayfs
    // writes it), so it cannot be created through the mount. Without
    // marks=all it is an ordinary name (tests/marks.rs).
    let made = probe_create(&c.twin.fuse_mnt().join("d/.wh..wh..opq"), 0o644);
    assert_eq!(made, Err(libc::EPERM));
    // Nor by rename or link onto the name (either would make d opaque).
    let f = c.twin.fuse_mnt();
    assert_eq!(
        probe_rename(&f.join("d/other"), &f.join("d/.wh..wh..opq"), 0),
        Err(libc::EPERM)
    );
    assert_eq!(
        std::fs::hard_link(f.join("d/other"), f.join("d/.wh..wh..opq"))
            .map_err(|e| e.raw_os_error().unwrap_or(0)),
        Err(libc::EPERM)
    );
    c.ok("stat and read the names", |r| {
        Ok((
            probe_stat(&r.join("d/low"))?,
            probe_read(&r.join("d/.wh.low"))?,
            probe_stat(&r.join(".wh.top"))?,
        ))
    });
    c.check();
}

#[test]
fn a_hard_link_stays_usable_after_another_of_its_names_is_removed() {
    if !require_twin() {
        return;
    }
    let c = case(Twin::builder().lower(layer().file("f", "lower f").file("o", "open me")));
    let mut diffs = Vec::new();
    let _ = c.soft(&mut diffs, "link f g, unlink g, then use f", |r| {
        probe_link(&r.join("f"), &r.join("g"))?;
        probe_unlink(&r.join("g"))?;
        Ok((
            probe_stat(&r.join("f"))?,
            probe_append(&r.join("f"), b"+")?,
            probe_read(&r.join("f"))?,
        ))
    });
    let _ = c.soft(
        &mut diffs,
        "link n m, rename m m2, unlink m2, then use n",
        |r| {
            write_file(&r.join("n"), b"new")?;
            probe_link(&r.join("n"), &r.join("m"))?;
            probe_rename(&r.join("m"), &r.join("m2"), 0)?;
            probe_unlink(&r.join("m2"))?;
            Ok((
                probe_stat(&r.join("n"))?,
                probe_append(&r.join("n"), b"+")?,
                probe_read(&r.join("n"))?,
            ))
        },
    );
    let _ = c.soft(
        &mut diffs,
        "open a lower file O_RDWR, unlink it, write and read via the fd",
        |r| {
            let fd = open_fd(&r.join("o"), libc::O_RDWR, 0)?;
            probe_unlink(&r.join("o"))?;
            let n = pwrite_fd(&fd, 0, b"OPEN")?;
            let st = fstat_fd(&fd)?;
            Ok((n, st.st_size, st.st_nlink, pread_fd(&fd, 0, 100)?))
        },
    );
    assert!(
        diffs.is_empty(),
        "fuse and kernel differ on:\n{}",
        diffs.join("\n")
    );
    assert_fuse_whiteout(&c, "o");
    c.check();
}

// ------------------------------------------------------------ setuid kill

/// A write, truncate or O_TRUNC open by a caller without CAP_FSETID clears
/// setuid, and setgid with group execute or for a caller outside the
/// file's group; root keeps them; any write drops security.capability.
/// With FUSE_HANDLE_KILLPRIV_V2 the daemon does this itself (the kernel
/// skips its per-write getxattr), for passed-through writes (an empty
/// setattr) and for writes through the daemon (a write flag) alike, so
/// both paths run against the kernel.
#[test]
fn writes_clear_setuid_and_setgid_as_the_kernel_does() {
    if !require_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let extra = 4321;
    for io in ["passthrough", "nopassthrough"] {
        let mut b = Twin::builder().fuse_opt("allow_other");
        if io == "nopassthrough" {
            b = b.fuse_opt("nopassthrough");
        }
        let c = case(
            b.lower(
                layer()
                    .dir_mode("pub", 0o777)
                    .file_mode("pub/w", "w", 0o4777)
                    .file_mode("pub/t", "t", 0o4777)
                    .file_mode("pub/o", "o", 0o4777)
                    .file_mode("pub/gx", "gx", 0o6777)
                    .file_mode("pub/gm", "gm", 0o2767)
                    .chown("pub/gm", 0, gid)
                    .file_mode("pub/go", "go", 0o2767)
                    .file_mode("pub/gs", "gs", 0o2767)
                    .chown("pub/gs", 0, extra)
                    .file_mode("pub/root", "r", 0o4777)
                    .file_mode("pub/cap", "c", 0o755),
            ),
        );
        let perm = |r: &Path, n: &str| probe_cached_perm(&r.join(n));
        let (f, k) = c.both_as_groups((uid, gid), &[gid, extra], |r| {
            let mut out = Vec::new();
            for n in ["pub/w", "pub/gx", "pub/gm", "pub/go", "pub/gs"] {
                out.push((n, "append", probe_append(&r.join(n), b"+").and(perm(r, n))));
            }
            // A second write finds the bits gone (the kernel caches that).
            out.push((
                "pub/w",
                "append again",
                probe_append(&r.join("pub/w"), b"+").and(perm(r, "pub/w")),
            ));
            out.push((
                "pub/t",
                "truncate",
                probe_truncate(&r.join("pub/t"), 1).and(perm(r, "pub/t")),
            ));
            // No reply carries the mode after an open: a stale cached
            // setuid bit would show here (and count at exec).
            out.push((
                "pub/o",
                "open O_TRUNC",
                probe_open(&r.join("pub/o"), libc::O_WRONLY | libc::O_TRUNC).and(perm(r, "pub/o")),
            ));
            let own = r.join("pub/own");
            out.push((
                "pub/own",
                "create 4755 + append",
                probe_create(&own, 0o4755)
                    .and(probe_chmod(&own, 0o4755))
                    .and(probe_append(&own, b"+"))
                    .and(perm(r, "pub/own")),
            ));
            out.push((
                "pub/own",
                "chmod 4755 + chown to self",
                probe_chmod(&own, 0o4755)
                    .and(probe_chown(&own, uid, gid))
                    .and(perm(r, "pub/own")),
            ));
            out
        });
        assert_eq!(f, k, "{io}: fuse and kernel differ for an ordinary user");
        let want = [
            ("pub/w", 0o777),
            ("pub/gx", 0o777),
            ("pub/gm", 0o2767),
            ("pub/go", 0o767),
            ("pub/gs", 0o2767),
            ("pub/w", 0o777),
            ("pub/t", 0o777),
            ("pub/o", 0o777),
            ("pub/own", 0o755),
            ("pub/own", 0o755),
        ];
        for ((n, what, got), (wn, wp)) in f.iter().zip(want) {
            assert_eq!((*n, *got), (wn, Ok(wp)), "{io}: {what} {n}");
        }
        // Root has CAP_FSETID: the bits stay. A file capability goes on
        // any write, root's too.
        let cap = [1u8, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let (f, k) = c.both(|r| {
            (
                probe_append(&r.join("pub/root"), b"+").and(perm(r, "pub/root")),
                probe_setxattr(&r.join("pub/cap"), "security.capability", &cap, 0)
                    .and(probe_getxattr(&r.join("pub/cap"), "security.capability"))
                    .map(|v| v.len()),
                probe_append(&r.join("pub/cap"), b"+")
                    .and(probe_getxattr(&r.join("pub/cap"), "security.capability")),
            )
        });
        assert_eq!(f, k, "{io}: fuse and kernel differ for root");
        assert_eq!(f, (Ok(0o4777), Ok(20), Err(libc::ENODATA)), "{io}: root");
        c.check();
    }
}

/// The same under an unprivileged daemon: no passthrough, and the daemon's
/// own truncation or write may clear the bits before it looks, so the
/// kernel's cached mode must still be dropped.
#[test]
fn writes_clear_setuid_and_setgid_under_an_unprivileged_daemon() {
    if !require_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    // Owned by the user: an unprivileged copy-up keeps no other owner.
    let mut l = layer().dir_mode("pub", 0o777).chown("pub", uid, gid);
    for (n, mode) in [("w", 0o4777), ("t", 0o4777), ("o", 0o4777), ("gx", 0o6775)] {
        let p = format!("pub/{n}");
        l = l.file_mode(&p, n, mode).chown(&p, uid, gid);
    }
    let c = case(Twin::builder().fuse_as(uid, gid).opt("userxattr").lower(l));
    let perm = |r: &Path, n: &str| probe_cached_perm(&r.join(n));
    let (f, k) = c.both_as(uid, gid, |r| {
        [
            probe_append(&r.join("pub/w"), b"+").and(perm(r, "pub/w")),
            probe_append(&r.join("pub/gx"), b"+").and(perm(r, "pub/gx")),
            probe_truncate(&r.join("pub/t"), 1).and(perm(r, "pub/t")),
            probe_open(&r.join("pub/o"), libc::O_WRONLY | libc::O_TRUNC).and(perm(r, "pub/o")),
            probe_create(&r.join("pub/own"), 0o755)
                .and(probe_chmod(&r.join("pub/own"), 0o4755))
                // As a shell's `: > own` opens it.
                .and(probe_open(
                    &r.join("pub/own"),
                    libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC,
                ))
                .and(perm(r, "pub/own")),
        ]
    });
    assert_eq!(f, k, "fuse and kernel differ");
    assert_eq!(f, [Ok(0o777), Ok(0o775), Ok(0o777), Ok(0o777), Ok(0o755)]);
}

// ------------------------------------------------------------------ owners

#[test]
fn new_objects_belong_to_the_caller_under_a_root_daemon_with_allow_other() {
    if !require_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let who = (uid, gid);
    let c = case(
        Twin::builder().fuse_opt("allow_other").lower(
            layer()
                .dir_mode("pub", 0o777)
                .file_mode("pub/w", "world writable", 0o666)
                .file_mode("pub/suid", "setuid, world writable", 0o4777)
                .file_mode("pub/touch", "touch me", 0o666)
                .dir_mode("sg", 0o2777)
                .chown("sg", 0, 4321)
                .file("rootfile", "r")
                .file("rodir/own", "the user's file")
                .chown("rodir/own", uid, gid)
                .file("rodir/root", "root's file")
                .dir_mode("sticky", 0o1777)
                .file_mode("sticky/rootf", "r", 0o666),
        ),
    );
    // Permission checks on the write path (default_permissions).
    c.op_as(
        who,
        "append to an own lower file in a root-owned dir",
        |r| probe_append(&r.join("rodir/own"), b"+"),
    )
    .unwrap();
    c.op_as(who, "chmod an own lower file", |r| {
        probe_chmod(&r.join("rodir/own"), 0o600)
    })
    .unwrap();
    c.op_as(who, "setxattr user.* on an own lower file", |r| {
        probe_setxattr(&r.join("rodir/own"), "user.mine", b"1", 0)
    })
    .unwrap();
    for (what, res) in [
        (
            "write root's 0644 file",
            c.op_as(who, "write root's file", |r| {
                probe_append(&r.join("rodir/root"), b"+").map(drop)
            }),
        ),
        (
            "chown an own file to root",
            c.op_as(who, "chown to root", |r| {
                probe_chown(&r.join("rodir/own"), 0, 0)
            }),
        ),
        (
            "chmod root's file",
            c.op_as(who, "chmod root's file", |r| {
                probe_chmod(&r.join("rodir/root"), 0o666)
            }),
        ),
        (
            "setxattr on root's file",
            c.op_as(who, "setxattr on root's file", |r| {
                probe_setxattr(&r.join("rodir/root"), "user.x", b"1", 0)
            }),
        ),
        (
            "unlink in a root-owned dir",
            c.op_as(who, "unlink in a root-owned dir", |r| {
                probe_unlink(&r.join("rodir/own"))
            }),
        ),
        (
            "unlink root's file in a sticky dir",
            c.op_as(who, "unlink root's file in a sticky dir", |r| {
                probe_unlink(&r.join("sticky/rootf"))
            }),
        ),
    ] {
        assert!(res.is_err(), "{what} must be refused");
    }
    c.op_as(who, "create pub/f", |r| {
        probe_create(&r.join("pub/f"), 0o644)
    })
    .unwrap();
    c.op_as(who, "mkdir pub/d", |r| probe_mkdir(&r.join("pub/d"), 0o755))
        .unwrap();
    c.op_as(who, "symlink pub/s", |r| {
        probe_symlink("f", &r.join("pub/s"))
    })
    .unwrap();
    c.op_as(who, "mkfifo pub/p", |r| {
        probe_mknod(&r.join("pub/p"), libc::S_IFIFO | 0o600, 0, 0)
    })
    .unwrap();
    c.op_as(who, "link pub/f pub/h", |r| {
        probe_link(&r.join("pub/f"), &r.join("pub/h"))
    })
    .unwrap();
    c.op_as(who, "rename pub/d pub/d2", |r| {
        probe_rename(&r.join("pub/d"), &r.join("pub/d2"), 0)
    })
    .unwrap();
    c.op_as(who, "write a root-owned world-writable lower file", |r| {
        probe_append(&r.join("pub/w"), b"+")
    })
    .unwrap();
    c.op_as(who, "write a root-owned setuid world-writable file", |r| {
        probe_append(&r.join("pub/suid"), b"+")?;
        probe_stat(&r.join("pub/suid"))
    })
    .unwrap();
    c.op_as(who, "touch (UTIME_NOW) a writable root-owned file", |r| {
        probe_utimens(
            &r.join("pub/touch"),
            (0, libc::UTIME_NOW),
            (0, libc::UTIME_NOW),
        )
    })
    .unwrap();
    assert_eq!(
        c.op_as(who, "set explicit times on a root-owned file", |r| {
            probe_utimens(&r.join("pub/w"), (1, 0), (1, 0))
        }),
        Err(libc::EPERM)
    );
    c.op_as(who, "create and mkdir in a setgid dir", |r| {
        probe_create(&r.join("sg/f"), 0o2755)?;
        probe_mkdir(&r.join("sg/d"), 0o755)
    })
    .unwrap();
    assert_eq!(
        c.op_as(who, "create in the root-owned merged root", |r| {
            probe_create(&r.join("denied"), 0o644)
        }),
        Err(libc::EACCES)
    );
    let owners = c
        .op_as(who, "lstat the new objects", |r| {
            ["pub/f", "pub/d2", "pub/s", "pub/p", "pub/w", "sg/f", "sg/d"]
                .iter()
                .map(|n| probe_lstat(&r.join(n)).map(|s| (s.uid, s.gid, s.perm)))
                .collect::<Result<Vec<_>, i32>>()
        })
        .unwrap();
    for (i, n) in ["pub/f", "pub/d2", "pub/s", "pub/p"].iter().enumerate() {
        assert_eq!(
            (owners[i].0, owners[i].1),
            (uid, gid),
            "{n} must belong to the caller"
        );
    }
    assert_eq!(owners[4].0, 0, "a copied-up file keeps its owner");
    assert_eq!(owners[5].1, 4321, "a setgid dir gives its group");
    c.check();
}

#[test]
fn new_objects_belong_to_the_caller_under_an_unprivileged_daemon() {
    if !require_twin() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let who = (uid, gid);
    let c = case(
        Twin::builder()
            .fuse_as(uid, gid)
            .opt("userxattr")
            // Owned by the user: an unprivileged daemon cannot give a copy
            // another owner ("owner where permitted"), so root-owned lowers
            // would differ from the kernel's copy-up by design.
            .lower(
                layer()
                    .file("low", "l")
                    .dir_mode("pub", 0o777)
                    .chown("pub", uid, gid)
                    .chown("low", uid, gid),
            ),
    );
    c.op_as(who, "create f", |r| probe_create(&r.join("f"), 0o640))
        .unwrap();
    c.op_as(who, "mkdir d", |r| probe_mkdir(&r.join("d"), 0o750))
        .unwrap();
    c.op_as(who, "symlink s", |r| probe_symlink("f", &r.join("s")))
        .unwrap();
    c.op_as(who, "create in a lower dir", |r| {
        write_file(&r.join("pub/n"), b"n")
    })
    .unwrap();
    c.op_as(who, "unlink a lower file (whiteout)", |r| {
        probe_unlink(&r.join("low"))
    })
    .unwrap();
    let owners = c
        .op_as(who, "lstat the new objects", |r| {
            ["f", "d", "s", "pub/n"]
                .iter()
                .map(|n| probe_lstat(&r.join(n)).map(|s| (s.uid, s.gid)))
                .collect::<Result<Vec<_>, i32>>()
        })
        .unwrap();
    assert!(owners.iter().all(|o| *o == (uid, gid)), "{owners:?}");
    assert_fuse_whiteout(&c, "low");
    let (f, k) = c.both_as(uid, gid, snapshot);
    assert_same_tree(&f, &k);
    // The kernel (mounted by root) writes its whiteouts as root; a daemon
    // running as the user cannot, so the whiteout's owner is left out.
    let mut fu = snapshot_upper(c.fuse_upper(), XattrNs::User);
    let ku = snapshot_upper(c.kern_upper(), XattrNs::User);
    let (ko, wo) = (ku.get("low").unwrap(), fu.get_mut("low").unwrap());
    assert_eq!((ko.uid, ko.gid), (0, 0));
    (wo.uid, wo.gid) = (0, 0);
    let d = diff_trees(&fu, &ku);
    assert!(d.is_empty(), "{}", format_diff(&d, "fuse", "kernel", 40));
    c.assert_lowers_untouched();
}

// ------------------------------------------------------------------ examples

/// The worked example of the rules: lowerdir=material2:material,
/// upperdir=build.
#[test]
fn worked_example_material_material2_build() {
    if !env_ok(&[
        Need::Root,
        Need::Fuse,
        Need::KernelOverlay,
        Need::Xattrs,
        Need::Tool("sh"),
    ]) {
        return;
    }
    let material2 = layer()
        .file("concrete", "good concrete\n")
        .file("marble", "marble\n");
    let material = layer()
        .file("concrete", "bad concrete\n")
        .file("rebar", "rebar, 12mm\n");
    let c = case(Twin::builder().lower(material2).lower(material));
    assert_eq!(
        c.ok("ls merge", probe_readdir),
        names(&["concrete", "marble", "rebar"])
    );
    assert_eq!(
        c.ok("cat merge/concrete", |r| probe_read(&r.join("concrete"))),
        b"good concrete\n"
    );
    let sh = |r: &Path, script: &str| -> Result<(), i32> {
        let st = Command::new("sh")
            .arg("-c")
            .arg(script)
            .current_dir(r)
            .status()
            .map_err(io_errno)?;
        st.success().then_some(()).ok_or(libc::EIO)
    };
    c.ok("echo \"main structure\" > merge/frame", |r| {
        sh(r, "echo 'main structure' > frame")
    });
    assert_eq!(
        probe_readdir(c.fuse_upper()),
        Ok(names(&["frame"])),
        "frame lands in the upper layer only"
    );
    assert_eq!(
        std::fs::read(c.fuse_upper().join("frame")).unwrap(),
        b"main structure\n"
    );
    c.ok("rm merge/marble", |r| sh(r, "rm marble"));
    assert_fuse_whiteout(&c, "marble");
    assert_eq!(
        std::fs::read(c.fuse_lower(0).join("marble")).unwrap(),
        b"marble\n",
        "material2 keeps marble"
    );
    c.ok("echo \"rebar, 16mm\" >> merge/rebar", |r| {
        sh(r, "echo 'rebar, 16mm' >> rebar")
    });
    assert_eq!(
        std::fs::read(c.fuse_upper().join("rebar")).unwrap(),
        b"rebar, 12mm\nrebar, 16mm\n",
        "rebar is copied up whole"
    );
    assert_eq!(
        c.ok("ls merge at the end", probe_readdir),
        names(&["concrete", "frame", "rebar"])
    );
    c.check();
}

#[test]
fn lower_layers_are_never_written_by_any_write() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(
                layer()
                    .file("f", "file")
                    .dir_mode("d", 0o750)
                    .file("d/g", "g")
                    .file("d/sub/h", "h")
                    .symlink("s", "f")
                    .fifo("fifo")
                    .xattr("d", "user.d", "d")
                    .xattr("f", "user.f", "f")
                    .file("keep", "keep")
                    .hardlink("keep2", "keep"),
            )
            .lower(layer().file("d/low1", "l1").file("other/x", "x")),
    );
    c.ok("a long write sequence", |r| {
        probe_write_at(&r.join("f"), 1, b"X")?;
        probe_chmod(&r.join("d"), 0o700)?;
        probe_setxattr(&r.join("d"), "user.new", b"n", 0)?;
        probe_removexattr(&r.join("f"), "user.f")?;
        probe_lchown(&r.join("s"), 3, 3)?;
        probe_chmod(&r.join("fifo"), 0o600)?;
        probe_utimens(&r.join("keep"), (1, 0), (1, 0))?;
        probe_truncate(&r.join("d/g"), 0)?;
        probe_link(&r.join("keep2"), &r.join("keep3"))?;
        probe_rename(&r.join("d/sub/h"), &r.join("h"), 0)?;
        probe_rmdir(&r.join("d/sub"))?;
        probe_unlink(&r.join("d/low1"))?;
        rm_rf(r, "other")?;
        probe_mkdir(&r.join("other"), 0o755)?;
        write_file(&r.join("d/new"), b"new")?;
        probe_read(&r.join("keep"))
    });
    c.check();
}

#[test]
fn a_read_only_stack_answers_erofs_to_every_write() {
    if !require_twin() {
        return;
    }
    let c = case(
        Twin::builder()
            .lower(layer().file("f", "f").dir("d").file("d/x", "x"))
            .lower(layer().file("g", "g"))
            .no_upper(),
    );
    type WriteOp<'a> = (&'a str, &'a dyn Fn(&Path) -> Result<(), i32>);
    let writes: [WriteOp; 14] = [
        ("create", &|r| probe_create(&r.join("n"), 0o644)),
        ("mkdir", &|r| probe_mkdir(&r.join("nd"), 0o755)),
        ("mknod", &|r| {
            probe_mknod(&r.join("p"), libc::S_IFIFO | 0o600, 0, 0)
        }),
        ("symlink", &|r| probe_symlink("f", &r.join("s"))),
        ("link", &|r| probe_link(&r.join("f"), &r.join("h"))),
        ("unlink", &|r| probe_unlink(&r.join("f"))),
        ("rmdir", &|r| probe_rmdir(&r.join("d"))),
        ("rename", &|r| probe_rename(&r.join("f"), &r.join("g"), 0)),
        ("open O_WRONLY", &|r| {
            probe_open(&r.join("f"), libc::O_WRONLY)
        }),
        ("truncate", &|r| probe_truncate(&r.join("f"), 0)),
        ("chmod", &|r| probe_chmod(&r.join("f"), 0o600)),
        ("chown", &|r| probe_chown(&r.join("f"), 1, 1)),
        ("utimens", &|r| probe_utimens(&r.join("f"), (1, 0), (1, 0))),
        ("setxattr", &|r| {
            probe_setxattr(&r.join("f"), "user.x", b"x", 0)
        }),
    ];
    for (what, f) in writes {
        assert_eq!(c.op(what, f), Err(libc::EROFS), "{what}");
    }
    c.assert_same_view();
    c.assert_lowers_untouched();
}
