//! Directory listings, read with getdents64.

use super::err;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;

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
    // SAFETY: `buf` is writable for its length, which is what getdents64 is told.
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
        let n = getdents64(dir.as_fd(), &mut buf)?;
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
