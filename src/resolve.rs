//! Fd-relative, no-follow access to the objects inside one layer.
//!
//! Rule served (Standards): the daemon never follows a symlink inside a layer
//! while resolving a path. Directories are opened with openat2
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` relative to the layer's root fd
//! (with a component-by-component `O_NOFOLLOW` walk where openat2 is missing),
//! and every final component is touched with `*at(..., AT_SYMLINK_NOFOLLOW)`
//! or `O_NOFOLLOW`. All unsafe libc calls of the crate live here.

use crate::options::Atime;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub type Stat = libc::stat;

fn cstr(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_ssize(ret: isize) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

pub fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

pub fn err(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

/// Open a path (absolute, outside any layer) as given by the user.
pub fn open_path(path: &Path, flags: i32) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let fd = check(unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC) })?;
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
    let n = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// openat of a single name, never following a final symlink.
pub fn openat(dir: BorrowedFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    if let Some(r) = openat2(dir, &c, flags | libc::O_NOFOLLOW, mode, RESOLVE_NO_XDEV) {
        return r;
    }
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    })?;
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

pub fn fstatat(dir: BorrowedFd, name: &OsStr) -> io::Result<Stat> {
    let c = cstr(name)?;
    let mut st: Stat = unsafe { std::mem::zeroed() };
    check(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(st)
}

pub fn fstat(fd: BorrowedFd) -> io::Result<Stat> {
    let mut st: Stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn mkdirat(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, rdev) })?;
    Ok(())
}

pub fn symlinkat(target: &OsStr, dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })?;
    Ok(())
}

pub fn linkat(odir: BorrowedFd, oname: &OsStr, ndir: BorrowedFd, nname: &OsStr) -> io::Result<()> {
    let o = cstr(oname)?;
    let n = cstr(nname)?;
    check(unsafe {
        libc::linkat(
            odir.as_raw_fd(),
            o.as_ptr(),
            ndir.as_raw_fd(),
            n.as_ptr(),
            0,
        )
    })?;
    Ok(())
}

/// Give the object an fd holds (an O_TMPFILE file, say) a name. Through
/// its /proc link: AT_EMPTY_PATH would need CAP_DAC_READ_SEARCH.
pub fn link_fd(fd: BorrowedFd, ndir: BorrowedFd, nname: &OsStr) -> io::Result<()> {
    let o = proc_path(fd, None)?;
    let n = cstr(nname)?;
    check(unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            o.as_ptr(),
            ndir.as_raw_fd(),
            n.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    })?;
    Ok(())
}

pub fn unlinkat(dir: BorrowedFd, name: &OsStr, is_dir: bool) -> io::Result<()> {
    let c = cstr(name)?;
    let flags = if is_dir { libc::AT_REMOVEDIR } else { 0 };
    check(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), flags) })?;
    Ok(())
}

pub const RENAME_NOREPLACE: u32 = 1;
pub const RENAME_EXCHANGE: u32 = 2;
pub const RENAME_WHITEOUT: u32 = 4;

pub fn renameat2(
    odir: BorrowedFd,
    oname: &OsStr,
    ndir: BorrowedFd,
    nname: &OsStr,
    flags: u32,
) -> io::Result<()> {
    let o = cstr(oname)?;
    let n = cstr(nname)?;
    check(unsafe {
        libc::renameat2(
            odir.as_raw_fd(),
            o.as_ptr(),
            ndir.as_raw_fd(),
            n.as_ptr(),
            flags,
        )
    })?;
    Ok(())
}

pub fn readlinkat(dir: BorrowedFd, name: &OsStr) -> io::Result<OsString> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    let n = check_ssize(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            c.as_ptr(),
            buf.as_mut_ptr() as *mut libc::c_char,
            buf.len(),
        )
    })?;
    buf.truncate(n);
    Ok(OsString::from_vec(buf))
}

pub fn fchownat(dir: BorrowedFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    check(unsafe {
        libc::fchownat(
            dir.as_raw_fd(),
            c.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// chmod of an entry without following it (symlinks have no mode to
/// change): through a pin, so a symlink swapped in after the check is
/// never followed.
pub fn fchmodat(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    Pinned::at(dir, name)?.chmod(mode)
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

/// chmod of the object an fd holds, O_PATH fds included.
pub fn chmod_fd(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    check(unsafe { libc::chmod(proc_path(fd, None)?.as_ptr(), mode) })?;
    Ok(())
}

pub fn fchmod(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    Ok(())
}

pub fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// Times: `None` leaves a time alone, `Some(None)` sets it to now.
pub type TimeSet = Option<Option<libc::timespec>>;

fn ts(t: TimeSet) -> libc::timespec {
    match t {
        None => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        Some(None) => libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        Some(Some(t)) => t,
    }
}

pub fn utimensat(dir: BorrowedFd, name: &OsStr, atime: TimeSet, mtime: TimeSet) -> io::Result<()> {
    let c = cstr(name)?;
    let times = [ts(atime), ts(mtime)];
    check(unsafe {
        libc::utimensat(
            dir.as_raw_fd(),
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

pub fn futimens(fd: BorrowedFd, atime: TimeSet, mtime: TimeSet) -> io::Result<()> {
    let times = [ts(atime), ts(mtime)];
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
    Ok(())
}

pub fn ftruncate(fd: BorrowedFd, size: u64) -> io::Result<()> {
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    Ok(())
}

pub fn fsync(fd: BorrowedFd, datasync: bool) -> io::Result<()> {
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })?;
    Ok(())
}

/// _IOR('X', 31, struct fsxattr) and _IOW('X', 32, ...); libc lacks them.
const FS_IOC_FSGETXATTR: libc::Ioctl = 0x801c_581f;
const FS_IOC_FSSETXATTR: libc::Ioctl = 0x401c_5820;

/// The inode-flag ioctls (`lsattr`/`chattr`, and the fsxattr pair the
/// kernel's fileattr code uses to read the old flags before a change).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlagsIoctl {
    GetFlags,
    SetFlags,
    GetFsxattr,
    SetFsxattr,
}

impl FlagsIoctl {
    pub fn from_cmd(cmd: u32) -> Option<Self> {
        let cmd = libc::c_ulong::from(cmd);
        [
            (libc::FS_IOC_GETFLAGS as libc::c_ulong, FlagsIoctl::GetFlags),
            (libc::FS_IOC_SETFLAGS as libc::c_ulong, FlagsIoctl::SetFlags),
            (FS_IOC_FSGETXATTR as libc::c_ulong, FlagsIoctl::GetFsxattr),
            (FS_IOC_FSSETXATTR as libc::c_ulong, FlagsIoctl::SetFsxattr),
        ]
        .into_iter()
        .find_map(|(c, op)| (c == cmd).then_some(op))
    }

    /// Bytes each way: an int for the flags (whatever the ioctl number's
    /// size says), a struct fsxattr for the others.
    pub fn size(self) -> usize {
        match self {
            FlagsIoctl::GetFlags | FlagsIoctl::SetFlags => std::mem::size_of::<libc::c_int>(),
            _ => 28,
        }
    }

    pub fn sets(self) -> bool {
        matches!(self, FlagsIoctl::SetFlags | FlagsIoctl::SetFsxattr)
    }

    fn cmd(self) -> libc::Ioctl {
        match self {
            FlagsIoctl::GetFlags => libc::FS_IOC_GETFLAGS,
            FlagsIoctl::SetFlags => libc::FS_IOC_SETFLAGS,
            FlagsIoctl::GetFsxattr => FS_IOC_FSGETXATTR,
            FlagsIoctl::SetFsxattr => FS_IOC_FSSETXATTR,
        }
    }
}

/// Run `op` on `fd` with `data` in (a set) or out (a get); `data` is
/// `op.size()` bytes, so the kernel never reads or writes past it.
pub fn flags_ioctl(fd: BorrowedFd, op: FlagsIoctl, data: &mut [u8]) -> io::Result<()> {
    if data.len() != op.size() {
        return Err(err(libc::EINVAL));
    }
    check(unsafe { libc::ioctl(fd.as_raw_fd(), op.cmd(), data.as_mut_ptr()) })?;
    Ok(())
}

pub fn fallocate(fd: BorrowedFd, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    check(unsafe {
        libc::fallocate(
            fd.as_raw_fd(),
            mode,
            offset as libc::off_t,
            len as libc::off_t,
        )
    })?;
    Ok(())
}

/// Read up to `len` bytes at `offset` into a new buffer, short only at end
/// of file. The buffer is not zeroed first: for 128 KiB reads that memset
/// costs about as much as the copy itself.
pub fn pread_full(fd: BorrowedFd, len: usize, offset: u64) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        let n = check_ssize(unsafe {
            libc::pread(
                fd.as_raw_fd(),
                spare.as_mut_ptr() as *mut libc::c_void,
                spare.len(),
                (offset + buf.len() as u64) as libc::off_t,
            )
        })?;
        if n == 0 {
            break;
        }
        // SAFETY: pread initialised the first n bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
    }
    Ok(buf)
}

pub fn pread(fd: BorrowedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    check_ssize(unsafe {
        libc::pread(
            fd.as_raw_fd(),
            buf.as_mut_ptr() as *mut libc::c_void,
            buf.len(),
            offset as libc::off_t,
        )
    })
}

pub fn pwrite(fd: BorrowedFd, buf: &[u8], offset: u64) -> io::Result<usize> {
    check_ssize(unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            buf.as_ptr() as *const libc::c_void,
            buf.len(),
            offset as libc::off_t,
        )
    })
}

pub fn lseek(fd: BorrowedFd, offset: i64, whence: i32) -> io::Result<i64> {
    let r = unsafe { libc::lseek(fd.as_raw_fd(), offset, whence) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Reflink the whole of `src` into `dst` (FICLONE).
pub fn ficlone(dst: BorrowedFd, src: BorrowedFd) -> io::Result<()> {
    const FICLONE: libc::c_ulong = 0x4004_9409;
    check(unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE, src.as_raw_fd()) })?;
    Ok(())
}

pub fn copy_file_range(
    src: BorrowedFd,
    off_in: &mut i64,
    dst: BorrowedFd,
    off_out: &mut i64,
    len: usize,
) -> io::Result<usize> {
    check_ssize(unsafe {
        libc::copy_file_range(src.as_raw_fd(), off_in, dst.as_raw_fd(), off_out, len, 0)
    })
}

/// A pipe (read end, write end) for moving file data with splice(2).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Ask for a pipe of `bytes` capacity; returns what the kernel granted.
pub fn set_pipe_size(fd: BorrowedFd, bytes: usize) -> io::Result<usize> {
    let n =
        check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) })?;
    Ok(n as usize)
}

/// splice(2) between a file (at an offset) and a pipe (`None`).
pub fn splice(
    from: BorrowedFd,
    off_in: Option<&mut i64>,
    to: BorrowedFd,
    off_out: Option<&mut i64>,
    len: usize,
) -> io::Result<usize> {
    let ptr = |o: Option<&mut i64>| o.map_or(std::ptr::null_mut(), |r| r as *mut i64);
    check_ssize(unsafe {
        libc::splice(
            from.as_raw_fd(),
            ptr(off_in),
            to.as_raw_fd(),
            ptr(off_out),
            len,
            0,
        )
    })
}

pub fn fstatvfs(fd: BorrowedFd) -> io::Result<libc::statvfs> {
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn flock(fd: BorrowedFd, op: i32) -> io::Result<()> {
    check(unsafe { libc::flock(fd.as_raw_fd(), op) })?;
    Ok(())
}

/// A `/proc/self/fd/N[/name]` path: lets the path-based xattr and chmod calls
/// reach an object we hold an fd for (or a name in a directory we hold) while
/// the `l*` variants keep the final component unfollowed.
fn proc_path(dir: BorrowedFd, name: Option<&OsStr>) -> io::Result<CString> {
    let mut s = format!("/proc/self/fd/{}", dir.as_raw_fd()).into_bytes();
    if let Some(n) = name {
        s.push(b'/');
        s.extend_from_slice(n.as_bytes());
    }
    CString::new(s).map_err(|_| err(libc::EINVAL))
}

/// Where an xattr call lands: a name in a directory, or the object an fd
/// holds (an O_PATH fd works too).
#[derive(Clone, Copy)]
pub enum XTarget<'a> {
    At(BorrowedFd<'a>, &'a OsStr),
    Fd(BorrowedFd<'a>),
}

impl XTarget<'_> {
    fn path(&self) -> io::Result<(CString, bool)> {
        match *self {
            XTarget::At(d, n) => Ok((proc_path(d, Some(n))?, true)),
            XTarget::Fd(f) => Ok((proc_path(f, None)?, false)),
        }
    }

    /// Run an xattr call: `at(dirfd, name, at_flags)` through the *xattrat
    /// system calls where the kernel has them, else `legacy(path,
    /// nofollow)` on the /proc path (a path walk through procfs that cost
    /// several microseconds a call in profiles).
    fn call(
        &self,
        at: impl Fn(libc::c_int, &CStr, libc::c_uint) -> libc::c_long,
        legacy: impl Fn(&CStr, bool) -> isize,
    ) -> io::Result<usize> {
        if !NO_XATTRAT.load(Ordering::Relaxed) {
            let (fd, name, flags) = match *self {
                XTarget::At(d, n) => (d.as_raw_fd(), cstr(n)?, libc::AT_SYMLINK_NOFOLLOW as u32),
                // "." under a directory fd is the directory (AT_EMPTY_PATH
                // refuses O_PATH fds); other objects take the /proc path.
                XTarget::Fd(f) => (f.as_raw_fd(), c".".to_owned(), 0),
            };
            let r = at(fd, &name, flags);
            if r >= 0 {
                return Ok(r as usize);
            }
            let e = io::Error::last_os_error();
            match errno(&e) {
                libc::ENOSYS => NO_XATTRAT.store(true, Ordering::Relaxed),
                libc::ENOTDIR if matches!(self, XTarget::Fd(_)) => {}
                // "." needs search permission on the directory, which its
                // owner may have taken away (chmod 600): the /proc path
                // reaches it without, as the owner's own call would.
                libc::EACCES if matches!(self, XTarget::Fd(_)) => {}
                _ => return Err(e),
            }
        }
        let (p, nofollow) = self.path()?;
        let r = legacy(&p, nofollow);
        if r >= 0 {
            Ok(r as usize)
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// The *xattrat calls (Linux 6.13), numbered alike on every architecture.
const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;
/// Set once a kernel says it has no *xattrat calls.
static NO_XATTRAT: AtomicBool = AtomicBool::new(false);

/// The kernel's `struct xattr_args`.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

/// getxattrat or setxattrat (`nr`): the two that pass the value in a
/// `struct xattr_args`.
fn xattrat_with_value(
    nr: libc::c_long,
    fd: libc::c_int,
    path: &CStr,
    at_flags: libc::c_uint,
    name: &CStr,
    mut args: XattrArgs,
) -> libc::c_long {
    let size = std::mem::size_of::<XattrArgs>();
    let a = &mut args as *mut XattrArgs;
    unsafe { libc::syscall(nr, fd, path.as_ptr(), at_flags, name.as_ptr(), a, size) }
}

/// One value: `Ok(len)`, ERANGE when `buf` is too small.
fn getxattr_into(t: XTarget, n: &CStr, buf: &mut [u8]) -> io::Result<usize> {
    let ptr = buf.as_mut_ptr() as *mut libc::c_void;
    t.call(
        |fd, path, flags| {
            let value = XattrArgs {
                value: ptr as u64,
                size: buf.len() as u32,
                flags: 0,
            };
            xattrat_with_value(SYS_GETXATTRAT, fd, path, flags, n, value)
        },
        |p, nofollow| unsafe {
            if nofollow {
                libc::lgetxattr(p.as_ptr(), n.as_ptr(), ptr, buf.len())
            } else {
                libc::getxattr(p.as_ptr(), n.as_ptr(), ptr, buf.len())
            }
        },
    )
}

pub fn getxattr(t: XTarget, name: &OsStr) -> io::Result<Vec<u8>> {
    let n = cstr(name)?;
    let mut buf = vec![0u8; 256];
    loop {
        match getxattr_into(t, &n, &mut buf) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            Err(e) if errno(&e) == libc::ERANGE && buf.len() < 65536 => buf.resize(65536, 0),
            Err(e) => return Err(e),
        }
    }
}

/// All xattr names of the object (NUL separated parsed into a list).
pub fn listxattr(t: XTarget) -> io::Result<Vec<OsString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        let ptr = buf.as_mut_ptr() as *mut libc::c_char;
        let len = buf.len();
        let r = t.call(
            |fd, path, flags| unsafe {
                libc::syscall(SYS_LISTXATTRAT, fd, path.as_ptr(), flags, ptr, len)
            },
            |p, nofollow| unsafe {
                if nofollow {
                    libc::llistxattr(p.as_ptr(), ptr, len)
                } else {
                    libc::listxattr(p.as_ptr(), ptr, len)
                }
            },
        );
        match r {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| OsString::from_vec(s.to_vec()))
                    .collect());
            }
            Err(e) if errno(&e) == libc::ERANGE && buf.len() < 1 << 20 => {
                let len = buf.len() * 8;
                buf.resize(len, 0);
            }
            Err(e) => return Err(e),
        }
    }
}

