//! The read path: lookup, whiteouts and opaque directories in every on-disk
//! form, getattr, readdir, readlink, xattrs, statfs, access, open/read, the
//! read-only stack, readdir offsets, inode numbers, and lower-layer times.
//!
//! Every case builds identical layers twice (`Twin`), mounts one copy with
//! ovlfuse and one with the kernel's overlayfs, and compares the merged
//! tree and the result (value or errno) of each probe. Marker forms the
//! kernel does not read are given to ovlfuse as is and to the kernel in its
//! own form (`Layer::for_kernel`), so both must show the same view.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::*;

// ------------------------------------------------------------------ helpers

fn twin_env() -> bool {
    require_twin()
}

/// `r/p`, with "." meaning `r` itself.
fn at(r: &Path, p: &str) -> PathBuf {
    if p == "." { r.to_path_buf() } else { r.join(p) }
}

/// File content as compared: small contents verbatim, big ones as a digest
/// (so an assertion message stays readable).
#[derive(Debug, PartialEq, Eq)]
enum Data {
    Bytes(Vec<u8>),
    Digest { len: usize, fnv1a: u64 },
}

fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for x in b {
        h ^= u64::from(*x);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn data(b: Vec<u8>) -> Data {
    if b.len() <= 256 {
        Data::Bytes(b)
    } else {
        Data::Digest {
            len: b.len(),
            fnv1a: fnv1a(&b),
        }
    }
}

/// Everything the read path answers for one path, in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct View {
    lstat: Result<StatInfo, i32>,
    stat: Result<StatInfo, i32>,
    /// (st_blocks, st_blksize) of regular files.
    blocks: Option<(i64, i64)>,
    readlink: Result<PathBuf, i32>,
    /// Typed listing of a directory (sorted, "." and ".." included).
    readdir: Option<Result<Vec<(String, u8)>, i32>>,
    llistxattr: Result<Vec<String>, i32>,
    /// Content of a regular file (following symlinks).
    read: Option<Result<Data, i32>>,
    access_f: Result<(), i32>,
}

fn view(r: &Path, p: &str) -> View {
    let full = at(r, p);
    let raw = probe_lstat_raw(&full);
    let lstat = raw.map(|st| StatInfo::from_stat(&st));
    let stat = probe_stat(&full);
    let is = |k: Kind| matches!(&stat, Ok(s) if s.kind == k);
    View {
        blocks: raw
            .ok()
            .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
            .map(|st| (st.st_blocks, st.st_blksize)),
        readlink: probe_readlink(&full),
        readdir: is(Kind::Dir).then(|| probe_readdir_typed(&full)),
        llistxattr: probe_llistxattr(&full),
        read: is(Kind::File).then(|| probe_read(&full).map(data)),
        access_f: probe_access(&full, libc::F_OK),
        lstat,
        stat,
    }
}

/// A merged listing must hold each name once, and "." and "..".
fn assert_listing_sane(side: &str, dir: &Path) {
    let names = probe_readdir(dir)
        .unwrap_or_else(|e| panic!("{side}: readdir {}: {}", dir.display(), errno_name(e)));
    let mut uniq = names.clone();
    uniq.dedup();
    assert_eq!(
        names,
        uniq,
        "{side}: {} lists a name more than once",
        dir.display()
    );
    assert!(
        names.iter().any(|n| n == ".") && names.iter().any(|n| n == ".."),
        "{side}: {} lacks . or ..: {names:?}",
        dir.display()
    );
    for n in &names {
        assert!(
            !n.starts_with(".wh."),
            "{side}: {} shows the marker {n:?}",
            dir.display()
        );
    }
}

/// Merged trees equal, then every path of either tree plus `extra` probed
/// on both sides (lstat, stat, readlink, readdir, llistxattr, read, access),
/// and every listing checked for duplicates, dot entries and markers.
/// Returns the fuse snapshot.
fn assert_same_read_path(twin: &Twin, extra: &[&str]) -> Tree {
    let (f, k) = twin.snapshots();
    assert_same_tree(&f, &k);
    let mut paths: BTreeSet<String> = f.entries.keys().cloned().collect();
    paths.extend(k.entries.keys().cloned());
    paths.extend(extra.iter().map(|s| s.to_string()));
    for p in &paths {
        twin.same(&format!("read view of {p:?}"), |r| view(r, p));
    }
    for (p, n) in &f.entries {
        if matches!(n, Ok(n) if n.kind == Kind::Dir) {
            assert_listing_sane("fuse", &at(twin.fuse_mnt(), p));
            assert_listing_sane("kernel", &at(twin.kern_mnt(), p));
        }
    }
    // Markers in any form never show, whatever the layer.
    for (p, n) in f
        .entries
        .iter()
        .filter_map(|(p, n)| Some((p, n.as_ref().ok()?)))
    {
        assert!(
            !(n.kind == Kind::CharDev && n.rdev == Some((0, 0))),
            "fuse shows the whiteout device {p}"
        );
        for x in n.xattrs.keys() {
            assert!(
                !(x.starts_with("trusted.overlay.")
                    || x.starts_with("user.overlay.")
                    || x.starts_with("user.fuseoverlayfs.")),
                "fuse shows the private xattr {x} on {p}"
            );
        }
    }
    f
}

fn read_file(r: &Path, p: &str) -> Vec<u8> {
    std::fs::read(at(r, p)).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

fn names(r: &Path, p: &str) -> Vec<String> {
    probe_readdir(&at(r, p))
        .unwrap_or_else(|e| panic!("readdir {p}: {}", errno_name(e)))
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect()
}

/// Deterministic pseudo-random bytes (so misplaced blocks are caught).
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// pread of `len` bytes at `off` through a fresh fd.
fn probe_pread(p: &Path, off: u64, len: usize) -> Result<Vec<u8>, i32> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::File::open(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], off + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// lseek(whence) at `off` on a fresh read-only fd.
fn probe_lseek(p: &Path, off: i64, whence: i32) -> Result<i64, i32> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let r = unsafe { libc::lseek(f.as_raw_fd(), off, whence) };
    if r < 0 { Err(sys::errno()) } else { Ok(r) }
}

/// getxattr into a buffer of exactly `size` bytes (0 asks for the size).
fn probe_getxattr_sized(p: &Path, name: &str, size: usize) -> Result<(usize, Vec<u8>), i32> {
    let (cp, cn) = (sys::cpath(p), sys::cstr(name));
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let n = unsafe { libc::getxattr(cp.as_ptr(), cn.as_ptr(), ptr, size) };
    if n < 0 {
        return Err(sys::errno());
    }
    buf.truncate(if size == 0 { 0 } else { n as usize });
    Ok((n as usize, buf))
}

/// listxattr into a buffer of exactly `size` bytes (0 asks for the size).
fn probe_listxattr_sized(p: &Path, size: usize) -> Result<usize, i32> {
    let cp = sys::cpath(p);
    let mut buf = vec![0u8; size];
    let ptr = if size == 0 {
        std::ptr::null_mut()
    } else {
        buf.as_mut_ptr().cast()
    };
    let n = unsafe { libc::listxattr(cp.as_ptr(), ptr, size) };
    if n < 0 {
        Err(sys::errno())
    } else {
        Ok(n as usize)
    }
}

/// The statvfs fields that describe the filesystem (not its free space).
#[derive(Debug, PartialEq, Eq)]
struct FsGeometry {
    bsize: u64,
    frsize: u64,
    blocks: u64,
    files: u64,
    namemax: u64,
}

fn probe_statvfs(p: &Path) -> Result<FsGeometry, i32> {
    let cp = sys::cpath(p);
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(cp.as_ptr(), &mut s) } != 0 {
        return Err(sys::errno());
    }
    Ok(FsGeometry {
        bsize: s.f_bsize,
        frsize: s.f_frsize,
        blocks: s.f_blocks,
        files: s.f_files,
        namemax: s.f_namemax,
    })
}

/// A directory stream (libc opendir/readdir/telldir/seekdir/rewinddir).
struct DirStream(*mut libc::DIR);

impl DirStream {
    fn open(p: &Path) -> DirStream {
        let cp = sys::cpath(p);
        let d = unsafe { libc::opendir(cp.as_ptr()) };
        assert!(
            !d.is_null(),
            "opendir {}: {}",
            p.display(),
            errno_name(sys::errno())
        );
        DirStream(d)
    }
    /// (name, d_ino) of the next entry.
    fn next(&mut self) -> Option<(String, u64)> {
        unsafe { *libc::__errno_location() = 0 };
        let e = unsafe { libc::readdir(self.0) };
        if e.is_null() {
            let err = sys::errno();
            assert_eq!(err, 0, "readdir failed: {}", errno_name(err));
            return None;
        }
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) };
        Some((name.to_string_lossy().into_owned(), unsafe { (*e).d_ino }))
    }
    fn tell(&self) -> libc::c_long {
        unsafe { libc::telldir(self.0) }
    }
    fn seek(&mut self, pos: libc::c_long) {
        unsafe { libc::seekdir(self.0, pos) }
    }
    fn rewind(&mut self) {
        unsafe { libc::rewinddir(self.0) }
    }
    fn rest(&mut self) -> Vec<String> {
        std::iter::from_fn(|| self.next()).map(|(n, _)| n).collect()
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        unsafe { libc::closedir(self.0) };
    }
}

// ------------------------------------------------------------------ lookup

