//! Stat and what setattr changes: owner, mode, times, inode flags; statfs.

use super::{Pinned, Stat, check, cstr, err, proc_path};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;

pub fn fstatat(dir: BorrowedFd, name: &OsStr) -> io::Result<Stat> {
    let c = cstr(name)?;
    // SAFETY: all-zero bytes are a valid `libc::stat` (integers only).
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed, open fd, a NUL-terminated name and `st`, writable, outlive the call.
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
    // SAFETY: all-zero bytes are a valid `libc::stat` (integers only).
    let mut st: Stat = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed, open fd and `st`, writable, outlive the call.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

pub fn fchownat(dir: BorrowedFd, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a borrowed, open fd and a NUL-terminated name that outlive the call.
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

/// chmod of the object an fd holds, O_PATH fds included.
pub fn chmod_fd(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: the /proc path is a NUL-terminated temporary that lives to the end of the statement.
    check(unsafe { libc::chmod(proc_path(fd, None)?.as_ptr(), mode) })?;
    Ok(())
}

pub fn fchmod(fd: BorrowedFd, mode: u32) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    check(unsafe { libc::fchmod(fd.as_raw_fd(), mode) })?;
    Ok(())
}

pub fn fchown(fd: BorrowedFd, uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    check(unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) })?;
    Ok(())
}

/// Times: `None` leaves a time alone, `Some(None)` sets it to now.
pub type TimeSet = Option<Option<libc::timespec>>;

pub(super) fn ts(t: TimeSet) -> libc::timespec {
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
    // SAFETY: a borrowed, open fd, a NUL-terminated name and two timespecs that outlive the call.
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
    // SAFETY: a borrowed, open fd and two timespecs that outlive the call.
    check(unsafe { libc::futimens(fd.as_raw_fd(), times.as_ptr()) })?;
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
    // SAFETY: `data` is `op.size()` bytes (checked above), as much as the ioctl reads or writes.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), op.cmd(), data.as_mut_ptr()) })?;
    Ok(())
}

pub fn fstatvfs(fd: BorrowedFd) -> io::Result<libc::statvfs> {
    // SAFETY: all-zero bytes are a valid `libc::statvfs` (integers only).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed, open fd and `st`, writable, outlive the call.
    check(unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Is `name` in `dir` the root of a mount (statx STATX_ATTR_MOUNT_ROOT)?
/// False where the kernel cannot tell (before 5.8).
pub fn is_mount_root(dir: BorrowedFd, name: &OsStr) -> io::Result<bool> {
    let c = cstr(name)?;
    // SAFETY: all-zero bytes are a valid `libc::statx` (integers only).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed, open fd, a NUL-terminated name and `stx`, writable, outlive the call.
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
    // SAFETY: all-zero bytes are a valid `libc::statfs` (integers only).
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and `st`, writable, outlive the call.
    check(unsafe { libc::statfs(c.as_ptr(), &mut st) })?;
    Ok(())
}
