//! Copy-up (the kernel's copy_up.c concern).
//!
//! Rules served (docs/semantics.md "Copy-up"): parents first (directories
//! with mode, owner, xattrs and times); the copy is built under
//! workdir/work: data (FICLONE, else splice through a pipe hole by hole,
//! else copy_file_range, else read/write), then owner, mode, xattrs, times
//! last; fsync unless `volatile`; then renamed into the upper directory,
//! so a crash leaves no copy or a complete one. Racing copy-ups of one path
//! serialise on a lock stripe and the loser finds the winner's copy. The
//! overlay inode number carries over to the upper object.

use crate::dircache::DirFd;
use crate::lookup::{self, Entry, split};
use crate::markers;
use crate::perms;
use crate::stack::Stack;
use crate::sys::{self, Pinned, XTarget};
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

/// Copy every xattr except the overlay's private ones, each value as
/// `stored` makes it; an xattr the upper filesystem or our privileges
/// refuse is skipped, as the kernel does for unsupported names.
pub fn copy_xattrs(
    src: XTarget,
    dst: XTarget,
    stored: impl Fn(&OsStr, Vec<u8>) -> Vec<u8>,
) -> io::Result<()> {
    let names = match sys::listxattr(src) {
        Ok(n) => n,
        Err(e) if matches!(sys::errno(&e), libc::EOPNOTSUPP | libc::EPERM) => return Ok(()),
        Err(e) => return Err(e),
    };
    for n in names {
        if markers::is_private_xattr(&n) {
            continue;
        }
        let v = match sys::getxattr(src, &n) {
            Ok(v) => stored(&n, v),
            Err(e) if sys::errno(&e) == libc::ENODATA => continue,
            Err(e) => return Err(e),
        };
        match sys::setxattr(dst, &n, &v, 0) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    sys::errno(&e),
                    libc::EPERM | libc::EOPNOTSUPP | libc::EACCES
                ) =>
            {
                tracing::debug!(xattr = ?n, "copy-up skipped an xattr the upper refuses");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn timespec(sec: i64, nsec: i64) -> sys::TimeSet {
    Some(Some(libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }))
}

/// Owner where permitted: an unprivileged daemon keeps its own ownership.
fn chown_maybe(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if sys::errno(&e) == libc::EPERM && sys::geteuid() != 0 => Ok(()),
        r => r,
    }
}

/// The new object in workdir/work that copy_meta finishes: a regular file
/// open for writing, or anything else pinned (never reached by its name
/// again, so nothing swapped in there receives what is meant for it).
#[derive(Clone, Copy)]
enum Dst<'a> {
    File(BorrowedFd<'a>),
    Obj(&'a Pinned, XTarget<'a>),
}

/// Apply owner, mode, xattrs and (last) times of `src` (pinned, in
/// `layer`; its xattrs at `src_x`) to the temporary object `dst`. Owner and
/// mode are those the layer stores ([`Stack::as_stored`]: a record the
/// layer keeps for them applied, ids seen through an idmapped mount mapped
/// back); with `xattr_permissions` they go to the upper's record, and the
/// inode keeps the daemon as owner with the access it needs.
fn copy_meta(
    stack: &Stack,
    layer: usize,
    src: &Pinned,
    src_x: XTarget,
    dst: Dst,
) -> io::Result<()> {
    let st = &src.st;
    let mut stored = *st;
    stack.as_stored(layer, src_x, &mut stored);
    let record = stack.perms_write.filter(|_| perms::carries(st));
    let (owner, mode) = match record {
        Some(_) => {
            let own = if sys::is_dir(st) { 0o700 } else { 0o600 };
            (None, stored.st_mode & 0o7777 | own)
        }
        None => (
            Some((stored.st_uid, stored.st_gid)),
            stored.st_mode & 0o7777,
        ),
    };
    let dst_x = match dst {
        Dst::File(fd) => XTarget::Fd(fd),
        Dst::Obj(_, x) => x,
    };
    match dst {
        // Through the fd: no path walks, and no chown (an inode update)
        // where the new file already has the owner, as it mostly does.
        Dst::File(fd) => {
            if let Some((uid, gid)) = owner
                && (uid, gid) != {
                    let now = sys::fstat(fd)?;
                    (now.st_uid, now.st_gid)
                }
            {
                chown_maybe(sys::fchown(fd, uid, gid))?;
            }
            sys::fchmod(fd, mode)?;
        }
        Dst::Obj(obj, _) => {
            if let Some((uid, gid)) = owner {
                chown_maybe(obj.chown(uid, gid))?;
            }
            if !sys::is_lnk(st) {
                obj.chmod(mode)?;
            }
        }
    }
    copy_xattrs(src_x, dst_x, |n, v| stack.stored_xattr(layer, n, v))?;
    if let Some(name) = record {
        perms::write(name, dst_x, perms::Record::of(&stored))?;
    }
    let (atime, mtime) = (
        timespec(st.st_atime, st.st_atime_nsec),
        timespec(st.st_mtime, st.st_mtime_nsec),
    );
    match dst {
        Dst::File(fd) => sys::futimens(fd, atime, mtime),
        Dst::Obj(obj, _) => obj.utimens(atime, mtime),
    }
}

