//! Fd-relative, no-follow access to the objects inside one layer.
//!
//! Rule served (Standards): the daemon never follows a symlink inside a layer
//! while resolving a path. Directories are opened with openat2
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV` relative to the
//! layer's root fd (with a component-by-component `O_NOFOLLOW` walk where
//! openat2 is missing), and every final component is touched with
//! `*at(..., AT_SYMLINK_NOFOLLOW)`, `O_NOFOLLOW` or through a [`Pinned`] fd.

use super::{
    Stat, TimeSet, XTarget, check, chmod_fd, cstr, err, errno, fstat, is_dir, is_lnk, is_reg,
    proc_path, readlinkat, ts,
};
use std::ffi::{CStr, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Open a path (absolute, outside any layer) as given by the user.
pub fn open_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded: the fd is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}
const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_SYMLINKS: u64 = 0x04;
const RESOLVE_BENEATH: u64 = 0x08;

/// openat2(2), or None on a kernel without it (remembered). Every open
/// inside a layer goes through here with `RESOLVE_NO_XDEV`: a mount found
/// inside a layer is never crossed (the kernel overlayfs works on a private
/// clone of each layer's mount, which has none), so nothing through the
/// overlay can reach what is mounted there.
fn openat2(
    dir: BorrowedFd,
    path: &CStr,
    flags: i32,
    mode: u32,
    resolve: u64,
) -> Option<io::Result<OwnedFd>> {
    if NO_OPENAT2.load(Ordering::Relaxed) {
        return None;
    }
    let mut flags = flags | libc::O_CLOEXEC;
    // openat2 refuses what openat ignores: flags beside O_PATH, a mode
    // without O_CREAT/O_TMPFILE, type bits in the mode.
    if flags & libc::O_PATH != 0 {
        flags &= libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    }
    let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
    let how = OpenHow {
        flags: flags as u64,
        mode: if creates { (mode & 0o7777) as u64 } else { 0 },
        resolve,
    };
    // SAFETY: `dir` is open, `path` NUL-terminated and `how` a `struct open_how`
    // of the size given; all outlive the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if ret >= 0 {
        // SAFETY: openat2 succeeded: the fd is new and owned by nothing else.
        return Some(Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) }));
    }
    let e = io::Error::last_os_error();
    if errno(&e) != libc::ENOSYS {
        return Some(Err(e));
    }
    NO_OPENAT2.store(true, Ordering::Relaxed);
    None
}

/// The longest path one openat2 takes (PATH_MAX counts the NUL).
const PATH_CHUNK: usize = libc::PATH_MAX as usize - 1;

/// Open `rel` (relative, may be empty for the root itself) beneath `root`
/// without following any symlink, without leaving `root` and without
/// crossing a mount (see [`openat2`]). Depth does not
/// matter: a path longer than openat2 takes is walked in chunks, each
/// opened with the same flags beneath the directory the previous one
/// reached (so no chunk can leave it, nor follow a symlink).
pub fn open_beneath(root: BorrowedFd, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
    let bytes = rel.as_os_str().as_bytes();
    if bytes.len() > PATH_CHUNK {
        // Cut at the last '/' that leaves a head openat2 takes; names are
        // at most 255 bytes, so there is one.
        let cut = bytes[..=PATH_CHUNK]
            .iter()
            .rposition(|b| *b == b'/')
            .filter(|c| *c > 0)
            .ok_or_else(|| err(libc::ENAMETOOLONG))?;
        let head = Path::new(OsStr::from_bytes(&bytes[..cut]));
        let tail = Path::new(OsStr::from_bytes(&bytes[cut + 1..]));
        let mid = open_beneath(root, head, libc::O_PATH | libc::O_DIRECTORY)?;
        return open_beneath(mid.as_fd_b(), tail, flags);
    }
    let rel_os = if rel.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        rel.as_os_str()
    };
    let c = cstr(rel_os)?;
    let resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    if let Some(r) = openat2(root, &c, flags | libc::O_NOFOLLOW, 0, resolve) {
        return r;
    }
    // Fallback: walk one component at a time, refusing `..` and symlinks.
    let mut cur = dup(root)?;
    let comps: Vec<&OsStr> = rel
        .iter()
        .filter(|c| !c.is_empty() && *c != OsStr::new("."))
        .collect();
    for (i, c) in comps.iter().enumerate() {
        if *c == OsStr::new("..") || c.as_bytes().contains(&b'/') {
            return Err(err(libc::EXDEV));
        }
        let last = i + 1 == comps.len();
        let f = if last {
            flags
        } else {
            libc::O_PATH | libc::O_DIRECTORY
        };
        cur = openat(cur.as_fd_b(), c, f | libc::O_NOFOLLOW, 0)?;
    }
    if comps.is_empty() {
        return openat(root, OsStr::new("."), flags | libc::O_NOFOLLOW, 0);
    }
    Ok(cur)
}

trait AsFdB {
    fn as_fd_b(&self) -> BorrowedFd<'_>;
}
impl AsFdB for OwnedFd {
    fn as_fd_b(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.as_fd()
    }
}

/// Open a directory beneath root for use as a `*at` anchor.
pub fn open_dir(root: BorrowedFd, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, rel, libc::O_PATH | libc::O_DIRECTORY)
}

pub fn dup(fd: BorrowedFd) -> io::Result<OwnedFd> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    // SAFETY: fcntl succeeded: the fd is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// openat of a single name, never following a final symlink.
pub fn openat(dir: BorrowedFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    if let Some(r) = openat2(dir, &c, flags | libc::O_NOFOLLOW, mode, RESOLVE_NO_XDEV) {
        return r;
    }
    // SAFETY: a borrowed, open fd and a NUL-terminated name that outlive the call.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
    // SAFETY: openat succeeded: the fd is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Open a lower-layer object for reading without touching its atime where
/// the kernel lets us (owner or CAP_FOWNER).
pub fn open_noatime(dir: BorrowedFd, name: &OsStr, flags: i32) -> io::Result<OwnedFd> {
    match openat(dir, name, flags | libc::O_NOATIME, 0) {
        Err(e) if errno(&e) == libc::EPERM => openat(dir, name, flags, 0),
        r => r,
    }
}

/// What answers an object found to be of another type than the lookup
/// said (a FIFO, device or symlink swapped in behind the daemon): the
/// layer changed under us, as the kernel overlayfs says when a layer's
/// object no longer matches what it knew.
pub const STALE: i32 = libc::ESTALE;

/// One object of a layer, held by an O_PATH fd opened without following
/// its name, with its stat. Every call on it acts on this inode, whatever
/// the name comes to mean: a symlink, FIFO or device swapped in behind the
/// daemon never receives a chmod, an open or I/O meant for the object.
/// Opening O_PATH never blocks and runs no device's open.
pub struct Pinned {
    fd: OwnedFd,
    pub st: Stat,
}

impl Pinned {
    pub fn at(dir: BorrowedFd, name: &OsStr) -> io::Result<Pinned> {
        let fd = openat(dir, name, libc::O_PATH, 0)?;
        let st = fstat(fd.as_fd_b())?;
        Ok(Pinned { fd, st })
    }

    /// `at`, answering [`STALE`] unless the object has the type of `mode`.
    pub fn expect(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<Pinned> {
        let p = Pinned::at(dir, name)?;
        if p.st.st_mode & libc::S_IFMT != mode & libc::S_IFMT {
            return Err(err(STALE));
        }
        Ok(p)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd_b()
    }

    /// Open the pinned regular file for I/O (through /proc: this inode, no
    /// walk in the layer). Anything else answers [`STALE`]: no I/O ever
    /// reaches a device or FIFO found where a file was.
    pub fn open(&self, flags: i32) -> io::Result<OwnedFd> {
        if !is_reg(&self.st) {
            return Err(err(STALE));
        }
        reopen(self.fd(), flags & !(libc::O_CREAT | libc::O_EXCL))
    }

    /// The pinned regular file or directory opened read-only for an ioctl
    /// (inode flags): anything else answers [`STALE`], so no device's open
    /// or ioctl ever runs.
    pub fn open_for_ioctl(&self) -> io::Result<OwnedFd> {
        if is_dir(&self.st) {
            reopen(
                self.fd(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME,
            )
            .or_else(|_| reopen(self.fd(), libc::O_RDONLY | libc::O_DIRECTORY))
        } else {
            self.open_noatime(libc::O_RDONLY | libc::O_NOCTTY)
        }
    }

    /// `open` without touching the atime where the kernel lets us.
    pub fn open_noatime(&self, flags: i32) -> io::Result<OwnedFd> {
        match self.open(flags | libc::O_NOATIME) {
            Err(e) if errno(&e) == libc::EPERM => self.open(flags),
            r => r,
        }
    }

    pub fn chown(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: our own open fd and an empty C string (AT_EMPTY_PATH: the fd itself).
        check(unsafe {
            libc::fchownat(
                self.fd.as_raw_fd(),
                c"".as_ptr(),
                uid,
                gid,
                libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        Ok(())
    }

    /// chmod; a symlink has no mode (EOPNOTSUPP, as fchmodat's nofollow).
    /// /proc's link of a non-symlink lands on exactly this inode.
    pub fn chmod(&self, mode: u32) -> io::Result<()> {
        if is_lnk(&self.st) {
            return Err(err(libc::EOPNOTSUPP));
        }
        chmod_fd(self.fd(), mode)
    }

    pub fn utimens(&self, atime: TimeSet, mtime: TimeSet) -> io::Result<()> {
        let times = [ts(atime), ts(mtime)];
        let flags = libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW;
        // SAFETY: our own open fd, an empty C string (AT_EMPTY_PATH) and two
        // timespecs, all outliving the call.
        check(unsafe {
            libc::utimensat(self.fd.as_raw_fd(), c"".as_ptr(), times.as_ptr(), flags)
        })?;
        Ok(())
    }

    pub fn readlink(&self) -> io::Result<OsString> {
        readlinkat(self.fd(), OsStr::new(""))
    }

    /// Where xattr calls on this object land. A symlink is reached by its
    /// name (`dir`, `name`; the xattr calls cannot take an O_PATH fd and
    /// /proc would follow it), never followed, so never outside the layer.
    pub fn xattrs<'a>(&'a self, dir: BorrowedFd<'a>, name: &'a OsStr) -> XTarget<'a> {
        if is_lnk(&self.st) {
            XTarget::At(dir, name)
        } else {
            XTarget::Fd(self.fd())
        }
    }

    pub fn stat(&self) -> io::Result<Stat> {
        fstat(self.fd())
    }
}

/// Open the object an fd holds anew, with `flags` (through /proc: the
/// object may have no name).
pub fn reopen(fd: BorrowedFd, flags: i32) -> io::Result<OwnedFd> {
    let p = proc_path(fd, None)?;
    // SAFETY: `p` is a NUL-terminated /proc path that outlives the call.
    let n = check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded: the fd is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}
