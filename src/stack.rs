//! Layers and the stack they form (the kernel's super.c concern).
//!
//! Rules served (docs/semantics.md "Layers and options", "Inode numbers, attributes, statfs"):
//! upper above all lowers, lowers top to bottom; no upper means read-only;
//! workdir on the upper's filesystem, layers not overlapping, one mount per
//! upper/workdir (flock); leftovers in workdir cleared at mount. The
//! stack holds, but does not decide, the mount's inode numbers
//! ([`crate::ino`]) and lower-directory caches ([`crate::dircache`]).

use crate::dircache::{DirCache, DirFd};
use crate::idmap::ShownId;
use crate::ino::Inos;
use crate::markers::{DirMarks, MarkPolicy, XattrNs};
use crate::options::{Atime, Marks, MountOptions, RedirectDir};
use crate::perms;
use crate::stats::Stats;
use crate::sys::{self, Stat, XTarget};
use crate::view::View;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One layer directory.
#[derive(Debug)]
pub struct Layer {
    /// Root directory fd; every access inside the layer is relative to it.
    pub root: OwnedFd,
    pub path: PathBuf,
    pub dev: u64,
    pub is_upper: bool,
}

/// Number of copy-up lock stripes: racing copy-ups of one path serialise.
const STRIPES: usize = 64;

/// The ordered layers plus the workdir: everything one mount stands on.
#[derive(Debug)]
pub struct Stack {
    /// `layers[0]` is the upper layer when `has_upper`, then the lowers, top first.
    pub layers: Vec<Layer>,
    pub has_upper: bool,
    /// `workdir/work`: where copy-ups and whiteouts are built before rename.
    pub work: Option<OwnedFd>,
    pub workdir: Option<PathBuf>,
    pub xattr_ns: XattrNs,
    /// Which marks on disk this mount obeys (decided once, at mount; see
    /// [`Stack::marks`]).
    mark_policy: MarkPolicy,
    /// Per layer: are its foreign marks (the other namespace, AUFS files)
    /// obeyed? Where the option leaves it open, only in a layer that no one
    /// but the mounter can reach.
    foreign_marks: Vec<bool>,
    pub volatile: bool,
    /// Whether `overlay.redirect` marks are followed (`redirect_dir=`).
    pub redirect_dir: RedirectDir,
    /// How the mount shows attributes (id mapping, static_nlink, ...).
    pub view: View,
    /// The mount's atime rule (see [`Stack::atime_never`]).
    atime: Atime,
    nodiratime: bool,
    /// Keeps the flocks on upperdir and workdir for the life of the mount.
    _locks: Vec<OwnedFd>,
    tmp_counter: AtomicU64,
    /// The overlay's inode numbers (`st_ino`).
    pub inos: Inos,
    stripes: Vec<Mutex<()>>,
    /// Bumped by every file copy-up: lets open lower handles notice one.
    pub copyup_gen: AtomicU64,
    pub stats: Stats,
    /// Lower directories, cached.
    pub dirs: DirCache,
    /// The upper root, shared: it never moves, so a request in a top-level
    /// directory needs no `openat2` to reach it.
    upper_root: Option<DirFd>,
    /// Per layer: the xattr its owners and modes are kept in, if any
    /// (`perms`; see [`Stack::as_stored`]).
    perms: Vec<Option<&'static str>>,
    /// `xattr_permissions=1|2`: the xattr that owners and modes set
    /// through the mount go to, instead of the upper inodes.
    pub perms_write: Option<&'static str>,
    /// Per layer: read through an idmapped mount, so the kernel shows its
    /// ids already mapped. containers/storage (podman 4.3, `--uidmap`)
    /// hands a mount program its image layers so and passes the same
    /// mapping as `uidmapping=`: those ids are taken as shown ids, not
    /// mapped a second time (see [`Stack::as_stored`]).
    idmapped: Vec<bool>,
}

