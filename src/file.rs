//! Open files (the kernel's file.c concern): which layer an open reaches,
//! copy-up on open for write, a read-only lower handle following a later
//! copy-up, which open files may be passed through to the kernel, and what
//! an fsync of a directory reaches.
//!
//! Rules served (docs/semantics.md "Copy-up"): an open
//! for writing (or with `O_TRUNC`) copies a lower file up first (its data
//! too, unless truncated) and opens the upper copy; a read-only open uses
//! the topmost file as it is. A read-only handle on a lower file follows a
//! later copy-up (as the kernel's overlayfs does since 4.19): it notices
//! the copy-up generation moved and reopens the upper copy. Only files open
//! in the upper layer are passed through. Only regular files are opened,
//! through a pin ([`sys::Pinned`]): a FIFO or device swapped in answers
//! ESTALE.

use crate::attr::{self, KillPrivs, SetAttr};
use crate::copy_up::{self, CopyUp};
use crate::lookup::Entry;
use crate::stack::Stack;
use crate::sys::{self, Stat};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One open file: the real fd in the layer that served the open.
#[derive(Debug)]
pub struct OpenFile {
    pub ino: u64,
    pub fd: RwLock<OwnedFd>,
    pub in_upper: AtomicBool,
    /// Copy-up generation when the fd was (re)opened.
    pub seen_gen: AtomicU64,
    pub flags: i32,
}

impl OpenFile {
    /// Keep `fd`, opened with `flags` for the node `ino`.
    pub fn new(stack: &Stack, ino: u64, fd: OwnedFd, in_upper: bool, flags: i32) -> OpenFile {
        OpenFile {
            ino,
            fd: RwLock::new(fd),
            in_upper: AtomicBool::new(in_upper),
            seen_gen: AtomicU64::new(stack.copyup_gen.load(Ordering::Acquire)),
            flags,
        }
    }

