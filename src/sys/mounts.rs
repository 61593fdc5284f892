//! Mount clones (open_tree, mount_setattr) and remounts.

use super::{cstr, err};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

/// A private, detached, read-only and noatime clone of the mount holding
/// `path` (root only): lower layers served through it can be neither
/// written nor have their atime touched, not even by readlink.
pub fn open_frozen_tree(path: &Path) -> io::Result<OwnedFd> {
    const MOUNT_ATTR_RDONLY: u64 = 0x1;
    clone_tree(path, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOATIME)
}

/// The atime flags of mount_setattr(2), for [`open_atime_tree`].
pub const MOUNT_ATTR_RELATIME: u64 = 0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// A private, detached clone of the mount holding `path` (root only) whose
/// atime flags are `atime` (the `MOUNT_ATTR_*` above): the mount's rule,
/// which the kernel then applies to every read, exec and listing of the
/// upper, passed-through I/O included, as the kernel overlayfs applies its
/// own mount's rule to its upper clone.
pub fn open_atime_tree(path: &Path, atime: u64) -> io::Result<OwnedFd> {
    clone_tree(path, atime)
}

/// open_tree(OPEN_TREE_CLONE) of `path` (no submounts), its atime flags
/// replaced and `attr_set` set.
fn clone_tree(path: &Path, attr_set: u64) -> io::Result<OwnedFd> {
    const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
    let fd = open_tree_clone(path)?;
    mount_setattr(
        fd.as_fd(),
        attr_set,
        MOUNT_ATTR_ATIME_MASK | MOUNT_ATTR_NODIRATIME,
        None,
    )?;
    Ok(fd)
}

/// mount_setattr(2)'s attribute that makes a mount idmapped (with the
/// mapping of `userns` in [`mount_setattr`]).
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// mount_setattr(2) on the (detached) mount `fd`: set `set`, clear `clr`,
/// and with [`MOUNT_ATTR_IDMAP`] take the mapping of the user namespace
/// `userns`.
pub fn mount_setattr(
    fd: std::os::fd::BorrowedFd,
    set: u64,
    clr: u64,
    userns: Option<std::os::fd::BorrowedFd>,
) -> io::Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        propagation: 0,
        userns_fd: userns.map_or(0, |u| u.as_raw_fd() as u64),
    };
    let empty = c"";
    // SAFETY: `fd` is open, the path is an empty C string and `attr` a `struct
    // mount_attr` of the size given; all outlive the call.
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
    Ok(())
}

/// A private, detached clone of the mount holding `path`, rooted there,
/// without the mounts below it (no AT_RECURSIVE), as the kernel overlayfs
/// takes of each layer. Needs CAP_SYS_ADMIN.
pub fn open_tree_clone(path: &Path) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: u32 = 1;
    let c = cstr(path.as_os_str())?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
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
    // SAFETY: open_tree succeeded: the fd is new and owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
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

/// The id of the mount holding `fd` (statx STATX_MNT_ID), where the
/// kernel tells it.
pub fn mount_id(fd: std::os::fd::BorrowedFd) -> Option<u64> {
    // SAFETY: all-zero bytes are a valid `libc::statx` (integers only).
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: a borrowed, open fd, an empty C string (AT_EMPTY_PATH: the fd
    // itself) and `stx`, writable, outlive the call.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    (r == 0 && stx.stx_mask & libc::STATX_MNT_ID != 0).then_some(stx.stx_mnt_id)
}

/// The ids of this namespace's idmapped mounts (mount_setattr's
/// MOUNT_ATTR_IDMAP: the kernel shows their ids through a mapping), from
/// /proc/self/mountinfo, read once for all layers; empty where unknown. A
/// detached clone is in no list.
pub fn idmapped_mount_ids() -> Vec<u64> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let idmapped = f.get(5)?.split(',').any(|x| x == "idmapped");
            idmapped.then(|| f.first()?.parse().ok()).flatten()
        })
        .collect()
}