/// With `xattr_permissions`, the upper root carries the record `name`, so
/// that it is read so by the next mount too: taken from the first lower
/// root that has one (under `name`, or containers/storage's own name for
/// `user.*`), or else what the upper root has itself (as fuse-overlayfs
/// 1.10 does; later releases write root's 0555 there).
fn keep_root_record(layers: &[Layer], name: &'static str) -> io::Result<()> {
    let upper = XTarget::Fd(layers[0].root.as_fd());
    match sys::getxattr(upper, OsStr::new(name)) {
        Ok(_) => return Ok(()),
        Err(e) if sys::errno(&e) != libc::ENODATA => return Err(e),
        Err(_) => {}
    }
    let alike: &[&str] = if name == perms::USER {
        &[perms::USER, perms::CONTAINERS]
    } else {
        &[name]
    };
    let found = layers[1..].iter().find_map(|l| {
        alike
            .iter()
            .find_map(|n| sys::getxattr(XTarget::Fd(l.root.as_fd()), OsStr::new(n)).ok())
    });
    match found {
        Some(v) => sys::setxattr(upper, OsStr::new(name), &v, 0),
        None => perms::write(
            name,
            upper,
            perms::Record::of(&sys::fstat(layers[0].root.as_fd())?),
        ),
    }
}

/// `parent/name` as one relative path ("" parent for the root's children).
pub fn child_path(parent: &Path, name: &OsStr) -> PathBuf {
    if parent.as_os_str().is_empty() {
        PathBuf::from(name)
    } else {
        parent.join(name)
    }
}

fn is_within(a: &Path, b: &Path) -> bool {
    a != b && a.starts_with(b)
}

/// Every layer and the workdir, canonical, with the role each plays.
fn canonical_roles(o: &MountOptions) -> Result<Vec<(String, PathBuf)>, String> {
    let mut canon = Vec::new();
    for (role, p) in o.roles() {
        canon.push((role.clone(), check_dir(&role, p)?));
    }
    Ok(canon)
}

/// The mount point (canonical) may not lie inside a layer or the workdir:
/// the daemon would meet its own mount while serving it and wait on itself
/// (a `find` there deadlocks).
pub fn check_mountpoint(o: &MountOptions, mp: &Path) -> Result<(), String> {
    for (role, p) in canonical_roles(o)? {
        if is_within(mp, &p) {
            return Err(format!(
                "mount point {} is inside {role} {}: mount it outside every layer and the workdir",
                mp.display(),
                p.display()
            ));
        }
    }
    Ok(())
}

/// Root: the upper and `workdir/work` opened in one private clone of the
/// mount holding both (no submounts), as the kernel overlayfs does, so a
/// mount inside the upper is not written through. One clone for both:
/// copy-up renames from one into the other. None where cloning is not
/// permitted (rootless); there the opens refuse to cross a mount instead.
fn private_upper_work(
    o: &MountOptions,
    u: &Path,
    w: &Path,
    ust: &Stat,
    wst: &Stat,
) -> Result<Option<(OwnedFd, OwnedFd)>, String> {
    let common: PathBuf = u
        .components()
        .zip(w.components())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a)
        .collect();
    // The clone carries the mount's atime rule, as the kernel's upper
    // clone carries the overlay's; without mount_setattr, a plain clone.
    let mut atime = match o.atime {
        Atime::Relative => sys::MOUNT_ATTR_RELATIME,
        Atime::Strict => sys::MOUNT_ATTR_STRICTATIME,
        Atime::Never => sys::MOUNT_ATTR_NOATIME,
    };
    if o.nodiratime {
        atime |= sys::MOUNT_ATTR_NODIRATIME;
    }
    let clone = sys::open_atime_tree(&common, atime).or_else(|_| sys::open_tree_clone(&common));
    let Ok(clone) = clone else {
        return Ok(None);
    };
    let open = |p: &Path, want: &Stat| {
        let rel = p.strip_prefix(&common).unwrap_or(p);
        sys::open_dir(clone.as_fd(), rel).ok().filter(|fd| {
            sys::fstat(fd.as_fd())
                .is_ok_and(|st| st.st_dev == want.st_dev && st.st_ino == want.st_ino)
        })
    };
    match (open(u, ust), open(w, wst)) {
        (Some(cu), Some(cw)) => Ok(Some((cu, cw))),
        // Beneath another mount than their common ancestor's: as the kernel
        // says, they must be on one mount (a rename between two is EXDEV).
        _ => Err(format!(
            "upperdir {} and workdir {} are not on the same mount",
            u.display(),
            w.display()
        )),
    }
}