#[test]
fn lookup_goes_top_down_through_upper_and_several_lowers() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .file("shadow", "upper")
        .file("u_only", "u")
        .file("d/shadow", "upper")
        .file("d/from_upper", "u");
    let l0 = layer()
        .file("shadow", "l0")
        .file("l0_only", "l0")
        .file("d/shadow", "l0")
        .file("d/from_l0", "l0")
        .file("d/sub/x", "l0")
        .symlink("link", "l0-target")
        .file("mid_shadow", "l0");
    let l1 = layer()
        .file("shadow", "l1")
        .file("d/from_l1", "l1")
        .file("d/sub/y", "l1")
        .file("deep/a/b/c/l1file", "l1")
        .file("link", "l1 file under l0 symlink")
        .file("mid_shadow", "l1");
    let l2 = layer()
        .file("shadow", "l2")
        .file("bottom_only", "l2")
        .file("d/sub/x", "l2")
        .file("d/from_l2", "l2")
        .file("deep/a/b/c/d/e/bottom", "deep")
        .file("l2dir/sub/file", "f")
        .file("mid_shadow", "l2");
    let twin = Twin::builder().upper(upper).lowers([l0, l1, l2]).mount();
    let long = "n".repeat(256);
    let long_ok = "m".repeat(255);
    assert_same_read_path(
        &twin,
        &[
            "nope",
            "d/nope",
            "bottom_only/",
            "bottom_only/x",
            "deep/a/b/c/d/e/bottom/x",
            &long,
            &long_ok,
            "d/sub/nope/deeper",
        ],
    );
    let r = twin.fuse_mnt();
    // The rule, on the fuse side, in terms of the specs above.
    assert_eq!(read_file(r, "shadow"), b"upper");
    assert_eq!(read_file(r, "mid_shadow"), b"l0");
    assert_eq!(read_file(r, "d/sub/x"), b"l0");
    assert_eq!(read_file(r, "bottom_only"), b"l2");
    assert_eq!(read_file(r, "deep/a/b/c/d/e/bottom"), b"deep");
    assert_eq!(
        probe_readlink(&r.join("link")),
        Ok(PathBuf::from("l0-target"))
    );
    assert_eq!(
        names(r, "d").into_iter().collect::<BTreeSet<_>>(),
        [
            "from_l0",
            "from_l1",
            "from_l2",
            "from_upper",
            "shadow",
            "sub"
        ]
        .map(String::from)
        .into()
    );
    assert_eq!(
        assert_both_eq!(twin, |r| probe_stat(&r.join(&long))),
        Err(libc::ENAMETOOLONG)
    );
}

#[test]
fn lookup_goes_top_down_through_100_lowers() {
    if !twin_env() {
        return;
    }
    let lowers = (0..100).map(|i| {
        let mut l = layer().file(format!("d/f{i}"), i.to_string());
        if [10, 50, 99].contains(&i) {
            l = l.file("x", i.to_string());
        }
        match i {
            5 => l = l.file("w2", "5"),
            10 => l = l.file("nd/top", "10"),
            20 => l = l.file("o/at20", "20"),
            30 => l = l.whiteout("w"),
            40 => l = l.opaque("o", Opaque::TrustedY).file("o/at40", "40"),
            45 => l = l.file("nd", "a file at 45"),
            60 => l = l.file("w", "60"),
            70 => l = l.whiteout("w2").file("o/at70", "70"),
            80 => l = l.file("w2", "80"),
            90 => l = l.file("nd/hidden", "90"),
            99 => {
                l = l
                    .file("bottom", "99")
                    .file("a/b/c/leaf", "leaf")
                    .symlink("bottom_link", "bottom")
            }
            _ => {}
        }
        if i % 7 == 0 {
            l = l.dir(format!("a/b/in{i}"));
        }
        l
    });
    let twin = Twin::new(lowers);
    assert_eq!(twin.fuse_lowers().len(), 100);
    assert_same_read_path(&twin, &["w", "o/at70", "nd/hidden"]);
    let r = twin.fuse_mnt();
    assert_eq!(read_file(r, "x"), b"10", "topmost of 10/50/99 wins");
    assert_eq!(read_file(r, "bottom"), b"99");
    assert_eq!(read_file(r, "bottom_link"), b"99");
    assert_eq!(read_file(r, "a/b/c/leaf"), b"leaf");
    assert_eq!(read_file(r, "w2"), b"5");
    assert_eq!(names(r, "d").len(), 100);
    let mut o = names(r, "o");
    o.sort();
    assert_eq!(o, ["at20", "at40"]);
    assert_eq!(names(r, "nd"), ["top"]);
    assert_eq!(probe_stat(&r.join("w")), Err(libc::ENOENT));
}

// ------------------------------------------------------------------ whiteouts

/// The on-disk forms of a whiteout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wh {
    /// 0/0 character device.
    CharDev,
    /// Empty file with `<ns>overlay.whiteout`, parent `<ns>overlay.opaque=x`.
    Xattr(XattrNs),
    /// `.wh.NAME` (OCI/AUFS).
    Aufs,
}

fn add_wh(l: Layer, path: &str, form: Wh) -> Layer {
    match form {
        Wh::CharDev => l.whiteout(path),
        Wh::Xattr(ns) => l.xattr_whiteout_ns(path, ns),
        Wh::Aufs => l.aufs_whiteout(path),
    }
}

/// Whiteouts of files, directories, symlinks and nested names, in the top
/// lower and the middle one, over a bottom layer that has them all.
fn whiteout_layers(form: Wh) -> [Layer; 3] {
    let mut l0 = layer()
        .file("revived", "l0 over an l1 whiteout")
        .file("mdir/top", "t")
        .file("keep_top", "k")
        .file("sub/from_l0", "s");
    for p in [
        "file",
        "dir",
        "link",
        "fifo",
        "sub/nested",
        "deep/a/b/gone",
        "mid",
        "gone_dir_with_sub",
    ] {
        l0 = add_wh(l0, p, form);
    }
    let mut l1 = layer()
        .file("mid", "l1")
        .chardev("notwh", 1, 3)
        .file("sub/from_l1", "s");
    for p in ["revived", "hid_by_l1", "mdir", "sub/hid_by_l1"] {
        l1 = add_wh(l1, p, form);
    }
    let l2 = layer()
        .file("file", "f")
        .file("dir/child", "c")
        .dir("dir/subdir")
        .symlink("link", "file")
        .fifo("fifo")
        .file("sub/nested", "n")
        .file("sub/keep", "k")
        .file("sub/hid_by_l1", "h")
        .file("deep/a/b/gone", "g")
        .file("deep/a/b/stays", "s")
        .file("mid", "l2")
        .file("revived", "l2")
        .file("hid_by_l1", "h")
        .file("mdir/old", "o")
        .file("gone_dir_with_sub/x/y", "y")
        .file("keep", "k");
    [l0, l1, l2]
}

/// Names that must be absent (and markers that must not show).
const WHITED_OUT: &[&str] = &[
    "file",
    "dir",
    "dir/child",
    "link",
    "fifo",
    "sub/nested",
    "sub/hid_by_l1",
    "deep/a/b/gone",
    "mid",
    "hid_by_l1",
    "mdir/old",
    "gone_dir_with_sub",
    "gone_dir_with_sub/x",
    ".wh.file",
    ".wh.dir",
    "sub/.wh.nested",
    ".wh.revived",
    "deep/a/b/.wh.gone",
];

/// Build the whiteout case with `form`; foreign forms go to the kernel in
/// its own form for `ns`.
fn whiteout_twin(form: Wh, kernel_reads_it: bool, userxattr: bool) -> Twin {
    marker_twin(whiteout_layers(form), kernel_reads_it, userxattr)
}

/// A twin over `layers` that carry markers in some on-disk form; where the
/// kernel does not read that form, it gets the layers in its own form and
/// ovlfuse is asked to read every form (`marks=all`).
fn marker_twin(layers: [Layer; 3], kernel_reads_it: bool, userxattr: bool) -> Twin {
    let ns = if userxattr {
        XattrNs::User
    } else {
        XattrNs::Trusted
    };
    let mut b = Twin::builder();
    for l in layers {
        b = if kernel_reads_it {
            b.lower(l)
        } else {
            let k = l.for_kernel(ns);
            b.lower_each(l, k)
        };
    }
    if !kernel_reads_it {
        b = b.fuse_opt("marks=all");
    }
    if userxattr {
        b = b.opt("userxattr");
    }
    b.mount()
}

fn check_whiteout_case(twin: &Twin) {
    assert_same_read_path(twin, WHITED_OUT);
    let r = twin.fuse_mnt();
    for p in WHITED_OUT {
        assert_eq!(
            probe_lstat(&r.join(p)),
            Err(libc::ENOENT),
            "{p} must be hidden"
        );
    }
    assert_eq!(read_file(r, "revived"), b"l0 over an l1 whiteout");
    assert_eq!(names(r, "mdir"), ["top"]);
    let mut sub = names(r, "sub");
    sub.sort();
    assert_eq!(sub, ["from_l0", "from_l1", "keep"]);
    assert_eq!(names(r, "deep/a/b"), ["stays"]);
    let notwh = probe_lstat(&r.join("notwh")).unwrap();
    assert_eq!((notwh.kind, notwh.rdev), (Kind::CharDev, Some((1, 3))));
}

#[test]
fn whiteout_char_device_0_0_hides_lower_names() {
    if !twin_env() {
        return;
    }
    check_whiteout_case(&whiteout_twin(Wh::CharDev, true, false));
}

#[test]
fn whiteout_trusted_xattr_in_opaque_x_dir_hides_lower_names() {
    if !twin_env() {
        return;
    }
    check_whiteout_case(&whiteout_twin(Wh::Xattr(XattrNs::Trusted), true, false));
}

#[test]
fn whiteout_user_xattr_hides_lower_names_with_userxattr() {
    if !twin_env() {
        return;
    }
    check_whiteout_case(&whiteout_twin(Wh::Xattr(XattrNs::User), true, true));
}

