//! Extended attribute calls, by name or by fd, through the *xattrat calls
//! where the kernel has them.

use super::{cstr, errno, proc_path};
use std::ffi::{CStr, CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStringExt;
use std::sync::atomic::{AtomicBool, Ordering};

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
    // SAFETY: `path` and `name` are NUL-terminated and `args` a `struct
    // xattr_args` of the size given, whose value pointer and size the callers set
    // to a live buffer; all outlive the call.
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
        // SAFETY: `p` and `n` are NUL-terminated; `ptr` is `buf`, writable for the length given.
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
            // SAFETY: `path` is NUL-terminated; `ptr` is `buf`, writable for `len`.
            |fd, path, flags| unsafe {
                libc::syscall(SYS_LISTXATTRAT, fd, path.as_ptr(), flags, ptr, len)
            },
            // SAFETY: `p` is NUL-terminated; `ptr` is `buf`, writable for `len`.
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
        // SAFETY: `p` and `n` are NUL-terminated; `v` is `value`, readable for its length.
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
        // SAFETY: `path` and `n` are NUL-terminated and outlive the call.
        |fd, path, flags| unsafe {
            libc::syscall(SYS_REMOVEXATTRAT, fd, path.as_ptr(), flags, n.as_ptr())
        },
        // SAFETY: `p` and `n` are NUL-terminated and outlive the call.
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