/// Who holds the flock on the object `st` describes, from /proc/locks:
/// "process PID (COMM)".
fn lock_holder(st: &Stat) -> Option<String> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let want = format!(
        "{:02x}:{:02x}:{}",
        libc::major(st.st_dev),
        libc::minor(st.st_dev),
        st.st_ino
    );
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&want.as_str()))
            .then(|| f.get(4).map(|p| p.to_string()))
            .flatten()
    })?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    Some(format!("process {pid} ({})", comm.trim()))
}

fn check_dir(role: &str, p: &Path) -> Result<PathBuf, String> {
    match std::fs::metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(format!("{role} {} does not exist", p.display()))
        }
        Err(e) => Err(format!("{role} {}: {e}", p.display())),
        Ok(m) if !m.is_dir() => Err(format!("{role} {} is not a directory", p.display())),
        Ok(_) => p
            .canonicalize()
            .map_err(|e| format!("{role} {}: {e}", p.display())),
    }
}

impl Stack {
    /// Validate the options and open every layer. Errors are one line naming
    /// the problem.
    pub fn open(o: &MountOptions) -> Result<Stack, String> {
        if o.lowerdirs.is_empty() {
            return Err("lowerdir is missing: give at least one lower layer".into());
        }
        match (&o.upperdir, &o.workdir) {
            (Some(_), None) => return Err("upperdir given without workdir".into()),
            (None, Some(_)) => return Err("workdir given without upperdir".into()),
            _ => {}
        }
        let canon = canonical_roles(o)?;
        for (i, (ra, a)) in canon.iter().enumerate() {
            for (rb, b) in canon.iter().skip(i + 1) {
                if a == b {
                    return Err(format!(
                        "{ra} and {rb} are the same directory {}",
                        a.display()
                    ));
                }
                if is_within(a, b) {
                    return Err(format!(
                        "{ra} {} is inside {rb} {}",
                        a.display(),
                        b.display()
                    ));
                }
                if is_within(b, a) {
                    return Err(format!(
                        "{rb} {} is inside {ra} {}",
                        b.display(),
                        a.display()
                    ));
                }
            }
        }
        let mut layers = Vec::new();
        let mut locks = Vec::new();
        let mut work = None;
        let mut workdir = None;
        let open_root = |p: &Path| -> Result<(OwnedFd, Stat), String> {
            let fd = sys::open_path(p, libc::O_PATH | libc::O_DIRECTORY)
                .map_err(|e| format!("cannot open {}: {e}", p.display()))?;
            let st = sys::fstat(fd.as_fd()).map_err(|e| format!("{}: {e}", p.display()))?;
            Ok((fd, st))
        };
        let lock = |role: &str, p: &Path| -> Result<OwnedFd, String> {
            let fd = sys::open_path(p, libc::O_RDONLY | libc::O_DIRECTORY)
                .map_err(|e| format!("cannot open {role} {}: {e}", p.display()))?;
            sys::flock(fd.as_fd(), libc::LOCK_EX | libc::LOCK_NB).map_err(|_| {
                let holder = sys::fstat(fd.as_fd())
                    .ok()
                    .and_then(|st| lock_holder(&st))
                    .map_or_else(String::new, |h| format!(" ({h} holds its lock)"));
                format!(
                    "{role} {} is in use by another ovlfuse mount{holder}",
                    p.display()
                )
            })?;
            Ok(fd)
        };
        if let (Some(u), Some(w)) = (&o.upperdir, &o.workdir) {
            let u = u.canonicalize().map_err(|e| e.to_string())?;
            let w = w.canonicalize().map_err(|e| e.to_string())?;
            let (ufd, ust) = open_root(&u)?;
            let (wfd, wst) = open_root(&w)?;
            if ust.st_dev != wst.st_dev {
                return Err(format!(
                    "workdir {} is on a different filesystem from upperdir {}",
                    w.display(),
                    u.display()
                ));
            }
            locks.push(lock("workdir", &w)?);
            locks.push(lock("upperdir", &u)?);
            // Cleared as the caller sees it, so a mount inside is noticed.
            let visible_work = prepare_work(wfd.as_fd(), &w)?;
            let (ufd, wfd) = match private_upper_work(o, &u, &w, &ust, &wst)? {
                Some((cu, cw)) => (cu, cw),
                None => (ufd, wfd),
            };
            // The work directory must be on the upper's mount (copy-ups
            // rename from one to the other): never the visible one beside
            // a cloned upper.
            drop(visible_work);
            work = Some(
                sys::open_dir(wfd.as_fd(), Path::new("work"))
                    .map_err(|e| format!("workdir {}/work: {e}", w.display()))?,
            );
            workdir = Some(w);
            layers.push(Layer {
                root: ufd,
                path: u,
                dev: ust.st_dev,
                is_upper: true,
            });
        }
        let mut idmapped = vec![false; layers.len()];
        let idmapped_mounts = sys::idmapped_mount_ids();
        for l in &o.lowerdirs {
            let l = l.canonicalize().map_err(|e| e.to_string())?;
            let (mut fd, st) = open_root(&l)?;
            // Asked of the mount in this namespace: a clone has no entry.
            idmapped.push(sys::mount_id(fd.as_fd()).is_some_and(|m| idmapped_mounts.contains(&m)));
            // Where we may (root), read lowers through a read-only, noatime
            // clone of their mount; else the O_NOATIME opens do their best.
            if let Ok(frozen) = sys::open_frozen_tree(&l)
                && sys::fstat(frozen.as_fd()).is_ok_and(|f| f.st_ino == st.st_ino)
            {
                fd = frozen;
            }
            layers.push(Layer {
                root: fd,
                path: l,
                dev: st.st_dev,
                is_upper: false,
            });
        }
        let xattr_ns = if o.userxattr
            || sys::geteuid() != 0
            || work
                .as_ref()
                .is_some_and(|w| !takes_trusted_xattrs(w.as_fd()))
        {
            XattrNs::User
        } else {
            XattrNs::Trusted
        };
        // As the kernel with userxattr: redirects in the user namespace
        // are anyone's to write, so they are never followed (a directory
        // with one answers EPERM) nor written, and asking otherwise is an
        // error before anything is mounted.
        let redirect_dir = match (xattr_ns, o.redirect_dir) {
            (XattrNs::User, Some(r)) if r != RedirectDir::NoFollow => {
                return Err(format!(
                    "redirect_dir={} conflicts with user.overlay.* marks (userxattr, or a mount by an \
                     ordinary user or without trusted.* xattrs): as in the kernel, redirects there are \
                     neither followed nor written (redirect_dir=nofollow)",
                    r.name()
                ));
            }
            (XattrNs::User, _) => RedirectDir::NoFollow,
            (XattrNs::Trusted, r) => r.unwrap_or_default(),
        };
        // Root of a user namespace (rootless Podman's mount program) mounts
        // what its user owns: the user's own mount, for the marks it obeys.
        let own = sys::geteuid() != 0 || !sys::in_initial_user_ns();
        let marks = MarkPolicy::new(xattr_ns, o.marks, own);
        let foreign_marks = layers
            .iter()
            .map(|l| match o.marks {
                Some(m) => m == Marks::All,
                None => own || private_to_mounter(&l.path),
            })
            .collect();
        let upper_root = match work {
            Some(_) => Some(Arc::new(
                sys::dup(layers[0].root.as_fd()).map_err(|e| format!("upperdir: {e}"))?,
            )),
            None => None,
        };
        let inos = Inos::new(work.is_some());
        let perms_write = match work {
            Some(_) => perms::name_for(o.xattr_permissions),
            None => None,
        };
        if let Some(name) = perms_write {
            keep_root_record(&layers, name).map_err(|e| {
                format!(
                    "upperdir {}: cannot keep the xattr_permissions record {name}: {e}",
                    layers[0].path.display()
                )
            })?;
        }
        let perms = layers
            .iter()
            .enumerate()
            .map(|(i, l)| match perms_write {
                Some(name) if i == 0 => Some(name),
                _ => perms::probe(XTarget::Fd(l.root.as_fd())),
            })
            .collect();
        if idmapped.contains(&true) {
            tracing::info!("a lower is on an idmapped mount: its ids are taken as shown");
        }
        Ok(Stack {
            idmapped,
            perms,
            perms_write,
            upper_root,
            layers,
            has_upper: work.is_some(),
            work,
            workdir,
            xattr_ns,
            mark_policy: marks,
            foreign_marks,
            volatile: o.volatile,
            redirect_dir,
            view: View::from_options(o),
            atime: o.atime,
            nodiratime: o.nodiratime,
            _locks: locks,
            tmp_counter: AtomicU64::new(0),
            inos,
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            copyup_gen: AtomicU64::new(0),
            stats: Default::default(),
            dirs: DirCache::default(),
        })
    }

