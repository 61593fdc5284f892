//! The FUSE adapter: the only code that imports fuser. Each handler decodes
//! the request, finds the node's place, calls the core and encodes the reply
//! or the errno. No overlay rule is decided here.

pub mod handles;
pub mod inodes;

use crate::attr::{self, KillPrivs, Requester, SetAttr, kill_for};
use crate::dir_ops::{self, Caller, NewObject};
use crate::dircache::DirFd;
use crate::file::{self, OpenFile};
use crate::idmap::{IdMaps, ShownId};
use crate::lookup::{self, DirRef, Entry};
use crate::readdir;
use crate::stack::Stack;
use crate::sys::{self, Stat, errno};
use crate::xattr;
use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyLseek,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use handles::{DirHandle, DirItem, Handles};
use inodes::{Inodes, ROOT};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Close has nothing to flush (writes reach the layer synchronously and
/// locks are the kernel's), so no FLUSH request at all: without this the
/// first close of every mount pays one round trip to learn ENOSYS.
const CACHED_OPEN: FopenFlags = FopenFlags::FOPEN_KEEP_CACHE.union(FopenFlags::FOPEN_NOFLUSH);

/// Open flags with passthrough: the kernel fails the open (EIO) if any
/// page-cache flag such as KEEP_CACHE comes with it; NOFLUSH is allowed.
const PASSTHROUGH_OPEN: FopenFlags = FopenFlags::FOPEN_NOFLUSH;

/// Set once the kernel's INIT has been answered (the mount is live).
pub static INITIALISED: AtomicBool = AtomicBool::new(false);

/// The virtual xattr of the mount root that `ovlfuse stats` reads.
pub const STATS_XATTR: &str = "ovlfuse.stats";

pub struct OvlFs {
    pub stack: Arc<Stack>,
    inodes: Inodes,
    handles: Handles,
    requests: AtomicU64,
    /// Upper files' reads and writes go straight to the upper file in the
    /// kernel (FUSE passthrough): asked for at INIT, dropped if refused.
    passthrough: AtomicBool,
    /// Tells the kernel when an inode changed behind its back; set once
    /// the session exists (see [`OvlFs::notifier_slot`]).
    notifier: Arc<OnceLock<fuser::Notifier>>,
    /// How the session talks to the kernel (/dev/fuse or io_uring), for
    /// `ovlfuse stats`; set with the notifier.
    transport: Arc<OnceLock<fuser::TransportStatus>>,
}

fn ftype(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn dtype_ftype(d: u8) -> FileType {
    match d {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        _ => FileType::RegularFile,
    }
}

fn systime(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::from_secs(sec.unsigned_abs()) + Duration::from_nanos(nsec as u64)
    }
}

fn to_attr(st: &Stat) -> FileAttr {
    FileAttr {
        ino: INodeNo(st.st_ino),
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        atime: systime(st.st_atime, st.st_atime_nsec),
        mtime: systime(st.st_mtime, st.st_mtime_nsec),
        ctime: systime(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: ftype(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
        st_ino: None,
    }
}

fn eno(e: &io::Error) -> Errno {
    Errno::from_i32(errno(e))
}

fn time_set(t: Option<TimeOrNow>) -> sys::TimeSet {
    match t {
        None => None,
        Some(TimeOrNow::Now) => Some(None),
        Some(TimeOrNow::SpecificTime(t)) => {
            let (sec, nsec) = match t.duration_since(UNIX_EPOCH) {
                Ok(d) => (d.as_secs() as i64, d.subsec_nanos() as i64),
                Err(e) => {
                    let d = e.duration();
                    let mut s = -(d.as_secs() as i64);
                    let mut n = d.subsec_nanos() as i64;
                    if n > 0 {
                        s -= 1;
                        n = 1_000_000_000 - n;
                    }
                    (s, n)
                }
            };
            Some(Some(libc::timespec {
                tv_sec: sec,
                tv_nsec: nsec,
            }))
        }
    }
}

/// Who asks: new objects belong to the requesting uid/gid, stored as the
/// mount's id mapping says.
fn caller(ids: &IdMaps, req: &Request, umask: u32) -> Caller {
    Caller {
        uid: ids.uid.disk(ShownId(req.uid())).0,
        gid: ids.gid.disk(ShownId(req.gid())).0,
        umask,
    }
}

/// Who asks, as the kernel names the caller of `req`.
fn requester(req: &Request) -> Requester {
    Requester {
        pid: req.pid(),
        gid: req.gid(),
    }
}

/// Run a handler; a panic inside answers EIO (the dropped reply does) and
/// the daemon keeps serving. With `-d`, one line per request names its
/// inode (the parent's, for requests about a name) and the layer whose
/// lookup answered it.
fn guarded<F: FnOnce()>(op: &'static str, ino: INodeNo, f: F) {
    guarded_io(op, ino, None, f)
}

/// [`guarded`] for I/O requests, whose `-d` line adds offset and size.
fn guarded_io<F: FnOnce()>(op: &'static str, ino: INodeNo, io: Option<(u64, u64)>, f: F) {
    crate::stats::take_last_layer();
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        tracing::error!(op, ino = ino.0, "handler panicked; answered EIO");
    }
    if tracing::enabled!(tracing::Level::DEBUG) {
        let ino = ino.0;
        match (crate::stats::take_last_layer(), io) {
            (Some(layer), Some((offset, size))) => {
                tracing::debug!(op, ino, offset, size, layer, "request")
            }
            (Some(layer), None) => tracing::debug!(op, ino, layer, "request"),
            (None, Some((offset, size))) => tracing::debug!(op, ino, offset, size, "request"),
            (None, None) => tracing::debug!(op, ino, "request"),
        }
    }
}

/// Test hook: a lookup of this name panics (proves the EIO guard).
fn panic_hook(name: &OsStr) {
    if let Some(p) = std::env::var_os("OVLFUSE_PANIC_ON_LOOKUP")
        && p == name
    {
        panic!("test panic on lookup of {name:?}");
    }
}

impl OvlFs {
    pub fn new(stack: Stack) -> Self {
        let lowers = lookup::root_lowers(&stack);
        OvlFs {
            stack: Arc::new(stack),
            inodes: Inodes::new(lowers),
            handles: Handles::default(),
            requests: AtomicU64::new(0),
            passthrough: AtomicBool::new(false),
            notifier: Arc::default(),
            transport: Arc::default(),
        }
    }

    /// Where the mount puts the session's transport status.
    pub fn transport_slot(&self) -> Arc<OnceLock<fuser::TransportStatus>> {
        self.transport.clone()
    }

    /// Where the mount puts the session's notifier, before the session
    /// takes the filesystem.
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Clear setuid/setgid on an upper file we wrote or truncated for a
    /// caller without CAP_FSETID (FUSE_HANDLE_KILLPRIV_V2 leaves it to us).
    /// `was` is the mode before a truncating open, which clears the bits
    /// itself when the daemon lacks CAP_FSETID.
    fn kill_privs(
        &self,
        req: &Request,
        ino: u64,
        fd: std::os::fd::BorrowedFd,
        was: Option<u32>,
    ) -> io::Result<()> {
        let cleared = attr::kill_privs_fd(fd, |mode, gid| {
            kill_for(&self.stack.view.ids, requester(req), mode, gid)
        })?;
        let had = was.is_some_and(|m| m & (libc::S_ISUID | libc::S_ISGID) != 0);
        if cleared || had {
            tracing::debug!(op = "kill_privs", ino, "setuid/setgid cleared");
            // No reply of ours carries the new mode, and a stale setuid bit
            // would still count at exec: drop the kernel's cached attributes
            // (offset -1: not the page cache).
            if let Some(n) = self.notifier.get() {
                let _ = n.inval_inode(INodeNo(ino), -1, 0);
            }
        }
        Ok(())
    }

    /// Attributes as the mount shows them (ids mapped, static_nlink, the
    /// shared st_ino of a lower hard link); `st.st_ino` is the node id.
    fn attr(&self, st: Stat) -> FileAttr {
        let mut a = to_attr(&self.stack.view.shown(st));
        let shown = self.stack.inos.shown_ino(st.st_ino);
        a.st_ino = (shown != st.st_ino).then_some(shown);
        a
    }

    pub fn with_passthrough(self, on: bool) -> Self {
        self.passthrough.store(on, Ordering::Relaxed);
        self
    }

    /// Register `fd` as the backing file of an inode; on refusal (no
    /// privilege, a stacking limit) passthrough is off for this mount.
    fn backing(
        &self,
        open: impl FnOnce() -> io::Result<fuser::BackingId>,
    ) -> Option<fuser::BackingId> {
        match open() {
            Ok(b) => Some(b),
            Err(e) => {
                if self.passthrough.swap(false, Ordering::Relaxed) {
                    tracing::warn!("passthrough refused ({e}); serving I/O through the daemon");
                }
                None
            }
        }
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn count_op(&self, op: &str) {
        self.count();
        self.stack.stats.request(op);
    }

    /// Current entry of a node: re-resolved from its parent, so a copy-up
    /// since the last look is seen.
    fn entry_of(&self, ino: u64) -> io::Result<(inodes::Place, Entry)> {
        let place = self.inodes.place(ino)?;
        if ino == ROOT {
            return Ok((place, lookup::root(&self.stack)?));
        }
        // A removed node's last name may hold another object by now.
        if self.inodes.removed_stat(ino).is_some() {
            return Err(io::Error::from_raw_os_error(libc::ENOENT));
        }
        // Another object at the node's name (swapped in behind the daemon,
        // or not ours): the node's own object is gone, ESTALE as for opens.
        match self.entry_at(place).and_then(|x| {
            (x.1.ino == ino)
                .then_some(x)
                .ok_or_else(|| sys::err(sys::STALE))
        }) {
            Ok(x) => Ok(x),
            // A hard link may still be reachable by another name (this one
            // went away, or its directory lost search permission).
            Err(e) => self
                .inodes
                .other_places(ino)
                .into_iter()
                .find_map(|p| self.entry_at(p).ok().filter(|(_, e)| e.ino == ino))
                .ok_or(e),
        }
    }

    /// `entry_of` where only the topmost object matters (attributes,
    /// xattrs): a node is first seen from it alone (`lookup::known`); the
    /// kernel asks for a directory's attributes after every change in it.
    /// With the entry comes the directory holding the object in its
    /// layer, where that is already open.
    fn attr_entry(&self, ino: u64) -> io::Result<(inodes::Place, Entry, Option<DirFd>)> {
        if ino != ROOT
            && let Ok(p) = self.inodes.place(ino)
        {
            let d = DirRef {
                path: &p.parent_path,
                lowers: &p.parent_lowers,
            };
            if let Ok(Some((e, fd))) = lookup::known(&self.stack, &d, &p.name, &p.lowers)
                && e.ino == ino
            {
                return Ok((p, e, Some(fd)));
            }
        }
        self.entry_of(ino).map(|(p, e)| (p, e, None))
    }

    fn entry_at(&self, place: inodes::Place) -> io::Result<(inodes::Place, Entry)> {
        let d = DirRef {
            path: &place.parent_path,
            lowers: &place.parent_lowers,
        };
        let e = lookup::lookup(&self.stack, &d, &place.name)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
        Ok((place, e))
    }

    fn reply_new_entry(&self, parent: u64, name: &OsStr, e: &Entry, reply: ReplyEntry) {
        self.reply_entry(parent, name, e, false, reply)
    }

    fn reply_entry(&self, parent: u64, name: &OsStr, e: &Entry, fresh: bool, reply: ReplyEntry) {
        let g = self
            .inodes
            .remember_as(e.ino, parent, name, e.lowers(&self.stack), fresh);
        reply.entry(
            &self.stack.view.cache_ttl,
            &self.attr(attr::merged_stat(e)),
            Generation(g),
        );
    }

    fn create_obj(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        obj: NewObject,
        umask: u32,
    ) -> io::Result<(Entry, Option<OwnedFd>)> {
        let pdir = self.inodes.dir(parent.0)?;
        let d = pdir.dir_ref();
        let who = caller(&self.stack.view.ids, req, umask);
        let r = dir_ops::create(&self.stack, &d, name, &obj, who);
        tracing::debug!(
            op = "create",
            parent = parent.0,
            ?name,
            ok = r.is_ok(),
            "upper layer"
        );
        r
    }

    /// An open handle on `ino` (the kernel's own if it named one): the only
    /// way to an O_TMPFILE file or an unlinked one, which have no name.
    fn handle_of(&self, ino: u64, fh: Option<FileHandle>) -> Option<Arc<handles::FileHandle>> {
        fh.and_then(|f| self.file(f).ok())
            .filter(|h| h.file.ino == ino)
            .or_else(|| {
                self.handles
                    .files
                    .iter()
                    .find(|h| h.file.ino == ino)
                    .map(|h| h.value().clone())
            })
    }

    /// `f` on the upper fd of a node that has no name (an O_TMPFILE file,
    /// or one unlinked while open), else `err`, the failure to find it.
    fn on_unnamed<T>(
        &self,
        ino: u64,
        err: io::Error,
        f: impl FnOnce(BorrowedFd) -> io::Result<T>,
    ) -> io::Result<T> {
        match self.handle_of(ino, None) {
            Some(h) if h.file.in_upper.load(Ordering::Acquire) => {
                let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
                f(fd.as_fd())
            }
            _ => Err(err),
        }
    }

    /// Keep `fd` as a new handle on `ino`; an upper file is passed through
    /// where the kernel lets us (`open_backing` registers it). Returns the
    /// handle and the backing id to answer with.
    fn new_handle(
        &self,
        ino: u64,
        fd: OwnedFd,
        in_upper: bool,
        flags: i32,
        open_backing: impl FnOnce(&OwnedFd) -> io::Result<fuser::BackingId>,
    ) -> (FileHandle, Option<Arc<fuser::BackingId>>) {
        let want = file::may_pass_through(in_upper) && self.passthrough.load(Ordering::Relaxed);
        let backing = self
            .handles
            .io_open(ino, want, || self.backing(|| open_backing(&fd)));
        let id = self.handles.next_id();
        self.handles.files.insert(
            id,
            Arc::new(handles::FileHandle {
                file: OpenFile::new(&self.stack, ino, fd, in_upper, flags),
                backing: backing.clone(),
            }),
        );
        (FileHandle(id), backing)
    }

    /// Answer an open with a handle on `fd`, passed through where it can be.
    fn reply_opened(&self, ino: u64, fd: OwnedFd, in_upper: bool, flags: i32, reply: ReplyOpen) {
        let (fh, backing) = self.new_handle(ino, fd, in_upper, flags, |f| reply.open_backing(f));
        match backing {
            Some(b) => reply.opened_passthrough(fh, PASSTHROUGH_OPEN, &b),
            None => reply.opened(fh, CACHED_OPEN),
        }
    }

    /// Answer a create or tmpfile: a new upper file, open as `fd`.
    fn reply_created(&self, e: &Entry, fd: OwnedFd, flags: i32, g: u64, reply: ReplyCreate) {
        let (fh, backing) = self.new_handle(e.ino, fd, true, flags, |f| reply.open_backing(f));
        let attr = self.attr(attr::merged_stat(e));
        let g = Generation(g);
        match backing {
            Some(b) => reply.created_passthrough(
                &self.stack.view.cache_ttl,
                &attr,
                g,
                fh,
                PASSTHROUGH_OPEN,
                &b,
            ),
            None => reply.created(&self.stack.view.cache_ttl, &attr, g, fh, CACHED_OPEN),
        }
    }

    fn file(&self, fh: FileHandle) -> io::Result<Arc<handles::FileHandle>> {
        self.handles
            .files
            .get(&fh.0)
            .map(|h| h.clone())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))
    }

    /// Let a handle follow a copy-up of its file since it was opened.
    fn follow_copy_up(&self, f: &OpenFile) -> io::Result<()> {
        f.follow_copy_up(&self.stack, || {
            self.entry_of(f.ino)
                .ok()
                .map(|(p, e)| (p.parent_path, p.name, e))
        })
    }

    fn build_listing(&self, ino: u64) -> io::Result<Vec<DirItem>> {
        let dir = self.inodes.dir(ino)?;
        let merged = readdir::read_merged(&self.stack, &dir.dir_ref())?;
        let parent = self.inodes.parent_of(ino);
        let mut v = Vec::with_capacity(merged.len() + 2);
        v.push(DirItem {
            name: ".".into(),
            ino,
            dtype: libc::DT_DIR,
            layer: 0,
        });
        v.push(DirItem {
            name: "..".into(),
            ino: parent,
            dtype: libc::DT_DIR,
            layer: 0,
        });
        v.extend(merged.into_iter().map(|m| DirItem {
            name: m.name,
            ino: m.ino,
            dtype: m.dtype,
            layer: m.layer,
        }));
        Ok(v)
    }

    fn listing(&self, ino: u64, fh: FileHandle, offset: u64) -> io::Result<Vec<DirItem>> {
        let h = self
            .handles
            .dirs
            .get(&fh.0)
            .map(|h| h.clone())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EBADF))?;
        let mut items = h.items.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 || items.is_none() {
            *items = Some(self.build_listing(ino)?);
        }
        Ok(items
            .as_ref()
            .map(|v| v.iter().skip(offset as usize).cloned().collect())
            .unwrap_or_default())
    }

    fn xattr_reply(data: &[u8], size: u32, reply: ReplyXattr) {
        if size == 0 {
            reply.size(data.len() as u32);
        } else if data.len() > size as usize {
            reply.error(Errno::from_i32(libc::ERANGE));
        } else {
            reply.data(data);
        }
    }

    pub fn stats_text(&self) -> String {
        let names: Vec<String> = self
            .stack
            .layers
            .iter()
            .map(|l| {
                format!(
                    "{}:{}",
                    if l.is_upper { "upper" } else { "lower" },
                    l.path.display()
                )
            })
            .collect();
        let transport = self
            .transport
            .get()
            .map_or("unknown".into(), |t| t.describe());
        format!(
            "transport {transport}\nrequests {}\ncached_inodes {}\n{}",
            self.requests.load(Ordering::Relaxed),
            self.inodes.len(),
            self.stack.stats.render(&names)
        )
    }
}