#[test]
fn whiteout_user_xattr_hides_lower_names_without_userxattr() {
    if !twin_env() {
        return;
    }
    // The kernel reads user.overlay.* only with userxattr: it gets trusted.
    check_whiteout_case(&whiteout_twin(Wh::Xattr(XattrNs::User), false, false));
}

#[test]
fn whiteout_aufs_wh_file_hides_lower_names() {
    if !twin_env() {
        return;
    }
    check_whiteout_case(&whiteout_twin(Wh::Aufs, false, false));
}

#[test]
fn whiteout_in_upper_layer_hides_lower_names() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .whiteout("file")
        .whiteout("dir")
        .whiteout("x/gone")
        .file("x/new", "n")
        .whiteout("d/sub");
    let lower = layer()
        .file("file", "f")
        .file("dir/child", "c")
        .file("x/gone", "g")
        .file("x/stays", "s")
        .file("d/sub/deep", "d")
        .file("d/other", "o");
    let twin = Twin::builder().upper(upper).lower(lower).mount();
    assert_same_read_path(&twin, &["file", "dir", "dir/child", "x/gone", "d/sub"]);
    let r = twin.fuse_mnt();
    assert_eq!(probe_stat(&r.join("file")), Err(libc::ENOENT));
    let mut x = names(r, "x");
    x.sort();
    assert_eq!(x, ["new", "stays"]);
    assert_eq!(names(r, "d"), ["other"]);
}

/// Regular files that carry the whiteout xattr but are not whiteouts (not
/// empty; or no xattr at all) in a dir marked opaque=x, which itself is not
/// opaque: the names show and the merge goes on.
#[test]
fn whiteout_xattr_counts_only_on_an_empty_file() {
    if !twin_env() {
        return;
    }
    let top = layer()
        .xattr_whiteout("m/gone")
        .file("m/nonempty", "data")
        .xattr("m/nonempty", "trusted.overlay.whiteout", "")
        .file("m/plain_empty", "")
        .dir("m/dir_with_xattr")
        .xattr("m/dir_with_xattr", "trusted.overlay.whiteout", "");
    let bottom = layer()
        .file("m/gone", "g")
        .file("m/nonempty", "lower")
        .file("m/below", "b")
        .file("m/plain_empty", "lower")
        .file("m/dir_with_xattr/below", "b");
    let twin = Twin::new([top, bottom]);
    assert_same_read_path(&twin, &["m/gone"]);
    let r = twin.fuse_mnt();
    let mut m = names(r, "m");
    m.sort();
    assert_eq!(m, ["below", "dir_with_xattr", "nonempty", "plain_empty"]);
    assert_eq!(read_file(r, "m/nonempty"), b"data");
    assert_eq!(names(r, "m/dir_with_xattr"), ["below"]);
}

/// Xattr whiteouts where the kernel's readdir does not look for them: in
/// the upper layer, in a lower dir not marked opaque=x, and in a lower
/// layer with no opaque=x mark at all.
fn xattr_whiteouts_outside_marked_lower_dirs() -> Twin {
    let upper = layer()
        .file("x/gone", "")
        .xattr("x/gone", "trusted.overlay.whiteout", "")
        .xattr("x", "trusted.overlay.opaque", "x")
        .file("x/new", "n");
    let marked_layer = layer()
        .xattr_whiteout("m/gone")
        .file("u/unmarked", "")
        .xattr("u/unmarked", "trusted.overlay.whiteout", "");
    let unmarked_layer =
        layer()
            .file("v/unmarked", "")
            .xattr("v/unmarked", "trusted.overlay.whiteout", "");
    let bottom = layer()
        .file("x/gone", "g")
        .file("x/stays", "s")
        .file("m/gone", "g")
        .file("u/unmarked", "lower")
        .file("u/below", "b")
        .file("v/unmarked", "lower")
        .file("v/below", "b");
    Twin::builder()
        .upper(upper)
        .lowers([marked_layer, unmarked_layer, bottom])
        .mount()
}

const XW_OUTSIDE: [&str; 3] = ["x/gone", "u/unmarked", "v/unmarked"];

#[test]
fn whiteout_xattr_outside_marked_lower_dirs_hides_the_name_from_lookup() {
    if !twin_env() {
        return;
    }
    let twin = xattr_whiteouts_outside_marked_lower_dirs();
    for p in XW_OUTSIDE {
        let got = twin.same(&format!("lookup view of {p}"), |r| {
            let v = view(r, p);
            (v.lstat, v.stat, v.access_f, v.readlink, v.llistxattr)
        });
        assert_eq!(got.0, Err(libc::ENOENT), "{p}");
        let _ = assert_both_eq!(twin, |r| probe_open(&r.join(p), libc::O_RDONLY), "open {p}");
    }
}

#[test]
fn whiteout_xattr_outside_marked_lower_dirs_lists_like_the_kernel() {
    // Deliberate difference: the kernel lists these names although its own
    // lookup answers ENOENT for them; ovlfuse hides them in listings too, so
    // readdir and lookup agree (README "Known differences").
    if !twin_env() {
        return;
    }
    let twin = xattr_whiteouts_outside_marked_lower_dirs();
    for p in XW_OUTSIDE {
        let (f, k) = twin.both(|r| probe_lstat(&r.join(p)).map(|_| ()));
        assert_eq!((f, k), (Err(libc::ENOENT), Err(libc::ENOENT)), "{p}");
        let (dir, name) = p.split_once('/').unwrap();
        let listed = probe_readdir(&twin.fuse_mnt().join(dir)).unwrap();
        assert!(
            !listed.iter().any(|n| n == name),
            "ovlfuse lists {p}: {listed:?}"
        );
    }
    // Everything else in those directories matches the kernel.
    for d in ["x", "u", "v", "m"] {
        let (f, k) = twin.both(|r| probe_readdir(&r.join(d)));
        let hidden: Vec<&str> = XW_OUTSIDE
            .iter()
            .filter_map(|p| p.strip_prefix(&format!("{d}/")))
            .collect();
        let k: Vec<String> = k
            .unwrap()
            .into_iter()
            .filter(|n| !hidden.contains(&n.as_str()))
            .collect();
        assert_eq!(f.unwrap(), k, "readdir {d}");
    }
}

// ------------------------------------------------------------------ opaque

/// Opaque directories at depth 1, 2 and 3, in the top and the middle lower,
/// an empty opaque one, and a non-opaque dir above an opaque one.
fn opaque_layers(form: Opaque) -> [Layer; 3] {
    let l0 = layer()
        .opaque("o1", form)
        .file("o1/top", "t")
        .file("m/o2/l0", "above the opaque one")
        .file("m/l0f", "m")
        .opaque("a/b/o3", form)
        .file("a/b/o3/sub/x", "x")
        .opaque("empty_opq", form)
        .opaque("nest", form)
        .opaque("nest/inner", form)
        .file("nest/inner/top", "t");
    let l1 = layer()
        .file("o1/mid", "hidden")
        .opaque("m/o2", form)
        .file("m/o2/l1", "l1")
        .file("m/l1f", "m")
        .file("empty_opq/hidden", "h")
        .file("a/b/o3/sub/mid", "h")
        .file("nest/hidden", "h");
    let l2 = layer()
        .file("o1/bottom", "hidden")
        .file("m/o2/l2", "hidden")
        .file("m/l2f", "m")
        .file("a/b/o3/sub/y", "hidden")
        .file("a/b/sibling", "s")
        .file("a/b/o3/bottom", "hidden")
        .file("empty_opq/deeper/hidden", "h");
    [l0, l1, l2]
}

const OPAQUE_HIDDEN: &[&str] = &[
    "o1/mid",
    "o1/bottom",
    "m/o2/l2",
    "a/b/o3/sub/y",
    "a/b/o3/sub/mid",
    "a/b/o3/bottom",
    "empty_opq/hidden",
    "empty_opq/deeper",
    "nest/hidden",
    "o1/.wh..wh..opq",
    "m/o2/.wh..wh..opq",
];

fn opaque_twin(form: Opaque, kernel_reads_it: bool, userxattr: bool) -> Twin {
    marker_twin(opaque_layers(form), kernel_reads_it, userxattr)
}

fn check_opaque_case(twin: &Twin) {
    assert_same_read_path(twin, OPAQUE_HIDDEN);
    let r = twin.fuse_mnt();
    assert_eq!(names(r, "o1"), ["top"]);
    let mut o2 = names(r, "m/o2");
    o2.sort();
    assert_eq!(o2, ["l0", "l1"]);
    let mut m = names(r, "m");
    m.sort();
    assert_eq!(m, ["l0f", "l1f", "l2f", "o2"]);
    assert_eq!(names(r, "a/b/o3/sub"), ["x"]);
    let mut ab = names(r, "a/b");
    ab.sort();
    assert_eq!(ab, ["o3", "sibling"]);
    assert_eq!(names(r, "empty_opq"), Vec::<String>::new());
    assert_eq!(names(r, "nest"), ["inner"]);
}

#[test]
fn opaque_trusted_xattr_stops_merge_at_every_depth() {
    if !twin_env() {
        return;
    }
    check_opaque_case(&opaque_twin(Opaque::TrustedY, true, false));
}

#[test]
fn opaque_user_xattr_stops_merge_with_userxattr() {
    if !twin_env() {
        return;
    }
    check_opaque_case(&opaque_twin(Opaque::UserY, true, true));
}

#[test]
fn opaque_user_xattr_stops_merge_without_userxattr() {
    if !twin_env() {
        return;
    }
    check_opaque_case(&opaque_twin(Opaque::UserY, false, false));
}

#[test]
fn opaque_fuseoverlayfs_xattr_stops_merge() {
    if !twin_env() {
        return;
    }
    check_opaque_case(&opaque_twin(Opaque::FuseOverlayfs, false, false));
}