    /// Open the layers for inspection only: no workdir lock, no clearing,
    /// and the upper layer (if given) read as the top layer.
    pub fn open_readonly(o: &MountOptions) -> Result<Stack, String> {
        let mut lowers = Vec::new();
        lowers.extend(o.upperdir.iter().cloned());
        lowers.extend(o.lowerdirs.iter().cloned());
        let ro = MountOptions {
            lowerdirs: lowers,
            userxattr: o.userxattr,
            marks: o.marks,
            redirect_dir: o.redirect_dir,
            ..Default::default()
        };
        let mut s = Stack::open(&ro)?;
        if o.upperdir.is_some()
            && let Some(l) = s.layers.first_mut()
        {
            l.is_upper = true;
        }
        Ok(s)
    }

    pub fn upper(&self) -> Option<&Layer> {
        if self.has_upper {
            self.layers.first()
        } else {
            None
        }
    }

    /// The upper layer, or EROFS for a read-only stack.
    pub fn upper_or_erofs(&self) -> io::Result<&Layer> {
        self.upper().ok_or_else(|| sys::err(libc::EROFS))
    }

    pub fn work(&self) -> io::Result<BorrowedFd<'_>> {
        self.work
            .as_ref()
            .map(|w| w.as_fd())
            .ok_or_else(|| sys::err(libc::EROFS))
    }

    /// Index of the first lower layer.
    pub fn first_lower(&self) -> usize {
        usize::from(self.has_upper)
    }

    pub fn is_upper(&self, layer: usize) -> bool {
        self.has_upper && layer == 0
    }

    /// Whether the mount's rule says a read of an upper object (a listing,
    /// for a directory) never moves its atime: then it is opened O_NOATIME,
    /// which also holds where the upper could not be cloned (not root).
    pub fn atime_never(&self, dir: bool) -> bool {
        self.atime == Atime::Never || (dir && self.nodiratime)
    }

    /// A fresh name for a temporary object under workdir/work.
    pub fn tmp_name(&self) -> OsString {
        let n = self.tmp_counter.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#ovl{:x}.{n:x}", std::process::id()))
    }

    /// Serialise copy-ups of one path.
    pub fn stripe(&self, path: &Path) -> std::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        let i = (h.finish() as usize) % STRIPES;
        self.stripes[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// statfs of the upper layer, or of the top lower on a read-only stack.
    pub fn statfs(&self) -> io::Result<libc::statvfs> {
        sys::fstatvfs(self.layers[0].root.as_fd())
    }

    /// Open a directory of the upper layer by its path inside the overlay.
    pub fn upper_dir(&self, rel: &Path) -> io::Result<DirFd> {
        match &self.upper_root {
            Some(r) if rel.as_os_str().is_empty() => Ok(r.clone()),
            _ => sys::open_dir(self.layers[0].root.as_fd(), rel).map(Arc::new),
        }
    }

    /// Open a directory of one layer by its path in that layer (for the
    /// upper, the overlay path; a lower's comes from a lookup's stack).
    pub fn dir(&self, layer: usize, rel: &Path) -> io::Result<DirFd> {
        if self.is_upper(layer) {
            // The upper changes under renames: resolved afresh each time.
            return self.upper_dir(rel);
        }
        self.dirs.dir(self.layers[layer].root.as_fd(), layer, rel)
    }

    /// Open and list every lower root into the directory cache now,
    /// before the mount serves: every path starts at the root, and its
    /// first lookup would otherwise open each lower root and probe the
    /// name in every one while a caller waits.
    pub fn warm_root(&self) {
        for l in 0..self.layers.len() {
            if !self.is_upper(l) {
                self.dirs.warm(self.layers[l].root.as_fd(), l);
            }
        }
    }

    /// Is the directory `name` in `dir` (open as `dfd`, in `layer`) opaque?
    pub fn is_opaque(
        &self,
        layer: usize,
        dfd: BorrowedFd,
        dir: &Path,
        name: &OsStr,
    ) -> io::Result<bool> {
        Ok(self.dir_marks(layer, dfd, dir, name)?.opaque)
    }

    /// The opaque and redirect marks of the directory `name` in `dir` (a
    /// path in `layer`, open as `dfd`). Lower answers are remembered; a
    /// failure to tell (EMFILE, EIO) is the caller's error, since taking
    /// it for "no" would let the layers below show through.
    pub fn dir_marks(
        &self,
        layer: usize,
        dfd: BorrowedFd,
        dir: &Path,
        name: &OsStr,
    ) -> io::Result<DirMarks> {
        if self.is_upper(layer) {
            return self.marks(layer).dir_marks(dfd, name);
        }
        self.dirs.marks((layer, child_path(dir, name)), || {
            self.marks(layer).dir_marks(dfd, name)
        })
    }

    /// `st`, of the object `obj` in `layer`, as the layer stores it, which
    /// is what the core works with (the view maps ids for the mount): the
    /// ids of a layer read through an idmapped mount mapped back, and the
    /// owner and mode the layer keeps in an xattr for it, if it keeps them
    /// so.
    pub fn as_stored(&self, layer: usize, obj: XTarget, st: &mut sys::Stat) {
        if self.idmapped.get(layer) == Some(&true) {
            st.st_uid = self.view.ids.uid.disk(ShownId(st.st_uid)).0;
            st.st_gid = self.view.ids.gid.disk(ShownId(st.st_gid)).0;
        }
        if let Some(Some(name)) = self.perms.get(layer) {
            perms::apply(name, obj, st);
        }
    }

    /// An xattr value read from `layer`, as the layer stores it: through
    /// an idmapped mount the kernel has mapped the ids of an ACL already.
    pub fn stored_xattr(&self, layer: usize, name: &OsStr, v: Vec<u8>) -> Vec<u8> {
        if self.idmapped.get(layer) == Some(&true) {
            self.view.ids.acl_value_to_disk(name, &v)
        } else {
            v
        }
    }

    /// The marks this mount obeys in `layer`.
    pub fn marks(&self, layer: usize) -> MarkPolicy {
        let mut m = self.mark_policy;
        m.foreign = self.foreign_marks.get(layer).copied().unwrap_or(m.foreign);
        m
    }
}

