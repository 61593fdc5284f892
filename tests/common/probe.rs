//! Errno probes: run one operation on a path and return `Ok(value)` or
//! `Err(errno)`, so results from ovlfuse and the kernel compare with `==`.

use std::ffi::CStr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::sys::{self, check, cpath, cstr};
use super::tree::Kind;

/// The comparable part of a stat: no inode, device or times. size and nlink
/// are None for directories, as in tree snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatInfo {
    pub kind: Kind,
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
    pub nlink: Option<u64>,
    pub rdev: Option<(u32, u32)>,
}

impl StatInfo {
    pub fn from_stat(st: &libc::stat) -> StatInfo {
        let kind = Kind::from_mode(st.st_mode);
        let is_dir = kind == Kind::Dir;
        let dev = matches!(kind, Kind::CharDev | Kind::BlockDev);
        StatInfo {
            kind,
            perm: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: (!is_dir).then_some(st.st_size as u64),
            nlink: (!is_dir).then_some(st.st_nlink),
            rdev: dev.then(|| (libc::major(st.st_rdev), libc::minor(st.st_rdev))),
        }
    }
}

/// Full stat (follows symlinks) including st_ino, st_dev and times.
pub fn probe_stat_raw(p: &Path) -> Result<libc::stat, i32> {
    let cp = cpath(p);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::stat(cp.as_ptr(), &mut st) })?;
    Ok(st)
}

/// Full lstat including st_ino, st_dev and times.
pub fn probe_lstat_raw(p: &Path) -> Result<libc::stat, i32> {
    let cp = cpath(p);
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::lstat(cp.as_ptr(), &mut st) })?;
    Ok(st)
}

pub fn probe_stat(p: &Path) -> Result<StatInfo, i32> {
    probe_stat_raw(p).map(|st| StatInfo::from_stat(&st))
}

/// Permission bits (with setuid/setgid/sticky) through statx asking for
/// the mode alone: a FUSE mount answers that from its cache unless the
/// mode itself was invalidated, as exec reads it, where stat(2) asks for
/// the size too and would refresh a stale mode.
pub fn probe_cached_perm(p: &Path) -> Result<u32, i32> {
    let cp = cpath(p);
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    check(unsafe { libc::statx(libc::AT_FDCWD, cp.as_ptr(), 0, libc::STATX_MODE, &mut stx) })?;
    Ok(u32::from(stx.stx_mode) & 0o7777)
}

pub fn probe_lstat(p: &Path) -> Result<StatInfo, i32> {
    probe_lstat_raw(p).map(|st| StatInfo::from_stat(&st))
}

fn open_fd(p: &Path, flags: i32, mode: u32) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    let cp = cpath(p);
    let fd = check(unsafe { libc::open(cp.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// open(2) then close; O_CREAT uses mode 0644 (minus umask).
pub fn probe_open(p: &Path, flags: i32) -> Result<(), i32> {
    open_fd(p, flags, 0o644).map(|_| ())
}

pub fn probe_open_mode(p: &Path, flags: i32, mode: u32) -> Result<(), i32> {
    open_fd(p, flags, mode).map(|_| ())
}

/// Whole content via open(O_RDONLY) + read.
pub fn probe_read(p: &Path) -> Result<Vec<u8>, i32> {
    std::fs::read(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// Sorted (name, d_type) of every entry readdir returns, "." and ".." included.
pub fn probe_readdir_typed(p: &Path) -> Result<Vec<(String, u8)>, i32> {
    let cp = cpath(p);
    let dir = unsafe { libc::opendir(cp.as_ptr()) };
    if dir.is_null() {
        return Err(sys::errno());
    }
    let mut out = Vec::new();
    let res = loop {
        // readdir signals errors only through errno.
        unsafe { *libc::__errno_location() = 0 };
        let ent = unsafe { libc::readdir(dir) };
        if ent.is_null() {
            let e = sys::errno();
            break if e == 0 { Ok(()) } else { Err(e) };
        }
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        out.push((name.to_string_lossy().into_owned(), unsafe {
            (*ent).d_type
        }));
    };
    unsafe { libc::closedir(dir) };
    res?;
    out.sort();
    Ok(out)
}

/// Sorted names readdir returns, "." and ".." included.
pub fn probe_readdir(p: &Path) -> Result<Vec<String>, i32> {
    probe_readdir_typed(p).map(|v| v.into_iter().map(|(n, _)| n).collect())
}

pub fn probe_readlink(p: &Path) -> Result<PathBuf, i32> {
    std::fs::read_link(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

pub fn probe_getxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    sys::getxattr(p, name, true)
}

pub fn probe_lgetxattr(p: &Path, name: &str) -> Result<Vec<u8>, i32> {
    sys::getxattr(p, name, false)
}

/// Sorted names.
pub fn probe_listxattr(p: &Path) -> Result<Vec<String>, i32> {
    sys::listxattr(p, true)
}

pub fn probe_llistxattr(p: &Path) -> Result<Vec<String>, i32> {
    sys::listxattr(p, false)
}

pub fn probe_setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    sys::setxattr(p, name, value, flags, true)
}

pub fn probe_lsetxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<(), i32> {
    sys::setxattr(p, name, value, flags, false)
}

pub fn probe_removexattr(p: &Path, name: &str) -> Result<(), i32> {
    sys::removexattr(p, name, true)
}

pub fn probe_lremovexattr(p: &Path, name: &str) -> Result<(), i32> {
    sys::removexattr(p, name, false)
}

/// access(2) with R_OK/W_OK/X_OK/F_OK bits.
pub fn probe_access(p: &Path, mode: i32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::access(cp.as_ptr(), mode) }).map(|_| ())
}

/// open(O_CREAT|O_EXCL|O_WRONLY, mode) then close.
pub fn probe_create(p: &Path, mode: u32) -> Result<(), i32> {
    open_fd(p, libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY, mode).map(|_| ())
}

pub fn probe_mkdir(p: &Path, mode: u32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::mkdir(cp.as_ptr(), mode) }).map(|_| ())
}

/// mknod with a full mode (type | permissions) and device numbers.
pub fn probe_mknod(p: &Path, mode: u32, major: u32, minor: u32) -> Result<(), i32> {
    sys::mknod(p, mode, major, minor)
}

pub fn probe_unlink(p: &Path) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::unlink(cp.as_ptr()) }).map(|_| ())
}