#[test]
fn opaque_aufs_wh_wh_opq_stops_merge() {
    if !twin_env() {
        return;
    }
    check_opaque_case(&opaque_twin(Opaque::Aufs, false, false));
}

#[test]
fn opaque_upper_dir_hides_every_lower() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .opaque("t", Opaque::TrustedY)
        .file("t/new", "n")
        .opaque("f", Opaque::FuseOverlayfs)
        .opaque("d/deep/o", Opaque::TrustedY);
    let l0 = layer()
        .file("t/old", "o")
        .file("f/old", "o")
        .file("d/deep/o/old", "o")
        .file("d/deep/kept", "k");
    let l1 = layer().file("t/older", "o").file("d/deep/o/older", "o");
    let kupper = upper.for_kernel(XattrNs::Trusted);
    let twin = Twin::builder()
        .upper_each(upper, kupper)
        .lowers([l0, l1])
        .fuse_opt("marks=all")
        .mount();
    assert_same_read_path(&twin, &["t/old", "t/older", "f/old", "d/deep/o/old"]);
    let r = twin.fuse_mnt();
    assert_eq!(names(r, "t"), ["new"]);
    assert_eq!(names(r, "f"), Vec::<String>::new());
    let mut deep = names(r, "d/deep");
    deep.sort();
    assert_eq!(deep, ["kept", "o"]);
}

// ------------------------------------------------------------------ type changes

#[test]
fn non_directory_below_directory_stops_merge() {
    if !twin_env() {
        return;
    }
    let upper = layer().file("a/from_upper", "u");
    let l0 = layer()
        .file("a", "a file under the upper dir")
        .file("b/x", "x")
        .file("c/top", "t");
    let l1 = layer()
        .file("a/l1", "hidden")
        .symlink("b", "b_target")
        .fifo("c")
        .file("b_target/y", "y");
    let l2 = layer()
        .file("a/l2", "hidden")
        .file("b/below_symlink", "hidden")
        .file("c/below_fifo", "hidden");
    let twin = Twin::builder().upper(upper).lowers([l0, l1, l2]).mount();
    assert_same_read_path(&twin, &["a/l1", "a/l2", "b/below_symlink", "c/below_fifo"]);
    let r = twin.fuse_mnt();
    assert_eq!(names(r, "a"), ["from_upper"]);
    assert_eq!(names(r, "b"), ["x"]);
    assert_eq!(names(r, "c"), ["top"]);
}

#[test]
fn directory_below_non_directory_is_hidden() {
    if !twin_env() {
        return;
    }
    let upper = layer().file("u", "upper file");
    let l0 = layer()
        .file("f", "file")
        .symlink("s", "f")
        .fifo("p")
        .chardev("c", 1, 3);
    let l1 = layer()
        .file("f/child", "hidden")
        .file("s/child", "hidden")
        .file("p/child", "hidden")
        .file("c/child", "hidden")
        .file("u/child", "hidden");
    let twin = Twin::builder().upper(upper).lowers([l0, l1]).mount();
    let hidden = ["f/child", "s/child", "p/child", "c/child", "u/child"];
    assert_same_read_path(&twin, &hidden);
    for p in hidden {
        assert_eq!(
            assert_both_eq!(twin, |r| probe_lstat(&r.join(p)), "lstat {p}"),
            Err(libc::ENOTDIR),
            "{p}"
        );
    }
    assert_eq!(
        probe_lstat(&twin.fuse_mnt().join("f")).unwrap().kind,
        Kind::File
    );
}

// ------------------------------------------------------------------ getattr

#[test]
fn getattr_shows_the_topmost_objects_lstat_fields() {
    if !twin_env() {
        return;
    }
    let upper =
        layer()
            .file_mode("shadowed_mode", "upper", 0o600)
            .chown("shadowed_mode", 4321, 8765);
    let l0 = layer()
        .file_mode("plain", "hello", 0o644)
        .file_mode("exe", "#!/bin/sh\n", 0o755)
        .file_mode("none", "x", 0)
        .file_mode("suid", "s", 0o4755)
        .file_mode("sgid", "s", 0o2711)
        .dir_mode("sticky", 0o1777)
        .dir_mode("private", 0o700)
        .file("empty", "")
        .file("owned", "o")
        .chown("owned", 1234, 5678)
        .chown("suid", 1000, 1000)
        .symlink("link", "plain")
        .symlink("dangling", "no/such/target")
        .fifo("fifo")
        .chardev("null", 1, 3)
        .blockdev("loop", 7, 0)
        .file("hard1", "linked")
        .hardlink("hard2", "hard1")
        .file_mode("shadowed_mode", "lower", 0o777)
        .sparse("sparse", 5 << 20);
    let l1 = layer()
        .file("plain", "shadowed")
        .dir_mode("private", 0o777)
        .file("deep/er/file", "x");
    let twin = Twin::builder().upper(upper).lowers([l0, l1]).mount();
    assert_same_read_path(&twin, &[]);
    let raw = |r: &Path, p: &str| {
        probe_lstat_raw(&r.join(p)).map(|st| {
            (
                st.st_mode,
                st.st_nlink,
                st.st_uid,
                st.st_gid,
                st.st_rdev,
                st.st_size,
                st.st_blocks,
            )
        })
    };
    // Raw fields of non-directories (directory nlink has its own test).
    for p in [
        "hard1",
        "hard2",
        "sparse",
        "null",
        "loop",
        "link",
        "suid",
        "none",
        "shadowed_mode",
    ] {
        let _ = assert_both_eq!(twin, |r| raw(r, p), "raw lstat of {p}");
    }
    let r = twin.fuse_mnt();
    let h = probe_lstat(&r.join("hard1")).unwrap();
    assert_eq!(h.nlink, Some(2));
    let s = probe_lstat(&r.join("shadowed_mode")).unwrap();
    assert_eq!((s.perm, s.uid, s.gid), (0o600, 4321, 8765));
    assert_eq!(probe_stat(&r.join("private")).unwrap().perm, 0o700);
}

#[test]
fn nlink_is_one_for_merged_dirs_and_real_for_single_layer_dirs() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .dir("merged_up/a")
        .dir("up_only/x")
        .dir("up_only/y")
        .opaque("opq", Opaque::TrustedY)
        .dir("opq/one");
    let l0 = layer()
        .dir("merged_up/b")
        .dir("merged_low/a")
        .dir("low_only/a")
        .dir("low_only/b")
        .dir("low_only/c")
        .file("low_only/f", "f")
        .dir("opq/hidden1")
        .dir("opq/hidden2")
        .dir("empty_low");
    let l1 = layer().dir("merged_low/b").dir("merged_low/c");
    let twin = Twin::builder().upper(upper).lowers([l0, l1]).mount();
    let nlink = |r: &Path, p: &str| probe_stat_raw(&at(r, p)).map(|st| st.st_nlink);
    let dirs = [
        ".",
        "merged_up",
        "merged_low",
        "up_only",
        "low_only",
        "opq",
        "empty_low",
        "merged_up/a",
        "merged_low/b",
    ];
    let mut got = BTreeMap::new();
    for p in dirs {
        got.insert(p, assert_both_eq!(twin, |r| nlink(r, p), "nlink of {p}"));
    }
    // Merged directories report 1; single-layer ones their real count.
    let real = |p: &str| {
        std::fs::metadata(twin.fuse_lower(0).join(p))
            .unwrap()
            .nlink()
    };
    assert_eq!(got["merged_low"], Ok(1));
    assert_eq!(got["merged_up"], Ok(1));
    assert_eq!(got["."], Ok(1));
    assert_eq!(got["low_only"], Ok(real("low_only")));
    assert_eq!(got["low_only"], Ok(5));
    assert_eq!(got["up_only"], Ok(4));
    assert_eq!(got["opq"], Ok(3), "an opaque upper dir is not merged");
    twin.assert_same_view();
}

// ------------------------------------------------------------------ readdir

#[test]
fn readdir_lists_each_name_once_with_dot_entries_and_no_markers() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .file("same", "upper")
        .dir("samedir/u")
        .file("d/u", "u")
        .whiteout("d/wh_up");
    // Foreign markers for ovlfuse, their kernel forms for the kernel.
    let l0 = layer()
        .file("same", "l0")
        .file("samedir", "l0 file below upper dir")
        .symlink("d/l0", "x")
        .fifo("d/fifo")
        .aufs_whiteout("d/aufs_gone")
        .xattr_whiteout("x/xw_gone")
        .file("x/kept", "k")
        .opaque("o", Opaque::Aufs)
        .file("o/mine", "m")
        .opaque("fo", Opaque::FuseOverlayfs)
        .aufs_whiteout("solo_marker_without_target");
    let l1 = layer()
        .file("same", "l1")
        .dir("same_as_dir_in_l1")
        .dir("samedir/l1")
        .file("d/wh_up", "hidden")
        .file("d/aufs_gone", "hidden")
        .file("d/l1", "l1")
        .file("d/u", "shadowed")
        .file("x/xw_gone", "hidden")
        .file("o/hidden", "h")
        .file("fo/hidden", "h");
    // Enough names for several FUSE readdir rounds, a third of them in
    // two layers.
    let many = (0..150).fold(layer(), |l, i| {
        l.file(format!("many/name_{i:03}_with_some_length"), "")
    });
    let l0 = (0..150)
        .step_by(3)
        .fold(l0, |l, i| {
            l.file(format!("many/name_{i:03}_with_some_length"), "top")
        })
        .file("many/only_top", "t");
    let kl0 = l0.for_kernel(XattrNs::Trusted);
    let twin = Twin::builder()
        .upper(upper)
        .lower_each(l0, kl0)
        .lower(l1)
        .lower(many)
        // l0 holds AUFS and fuse-overlayfs marks.
        .fuse_opt("marks=all")
        .mount();
    let f = assert_same_read_path(
        &twin,
        &[
            ".wh.solo_marker_without_target",
            "solo_marker_without_target",
            "d/.wh.aufs_gone",
            "o/.wh..wh..opq",
            "d/wh_up",
            "x/xw_gone",
        ],
    );
    assert!(f.get("many/name_149_with_some_length").is_some());
    let r = twin.fuse_mnt();
    assert_eq!(names(r, "many").len(), 151);
    let d = assert_both_eq!(twin, |r| probe_readdir_typed(&r.join("d"))).unwrap();
    assert_eq!(
        d,
        [
            (".".to_string(), libc::DT_DIR),
            ("..".to_string(), libc::DT_DIR),
            ("fifo".to_string(), libc::DT_FIFO),
            ("l0".to_string(), libc::DT_LNK),
            ("l1".to_string(), libc::DT_REG),
            ("u".to_string(), libc::DT_REG),
        ]
    );
    assert_eq!(
        assert_both_eq!(twin, probe_readdir_typed)
            .unwrap()
            .iter()
            .filter(|(n, _)| n == "same" || n == "samedir")
            .cloned()
            .collect::<Vec<_>>(),
        [
            ("same".to_string(), libc::DT_REG),
            ("samedir".to_string(), libc::DT_DIR)
        ]
    );
}