impl crate::markers::Workdir for Stack {
    fn work(&self) -> io::Result<BorrowedFd<'_>> {
        Stack::work(self)
    }
    fn tmp_name(&self) -> OsString {
        Stack::tmp_name(self)
    }
    fn xattr_ns(&self) -> XattrNs {
        self.xattr_ns
    }
    fn whiteout_made(&self) {
        self.stats.whiteout();
    }
}

/// Whether no one but this daemon's user can write anything at or below
/// `path`: the directory or one of its ancestors is ours with no access for
/// group and others (containers/storage keeps each layer in such a root
/// directory). Marks of every form there were written by the mounter (or
/// with its consent), so obeying them hides nothing it did not choose; the
/// layers are held by fd from here on, so a later rename changes nothing.
fn private_to_mounter(path: &Path) -> bool {
    let me = sys::geteuid();
    path.ancestors().any(|a| {
        std::fs::symlink_metadata(a).is_ok_and(|m| {
            use std::os::unix::fs::MetadataExt;
            m.is_dir() && m.uid() == me && m.mode() & 0o077 == 0
        })
    })
}

/// Whether the upper's filesystem lets us write `trusted.*` xattrs, probed
/// on our own work directory. Root of a user namespace cannot (rootless
/// Podman runs its mount program so): its marks then go to
/// `user.overlay.*`, which the kernel reads with `userxattr`.
fn takes_trusted_xattrs(work: BorrowedFd) -> bool {
    let name = OsStr::new("trusted.overlay.ovlfuse-probe");
    match sys::setxattr(sys::XTarget::Fd(work), name, b"", 0) {
        Ok(()) => {
            let _ = sys::removexattr(sys::XTarget::Fd(work), name);
            true
        }
        // Only a refusal says so; a full disk or a quota must not switch an
        // existing upper's marks to another namespace.
        Err(e) => sys::errno(&e) != libc::EPERM,
    }
}