pub fn setxattr(t: XTarget, name: &OsStr, value: &[u8], flags: i32) -> io::Result<()> {
    let n = cstr(name)?;
    let v = value.as_ptr() as *const libc::c_void;
    t.call(
        |fd, path, at_flags| {
            let args = XattrArgs {
                value: v as u64,
                size: value.len() as u32,
                flags: flags as u32,
            };
            xattrat_with_value(SYS_SETXATTRAT, fd, path, at_flags, &n, args)
        },
        |p, nofollow| unsafe {
            (if nofollow {
                libc::lsetxattr(p.as_ptr(), n.as_ptr(), v, value.len(), flags)
            } else {
                libc::setxattr(p.as_ptr(), n.as_ptr(), v, value.len(), flags)
            }) as isize
        },
    )?;
    Ok(())
}

pub fn removexattr(t: XTarget, name: &OsStr) -> io::Result<()> {
    let n = cstr(name)?;
    t.call(
        |fd, path, flags| unsafe {
            libc::syscall(SYS_REMOVEXATTRAT, fd, path.as_ptr(), flags, n.as_ptr())
        },
        |p, nofollow| unsafe {
            (if nofollow {
                libc::lremovexattr(p.as_ptr(), n.as_ptr())
            } else {
                libc::removexattr(p.as_ptr(), n.as_ptr())
            }) as isize
        },
    )?;
    Ok(())
}