// ------------------------------------------------------------------ readlink

#[test]
fn readlink_returns_the_topmost_symlinks_target() {
    if !twin_env() {
        return;
    }
    let long_target = format!("{}/end", "segment".repeat(500));
    let upper = layer().symlink("shadowed", "upper-target");
    let l0 = layer()
        .symlink("rel", "d/file")
        .symlink("abs", "/etc/hostname-ovt-does-not-exist")
        .symlink("dotdot", "../outside")
        .symlink("dangling", "no/such")
        .symlink("long", &long_target)
        .symlink("odd", "with space\tand ünïcode")
        .symlink("to_dir", "d")
        .symlink("trailing", "d/")
        .symlink("d/up", "../rel")
        .symlink("shadowed", "l0-target")
        .symlink("chain", "rel")
        .file("d/file", "content");
    let l1 = layer()
        .symlink("shadowed", "l1-target")
        .symlink("d/low", "file");
    let twin = Twin::builder().upper(upper).lowers([l0, l1]).mount();
    assert_same_read_path(&twin, &["to_dir/file", "trailing/file", "d/up"]);
    for p in [
        "rel", "abs", "dotdot", "dangling", "long", "odd", "to_dir", "trailing", "d/up",
        "shadowed", "chain", "d/low", "d/file", "d",
    ] {
        let _ = assert_both_eq!(twin, |r| probe_readlink(&r.join(p)), "readlink {p}");
        let _ = assert_both_eq!(twin, |r| probe_stat(&r.join(p)), "stat (follow) {p}");
    }
    let r = twin.fuse_mnt();
    assert_eq!(
        probe_readlink(&r.join("long")),
        Ok(PathBuf::from(&long_target))
    );
    assert_eq!(
        probe_readlink(&r.join("shadowed")),
        Ok(PathBuf::from("upper-target"))
    );
    assert_eq!(read_file(r, "chain"), b"content");
    assert_eq!(read_file(r, "d/up"), b"content");
}

// ------------------------------------------------------------------ xattrs

#[test]
fn xattrs_show_user_names_and_hide_overlay_private_names() {
    if !twin_env() {
        return;
    }
    let big = pattern(3000, 7);
    let base = layer()
        .file("f", "data")
        .xattr("f", "user.a", "1")
        .xattr("f", "user.empty", "")
        .xattr("f", "user.big", &big)
        .xattr("f", "trusted.plain", "t")
        .file("d/x", "x")
        .xattr("d", "user.dir", "top")
        .symlink("s", "f")
        .xattr("s", "trusted.on_symlink", "s")
        .xattr_whiteout("wd/gone")
        .file("wd/stays", "s")
        .xattr("wd", "user.wd", "1");
    // Private names: foreign ones for ovlfuse, the kernel's own for the kernel.
    let fuse_l0 = base
        .clone()
        .xattr("f", "trusted.overlay.secret", "1")
        .xattr("f", "user.fuseoverlayfs.secret", "1")
        .xattr("f", "user.overlay.secret", "1")
        .xattr("d", "trusted.overlay.impure", "y");
    let kern_l0 = base
        .xattr("f", "trusted.overlay.secret", "1")
        .xattr("f", "trusted.overlay.secret2", "1")
        .xattr("f", "trusted.overlay.secret3", "1")
        .xattr("d", "trusted.overlay.impure", "y");
    let l1 = layer()
        .file("d/y", "y")
        .xattr("d", "user.dir", "bottom")
        .xattr("d", "user.only_below", "hidden")
        .file("wd/gone", "g")
        .file("f", "below")
        .xattr("f", "user.below", "hidden");
    let upper =
        layer()
            .file("u", "u")
            .xattr("u", "user.up", "u")
            .xattr("u", "trusted.overlay.origin", "");
    let twin = Twin::builder()
        .upper(upper)
        .lower_each(fuse_l0, kern_l0)
        .lower(l1)
        .mount();
    assert_same_read_path(&twin, &[]);
    let names_to_probe = [
        "user.a",
        "user.empty",
        "user.big",
        "user.none",
        "user.below",
        "user.dir",
        "user.only_below",
        "user.wd",
        "user.up",
        "trusted.plain",
        "trusted.on_symlink",
        "trusted.overlay.secret",
        "trusted.overlay.opaque",
        "trusted.overlay.whiteout",
        "trusted.overlay.impure",
        "trusted.overlay.origin",
        "trusted.overlay.nonexistent",
    ];
    for p in ["f", "d", "s", "wd", "u", "."] {
        for n in names_to_probe {
            let _ = assert_both_eq!(twin, |r| probe_getxattr(&at(r, p), n), "getxattr {p} {n}");
            let _ = assert_both_eq!(twin, |r| probe_lgetxattr(&at(r, p), n), "lgetxattr {p} {n}");
        }
        let _ = assert_both_eq!(twin, |r| probe_listxattr(&at(r, p)), "listxattr {p}");
        let _ = assert_both_eq!(twin, |r| probe_llistxattr(&at(r, p)), "llistxattr {p}");
        // A size query may over-estimate (the kernel returns the size of
        // the unfiltered list), but a buffer of that size must hold the
        // list, and the list is the same.
        let (fl, kl) = twin.both(|r| {
            let n = probe_listxattr_sized(&at(r, p), 0).unwrap();
            let exact = probe_listxattr(&at(r, p))
                .unwrap()
                .iter()
                .map(|x| x.len() + 1)
                .sum::<usize>();
            (n >= exact, probe_listxattr_sized(&at(r, p), n))
        });
        assert!(fl.0, "fuse: listxattr size query of {p} too small");
        assert!(kl.0, "kernel: listxattr size query of {p} too small");
        assert_eq!(
            fl.1.is_ok(),
            kl.1.is_ok(),
            "listxattr {p} into the queried size"
        );
        // A too-short buffer: ERANGE (only where something is visible; for
        // an empty visible list the kernel still answers ERANGE when hidden
        // names exist underneath).
        if !probe_listxattr(&at(twin.fuse_mnt(), p)).unwrap().is_empty() {
            let got = assert_both_eq!(
                twin,
                |r| probe_listxattr_sized(&at(r, p), 1),
                "listxattr into 1 byte on {p}"
            );
            assert_eq!(got, Err(libc::ERANGE));
        }
    }
    // Size queries and short buffers.
    for (n, size) in [
        ("user.big", 0),
        ("user.big", 10),
        ("user.big", 3000),
        ("user.a", 1),
    ] {
        let _ = assert_both_eq!(
            twin,
            |r| probe_getxattr_sized(&r.join("f"), n, size),
            "getxattr {n} into {size} bytes"
        );
    }
    // The rule on the fuse side, in terms of the specs.
    let r = twin.fuse_mnt();
    for n in [
        "trusted.overlay.secret",
        "user.fuseoverlayfs.secret",
        "user.overlay.secret",
    ] {
        assert_eq!(
            probe_getxattr(&r.join("f"), n),
            Err(libc::ENODATA),
            "{n} must read as absent"
        );
    }
    assert_eq!(
        probe_getxattr(&r.join("wd"), "trusted.overlay.opaque"),
        Err(libc::ENODATA)
    );
    assert_eq!(
        probe_listxattr(&r.join("f")).unwrap(),
        ["trusted.plain", "user.a", "user.big", "user.empty"]
    );
    assert_eq!(
        probe_getxattr(&r.join("d"), "user.dir"),
        Ok(b"top".to_vec())
    );
    assert_eq!(probe_getxattr(&r.join("f"), "user.big"), Ok(big));
}

// ------------------------------------------------------------------ statfs

#[test]
fn statfs_reports_the_upper_filesystem() {
    if !twin_env() {
        return;
    }
    let twin = Twin::builder()
        .lower(layer().file("f", "x"))
        .lower(layer().file("g", "y"))
        .mount();
    let upper = probe_statvfs(twin.fuse_upper()).unwrap();
    for p in [".", "f", "g"] {
        let got = assert_both_eq!(twin, |r| probe_statvfs(&at(r, p)), "statvfs {p}");
        assert_eq!(got.as_ref(), Ok(&upper), "statvfs {p} vs upper");
    }
}

#[test]
fn statfs_of_read_only_stack_reports_the_top_lower_filesystem() {
    if !twin_env() {
        return;
    }
    let twin = Twin::read_only([layer().file("f", "x"), layer().file("g", "y")]);
    let top = probe_statvfs(twin.fuse_lower(0)).unwrap();
    let got = assert_both_eq!(twin, probe_statvfs);
    assert_eq!(got, Ok(top));
}