/// Run `place` (a rename into `parent`), then put back the parent's times:
/// a copy-up changes nothing visible, not even its parent's mtime (the
/// kernel restores them too).
fn keeping_times<T>(parent: BorrowedFd, place: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
    let before = sys::fstat(parent)?;
    let r = place()?;
    let dot = OsStr::new(".");
    sys::utimensat(
        parent,
        dot,
        timespec(before.st_atime, before.st_atime_nsec),
        timespec(before.st_mtime, before.st_mtime_nsec),
    )?;
    Ok(r)
}

/// Move a finished copy from workdir into the upper parent, never over an
/// existing name, keeping the parent's times.
fn place(work: BorrowedFd, tmp: &OsStr, parent: BorrowedFd, name: &OsStr) -> io::Result<()> {
    keeping_times(parent, || {
        sys::renameat2(work, tmp, parent, name, sys::RENAME_NOREPLACE)
    })
}

/// Open (creating the chain if needed) the upper directory at `path`.
pub fn ensure_upper_dir(stack: &Stack, path: &Path) -> io::Result<DirFd> {
    stack.upper_or_erofs()?;
    match stack.upper_dir(path) {
        Ok(fd) => return Ok(fd),
        Err(e) if sys::errno(&e) != libc::ENOENT => return Err(e),
        Err(_) => {}
    }
    let (parent, name) = split(path);
    let upper_parent = ensure_upper_dir(stack, &parent)?;
    // The topmost lower directory the merged view shows at `path`, where
    // the lookup finds it: not at `path` in its layer when a redirect on
    // the way moved it.
    let entry = match lookup::resolve_path(stack, path)? {
        Some((e, _)) if e.is_dir() => e,
        _ => return Err(sys::err(libc::ENOENT)),
    };
    let layer = entry.layer;
    let (src_parent, src_name) = entry.top_dir(stack, &parent, &name)?;
    let src = Pinned::at(src_parent.as_fd(), &src_name)?;
    if !sys::is_dir(&src.st) {
        return Err(sys::err(libc::ENOENT));
    }
    let work = stack.work()?;
    let tmp = stack.tmp_name();
    sys::mkdirat(work, &tmp, 0o700)?;
    let built = Pinned::expect(work, &tmp, libc::S_IFDIR)
        .and_then(|dst| {
            let src_x = src.xattrs(src_parent.as_fd(), &src_name);
            copy_meta(
                stack,
                layer,
                &src,
                src_x,
                Dst::Obj(&dst, dst.xattrs(work, &tmp)),
            )
        })
        .and_then(|_| {
            place_keeping_ino(stack, &tmp, stack.inos.ino(layer, src.st.st_ino), || {
                place(work, &tmp, upper_parent.as_fd(), &name)
            })
        });
    match built {
        Ok(()) => {}
        // Another request created it first (and mapped its inode): use theirs.
        Err(e) if matches!(sys::errno(&e), libc::EEXIST | libc::ENOTEMPTY) => {
            let _ = sys::unlinkat(work, &tmp, true);
        }
        Err(e) => {
            let _ = sys::unlinkat(work, &tmp, true);
            return Err(e);
        }
    }
    let fd = sys::openat(
        upper_parent.as_fd(),
        &name,
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )?;
    tracing::debug!(path = ?path, from_layer = layer, "copied up directory");
    Ok(std::sync::Arc::new(fd))
}

/// Give the finished copy `tmp` the overlay inode of its origin, then
/// `place` it. The number is mapped before the name appears, so a
/// concurrent lookup never sees the copy under its own real inode.
fn place_keeping_ino(
    stack: &Stack,
    tmp: &OsStr,
    overlay_ino: u64,
    place: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let real = sys::fstatat(stack.work()?, tmp)?.st_ino;
    stack.inos.keep_ino(real, overlay_ino);
    place().inspect_err(|_| stack.inos.drop_upper_ino(real, overlay_ino))
}

