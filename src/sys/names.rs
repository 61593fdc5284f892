//! Calls on one name in a directory: make, link, unlink, rename, readlink
//! (never following the name).

use super::{check, check_ssize, cstr, proc_path};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;

pub fn mkdirat(dir: BorrowedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a borrowed, open fd and a NUL-terminated name that outlive the call.
    check(unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), mode) })?;
    Ok(())
}

pub fn mknodat(dir: BorrowedFd, name: &OsStr, mode: u32, rdev: u64) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: a borrowed, open fd and a NUL-terminated name that outlive the call.
    check(unsafe { libc::mknodat(dir.as_raw_fd(), c.as_ptr(), mode, rdev) })?;
    Ok(())
}

pub fn symlinkat(target: &OsStr, dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let t = cstr(target)?;
    let c = cstr(name)?;
    // SAFETY: a borrowed, open fd and NUL-terminated strings that outlive the call.
    check(unsafe { libc::symlinkat(t.as_ptr(), dir.as_raw_fd(), c.as_ptr()) })?;
    Ok(())
}

pub fn linkat(odir: BorrowedFd, oname: &OsStr, ndir: BorrowedFd, nname: &OsStr) -> io::Result<()> {
    let o = cstr(oname)?;
    let n = cstr(nname)?;
    // SAFETY: borrowed, open fds and NUL-terminated names that outlive the call.
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
    // SAFETY: a NUL-terminated /proc path, a borrowed, open fd and a NUL-
    // terminated name, all outliving the call.
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
    // SAFETY: a borrowed, open fd and a NUL-terminated name that outlive the call.
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
    // SAFETY: borrowed, open fds and NUL-terminated names that outlive the call.
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
    // SAFETY: `buf` is writable for its length, which is what readlinkat is told.
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
