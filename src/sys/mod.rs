//! Thin wrappers over the system calls the crate makes, one file per kind:
//! `resolve.rs` (fd-relative, no-follow opens inside a layer, [`Pinned`]
//! objects), `names.rs` (making, linking, renaming, unlinking entries),
//! `stat.rs` (stat, owner, mode, times, inode flags, statfs), `data.rs`
//! (file data, flock), `xattr.rs`, `dir.rs` (listings) and `mounts.rs`
//! (mount clones, remounts); process-wide helpers sit here. Everything is
//! re-exported flat (`sys::openat`). It imports nothing from the rest of
//! the crate. Nearly all of the crate's unsafe code is here (the rest:
//! process setup in `mount.rs`, the adapter's zeroed stat, `main.rs`).

mod data;
mod dir;
mod mounts;
mod names;
mod resolve;
mod stat;
mod xattr;

pub use data::*;
pub use dir::*;
pub use mounts::*;
pub use names::*;
pub use resolve::*;
pub use stat::*;
pub use xattr::*;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

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

/// Hand freed heap memory back to the system (glibc keeps it otherwise).
pub fn trim_heap() {
    // SAFETY: malloc_trim only returns free heap pages to the system.
    unsafe { libc::malloc_trim(0) };
}

/// Whether this process runs in the initial user namespace, whose uid_map
/// maps every id to itself.
pub fn in_initial_user_ns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"])
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
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
    // SAFETY: setfsgid and setfsuid change this thread's ids only and touch no memory.
    let og = unsafe { libc::setfsgid(gid) } as u32;
    // SAFETY: as above.
    let ou = unsafe { libc::setfsuid(uid) } as u32;
    (ou, og)
}

/// The soft limit on open files.
pub fn nofile_limit() -> u64 {
    // SAFETY: all-zero bytes are a valid `libc::rlimit` (integers only).
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is valid for writing for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    }
}

/// Best-effort: raise our open-file limit to the hard maximum (open handles
/// are fds).
pub fn raise_nofile() {
    // SAFETY: all-zero bytes are a valid `libc::rlimit` (integers only).
    let mut rl: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `rl` is valid for writing for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 && rl.rlim_cur < rl.rlim_max {
        rl.rlim_cur = rl.rlim_max;
        // SAFETY: `rl` is valid for reading for the call.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) };
    }
}