pub fn probe_rmdir(p: &Path) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::rmdir(cp.as_ptr()) }).map(|_| ())
}

/// renameat2 via the raw syscall; flags are libc::RENAME_NOREPLACE,
/// RENAME_EXCHANGE, RENAME_WHITEOUT or 0.
pub fn probe_rename(old: &Path, new: &Path, flags: u32) -> Result<(), i32> {
    let (co, cn) = (cpath(old), cpath(new));
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD as libc::c_long,
            co.as_ptr(),
            libc::AT_FDCWD as libc::c_long,
            cn.as_ptr(),
            flags as libc::c_long,
        )
    };
    check(ret).map(|_| ())
}

/// link(existing, new).
pub fn probe_link(existing: &Path, new: &Path) -> Result<(), i32> {
    let (ce, cn) = (cpath(existing), cpath(new));
    check(unsafe { libc::link(ce.as_ptr(), cn.as_ptr()) }).map(|_| ())
}

/// symlink(target, linkpath).
pub fn probe_symlink(target: impl AsRef<Path>, link: &Path) -> Result<(), i32> {
    let (ct, cl) = (cstr(target.as_ref()), cpath(link));
    check(unsafe { libc::symlink(ct.as_ptr(), cl.as_ptr()) }).map(|_| ())
}

pub fn probe_chmod(p: &Path, mode: u32) -> Result<(), i32> {
    sys::chmod(p, mode)
}

/// chown (follows symlinks); pass u32::MAX to leave an id unchanged.
pub fn probe_chown(p: &Path, uid: u32, gid: u32) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::chown(cp.as_ptr(), uid, gid) }).map(|_| ())
}

pub fn probe_lchown(p: &Path, uid: u32, gid: u32) -> Result<(), i32> {
    sys::lchown(p, uid, gid)
}

pub fn probe_truncate(p: &Path, len: u64) -> Result<(), i32> {
    let cp = cpath(p);
    check(unsafe { libc::truncate(cp.as_ptr(), len as libc::off_t) }).map(|_| ())
}

/// utimensat with explicit (seconds, nanoseconds) for atime and mtime.
pub fn probe_utimens(p: &Path, atime: (i64, i64), mtime: (i64, i64)) -> Result<(), i32> {
    let cp = cpath(p);
    let ts = [
        libc::timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        libc::timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    ];
    check(unsafe { libc::utimensat(libc::AT_FDCWD, cp.as_ptr(), ts.as_ptr(), 0) }).map(|_| ())
}

/// open(O_WRONLY) + pwrite at `offset`; returns bytes written.
pub fn probe_write_at(p: &Path, offset: u64, data: &[u8]) -> Result<usize, i32> {
    use std::os::fd::AsRawFd;
    let fd = open_fd(p, libc::O_WRONLY, 0)?;
    let n = unsafe {
        libc::pwrite(
            fd.as_raw_fd(),
            data.as_ptr().cast(),
            data.len(),
            offset as libc::off_t,
        )
    };
    check(n).map(|n| n as usize)
}

/// open(O_WRONLY|O_APPEND) + write; returns bytes written.
pub fn probe_append(p: &Path, data: &[u8]) -> Result<usize, i32> {
    use std::os::fd::AsRawFd;
    let fd = open_fd(p, libc::O_WRONLY | libc::O_APPEND, 0)?;
    let n = unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) };
    check(n).map(|n| n as usize)
}

/// st_ino as seen through `p` (lstat), for stability checks.
pub fn probe_ino(p: &Path) -> Result<u64, i32> {
    std::fs::symlink_metadata(p)
        .map(|m| m.ino())
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))
}

/// A POSIX ACL in the kernel's xattr format: (tag, perm, id) entries.
pub fn posix_acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}
