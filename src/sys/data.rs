//! File data: read, write, sync, allocate, seek, and the copy primitives
//! copy-up uses (FICLONE, copy_file_range, splice through a pipe); flock.

use super::{check, check_ssize};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

pub fn ftruncate(fd: BorrowedFd, size: u64) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) })?;
    Ok(())
}

pub fn fsync(fd: BorrowedFd, datasync: bool) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    check(unsafe {
        if datasync {
            libc::fdatasync(fd.as_raw_fd())
        } else {
            libc::fsync(fd.as_raw_fd())
        }
    })?;
    Ok(())
}

pub fn fallocate(fd: BorrowedFd, mode: i32, offset: u64, len: u64) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
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

/// Fill `buf` from `offset`, short only at end of file; the bytes read.
pub fn pread_full(fd: BorrowedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match pread(fd, &mut buf[got..], offset + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(got)
}

pub fn pread(fd: BorrowedFd, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    // SAFETY: `buf` is writable for its length, which is what pread is told.
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
    // SAFETY: `buf` is readable for its length, which is what pwrite is told.
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
    // SAFETY: a borrowed, open fd; no memory is passed.
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
    // SAFETY: two borrowed, open fds; FICLONE takes the source fd by value.
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
    // SAFETY: two borrowed fds and two offsets borrowed mutably for the call.
    check_ssize(unsafe {
        libc::copy_file_range(src.as_raw_fd(), off_in, dst.as_raw_fd(), off_out, len, 0)
    })
}

/// A pipe (read end, write end) for moving file data with splice(2).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both fds are new and owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Ask for a pipe of `bytes` capacity; returns what the kernel granted.
pub fn set_pipe_size(fd: BorrowedFd, bytes: usize) -> io::Result<usize> {
    let n =
        // SAFETY: a borrowed, open fd; no memory is passed.
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
    // SAFETY: two borrowed fds; each offset is null or borrowed mutably for the call.
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

pub fn flock(fd: BorrowedFd, op: i32) -> io::Result<()> {
    // SAFETY: a borrowed, open fd; no memory is passed.
    check(unsafe { libc::flock(fd.as_raw_fd(), op) })?;
    Ok(())
}