// ------------------------------------------------------------------ access

const ACCESS_MODES: [i32; 6] = [
    libc::F_OK,
    libc::R_OK,
    libc::W_OK,
    libc::X_OK,
    libc::R_OK | libc::W_OK,
    libc::R_OK | libc::X_OK,
];

fn access_layers(uid: u32, gid: u32) -> (Layer, Layer, Layer) {
    let mut l0 = layer();
    for m in [
        0o000, 0o400, 0o200, 0o100, 0o040, 0o004, 0o001, 0o644, 0o755, 0o777,
    ] {
        l0 = l0
            .file_mode(format!("root_{m:03o}"), "x", m)
            .file_mode(format!("user_{m:03o}"), "x", m)
            .chown(format!("user_{m:03o}"), uid, gid)
            .file_mode(format!("group_{m:03o}"), "x", m)
            .chown(format!("group_{m:03o}"), 0, gid)
            .dir_mode(format!("dir_{m:03o}"), m)
            .file(format!("in_{m:03o}/f"), "x")
            .chmod(format!("in_{m:03o}"), m);
    }
    let l0 = l0
        .fifo("fifo")
        .chardev("null", 1, 3)
        .symlink("link_to_600", "root_400")
        .file_mode("shadow", "top", 0o600);
    let l1 = layer().file_mode("shadow", "bottom", 0o666);
    let upper = layer()
        .file_mode("up_600", "u", 0o600)
        .file_mode("up_user_700", "u", 0o700)
        .chown("up_user_700", uid, gid);
    (upper, l0, l1)
}

fn access_table(r: &Path, paths: &[String]) -> Vec<(String, i32, Result<(), i32>)> {
    let mut out = Vec::new();
    for p in paths {
        for m in ACCESS_MODES {
            out.push((p.clone(), m, probe_access(&r.join(p), m)));
        }
    }
    out
}

#[test]
fn access_follows_merged_mode_bits_for_root_and_a_user() {
    if !twin_env() {
        return;
    }
    let (uid, gid) = ensure_user("ovltest");
    let (upper, l0, l1) = access_layers(uid, gid);
    let twin = Twin::builder()
        .upper(upper)
        .lowers([l0, l1])
        .fuse_opt("allow_other")
        .mount();
    let f = assert_same_read_path(&twin, &[]);
    let mut paths: Vec<String> = f.paths().into_iter().map(String::from).collect();
    paths.retain(|p| p != ".");
    paths.extend(["in_000/f", "in_100/f", "in_400/f", "nope"].map(String::from));
    let (fr, kr) = twin.both(|r| access_table(r, &paths));
    assert_eq!(fr, kr, "access as root");
    let (fu, ku) = twin.both_as(uid, gid, |r| access_table(r, &paths));
    assert_eq!(fu, ku, "access as uid {uid}");
    // The tables are not trivially all-Ok: both verdicts occur.
    assert!(fu.iter().any(|(_, _, r)| r == &Err(libc::EACCES)));
    assert!(fu.iter().any(|(_, m, r)| *m == libc::W_OK && r.is_ok()));
    assert!(
        fr.iter()
            .any(|(p, m, r)| p == "root_644" && *m == libc::X_OK && r.is_err())
    );
}

// ------------------------------------------------------------------ open/read

#[test]
fn read_returns_file_contents_from_every_layer() {
    if !twin_env() {
        return;
    }
    let upper = layer()
        .file("u", pattern(70_000, 1))
        .file("shadow", "upper");
    let l0 = layer()
        .file("l0", pattern(5000, 2))
        .file("shadow", "l0")
        .file("empty", "")
        .file("d/nested", pattern(131_073, 3));
    let l1 = layer()
        .file("l1", pattern(4096, 4))
        .file("shadow", "l1 longer content")
        .file("d/low", "low");
    let l2 = layer().file("l2", pattern(1, 5)).file("d/nested", "hidden");
    let twin = Twin::builder().upper(upper).lowers([l0, l1, l2]).mount();
    assert_same_read_path(&twin, &[]);
    for p in [
        "u", "l0", "l1", "l2", "shadow", "empty", "d/nested", "d/low",
    ] {
        for (off, len) in [
            (0, 1),
            (1, 4095),
            (4095, 2),
            (4096, 4096),
            (65_535, 70_000),
            (1 << 20, 10),
        ] {
            let _ = assert_both_eq!(
                twin,
                |r| probe_pread(&r.join(p), off, len).map(data),
                "pread {p} at {off} len {len}"
            );
        }
        let _ = assert_both_eq!(
            twin,
            |r| probe_open(&r.join(p), libc::O_RDONLY | libc::O_DIRECTORY),
            "open {p} O_DIRECTORY"
        );
    }
    let _ = assert_both_eq!(twin, |r| probe_read(&r.join("d")).map(data), "read a dir");
    let r = twin.fuse_mnt();
    assert_eq!(read_file(r, "shadow"), b"upper");
    assert_eq!(read_file(r, "d/nested"), pattern(131_073, 3));
    assert_eq!(read_file(r, "l2"), pattern(1, 5));
}

#[test]
fn read_of_an_8_mib_file_matches_its_lower_content() {
    if !twin_env() {
        return;
    }
    const LEN: usize = 8 << 20;
    let content = pattern(LEN, 42);
    let twin = Twin::new([
        layer().file("top", "t"),
        layer()
            .file("big", &content)
            .file("d/big2", &content[..LEN - 12_345]),
    ]);
    assert_same_read_path(&twin, &[]);
    let (f, k) = twin.both(|r| read_file(r, "big"));
    assert!(
        f == content,
        "fuse read of big differs from the layer content"
    );
    assert!(
        k == content,
        "kernel read of big differs from the layer content"
    );
    for (off, len) in [
        (0, 1 << 20),
        (LEN as u64 - 1, 100),
        (LEN as u64, 10),
        (3_333_333, 777_777),
        (128 << 10, 128 << 10),
    ] {
        let (a, b) = twin.both(|r| probe_pread(&r.join("big"), off, len));
        let want = &content[(off as usize).min(LEN)..(off as usize + len).min(LEN)];
        assert!(a.as_deref() == Ok(want), "fuse pread at {off} len {len}");
        assert!(b.as_deref() == Ok(want), "kernel pread at {off} len {len}");
    }
    let _ = assert_both_eq!(twin, |r| probe_pread(&r.join("d/big2"), 0, LEN).map(data));
}

#[test]
fn read_of_a_sparse_file_gives_zeros_and_keeps_its_holes() {
    if !twin_env() {
        return;
    }
    const LEN: u64 = 16 << 20;
    let twin = Twin::new([layer().sparse("sparse", LEN).sparse("small_sparse", 4097)]);
    assert_same_read_path(&twin, &[]);
    let (f, _) = twin.both(|r| read_file(r, "sparse"));
    assert_eq!(f.len() as u64, LEN);
    assert!(f.iter().all(|b| *b == 0));
    for p in ["sparse", "small_sparse"] {
        let blocks = assert_both_eq!(
            twin,
            |r| probe_lstat_raw(&r.join(p)).map(|st| (st.st_size, st.st_blocks)),
            "size and blocks of {p}"
        );
        assert_eq!(blocks.map(|b| b.1), Ok(0), "{p} has no data blocks");
        for (off, whence) in [
            (0, libc::SEEK_DATA),
            (0, libc::SEEK_HOLE),
            (4096, libc::SEEK_HOLE),
            (LEN as i64 + 1, libc::SEEK_HOLE),
            (100, libc::SEEK_END),
        ] {
            let _ = assert_both_eq!(
                twin,
                |r| probe_lseek(&r.join(p), off, whence),
                "lseek {p} {off} whence {whence}"
            );
        }
        let _ = assert_both_eq!(twin, |r| probe_pread(&r.join(p), 4000, 200).map(data));
    }
}

// ------------------------------------------------------------------ read-only