/// Copy the data of `src` into `dst`: reflink where possible, else splice
/// (or copy_file_range, or plain reads and writes, where a side cannot)
/// over the data segments only (holes stay holes).
pub fn copy_data(src: BorrowedFd, dst: BorrowedFd, size: u64) -> io::Result<()> {
    if size == 0 {
        return Ok(());
    }
    if sys::ficlone(dst, src).is_ok() {
        return Ok(());
    }
    let mut off: i64 = 0;
    // How far the copy has written: the size, unless the file ends in a
    // hole (or came up short), which a truncate then adds.
    let mut written: i64 = 0;
    while (off as u64) < size {
        let data = match sys::lseek(src, off, libc::SEEK_DATA) {
            Ok(d) => d,
            Err(e) if sys::errno(&e) == libc::ENXIO => break,
            Err(_) => off,
        };
        let hole = sys::lseek(src, data, libc::SEEK_HOLE).unwrap_or(size as i64);
        written = copy_range(src, dst, data, (hole - data) as u64)?;
        off = hole;
    }
    if (written as u64) < size {
        sys::ftruncate(dst, size)?;
    }
    Ok(())
}

/// Copy `len` bytes at `start`; returns the offset the copy reached.
fn copy_range(src: BorrowedFd, dst: BorrowedFd, start: i64, len: u64) -> io::Result<i64> {
    let end = start + len as i64;
    match splice_range(src, dst, start, end)? {
        Spliced::Done(at) => Ok(at),
        Spliced::Unsupported(at) => copy_file_ranges(src, dst, at, end),
    }
}

enum Spliced {
    /// Copied up to this offset (short only at the source's end).
    Done(i64),
    /// A side cannot splice: everything before this offset is copied.
    Unsupported(i64),
}

std::thread_local! {
    /// Each event loop's pipe, kept between copy-ups (empty between them).
    static PIPE: std::cell::RefCell<Option<(OwnedFd, OwnedFd)>> =
        const { std::cell::RefCell::new(None) };
}

/// The pipe's capacity asked for: a whole 1 MiB moves in one pass.
/// `copy_file_range` between two files without a copy method of their own
/// (ext4, tmpfs) splices through a 64 KiB pipe, and each pass pays the
/// destination's write path again: a 1 MiB copy took 270-320 us that way
/// against 210-220 us through this pipe (ext4 in RAM, 200 copies each).
const PIPE_BYTES: usize = 1 << 20;

/// Copy `[start, end)` at the same offsets through a per-thread pipe.
fn splice_range(src: BorrowedFd, dst: BorrowedFd, start: i64, end: i64) -> io::Result<Spliced> {
    let unsupported = |e: &io::Error| {
        matches!(
            sys::errno(e),
            libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EXDEV
        )
    };
    // Taken out while in use and put back only when empty again: after an
    // error it may still hold data, and is dropped.
    let pipe = match PIPE.with(|p| p.borrow_mut().take()) {
        Some(p) => p,
        None => match sys::pipe() {
            Ok(p) => {
                let _ = sys::set_pipe_size(p.1.as_fd(), PIPE_BYTES);
                p
            }
            Err(_) => return Ok(Spliced::Unsupported(start)),
        },
    };
    let (r, w) = (pipe.0.as_fd(), pipe.1.as_fd());
    let (mut inp, mut outp) = (start, start);
    while inp < end {
        let want = ((end - inp) as usize).min(PIPE_BYTES);
        let n = match sys::splice(src, Some(&mut inp), w, None, want) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if sys::errno(&e) == libc::EINTR => continue,
            Err(e) if unsupported(&e) => return Ok(Spliced::Unsupported(outp)),
            Err(e) => return Err(e),
        };
        let mut left = n;
        while left > 0 {
            match sys::splice(r, None, dst, Some(&mut outp), left) {
                Ok(0) => return Err(sys::err(libc::EIO)),
                Ok(k) => left -= k,
                Err(e) if sys::errno(&e) == libc::EINTR => {}
                Err(e) if unsupported(&e) => return Ok(Spliced::Unsupported(outp)),
                Err(e) => return Err(e),
            }
        }
    }
    PIPE.with(|p| *p.borrow_mut() = Some(pipe));
    Ok(Spliced::Done(outp))
}