    /// A read-only lower handle follows a copy-up made after it was opened.
    /// `locate` finds the node now: its parent's path, its name, its entry
    /// (None: gone, and the handle keeps what it has).
    pub fn follow_copy_up(
        &self,
        stack: &Stack,
        locate: impl FnOnce() -> Option<(PathBuf, OsString, Entry)>,
    ) -> io::Result<()> {
        if self.in_upper.load(Ordering::Acquire) {
            return Ok(());
        }
        let g = stack.copyup_gen.load(Ordering::Acquire);
        if self.seen_gen.swap(g, Ordering::AcqRel) == g {
            return Ok(());
        }
        let Some((parent_path, name, e)) = locate() else {
            return Ok(());
        };
        if e.in_upper(stack) {
            let dir = stack.dir(0, &parent_path)?;
            let fd = open_file(
                dir.as_fd(),
                &name,
                libc::O_RDONLY,
                spare_atime(stack, true),
                Some(e.st.st_ino),
            )?;
            *self.fd.write().unwrap_or_else(|p| p.into_inner()) = fd;
            self.in_upper.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Open the file anew with the open flags `flags` (for a file with no
    /// name, through /proc).
    pub fn reopen(&self, flags: i32) -> io::Result<OwnedFd> {
        let cur = self.fd.read().unwrap_or_else(|p| p.into_inner());
        sys::reopen(cur.as_fd(), kept_flags(flags))
    }

    /// setattr through the fd, for a file with no name (O_TMPFILE, or
    /// unlinked). `kill`, asked with the file's mode and gid, says which
    /// of setuid/setgid to clear.
    pub fn setattr_unnamed(
        &self,
        stack: &Stack,
        mut sa: SetAttr,
        kill: Option<&dyn Fn(u32, u32) -> KillPrivs>,
    ) -> io::Result<Stat> {
        stack.upper_or_erofs()?;
        let fd = self.fd.read().unwrap_or_else(|p| p.into_inner());
        if let Some(kill) = kill {
            let st = sys::fstat(fd.as_fd())?;
            sa.kill_privs = kill(st.st_mode, st.st_gid);
        }
        let sa = &sa;
        if sa.size.is_some() && self.flags & libc::O_ACCMODE == libc::O_RDONLY {
            // truncate(2) needs a writable file; the handle found may not be.
            let w = sys::reopen(fd.as_fd(), libc::O_WRONLY)?;
            attr::setattr_fd(w.as_fd(), sa)?;
        } else {
            attr::setattr_fd(fd.as_fd(), sa)?;
        }
        let mut st = sys::fstat(fd.as_fd())?;
        st.st_ino = self.ino;
        Ok(st)
    }
}

/// Whether an open file may be passed straight to the kernel (FUSE
/// passthrough): upper files only. A lower file never is: a read-only
/// handle must follow a later copy-up, which a backing file cannot.
pub fn may_pass_through(in_upper: bool) -> bool {
    in_upper
}

/// The flags of an open that reach the layer's file.
fn kept_flags(flags: i32) -> i32 {
    flags & (libc::O_ACCMODE | libc::O_APPEND | libc::O_TRUNC | libc::O_SYNC | libc::O_DSYNC)
}

/// What an open of a named file got.
pub struct Opened {
    pub fd: OwnedFd,
    pub in_upper: bool,
    /// Opened for writing (copied up first where it was lower).
    pub write: bool,
    /// `O_TRUNC` emptied it: setuid/setgid may be the caller's to clear.
    pub truncated: bool,
}

/// Open the regular file `e`, whose path in the overlay is `path` (in the
/// directory `parent`, as `name`), with the open flags `flags`: copied up
/// first when the open writes.
pub fn open(
    stack: &Stack,
    path: &Path,
    parent: &Path,
    name: &OsStr,
    e: &Entry,
    flags: i32,
) -> io::Result<Opened> {
    let acc = flags & libc::O_ACCMODE;
    let write = acc != libc::O_RDONLY || flags & libc::O_TRUNC != 0;
    let keep = kept_flags(flags);
    if write {
        let trunc = flags & libc::O_TRUNC != 0;
        let up = copy_up::copy_up(stack, path, e, CopyUp { data: !trunc })?;
        let was = e.in_upper(stack).then_some(e.st.st_ino);
        let spare = spare_atime(stack, true);
        let fd = open_file(up.as_fd(), name, keep, spare, was)?;
        Ok(Opened {
            fd,
            in_upper: true,
            write,
            truncated: trunc,
        })
    } else {
        let (dir, name) = e.top_dir(stack, parent, name)?;
        let upper = e.in_upper(stack);
        let spare = spare_atime(stack, upper);
        let fd = open_file(dir.as_fd(), &name, keep, spare, Some(e.st.st_ino))?;
        Ok(Opened {
            fd,
            in_upper: upper,
            write,
            truncated: false,
        })
    }
}

/// fsync of the merged directory at `path`: only its upper directory can
/// hold unsynced changes (lowers are never written); where it has none, or
/// cannot be opened, there is nothing to sync.
pub fn fsync_dir(stack: &Stack, path: &Path) -> io::Result<()> {
    if stack.has_upper
        && let Ok(d) = stack.dir(0, path)
        && let Ok(fd) = sys::openat(
            d.as_fd(),
            OsStr::new("."),
            libc::O_RDONLY | libc::O_DIRECTORY,
            0,
        )
    {
        sys::fsync(fd.as_fd(), false)?;
    }
    Ok(())
}

/// Whether to open a layer file O_NOATIME: a lower one always (the
/// kernel never moves a lower's atime), an upper one where the mount's
/// rule says never; otherwise reads, passed through or not, and exec
/// move its atime as the mount's rule says.
fn spare_atime(stack: &Stack, upper: bool) -> bool {
    !upper || stack.atime_never(false)
}

/// Open the regular file `name` in `dir` for a FUSE OPEN (which the kernel
/// sends for regular files only): pinned first, so a FIFO swapped in never
/// blocks an event loop and a device is never opened (both: ESTALE); with
/// `spare_atime`, O_NOATIME (lower files always, upper ones where the
/// mount's rule says never, see [`spare_atime`]).
/// `ino`: the real inode the lookup found there, where it is still the
/// one to open (no copy-up since); another one answers ESTALE too.
fn open_file(
    dir: BorrowedFd,
    name: &OsStr,
    flags: i32,
    spare_atime: bool,
    ino: Option<u64>,
) -> io::Result<OwnedFd> {
    let obj = sys::Pinned::expect(dir, name, libc::S_IFREG)?;
    if ino.is_some_and(|i| i != obj.st.st_ino) {
        return Err(sys::err(sys::STALE));
    }
    if spare_atime {
        obj.open_noatime(flags)
    } else {
        obj.open(flags)
    }
}