#[test]
fn read_only_stack_answers_erofs_to_every_write() {
    if !twin_env() {
        return;
    }
    let top = layer()
        .file("f", "data")
        .xattr("f", "user.x", "1")
        .dir("d")
        .dir("empty")
        .symlink("s", "f")
        .fifo("fifo");
    let bottom = layer().file("low", "l").file("d/inner", "i");
    let twin = Twin::read_only([top, bottom]);
    let before = twin.snapshots();
    let j = |r: &Path, p: &str| r.join(p);
    type Op<'a> = (&'a str, Box<dyn Fn(&Path) -> Result<(), i32> + 'a>);
    let ops: Vec<Op> = vec![
        ("create", Box::new(|r| probe_create(&j(r, "new"), 0o644))),
        (
            "open O_WRONLY",
            Box::new(|r| probe_open(&j(r, "f"), libc::O_WRONLY)),
        ),
        (
            "open O_RDWR",
            Box::new(|r| probe_open(&j(r, "low"), libc::O_RDWR)),
        ),
        (
            "open O_TRUNC",
            Box::new(|r| probe_open(&j(r, "f"), libc::O_RDONLY | libc::O_TRUNC)),
        ),
        (
            "open O_APPEND",
            Box::new(|r| probe_open(&j(r, "f"), libc::O_WRONLY | libc::O_APPEND)),
        ),
        (
            "open O_CREAT new",
            Box::new(|r| probe_open(&j(r, "d/new"), libc::O_CREAT | libc::O_RDONLY)),
        ),
        ("mkdir", Box::new(|r| probe_mkdir(&j(r, "nd"), 0o755))),
        (
            "mknod fifo",
            Box::new(|r| probe_mknod(&j(r, "np"), libc::S_IFIFO | 0o644, 0, 0)),
        ),
        ("symlink", Box::new(|r| probe_symlink("f", &j(r, "ns")))),
        ("link", Box::new(|r| probe_link(&j(r, "f"), &j(r, "nl")))),
        (
            "unlink top-lower file",
            Box::new(|r| probe_unlink(&j(r, "f"))),
        ),
        (
            "unlink lower file",
            Box::new(|r| probe_unlink(&j(r, "d/inner"))),
        ),
        ("rmdir", Box::new(|r| probe_rmdir(&j(r, "empty")))),
        (
            "rename",
            Box::new(|r| probe_rename(&j(r, "f"), &j(r, "g"), 0)),
        ),
        (
            "rename over",
            Box::new(|r| probe_rename(&j(r, "f"), &j(r, "low"), 0)),
        ),
        (
            "rename exchange",
            Box::new(|r| probe_rename(&j(r, "f"), &j(r, "low"), libc::RENAME_EXCHANGE)),
        ),
        (
            "rename dir",
            Box::new(|r| probe_rename(&j(r, "d"), &j(r, "d2"), 0)),
        ),
        ("chmod", Box::new(|r| probe_chmod(&j(r, "f"), 0o600))),
        ("chmod dir", Box::new(|r| probe_chmod(&j(r, "d"), 0o700))),
        ("chown", Box::new(|r| probe_chown(&j(r, "f"), 1, 1))),
        (
            "lchown symlink",
            Box::new(|r| probe_lchown(&j(r, "s"), 1, 1)),
        ),
        ("truncate", Box::new(|r| probe_truncate(&j(r, "f"), 1))),
        (
            "utimens",
            Box::new(|r| probe_utimens(&j(r, "f"), (1, 0), (2, 0))),
        ),
        (
            "setxattr",
            Box::new(|r| probe_setxattr(&j(r, "f"), "user.y", b"1", 0)),
        ),
        (
            "removexattr",
            Box::new(|r| probe_removexattr(&j(r, "f"), "user.x")),
        ),
        (
            "access W_OK file",
            Box::new(|r| probe_access(&j(r, "f"), libc::W_OK)),
        ),
        (
            "access W_OK dir",
            Box::new(|r| probe_access(&j(r, "d"), libc::W_OK)),
        ),
    ];
    for (name, op) in &ops {
        let got = twin.same(name, |r| op(r));
        assert_eq!(got, Err(libc::EROFS), "{name} on a read-only stack");
    }
    // Neither a write nor EROFS by rule: the kernel decides.
    let _ = assert_both_eq!(twin, |r| probe_access(&r.join("fifo"), libc::W_OK));
    let _ = assert_both_eq!(twin, |r| probe_open(
        &r.join("f"),
        libc::O_RDONLY | libc::O_CREAT
    ));
    let _ = assert_both_eq!(twin, |r| probe_read(&r.join("low")));
    let after = twin.snapshots();
    assert_same_tree(&before.0, &after.0);
    assert_same_tree(&after.0, &after.1);
}

// ------------------------------------------------------------------ offsets

/// Walk `dir` recording (telldir before the entry, name), then check every
/// recorded offset leads back to the same name after names were created
/// and removed, then rewind. Returns (names of the first pass, names of
/// the rewound pass, failures).
fn telldir_run(r: &Path, dir: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    let p = r.join(dir);
    let mut ds = DirStream::open(&p);
    let mut first = Vec::new();
    loop {
        let pos = ds.tell();
        match ds.next() {
            Some((n, _)) => first.push((pos, n)),
            None => break,
        }
    }
    let mut failures = Vec::new();
    // Change the directory while the handle is open: a listing rebuilt
    // now would shift most positions.
    for i in 0..20 {
        std::fs::write(p.join(format!("created_meanwhile_{i}")), "n").unwrap();
        std::fs::remove_file(p.join(format!("victim_{i}"))).unwrap();
    }
    // Every handed-out offset still leads to the same entry (offset 0 is
    // the start: seeking there is a rewind, which rebuilds, so skip it).
    for (i, (pos, n)) in first.iter().enumerate().rev() {
        if *pos == 0 {
            continue;
        }
        ds.seek(*pos);
        let got = ds.next().map(|(n, _)| n);
        if got.as_ref() != Some(n) {
            failures.push(format!("seekdir to entry {i} gave {got:?}, want {n:?}"));
        }
    }
    // From the middle, the rest of the listing is the old one.
    let mid = first.len() / 2;
    ds.seek(first[mid].0);
    let tail = ds.rest();
    let want: Vec<String> = first[mid..].iter().map(|(_, n)| n.clone()).collect();
    if tail != want {
        failures.push(format!(
            "listing from entry {mid} changed: {} names, want {}",
            tail.len(),
            want.len()
        ));
    }
    // telldir after seekdir reports the offset seeked to.
    ds.seek(first[3].0);
    if ds.tell() != first[3].0 {
        failures.push("telldir after seekdir differs".into());
    }
    ds.rewind();
    let mut second = ds.rest();
    second.sort();
    let mut first: Vec<String> = first.into_iter().map(|(_, n)| n).collect();
    first.sort();
    (first, second, failures)
}

#[test]
fn readdir_offsets_stay_valid_on_an_open_handle_and_rewind_rebuilds() {
    if !twin_env() {
        return;
    }
    let up = (0..120).step_by(2).fold(layer(), |l, i| {
        l.file(format!("d/upper_entry_with_a_long_name_{i:04}"), "")
    });
    let low = (0..240)
        .fold(layer(), |l, i| {
            l.file(format!("d/lower_entry_with_a_long_name_{i:04}"), "")
        })
        .file("d/victim_0", "v");
    let low = (1..20).fold(low, |l, i| l.file(format!("d/victim_{i}"), "v"));
    let low2 = (0..60).fold(layer(), |l, i| l.file(format!("d/bottom_{i}"), ""));
    let twin = Twin::builder().upper(up).lower(low).lower(low2).mount();
    let (f, k) = twin.both(|r| telldir_run(r, "d"));
    assert!(f.2.is_empty(), "fuse: {:#?}", f.2);
    assert!(k.2.is_empty(), "kernel (harness check): {:#?}", k.2);
    assert_eq!(f.0, k.0, "first listing");
    assert_eq!(f.1, k.1, "listing after rewinddir");
    for i in 0..20 {
        assert!(f.0.contains(&format!("victim_{i}")));
        assert!(!f.0.contains(&format!("created_meanwhile_{i}")));
        assert!(f.1.contains(&format!("created_meanwhile_{i}")));
        assert!(!f.1.contains(&format!("victim_{i}")));
    }
    assert_eq!(f.0.len(), 2 + 60 + 240 + 20 + 60);
    assert_eq!(f.1.len(), f.0.len());
    twin.assert_same_view();
}

// ------------------------------------------------------------------ inodes

/// For every directory: (entry path, d_ino, st_ino by lstat) where they
/// differ; "." compared with the directory, ".." with its parent (not at
/// the mount root, whose parent is outside the mount).
fn d_ino_mismatches(r: &Path, dirs: &[String]) -> Vec<String> {
    let mut bad = Vec::new();
    for d in dirs {
        let dp = at(r, d);
        let mut ds = DirStream::open(&dp);
        while let Some((n, dino)) = ds.next() {
            let target = match n.as_str() {
                "." => dp.clone(),
                ".." if d == "." => continue,
                ".." => dp.parent().unwrap().to_path_buf(),
                _ => dp.join(&n),
            };
            let ino = probe_ino(&target);
            if ino != Ok(dino) {
                bad.push(format!("{d}/{n}: d_ino {dino} st_ino {ino:?}"));
            }
        }
    }
    bad
}

fn ino_layers() -> [Layer; 2] {
    [
        layer()
            .file("f", "f")
            .file("d/a", "a")
            .file("d/sub/b", "b")
            .symlink("s", "f")
            .fifo("p")
            .file("h1", "h")
            .hardlink("h2", "h1")
            .dir("m/top"),
        layer()
            .file("g", "g")
            .file("d/c", "c")
            .file("m/low", "l")
            .file("f", "shadowed")
            .dir("lowdir/x"),
    ]
}

#[test]
fn d_ino_equals_st_ino_for_every_entry() {
    if !twin_env() {
        return;
    }
    let twin = Twin::builder()
        .upper(layer().file("u", "u").file("m/up", "u").dir("d/updir"))
        .lowers(ino_layers())
        .mount();
    let f = assert_same_read_path(&twin, &[]);
    let dirs: Vec<String> = f
        .entries
        .iter()
        .filter(|(_, n)| matches!(n, Ok(n) if n.kind == Kind::Dir))
        .map(|(p, _)| p.clone())
        .collect();
    let (fb, kb) = twin.both(|r| d_ino_mismatches(r, &dirs));
    assert!(fb.is_empty(), "fuse d_ino != st_ino:\n{}", fb.join("\n"));
    assert!(kb.is_empty(), "kernel d_ino != st_ino:\n{}", kb.join("\n"));
    // Still true after copy-ups and a new name.
    twin.both(|r| {
        probe_chmod(&r.join("d/a"), 0o600).unwrap();
        probe_chmod(&r.join("m"), 0o700).unwrap();
        std::fs::write(r.join("d/new"), "n").unwrap();
    });
    let (fb, kb) = twin.both(|r| d_ino_mismatches(r, &dirs));
    assert!(fb.is_empty(), "fuse after copy-up:\n{}", fb.join("\n"));
    assert!(kb.is_empty(), "kernel after copy-up:\n{}", kb.join("\n"));
}

/// Paths sharing an st_ino, as sorted groups of two or more.
fn shared_inos(r: &Path, paths: &[String]) -> Vec<Vec<String>> {
    let mut by: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for p in paths {
        by.entry(probe_ino(&at(r, p)).unwrap())
            .or_default()
            .push(p.clone());
    }
    let mut v: Vec<Vec<String>> = by.into_values().filter(|g| g.len() > 1).collect();
    v.sort();
    v
}