/// copy_file_range from `start` to `end`; returns the offset reached.
fn copy_file_ranges(src: BorrowedFd, dst: BorrowedFd, start: i64, end: i64) -> io::Result<i64> {
    let (mut inp, mut outp) = (start, start);
    while inp < end {
        let want = ((end - inp) as usize).min(1 << 30);
        match sys::copy_file_range(src, &mut inp, dst, &mut outp, want) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if sys::errno(&e) == libc::EINTR => {}
            Err(e)
                if matches!(
                    sys::errno(&e),
                    libc::EXDEV | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP
                ) =>
            {
                return copy_rw(src, dst, inp, end);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(outp)
}

/// Plain reads and writes from `off` to `end`; returns the offset reached.
fn copy_rw(src: BorrowedFd, dst: BorrowedFd, mut off: i64, end: i64) -> io::Result<i64> {
    let mut buf = vec![0u8; 1 << 20];
    while off < end {
        let want = ((end - off) as usize).min(buf.len());
        let n = sys::pread(src, &mut buf[..want], off as u64)?;
        if n == 0 {
            break;
        }
        let mut w = 0;
        while w < n {
            w += sys::pwrite(dst, &buf[w..n], (off as usize + w) as u64)?;
        }
        off += n as i64;
    }
    Ok(off)
}

/// Options of one copy-up.
#[derive(Debug, Clone, Copy)]
pub struct CopyUp {
    /// Copy the file's data (false when the caller truncates to 0 anyway).
    pub data: bool,
}

/// Make sure the object at `path` (described by `entry`) exists in the upper
/// layer. Returns the upper parent directory fd.
pub fn copy_up(stack: &Stack, path: &Path, entry: &Entry, how: CopyUp) -> io::Result<DirFd> {
    let (parent, name) = split(path);
    if entry.is_dir() {
        ensure_upper_dir(stack, path)?;
        return stack.upper_dir(&parent);
    }
    let upper_parent = ensure_upper_dir(stack, &parent)?;
    if entry.in_upper(stack) {
        return Ok(upper_parent);
    }
    let _g = stack.stripe(path);
    // The loser of a race finds the winner's copy here.
    if sys::fstatat(upper_parent.as_fd(), &name).is_ok() {
        return Ok(upper_parent);
    }
    let started = Instant::now();
    // From where the lookup found it (a redirect may have put it
    // elsewhere in its layer than at `path`).
    let (src_dir, src_name) = entry.top_dir(stack, &parent, &name)?;
    // Pinned, of the type the lookup found: what is copied is that object.
    let src = Pinned::expect(src_dir.as_fd(), &src_name, entry.st.st_mode)?;
    let st = src.st;
    let work = stack.work()?;
    let tmp = stack.tmp_name();
    let built = build_copy(
        stack,
        entry.layer,
        src_dir.as_fd(),
        &src_name,
        &src,
        &tmp,
        how,
    );
    let placed = built.and_then(|_| {
        place_keeping_ino(stack, &tmp, entry.ino, || {
            place(work, &tmp, upper_parent.as_fd(), &name)
        })
    });
    if let Err(e) = placed {
        let _ = sys::unlinkat(work, &tmp, false);
        return Err(e);
    }
    stack
        .copyup_gen
        .fetch_add(1, std::sync::atomic::Ordering::Release);
    let us = started.elapsed().as_micros() as u64;
    let bytes = if how.data && sys::is_reg(&st) {
        st.st_size as u64
    } else {
        0
    };
    stack.stats.copy_up(bytes, us);
    tracing::debug!(path = ?path, from_layer = entry.layer, bytes, us, "copy-up");
    Ok(upper_parent)
}

fn build_copy(
    stack: &Stack,
    layer: usize,
    src_dir: BorrowedFd,
    name: &OsStr,
    src: &Pinned,
    tmp: &OsStr,
    how: CopyUp,
) -> io::Result<()> {
    let work = stack.work()?;
    let st = &src.st;
    let src_x = src.xattrs(src_dir, name);
    let fmt = st.st_mode & libc::S_IFMT;
    match fmt {
        libc::S_IFREG => {
            let data = src.open_noatime(libc::O_RDONLY)?;
            // O_EXCL: a fresh file, never whatever the name held.
            let dst = sys::openat(
                work,
                tmp,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY,
                0o600,
            )?;
            if how.data {
                copy_data(data.as_fd(), dst.as_fd(), st.st_size as u64)?;
            }
            copy_meta(stack, layer, src, src_x, Dst::File(dst.as_fd()))?;
            if !stack.volatile {
                sys::fsync(dst.as_fd(), false)?;
            }
            Ok(())
        }
        libc::S_IFDIR => Err(sys::err(libc::EISDIR)),
        _ => {
            if fmt == libc::S_IFLNK {
                sys::symlinkat(&src.readlink()?, work, tmp)?;
            } else {
                sys::mknodat(work, tmp, st.st_mode, st.st_rdev)?;
            }
            let dst = Pinned::expect(work, tmp, fmt)?;
            copy_meta(
                stack,
                layer,
                src,
                src_x,
                Dst::Obj(&dst, dst.xattrs(work, tmp)),
            )
        }
    }
}