macro_rules! try_reply {
    ($reply:expr, $e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => {
                $reply.error(eno(&e));
                return;
            }
        }
    };
}

impl Filesystem for OvlFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        INITIALISED.store(true, Ordering::Release);
        // Upper files are passed through; lower ones never are: a read-only
        // handle must follow a copy-up, which a backing file cannot.
        if self.passthrough.load(Ordering::Relaxed)
            && (config
                .add_capabilities(InitFlags::FUSE_PASSTHROUGH)
                .is_err()
                || config.set_max_stack_depth(1).is_err())
        {
            self.passthrough.store(false, Ordering::Relaxed);
        }
        // No FUSE_EXPORT_SUPPORT: the kernel overlayfs with its defaults
        // (index=off, nfs_export=off) makes no decodable file handles
        // (name_to_handle_at: EOPNOTSUPP), and our node ids do not outlive
        // the kernel's cache, so handles would go stale (ESTALE).
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_READDIRPLUS_AUTO,
            InitFlags::FUSE_ATOMIC_O_TRUNC,
            InitFlags::FUSE_PARALLEL_DIROPS,
            // The kernel leaves the umask to us, so a default ACL can win.
            InitFlags::FUSE_DONT_MASK,
            // We clear setuid/setgid ourselves (setattr, open, write), so
            // the kernel marks inodes S_NOSEC after one check instead of a
            // getxattr(security.capability) round trip on every write(2).
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            let _ = config.add_capabilities(cap);
        }
        // The kernel then enforces ACLs (with default_permissions) as the
        // kernel overlayfs does, keeps the mode in step on setfacl, and
        // drops its cached attributes when an ACL changes.
        if self.stack.view.posix_acl {
            let _ = config.add_capabilities(InitFlags::FUSE_POSIX_ACL);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.count_op("lookup");
        guarded("lookup", parent, || {
            panic_hook(name);
            let pdir = try_reply!(reply, self.inodes.dir(parent.0));
            let d = pdir.dir_ref();
            match lookup::lookup(&self.stack, &d, name) {
                Ok(Some(e)) => {
                    tracing::debug!(
                        op = "lookup",
                        parent = parent.0,
                        ?name,
                        layer = e.layer,
                        "found"
                    );
                    self.reply_new_entry(parent.0, name, &e, reply)
                }
                Ok(None) => {
                    tracing::debug!(op = "lookup", parent = parent.0, ?name, "negative");
                    // A negative entry (node id 0) the kernel may cache.
                    // SAFETY: all-zero bytes are a valid `libc::stat` (integers only).
                    let mut a = to_attr(&unsafe { std::mem::zeroed::<Stat>() });
                    a.ino = INodeNo(0);
                    reply.entry(&self.stack.view.cache_ttl, &a, Generation(0));
                }
                Err(e) => reply.error(eno(&e)),
            }
        })
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.count_op("getattr");
        guarded("getattr", ino, || match self.attr_entry(ino.0) {
            Ok((_, e, _)) => reply.attr(
                &self.stack.view.cache_ttl,
                &self.attr(attr::merged_stat(&e)),
            ),
            Err(err) => {
                // An unlinked or unnamed but open file still answers
                // through its fd (the kernel may not say which handle).
                if let Some(h) = self.handle_of(ino.0, fh) {
                    let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
                    if let Ok(mut st) = sys::fstat(fd.as_fd()) {
                        st.st_ino = ino.0;
                        return reply.attr(&self.stack.view.cache_ttl, &self.attr(st));
                    }
                }
                // fstat of a removed directory (FUSE names no handle for
                // one) or of a file whose handle is gone.
                if let Some(st) = self.inodes.removed_stat(ino.0) {
                    return reply.attr(&self.stack.view.cache_ttl, &self.attr(st));
                }
                reply.error(eno(&err))
            }
        })
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        kill_suidgid: bool,
        reply: ReplyAttr,
    ) {
        self.count_op("setattr");
        guarded("setattr", ino, || {
            let ids = &self.stack.view.ids;
            let mut sa = SetAttr {
                mode,
                uid: uid.map(|u| ids.uid.disk(ShownId(u)).0),
                gid: gid.map(|g| ids.gid.disk(ShownId(g)).0),
                size,
                atime: time_set(atime),
                mtime: time_set(mtime),
                kill_privs: KillPrivs::None,
            };
            // An empty setattr is how the kernel (HANDLE_KILLPRIV_V2) asks
            // us to clear setuid/setgid after a write it did not send us (a
            // passed-through one): file_remove_privs had nothing else left.
            let kill = kill_suidgid || sa.changes_nothing_but_privs();
            let (place, e) = match self.entry_of(ino.0) {
                Ok(x) => x,
                Err(err) => match self.handle_of(ino.0, fh) {
                    Some(h) if h.file.in_upper.load(Ordering::Acquire) => {
                        let ids = &self.stack.view.ids;
                        let ask = |mode, gid| kill_for(ids, requester(req), mode, gid);
                        let kill = kill.then_some(&ask as &dyn Fn(u32, u32) -> KillPrivs);
                        let st = try_reply!(reply, h.file.setattr_unnamed(&self.stack, sa, kill));
                        return reply.attr(&self.stack.view.cache_ttl, &self.attr(st));
                    }
                    _ => return reply.error(eno(&err)),
                },
            };
            if kill {
                sa.kill_privs = kill_for(
                    &self.stack.view.ids,
                    requester(req),
                    e.st.st_mode,
                    e.st.st_gid,
                );
            }
            let h = fh.and_then(|f| self.file(f).ok());
            let guard = h
                .as_ref()
                .filter(|h| h.file.in_upper.load(Ordering::Acquire))
                .map(|h| h.file.fd.read().unwrap_or_else(|p| p.into_inner()));
            let r = attr::setattr(
                &self.stack,
                &place.path,
                &e,
                &sa,
                guard.as_ref().map(|g| g.as_fd()),
            );
            let st = try_reply!(reply, r);
            let mut e2 = e.clone();
            e2.st = st;
            reply.attr(
                &self.stack.view.cache_ttl,
                &self.attr(attr::merged_stat(&e2)),
            );
        })
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.count_op("readlink");
        guarded("readlink", ino, || {
            let (place, e) = try_reply!(reply, self.entry_of(ino.0));
            let (dir, name) = try_reply!(
                reply,
                e.top_dir(&self.stack, &place.parent_path, &place.name)
            );
            // readlink opens nothing and follows nothing; through a pin of
            // the type the lookup found, as every other read of an object.
            let obj = try_reply!(reply, sys::Pinned::expect(dir.as_fd(), &name, e.st.st_mode));
            let t = try_reply!(reply, obj.readlink());
            reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str()));
        })
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.count_op("mknod");
        guarded("mknod", parent, || {
            let obj = if mode & libc::S_IFMT == libc::S_IFREG || mode & libc::S_IFMT == 0 {
                NewObject::File {
                    mode,
                    flags: libc::O_WRONLY,
                }
            } else {
                NewObject::Node {
                    mode,
                    rdev: rdev as u64,
                }
            };
            let (e, _) = try_reply!(reply, self.create_obj(req, parent, name, obj, umask));
            self.reply_entry(parent.0, name, &e, true, reply);
        })
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        self.count_op("mkdir");
        guarded("mkdir", parent, || {
            let (e, _) = try_reply!(
                reply,
                self.create_obj(req, parent, name, NewObject::Dir { mode }, umask)
            );
            self.reply_entry(parent.0, name, &e, true, reply);
        })
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count_op("unlink");
        guarded("unlink", parent, || {
            let pdir = try_reply!(reply, self.inodes.dir(parent.0));
            let d = pdir.dir_ref();
            let e = try_reply!(reply, dir_ops::unlink(&self.stack, &d, name));
            tracing::debug!(
                op = "unlink",
                parent = parent.0,
                ?name,
                layer = e.layer,
                "removed"
            );
            if e.st.st_nlink <= 1 {
                let st = attr::removed_stat(&self.stack, &e);
                self.inodes.mark_dead(e.ino, parent.0, name, st);
            } else {
                self.inodes.unlinked(e.ino, parent.0, name);
            }
            reply.ok();
        })
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count_op("rmdir");
        guarded("rmdir", parent, || {
            let pdir = try_reply!(reply, self.inodes.dir(parent.0));
            let d = pdir.dir_ref();
            let e = try_reply!(reply, dir_ops::rmdir(&self.stack, &d, name));
            tracing::debug!(
                op = "rmdir",
                parent = parent.0,
                ?name,
                layer = e.layer,
                "removed"
            );
            let st = attr::removed_stat(&self.stack, &e);
            self.inodes.mark_dead(e.ino, parent.0, name, st);
            reply.ok();
        })
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.count_op("symlink");
        guarded("symlink", parent, || {
            let obj = NewObject::Symlink {
                target: target.as_os_str().to_os_string(),
            };
            let (e, _) = try_reply!(reply, self.create_obj(req, parent, link_name, obj, 0));
            self.reply_entry(parent.0, link_name, &e, true, reply);
        })
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.count_op("rename");
        guarded("rename", parent, || {
            let op = try_reply!(reply, self.inodes.dir(parent.0));
            let np = try_reply!(reply, self.inodes.dir(newparent.0));
            let (od, nd) = (op.dir_ref(), np.dir_ref());
            let who = caller(&self.stack.view.ids, req, 0);
            let r = dir_ops::rename(&self.stack, &od, name, &nd, newname, flags.bits(), who);
            tracing::debug!(op = "rename", ?name, ?newname, flags = flags.bits(), result = ?r.as_ref().err(), "rename");
            let r = try_reply!(reply, r);
            if let Some(d) = &r.replaced {
                if d.st.st_nlink <= 1 || d.is_dir() {
                    let st = attr::removed_stat(&self.stack, d);
                    self.inodes.mark_dead(d.ino, newparent.0, newname, st);
                } else {
                    self.inodes.unlinked(d.ino, newparent.0, newname);
                }
            }
            self.inodes
                .moved(r.src.ino, (parent.0, name), newparent.0, newname);
            if let Some(x) = &r.exchanged {
                self.inodes
                    .moved(x.ino, (newparent.0, newname), parent.0, name);
            }
            reply.ok();
        })
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.count_op("link");
        guarded("link", ino, || {
            let np = try_reply!(reply, self.inodes.dir(newparent.0));
            let nd = np.dir_ref();
            let ne = match self.entry_of(ino.0) {
                Ok((place, e)) => dir_ops::link(&self.stack, &place.path, &e, &nd, newname),
                // linkat() of an O_TMPFILE file: named through its fd.
                Err(err) => match self.handle_of(ino.0, None) {
                    Some(h) if h.file.in_upper.load(Ordering::Acquire) => {
                        let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
                        dir_ops::link_unnamed(&self.stack, fd.as_fd(), &nd, newname)
                    }
                    _ => Err(err),
                },
            };
            let ne = try_reply!(reply, ne);
            self.reply_new_entry(newparent.0, newname, &ne, reply);
        })
    }

    fn open(
        &self,
        req: &Request,
        ino: INodeNo,
        flags: OpenFlags,
        kill_suidgid: bool,
        reply: ReplyOpen,
    ) {
        self.count_op("open");
        guarded("open", ino, || {
            let flags = flags.0;
            let (place, e) = match self.entry_of(ino.0) {
                Ok(x) => x,
                // An unnamed or unlinked file, reopened through /proc.
                Err(err) => match self.handle_of(ino.0, None) {
                    Some(h) if h.file.in_upper.load(Ordering::Acquire) => {
                        let fd = try_reply!(reply, h.file.reopen(flags));
                        return self.reply_opened(ino.0, fd, true, flags, reply);
                    }
                    _ => return reply.error(eno(&err)),
                },
            };
            let o = file::open(
                &self.stack,
                &place.path,
                &place.parent_path,
                &place.name,
                &e,
                flags,
            );
            let o = try_reply!(reply, o);
            // O_TRUNC by a caller without CAP_FSETID: we truncated, so
            // the setuid/setgid bits are ours to clear (KILLPRIV_V2).
            if o.truncated && kill_suidgid {
                try_reply!(
                    reply,
                    self.kill_privs(req, ino.0, o.fd.as_fd(), Some(e.st.st_mode))
                );
            }
            let (fd, in_upper, write) = (o.fd, o.in_upper, o.write);
            tracing::debug!(
                op = "open",
                ino = ino.0,
                layer = if in_upper { 0 } else { e.layer },
                write,
                "opened"
            );
            self.reply_opened(ino.0, fd, in_upper, flags, reply);
        })
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.count_op("read");
        guarded_io("read", ino, Some((offset, u64::from(size))), || {
            let h = try_reply!(reply, self.file(fh));
            try_reply!(reply, self.follow_copy_up(&h.file));
            let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
            // Straight into the reply's buffer (over io_uring, the ring
            // entry): no buffer of our own to allocate and fault in.
            reply.data_from(size as usize, |buf| {
                sys::pread_full(fd.as_fd(), buf, offset)
            });
        })
    }

    fn write(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.count_op("write");
        guarded_io("write", ino, Some((offset, data.len() as u64)), || {
            let h = try_reply!(reply, self.file(fh));
            let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                try_reply!(reply, self.kill_privs(req, h.file.ino, fd.as_fd(), None));
            }
            let mut done = 0;
            while done < data.len() {
                let n = try_reply!(
                    reply,
                    sys::pwrite(fd.as_fd(), &data[done..], offset + done as u64)
                );
                if n == 0 {
                    break;
                }
                done += n;
            }
            reply.written(done as u32);
        })
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Opens answer FOPEN_NOFLUSH; a kernel that ignores it still learns
        // from ENOSYS to stop sending FLUSH (close then answers 0).
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        if let Some((_, h)) = self.handles.files.remove(&fh.0) {
            self.handles.io_close(h.file.ino);
        }
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.count_op("fsync");
        guarded("fsync", ino, || {
            let h = try_reply!(reply, self.file(fh));
            let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
            try_reply!(reply, sys::fsync(fd.as_fd(), datasync));
            reply.ok();
        })
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.count_op("opendir");
        // An atime that cannot be moved (no search permission, a directory
        // gone since) must not fail the open.
        // A moved atime reaches no reply of ours: drop the kernel's cached
        // attributes (offset -1: keep its cached listing).
        if let Ok(dir) = self.inodes.dir(ino.0) {
            match readdir::accessed(&self.stack, &dir.dir_ref()) {
                Ok(true) => {
                    if let Some(n) = self.notifier.get() {
                        let _ = n.inval_inode(ino, -1, 0);
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::debug!(op = "opendir", ino = ino.0, "atime not moved: {e}"),
            }
        }
        let id = self.handles.next_id();
        self.handles.dirs.insert(
            id,
            Arc::new(DirHandle {
                ino: ino.0,
                items: std::sync::Mutex::new(None),
            }),
        );
        // Only this mount changes the layers, and every change through it
        // invalidates the kernel's cached listing: let it cache.
        reply.opened(
            FileHandle(id),
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.count_op("readdir");
        guarded("readdir", ino, || {
            let items = try_reply!(reply, self.listing(ino.0, fh, offset));
            for (i, it) in items.iter().enumerate() {
                let off = offset + i as u64 + 1;
                // d_ino as stat(2) shows it (one for a lower hard link's names).
                let d_ino = self.stack.inos.shown_ino(it.ino);
                if reply.add(INodeNo(d_ino), off, dtype_ftype(it.dtype), &it.name) {
                    break;
                }
            }
            reply.ok();
        })
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        self.count_op("readdirplus");
        guarded("readdirplus", ino, || {
            let items = try_reply!(reply, self.listing(ino.0, fh, offset));
            let dir = try_reply!(reply, self.inodes.dir(ino.0));
            let d = dir.dir_ref();
            let mut batch = lookup::Batch::new(&self.stack, &d);
            for (i, it) in items.iter().enumerate() {
                let off = offset + i as u64 + 1;
                if it.name == "." || it.name == ".." {
                    // The kernel takes no reference for these: no attributes needed.
                    // SAFETY: all-zero bytes are a valid `libc::stat` (integers only).
                    let mut a = to_attr(&unsafe { std::mem::zeroed::<Stat>() });
                    a.ino = INodeNo(it.ino);
                    a.kind = FileType::Directory;
                    if reply.add(
                        INodeNo(0),
                        off,
                        &it.name,
                        &Duration::ZERO,
                        &a,
                        Generation(0),
                    ) {
                        break;
                    }
                    continue;
                }
                let e = match batch.lookup_listed(&it.name, it.layer) {
                    Ok(Some(e)) => e,
                    _ => continue,
                };
                let attr = self.attr(attr::merged_stat(&e));
                let gen_now = self
                    .inodes
                    .remember(e.ino, ino.0, &it.name, e.lowers(&self.stack));
                if reply.add(
                    INodeNo(e.ino),
                    off,
                    &it.name,
                    &self.stack.view.cache_ttl,
                    &attr,
                    Generation(gen_now),
                ) {
                    // Not sent: give the reference back.
                    self.inodes.forget(e.ino, 1);
                    break;
                }
            }
            reply.ok();
        })
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.dirs.remove(&fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.count_op("fsyncdir");
        guarded("fsyncdir", ino, || {
            if let Ok(p) = self.inodes.path(ino.0) {
                try_reply!(reply, file::fsync_dir(&self.stack, &p));
            }
            reply.ok();
        })
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.count_op("statfs");
        let s = try_reply!(reply, self.stack.statfs());
        reply.statfs(
            s.f_blocks,
            s.f_bfree,
            s.f_bavail,
            s.f_files,
            s.f_ffree,
            s.f_bsize as u32,
            s.f_namemax as u32,
            s.f_frsize as u32,
        );
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.count_op("setxattr");
        guarded("setxattr", ino, || {
            try_reply!(reply, xattr::enabled(&self.stack));
            let value = self.stack.view.ids.acl_value_to_disk(name, value);
            let r = match self.entry_of(ino.0) {
                Ok((place, e)) => xattr::set(&self.stack, &place.path, &e, name, &value, flags),
                Err(err) => self.on_unnamed(ino.0, err, |fd| {
                    xattr::set_fd(&self.stack, fd, name, &value, flags)
                }),
            };
            try_reply!(reply, r);
            reply.ok();
        })
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.count_op("getxattr");
        guarded("getxattr", ino, || {
            if ino.0 == ROOT && name == STATS_XATTR {
                return Self::xattr_reply(self.stats_text().as_bytes(), size, reply);
            }
            try_reply!(reply, xattr::enabled(&self.stack));
            let v = match self.attr_entry(ino.0) {
                Ok((place, e, dir)) => xattr::get(&self.stack, &place.path, &e, dir, name),
                Err(err) => self.on_unnamed(ino.0, err, |fd| xattr::get_fd(&self.stack, fd, name)),
            };
            let v = try_reply!(reply, v);
            let v = self.stack.view.ids.acl_value_to_shown(name, &v);
            Self::xattr_reply(&v, size, reply);
        })
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.count_op("listxattr");
        guarded("listxattr", ino, || {
            try_reply!(reply, xattr::enabled(&self.stack));
            let names = match self.attr_entry(ino.0) {
                Ok((place, e, dir)) => xattr::list(&self.stack, &place.path, &e, dir),
                Err(err) => self.on_unnamed(ino.0, err, |fd| xattr::list_fd(&self.stack, fd)),
            };
            let names = try_reply!(reply, names);
            let mut buf = Vec::new();
            for n in names {
                buf.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(n.as_os_str()));
                buf.push(0);
            }
            Self::xattr_reply(&buf, size, reply);
        })
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count_op("removexattr");
        guarded("removexattr", ino, || {
            try_reply!(reply, xattr::enabled(&self.stack));
            let r = match self.entry_of(ino.0) {
                Ok((place, e)) => xattr::remove(&self.stack, &place.path, &e, name),
                Err(err) => {
                    self.on_unnamed(ino.0, err, |fd| xattr::remove_fd(&self.stack, fd, name))
                }
            };
            try_reply!(reply, r);
            reply.ok();
        })
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.count_op("access");
        guarded("access", ino, || {
            try_reply!(reply, self.entry_of(ino.0));
            try_reply!(reply, attr::access(&self.stack, mask.bits()));
            reply.ok();
        })
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.count_op("create");
        guarded("create", parent, || {
            let obj = NewObject::File { mode, flags };
            let (e, fd) = try_reply!(reply, self.create_obj(req, parent, name, obj, umask));
            let fd = match fd {
                Some(fd) => fd,
                None => return reply.error(Errno::from_i32(libc::EIO)),
            };
            let g = self
                .inodes
                .remember_as(e.ino, parent.0, name, Vec::new(), true);
            self.reply_created(&e, fd, flags, g, reply);
        })
    }

    fn tmpfile(
        &self,
        req: &Request,
        parent: INodeNo,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.count_op("tmpfile");
        guarded("tmpfile", parent, || {
            let pdir = try_reply!(reply, self.inodes.dir(parent.0));
            let d = pdir.dir_ref();
            let who = caller(&self.stack.view.ids, req, umask);
            let (e, fd) = try_reply!(reply, dir_ops::tmpfile(&self.stack, &d, mode, flags, who));
            tracing::debug!(
                op = "tmpfile",
                parent = parent.0,
                ino = e.ino,
                "upper layer"
            );
            // The kernel counts this reply as a lookup of the node, so it
            // is one, with an empty name until a link names it; getattr,
            // setattr, open and link reach it through its handle meanwhile.
            let g = self
                .inodes
                .remember_as(e.ino, parent.0, OsStr::new(""), Vec::new(), true);
            self.reply_created(&e, fd, flags, g, reply);
        })
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.count_op("fallocate");
        guarded_io("fallocate", ino, Some((offset, length)), || {
            let h = try_reply!(reply, self.file(fh));
            let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
            try_reply!(reply, sys::fallocate(fd.as_fd(), mode, offset, length));
            reply.ok();
        })
    }

    fn ioctl(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        self.count_op("ioctl");
        guarded("ioctl", ino, || {
            // Only the inode-flag ioctls (FUSE sends them restricted, with
            // fixed sizes); anything else is not ours.
            let Some(op) = sys::FlagsIoctl::from_cmd(cmd) else {
                return reply.error(Errno::from_i32(libc::ENOTTY));
            };
            if op.sets() && in_data.len() < op.size() {
                return reply.error(Errno::from_i32(libc::EINVAL));
            }
            let (place, e) = try_reply!(reply, self.entry_of(ino.0));
            let out = try_reply!(
                reply,
                attr::flags_ioctl(&self.stack, &place.path, &e, op, in_data)
            );
            reply.ioctl(0, &out);
        })
    }

    fn lseek(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        self.count_op("lseek");
        guarded("lseek", ino, || {
            let h = try_reply!(reply, self.file(fh));
            try_reply!(reply, self.follow_copy_up(&h.file));
            let fd = h.file.fd.read().unwrap_or_else(|p| p.into_inner());
            let r = try_reply!(reply, sys::lseek(fd.as_fd(), offset, whence));
            reply.offset(r);
        })
    }
}

/// Names used by tools that read a live mount.
pub fn stats_xattr_name() -> OsString {
    OsString::from(STATS_XATTR)
}