/// Create (or empty) workdir/work, clearing what a crashed mount left.
fn prepare_work(wfd: BorrowedFd, w: &Path) -> Result<OwnedFd, String> {
    let name = OsStr::new("work");
    match sys::mkdirat(wfd, name, 0o700) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(format!("cannot create {}/work: {e}", w.display())),
    }
    let work = sys::open_dir(wfd, Path::new("work"))
        .map_err(|e| format!("workdir {}/work: {e}", w.display()))?;
    // Clearing never crosses a mount; one inside is named, and left alone,
    // as the kernel leaves it.
    if let Some(rel) = mount_inside(work.as_fd(), Path::new("")) {
        return Err(format!(
            "{}/work/{} is a mount point: unmount it, or use another workdir",
            w.display(),
            rel.display()
        ));
    }
    clear_dir(work.as_fd()).map_err(|e| {
        let uid = sys::geteuid();
        match sys::fstat(work.as_fd()) {
            // The kernel overlayfs leaves workdir/work (root's, mode 000)
            // behind; a user cannot empty it and should be told why.
            Ok(st) if st.st_uid != uid => format!(
                "cannot clear {}/work: it belongs to uid {} (a kernel overlay mount leaves one \
                 owned by root); remove it as its owner (rm -rf {}/work) or use another workdir",
                w.display(),
                st.st_uid,
                w.display()
            ),
            _ => format!("cannot clear {}/work: {e}", w.display()),
        }
    })?;
    Ok(work)
}