/// One raw directory entry.
pub struct RawDirent {
    pub name: OsString,
    pub ino: u64,
    pub dtype: u8,
}

/// One small getdents64 on `dir`: the kernel then applies the atime rule
/// of `dir`'s mount (and O_NOATIME) as for any listing.
pub fn touch_listing(dir: BorrowedFd) -> io::Result<()> {
    getdents64(dir, &mut [0u8; 512]).map(|_| ())
}

/// One getdents64 into `buf`: the bytes of records it filled (0 at the end).
fn getdents64(dir: BorrowedFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = unsafe {
        libc::syscall(
            libc::SYS_getdents64,
            dir.as_raw_fd(),
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Read every entry of a directory (without `.` and `..`). Straight
/// getdents64 on the fd: fdopendir would add an fstat and two fcntls to
/// every listing.
pub fn read_dir_fd(dir: OwnedFd) -> io::Result<Vec<RawDirent>> {
    // Offsets of the fields of struct linux_dirent64.
    const RECLEN: usize = 16;
    const TYPE: usize = 18;
    const NAME: usize = 19;
    let mut buf = vec![0u8; 32 << 10];
    let mut out = Vec::new();
    loop {
        let n = getdents64(dir.as_fd_b(), &mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        let mut off = 0;
        while off < n {
            let rec = &buf[off..n];
            let reclen = match rec.get(RECLEN..RECLEN + 2) {
                Some(r) => u16::from_ne_bytes([r[0], r[1]]) as usize,
                None => 0,
            };
            if reclen <= NAME || reclen > rec.len() {
                // Never from a sane kernel; stop rather than loop or panic.
                return Err(err(libc::EIO));
            }
            let ino = u64::from_ne_bytes(rec[..8].try_into().expect("8 bytes"));
            let name = &rec[NAME..reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                out.push(RawDirent {
                    name: OsString::from_vec(name.to_vec()),
                    ino,
                    dtype: rec[TYPE],
                });
            }
            off += reclen;
        }
    }
}

/// A private, detached, read-only and noatime clone of the mount holding
/// `path` (root only): lower layers served through it can be neither
/// written nor have their atime touched, not even by readlink.
pub fn open_frozen_tree(path: &Path) -> io::Result<OwnedFd> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    clone_tree(path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME)
}

const MOUNT_ATTR_NOATIME: u64 = 0x10;

/// A private, detached clone of the mount holding `path` (root only) whose
/// atime flags are the mount's rule: the kernel then applies that rule to
/// every read, exec and listing of the upper, passed-through I/O included,
/// as the kernel overlayfs applies its own mount's rule to its upper clone.
pub fn open_atime_tree(path: &Path, atime: Atime, nodiratime: bool) -> io::Result<OwnedFd> {
    const MOUNT_ATTR_RELATIME: u64 = 0;
    const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
    const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
    let mut set = match atime {
        Atime::Relative => MOUNT_ATTR_RELATIME,
        Atime::Strict => MOUNT_ATTR_STRICTATIME,
        Atime::Never => MOUNT_ATTR_NOATIME,
    };
    if nodiratime {
        set |= MOUNT_ATTR_NODIRATIME;
    }
    clone_tree(path, set)
}

/// open_tree(OPEN_TREE_CLONE) of `path` (no submounts), its atime flags
/// replaced and `attr_set` set.
fn clone_tree(path: &Path, attr_set: u64) -> io::Result<OwnedFd> {
    const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
    const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let fd = open_tree_clone(path)?;
    let attr = MountAttr {
        attr_set,
        attr_clr: MOUNT_ATTR_ATIME_MASK | MOUNT_ATTR_NODIRATIME,
        propagation: 0,
        userns_fd: 0,
    };
    let empty = c"";
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// A private, detached clone of the mount holding `path`, rooted there,
/// without the mounts below it (no AT_RECURSIVE), as the kernel overlayfs
/// takes of each layer. Needs CAP_SYS_ADMIN.
pub fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    let c = cstr(path.as_os_str())?;
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as u32,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Is `name` in `dir` the root of a mount (statx STATX_ATTR_MOUNT_ROOT)?
/// False where the kernel cannot tell (before 5.8).
pub fn is_mount_root(dir: BorrowedFd, name: &OsStr) -> io::Result<bool> {
    let c = cstr(name)?;
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    check(unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW | libc::AT_NO_AUTOMOUNT,
            0,
            &mut stx,
        )
    })?;
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok(stx.stx_attributes_mask & bit != 0 && stx.stx_attributes & bit != 0)
}

/// statfs(2) of a path: every call reaches the filesystem (no cache), so
/// it tells a live FUSE mount from a dead one (ENOTCONN).
pub fn statfs_path(path: &Path) -> io::Result<()> {
    let c = cstr(path.as_os_str())?;
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(())
}

/// Hand freed heap memory back to the system (glibc keeps it otherwise).
pub fn trim_heap() {
    unsafe { libc::malloc_trim(0) };
}

/// mount(2) with MS_REMOUNT on `target`, changing its flags.
pub fn remount(target: &Path, flags: libc::c_ulong) -> io::Result<()> {
    let t = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| err(libc::EINVAL))?;
    // SAFETY: `t` is a valid C string for the call; null source, type and
    // data are allowed for a remount.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            t.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether this process runs in the initial user namespace, whose uid_map
/// maps every id to itself.
pub fn in_initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

pub fn geteuid() -> u32 {
    unsafe { libc::geteuid() }
}

pub fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

pub fn is_reg(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

pub fn is_lnk(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// Switch this thread's filesystem uid/gid (used to create objects as the
/// caller); returns the previous values.
pub fn set_fs_ids(uid: u32, gid: u32) -> (u32, u32) {
    let og = unsafe { libc::setfsgid(gid) } as u32;
    let ou = unsafe { libc::setfsuid(uid) } as u32;
    (ou, og)
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    }
}

/// Open the object an fd holds anew, with `flags` (through /proc: the
/// object may have no name).
pub fn reopen(fd: BorrowedFd, flags: i32) -> io::Result<OwnedFd> {
    let p = proc_path(fd, None)?;
    let n = check(unsafe { libc::open(p.as_ptr(), flags | libc::O_CLOEXEC) })?;
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Best-effort: raise our open-file limit to the hard maximum (open handles
/// are fds).
pub fn raise_nofile() {
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 && rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
}