fn all_inos(r: &Path, paths: &[String]) -> Vec<(String, Result<u64, i32>)> {
    paths
        .iter()
        .map(|p| (p.clone(), probe_ino(&at(r, p))))
        .collect()
}

#[test]
fn st_ino_is_unique_and_stable_across_stats_and_copy_up() {
    if !twin_env() {
        return;
    }
    let twin = Twin::new(ino_layers());
    let f = assert_same_read_path(&twin, &[]);
    let paths: Vec<String> = f.paths().into_iter().map(String::from).collect();
    // Unique, but for the two names of a lower hard link: two inodes with
    // one st_ino, in the kernel and in ovlfuse (whose node ids differ).
    let (groups, kgroups) = twin.both(|r| shared_inos(r, &paths));
    assert_eq!(kgroups, [vec!["h1".to_string(), "h2".to_string()]]);
    assert_eq!(groups, kgroups);
    let (before, kbefore) = twin.both(|r| all_inos(r, &paths));
    assert_eq!(
        twin.both(|r| all_inos(r, &paths)),
        (before.clone(), kbefore.clone())
    );
    // Forgotten inodes come back with the same numbers.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    assert!(twin.fuse_mnt().join("f").exists());
    assert_eq!(
        all_inos(twin.fuse_mnt(), &paths),
        before,
        "fuse after drop_caches"
    );
    // Copy-up by chmod (a file, a nested file and so its parents, a dir).
    for p in ["f", "d/sub/b", "m"] {
        let _ = assert_both_eq!(twin, |r| probe_chmod(&r.join(p), 0o700), "chmod {p}");
    }
    assert!(
        twin.fuse_upper().join("d/sub/b").exists(),
        "copy-up happened"
    );
    let (after, kafter) = twin.both(|r| all_inos(r, &paths));
    assert_eq!(after, before, "fuse st_ino changed by copy-up");
    assert_eq!(
        kafter, kbefore,
        "kernel st_ino changed by copy-up (harness check)"
    );
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    assert_eq!(
        all_inos(twin.fuse_mnt(), &paths),
        before,
        "fuse st_ino after copy-up and drop_caches"
    );
    twin.assert_same_view();
}

/// Copying up one name of a lower hard link (index=off) makes it a
/// separate file: the kernel then shows the other name unchanged (lower
/// mode, nlink 2, content) under its own st_ino.
#[test]
fn copy_up_of_one_hard_link_keeps_st_ino_unique() {
    if !twin_env() {
        return;
    }
    let twin = Twin::new(ino_layers());
    let f = assert_same_read_path(&twin, &[]);
    let paths: Vec<String> = f.paths().into_iter().map(String::from).collect();
    let _ = assert_both_eq!(twin, |r| probe_chmod(&r.join("h1"), 0o700));
    assert_same_read_path(&twin, &[]);
    let groups = assert_both_eq!(twin, |r| shared_inos(r, &paths), "paths sharing st_ino");
    assert!(groups.is_empty(), "{groups:?}");
    // And a write to the copied-up name does not show through the other.
    let _ = assert_both_eq!(twin, |r| probe_append(&r.join("h1"), b"+more"));
    let _ = assert_both_eq!(
        twin,
        |r| probe_read(&r.join("h2")),
        "read h2 after writing h1"
    );
    assert_same_read_path(&twin, &[]);
}

// ------------------------------------------------------------------ lower times

/// Names in directory `p`, listed through an O_NOATIME descriptor so that
/// looking does not itself change the directory's atime.
fn names_noatime(p: &Path) -> Vec<String> {
    let cp = sys::cpath(p);
    let fd = unsafe {
        libc::open(
            cp.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME | libc::O_CLOEXEC,
        )
    };
    assert!(
        fd >= 0,
        "open {}: {}",
        p.display(),
        errno_name(sys::errno())
    );
    let dir = unsafe { libc::fdopendir(fd) };
    assert!(!dir.is_null(), "fdopendir {}", p.display());
    let mut ds = DirStream(dir);
    let mut v: Vec<String> = ds
        .rest()
        .into_iter()
        .filter(|n| n != "." && n != "..")
        .collect();
    v.sort();
    v
}

/// Path -> (atime, mtime, ctime) as (seconds, nanoseconds).
type Times = BTreeMap<String, [(i64, i64); 3]>;

/// (atime, mtime, ctime) with nanoseconds of every object under `root`,
/// by lstat and O_NOATIME listings (which change none of them).
fn raw_times(root: &Path) -> Times {
    fn walk(root: &Path, rel: &Path, out: &mut Times) {
        let p = root.join(rel);
        let st = probe_lstat_raw(&p).unwrap();
        out.insert(
            rel.to_string_lossy().into_owned(),
            [
                (st.st_atime, st.st_atime_nsec),
                (st.st_mtime, st.st_mtime_nsec),
                (st.st_ctime, st.st_ctime_nsec),
            ],
        );
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            for n in names_noatime(&p) {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

/// Paths whose times differ between two `raw_times` maps.
fn changed_times(a: &Times, b: &Times) -> Vec<String> {
    let what = ["atime", "mtime", "ctime"];
    let mut out = Vec::new();
    for (p, x) in a {
        match b.get(p) {
            Some(y) if x == y => {}
            Some(y) => {
                for i in 0..3 {
                    if x[i] != y[i] {
                        out.push(format!("{p:?} {}", what[i]));
                    }
                }
            }
            None => out.push(format!("{p:?} gone")),
        }
    }
    out
}

/// Does this filesystem record atime on a plain read of a fresh file
/// (relatime does)? Without that the lower-time tests prove nothing.
fn atime_is_recorded() -> bool {
    let d = tempdir();
    let f = d.path().join("probe");
    std::fs::write(&f, "x").unwrap();
    let old = (1_000_000_000, 0);
    probe_utimens(&f, old, (1_000_000_100, 0)).unwrap();
    let _ = std::fs::read(&f).unwrap();
    probe_lstat_raw(&f).unwrap().st_atime != old.0
}

fn lower_times(twin: &Twin) -> (Vec<Times>, Vec<Times>) {
    (
        twin.fuse_lowers().iter().map(|l| raw_times(l)).collect(),
        twin.kern_lowers().iter().map(|l| raw_times(l)).collect(),
    )
}

fn lower_changes(before: &[Times], after: &[Times]) -> Vec<String> {
    before
        .iter()
        .zip(after)
        .enumerate()
        .flat_map(|(i, (a, b))| {
            changed_times(a, b)
                .into_iter()
                .map(move |c| format!("lower {i}: {c}"))
        })
        .collect()
}

#[test]
fn reading_files_and_listing_dirs_never_changes_lower_times() {
    if !twin_env() {
        return;
    }
    if !need(
        "the temp filesystem records atime on read (relatime or strictatime)",
        atime_is_recorded(),
    ) {
        return;
    }
    let twin = Twin::builder()
        .upper(layer().file("up", "u"))
        .lower(
            layer()
                .file("f", pattern(10_000, 1))
                .file("d/a", "a")
                .file("d/sub/b", "b")
                .xattr("d/a", "user.x", "1")
                .fifo("fifo"),
        )
        .lower(
            layer()
                .file("g", "g")
                .file("d/c", "c")
                .file("f", "shadowed")
                .file("only/deep/file", pattern(70_000, 2))
                .whiteout("d/wh"),
        )
        .mount();
    let before = lower_times(&twin);
    // Reads of every kind, twice (the second may come from caches).
    for _ in 0..2 {
        let (f, k) = twin.snapshots();
        assert_same_tree(&f, &k);
        twin.both(|r| {
            for p in ["f", "g", "d/a", "d/c", "d/sub/b", "only/deep/file"] {
                probe_read(&r.join(p)).unwrap();
                probe_pread(&r.join(p), 5, 100).unwrap();
                probe_getxattr(&r.join(p), "user.x").ok();
            }
            for p in [".", "d", "d/sub", "only", "only/deep"] {
                probe_readdir_typed(&at(r, p)).unwrap();
                probe_access(&at(r, p), libc::R_OK | libc::X_OK).unwrap();
            }
        });
    }
    let after = lower_times(&twin);
    let fuse = lower_changes(&before.0, &after.0);
    let kern = lower_changes(&before.1, &after.1);
    if !kern.is_empty() {
        eprintln!("note: the kernel overlay changed lower times: {kern:#?}");
    }
    assert!(fuse.is_empty(), "ovlfuse changed lower times: {fuse:#?}");
}

#[test]
fn readlink_never_changes_a_lower_symlinks_atime() {
    if !twin_env() {
        return;
    }
    if !need(
        "the temp filesystem records atime on read (relatime or strictatime)",
        atime_is_recorded(),
    ) {
        return;
    }
    let twin = Twin::new([
        layer()
            .symlink("s", "d/f")
            .symlink("d/rel", "f")
            .file("d/f", "x"),
        layer().symlink("low", "elsewhere"),
    ]);
    let before = lower_times(&twin);
    for p in ["s", "d/rel", "low"] {
        let _ = assert_both_eq!(twin, |r| probe_readlink(&r.join(p)), "readlink {p}");
    }
    // Following the link through a path walk reads it too.
    let _ = assert_both_eq!(twin, |r| probe_read(&r.join("s")));
    let after = lower_times(&twin);
    let fuse = lower_changes(&before.0, &after.0);
    let kern = lower_changes(&before.1, &after.1);
    assert_eq!(fuse, kern, "lower time changes: ovlfuse vs kernel");
    assert!(fuse.is_empty(), "ovlfuse changed lower times: {fuse:#?}");
}
