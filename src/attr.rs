//! Attributes (the kernel's inode.c concern): getattr as the merged view
//! shows it, setattr with copy-up first, statfs.
//!
//! Rules served (OVERLAY-SEMANTICS "Inodes and attributes", "Copy-up"):
//! `st_ino` is the overlay's stable number; chmod, chown, utimes and
//! truncate of a lower object copy it up first; a merged directory reports
//! `nlink` 1 as the kernel does (its true count is unknowable cheaply).

use crate::copy_up::{self, CopyUp};
use crate::lookup::{Entry, split};
use crate::resolve::{self, Stat, TimeSet};
use crate::stack::Stack;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

/// The stat the merged view shows for an entry.
pub fn merged_stat(entry: &Entry) -> Stat {
    let mut st = entry.st;
    st.st_ino = entry.ino;
    if entry.is_dir() && entry.layers.len() > 1 {
        st.st_nlink = 1;
    }
    st
}

/// A setattr request; `None` fields are left alone.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: TimeSet,
    pub mtime: TimeSet,
}

/// Apply `sa` to the object at `path`, copying it up first. `open_fd` is an
/// upper fd the caller already holds (ftruncate through it).
pub fn setattr(
    stack: &Stack,
    path: &Path,
    entry: &Entry,
    sa: &SetAttr,
    open_fd: Option<BorrowedFd>,
) -> io::Result<Stat> {
    stack.upper_or_erofs()?;
    let data = sa.size != Some(0);
    let up = copy_up::copy_up(stack, path, entry, CopyUp { data })?;
    let dir = up.as_fd();
    let (_, name) = split(path);
    let name = name.as_os_str();
    if sa.uid.is_some() || sa.gid.is_some() {
        resolve::fchownat(
            dir,
            name,
            sa.uid.unwrap_or(u32::MAX),
            sa.gid.unwrap_or(u32::MAX),
        )?;
    }
    if let Some(m) = sa.mode {
        resolve::fchmodat(dir, name, m & 0o7777)?;
    }
    if let Some(size) = sa.size {
        match open_fd {
            Some(fd) => resolve::ftruncate(fd, size)?,
            None => {
                let fd = resolve::openat(dir, name, libc::O_WRONLY, 0)?;
                resolve::ftruncate(fd.as_fd(), size)?;
            }
        }
    }
    if sa.atime.is_some() || sa.mtime.is_some() {
        resolve::utimensat(dir, name, sa.atime, sa.mtime)?;
    }
    resolve::fstatat(dir, name)
}

/// Apply `sa` through an open upper fd: for an object with no name (an
/// O_TMPFILE file, or one unlinked while open).
pub fn setattr_fd(fd: BorrowedFd, sa: &SetAttr) -> io::Result<()> {
    if sa.uid.is_some() || sa.gid.is_some() {
        resolve::fchown(fd, sa.uid.unwrap_or(u32::MAX), sa.gid.unwrap_or(u32::MAX))?;
    }
    if let Some(m) = sa.mode {
        resolve::fchmod(fd, m & 0o7777)?;
    }
    if let Some(size) = sa.size {
        resolve::ftruncate(fd, size)?;
    }
    if sa.atime.is_some() || sa.mtime.is_some() {
        resolve::futimens(fd, sa.atime, sa.mtime)?;
    }
    Ok(())
}
