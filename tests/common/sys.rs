//! Thin libc wrappers shared by the other harness modules.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// errno of the last failed libc call on this thread.
pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

pub fn cpath(p: &Path) -> CString {
    cstr(p.as_os_str())
}

pub fn cstr(s: impl AsRef<OsStr>) -> CString {
    CString::new(s.as_ref().as_bytes()).expect("interior NUL byte in path or name")
}

/// Map a libc return value (< 0 means failure) to `Result<_, errno>`.
pub fn check<T: Copy + PartialOrd + Default>(ret: T) -> Result<T, i32> {
    if ret < T::default() {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Short symbolic name for an errno, for readable assertion messages.
pub fn errno_name(e: i32) -> &'static str {
    match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::ENXIO => "ENXIO",
        libc::E2BIG => "E2BIG",
        libc::EBADF => "EBADF",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EBUSY => "EBUSY",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENODEV => "ENODEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENFILE => "ENFILE",
        libc::EMFILE => "EMFILE",
        libc::ETXTBSY => "ETXTBSY",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EROFS => "EROFS",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::ENOTCONN => "ENOTCONN",
        libc::ESTALE => "ESTALE",
        libc::EDQUOT => "EDQUOT",
        _ => "E?",
    }
}

/// Read an xattr-style variable-length value, growing the buffer on ERANGE.
fn sized_read(
    mut call: impl FnMut(*mut libc::c_void, usize) -> libc::ssize_t,
) -> Result<Vec<u8>, i32> {
    loop {
        let need = check(call(std::ptr::null_mut(), 0))? as usize;
        let mut buf = vec![0u8; need.max(1)];
        match check(call(buf.as_mut_ptr().cast(), buf.len())) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf);
            }
            // Value grew between the two calls: ask again.
            Err(libc::ERANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

pub fn getxattr(p: &Path, name: &str, follow: bool) -> Result<Vec<u8>, i32> {
    let (cp, cn) = (cpath(p), cstr(name));
    sized_read(|buf, len| unsafe {
        if follow {
            libc::getxattr(cp.as_ptr(), cn.as_ptr(), buf, len)
        } else {
            libc::lgetxattr(cp.as_ptr(), cn.as_ptr(), buf, len)
        }
    })
}

/// Sorted xattr names.
pub fn listxattr(p: &Path, follow: bool) -> Result<Vec<String>, i32> {
    let cp = cpath(p);
    let raw = sized_read(|buf, len| unsafe {
        if follow {
            libc::listxattr(cp.as_ptr(), buf.cast(), len)
        } else {
            libc::llistxattr(cp.as_ptr(), buf.cast(), len)
        }
    })?;
    let mut names: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    names.sort();
    Ok(names)
}

pub fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32, follow: bool) -> Result<(), i32> {
    let (cp, cn) = (cpath(p), cstr(name));
    let ret = unsafe {
        if follow {
            libc::setxattr(
                cp.as_ptr(),
                cn.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        } else {
            libc::lsetxattr(
                cp.as_ptr(),
                cn.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                flags,
            )
        }
    };
    check(ret).map(|_| ())
}

pub fn removexattr(p: &Path, name: &str, follow: bool) -> Result<(), i32> {
    let (cp, cn) = (cpath(p), cstr(name));
    let ret = unsafe {
        if follow {
            libc::removexattr(cp.as_ptr(), cn.as_ptr())
        } else {
            libc::lremovexattr(cp.as_ptr(), cn.as_ptr())
        }
    };
    check(ret).map(|_| ())
}

pub fn mknod(p: &Path, mode: u32, major: u32, minor: u32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::mknod(cp.as_ptr(), mode, libc::makedev(major, minor)) }).map(|_| ())
}

pub fn lchown(p: &Path, uid: u32, gid: u32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::lchown(cp.as_ptr(), uid, gid) }).map(|_| ())
}

pub fn chmod(p: &Path, mode: u32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::chmod(cp.as_ptr(), mode) }).map(|_| ())
}

pub fn geteuid() -> u32 {
    unsafe { libc::geteuid() }
}