/// The first mount point found beneath `dir` (`rel` is its path so far).
fn mount_inside(dir: BorrowedFd, rel: &Path) -> Option<PathBuf> {
    let rd = sys::openat(dir, OsStr::new("."), libc::O_RDONLY | libc::O_DIRECTORY, 0).ok()?;
    for e in sys::read_dir_fd(rd).ok()? {
        if sys::is_mount_root(dir, &e.name).unwrap_or(false) {
            return Some(rel.join(&e.name));
        }
        if e.dtype == libc::DT_DIR
            && let Ok(sub) = sys::openat(dir, &e.name, libc::O_PATH | libc::O_DIRECTORY, 0)
            && let Some(found) = mount_inside(sub.as_fd(), &rel.join(&e.name))
        {
            return Some(found);
        }
    }
    None
}

/// Remove everything inside a directory (never following symlinks, never
/// crossing a mount: the opens refuse with EXDEV).
pub fn clear_dir(dir: BorrowedFd) -> io::Result<()> {
    let dot = OsStr::new(".");
    let flags = libc::O_RDONLY | libc::O_DIRECTORY;
    let rd = match sys::openat(dir, dot, flags, 0) {
        // A directory made 0600 (say) by its owner, about to go: an
        // unprivileged daemon must give itself search rights to empty it,
        // where the kernel would use the mounter's rights.
        Err(e) if sys::errno(&e) == libc::EACCES => {
            sys::chmod_fd(dir, 0o700)?;
            sys::openat(dir, dot, flags, 0)?
        }
        r => r?,
    };
    for e in sys::read_dir_fd(rd)? {
        let st = sys::fstatat(dir, &e.name)?;
        if sys::is_dir(&st) {
            let sub = sys::openat(dir, &e.name, libc::O_PATH | libc::O_DIRECTORY, 0)?;
            clear_dir(sub.as_fd())?;
        }
        sys::unlinkat(dir, &e.name, sys::is_dir(&st))?;
    }
    Ok(())
}
