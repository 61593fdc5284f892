//! Top-down name resolution (the kernel's namei.c concern).
//!
//! Rules served (docs/semantics.md "Lookup"): visit the layers where the
//! parent directory exists, top to bottom; a whiteout ends the search (the
//! name does not exist); a non-directory ends it and is the result; a
//! directory merges with same-named directories below until an opaque one or
//! a non-directory stops the merge. Only the topmost object's metadata shows.

use crate::dircache::{DirFd, Listed};
use crate::stack::{Stack, child_path};
use crate::sys::{self, Stat, XTarget};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A merged directory as the core sees it: its path inside the overlay and
/// the lower layers merged into it (top first). Whether the upper layer has
/// it is checked on the spot, since only this mount changes the upper.
#[derive(Debug, Clone, Copy)]
pub struct DirRef<'a> {
    pub path: &'a Path,
    pub lowers: &'a [usize],
}

/// A merged directory held by value (its path and lowers), as a node
/// table keeps it; `dir_ref` lends it to the core.
#[derive(Debug, Clone)]
pub struct DirBuf {
    pub path: PathBuf,
    pub lowers: std::sync::Arc<[usize]>,
}

impl DirBuf {
    pub fn dir_ref(&self) -> DirRef<'_> {
        DirRef {
            path: &self.path,
            lowers: &self.lowers,
        }
    }
}

/// What a name resolves to.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Topmost layer holding the object; its metadata is the one shown.
    pub layer: usize,
    pub st: Stat,
    /// Every layer in the merge, top first (`layers[0] == layer`); a
    /// non-directory has just its own.
    pub layers: Vec<usize>,
    pub opaque: bool,
    /// The overlay inode number (stable across copy-up).
    pub ino: u64,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        sys::is_dir(&self.st)
    }
    /// Lower layers merged into this directory (empty for non-directories).
    pub fn lowers(&self, stack: &Stack) -> Vec<usize> {
        if !self.is_dir() {
            return Vec::new();
        }
        self.layers
            .iter()
            .copied()
            .filter(|l| !stack.is_upper(*l))
            .collect()
    }
    pub fn in_upper(&self, stack: &Stack) -> bool {
        stack.is_upper(self.layer)
    }
    /// Does any lower layer contribute to this object?
    pub fn has_lower(&self, stack: &Stack) -> bool {
        self.layers.iter().any(|l| !stack.is_upper(*l))
    }
}

/// Split a relative path into its parent and final name; the root is
/// `("", ".")`.
pub fn split(path: &Path) -> (PathBuf, OsString) {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
        _ => (PathBuf::new(), OsString::from(".")),
    }
}

/// The layers to visit for children of `dir`: upper (if any) then its lowers.
pub fn visit_order(stack: &Stack, dir: &DirRef) -> Vec<usize> {
    let mut v = Vec::with_capacity(dir.lowers.len() + 1);
    if stack.has_upper {
        v.push(0);
    }
    v.extend_from_slice(dir.lowers);
    v
}

/// Resolve `name` in the merged directory `dir`. `Ok(None)`: no such name.
pub fn lookup(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<Option<Entry>> {
    lookup_in(stack, dir, name, visit_order(stack, dir), &mut |l| {
        stack.dir(l, dir.path)
    })
}

/// Many lookups in one merged directory (a READDIRPLUS batch): each
/// layer's directory is opened once for the batch, not once per name (the
/// upper one is otherwise resolved afresh every time).
pub struct Batch<'a> {
    stack: &'a Stack,
    dir: &'a DirRef<'a>,
    /// Per layer: the open directory, or the errno opening it gave.
    fds: Vec<Option<Result<DirFd, i32>>>,
}

impl<'a> Batch<'a> {
    pub fn new(stack: &'a Stack, dir: &'a DirRef<'a>) -> Self {
        Batch {
            stack,
            dir,
            fds: vec![None; stack.layers.len()],
        }
    }

    /// `lookup`, through the batch's directory fds.
    pub fn lookup(&mut self, name: &OsStr) -> io::Result<Option<Entry>> {
        let (stack, dir, fds) = (self.stack, self.dir, &mut self.fds);
        lookup_in(stack, dir, name, visit_order(stack, dir), &mut |l| {
            Self::fd(stack, dir, fds, l)
        })
    }

    /// The upper directory, where the batch has opened it.
    pub fn upper(&self) -> Option<DirFd> {
        match self.fds.first() {
            Some(Some(Ok(fd))) if self.stack.has_upper => Some(fd.clone()),
            _ => None,
        }
    }

    fn fd(
        stack: &Stack,
        dir: &DirRef,
        fds: &mut [Option<Result<DirFd, i32>>],
        l: usize,
    ) -> io::Result<DirFd> {
        fds[l]
            .get_or_insert_with(|| stack.dir(l, dir.path).map_err(|e| sys::errno(&e)))
            .clone()
            .map_err(io::Error::from_raw_os_error)
    }

    /// `lookup` of a name a merged listing found first in `layer`: lower
    /// layers above that one did not list it and never change, so they are
    /// skipped; the upper layer, which may have changed since, is not.
    pub fn lookup_listed(&mut self, name: &OsStr, layer: usize) -> io::Result<Option<Entry>> {
        let (stack, dir, fds) = (self.stack, self.dir, &mut self.fds);
        let skip = dir.lowers.iter().position(|x| *x == layer).unwrap_or(0);
        let order = stack.has_upper.then_some(0).into_iter();
        let order = order.chain(dir.lowers[skip..].iter().copied());
        lookup_in(stack, dir, name, order, &mut |l| {
            Self::fd(stack, dir, fds, l)
        })
    }
}

/// A node a lookup resolved before, seen again from its topmost object
/// alone (a GETATTR): `lowers` are the lowers that lookup merged into it
/// (none for a non-directory). Lowers never change and a directory's merge
/// ends only with the directory, so while the upper still shows a
/// directory there (or nothing, over a lower one) the merge is as it was
/// and no other layer needs a look: O(1) in the depth of the stack, where
/// `lookup` stats the name in every lower. `None` where that cannot be told
/// this way (a whiteout, or a lower non-directory): ask `lookup`. The
/// entry's `opaque` is not read (false): it serves attributes only. With
/// it comes the directory of the layer the object was found in (so that
/// reading its xattrs needs no second resolution of the path).
pub fn known(
    stack: &Stack,
    parent: &DirRef,
    name: &OsStr,
    lowers: &[usize],
) -> io::Result<Option<(Entry, DirFd)>> {
    let at = |l: usize| -> io::Result<Option<(Stat, DirFd)>> {
        let d = match stack.dir(l, parent.path) {
            Ok(d) => d,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match sys::fstatat(d.as_fd(), name) {
            Ok(st) if stack.marks(l).is_whiteout(d.as_fd(), name, &st)? => {
                Err(sys::err(libc::ENOENT))
            }
            Ok(mut st) => {
                stack.show_perms(l, XTarget::At(d.as_fd(), name), &mut st);
                Ok(Some((st, d)))
            }
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => Ok(None),
            Err(e) => Err(e),
        }
    };
    let entry = |l: usize, st: Stat, layers: Vec<usize>| Entry {
        layer: l,
        st,
        layers,
        opaque: false,
        ino: stack.inos.ino_at(l, &child_path(parent.path, name), &st),
    };
    if stack.has_upper {
        match at(0) {
            Ok(Some((st, d))) if sys::is_dir(&st) || lowers.is_empty() => {
                let layers = std::iter::once(0).chain(lowers.iter().copied());
                return Ok(Some((entry(0, st, layers.collect()), d)));
            }
            Ok(Some(_)) => return Ok(None),
            Ok(None) => {}
            Err(e) if sys::errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let Some(&top) = lowers.first() else {
        return Ok(None);
    };
    match at(top) {
        Ok(Some((st, d))) if sys::is_dir(&st) => Ok(Some((entry(top, st, lowers.to_vec()), d))),
        Ok(_) => Ok(None),
        Err(e) if sys::errno(&e) == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Does some lower layer still show `name` (so removing the upper object
/// must leave a whiteout)?
pub fn lower_positive(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<bool> {
    let found = lookup_in(stack, dir, name, dir.lowers.iter().copied(), &mut |l| {
        stack.dir(l, dir.path)
    })?;
    Ok(found.is_some())
}

/// Look `name` up in the layers `order`, whose directories `layer_dir`
/// opens.
fn lookup_in(
    stack: &Stack,
    dir: &DirRef,
    name: &OsStr,
    order: impl IntoIterator<Item = usize>,
    layer_dir: &mut dyn FnMut(usize) -> io::Result<DirFd>,
) -> io::Result<Option<Entry>> {
    if name.as_bytes().len() > 255 {
        return Err(sys::err(libc::ENAMETOOLONG));
    }
    if name.is_empty() {
        // The name of a node that has none yet (an O_TMPFILE file).
        return Ok(None);
    }
    if name == "." || name == ".." || name.as_bytes().contains(&b'/') {
        // One component only: `..` of a layer's top directory is outside
        // the layer, and `.`/`..` would be remembered as names of new nodes.
        return Err(sys::err(libc::EINVAL));
    }
    let mut found: Option<Entry> = None;
    for l in order {
        if !stack.is_upper(l) {
            match stack.dirs.listed(
                stack.layers[l].root.as_fd(),
                l,
                dir.path,
                name,
                stack.marks(l),
            ) {
                Listed::Absent => continue,
                Listed::WhitedOut => break,
                Listed::Unknown => {}
            }
        }
        let dfd = match layer_dir(l) {
            Ok(d) => d,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => continue,
            Err(e) => return Err(e),
        };
        let upper = stack.is_upper(l);
        if stack.marks(l).is_marker_in(name, upper) {
            // The AUFS markers themselves never show.
            continue;
        }
        let mut st = match sys::fstatat(dfd.as_fd(), name) {
            Ok(st) => st,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
                if !upper
                    && stack.marks(l).aufs()
                    && stack
                        .dirs
                        .may_have_aufs(stack.layers[l].root.as_fd(), l, dir.path)
                    && stack.marks(l).aufs_whiteout(dfd.as_fd(), name)?
                {
                    break;
                }
                continue;
            }
            Err(e) => return Err(e),
        };
        if stack.marks(l).is_whiteout(dfd.as_fd(), name, &st)? {
            break;
        }
        let is_dir = sys::is_dir(&st);
        match &mut found {
            None => {
                stack.show_perms(l, XTarget::At(dfd.as_fd(), name), &mut st);
                let opaque = is_dir && stack.is_opaque(l, dfd.as_fd(), dir.path, name)?;
                found = Some(Entry {
                    layer: l,
                    st,
                    layers: vec![l],
                    opaque,
                    ino: stack.inos.ino_at(l, &child_path(dir.path, name), &st),
                });
                if !is_dir || opaque {
                    break;
                }
            }
            Some(e) => {
                if !is_dir {
                    break;
                }
                e.layers.push(l);
                if stack.is_opaque(l, dfd.as_fd(), dir.path, name)? {
                    break;
                }
            }
        }
    }
    stack.stats.lookup(found.as_ref().map(|e| e.layer));
    Ok(found)
}

/// The root of the overlay: the upper root (or top lower) with every lower
/// merged beneath.
pub fn root(stack: &Stack) -> io::Result<Entry> {
    let root = stack.layers[0].root.as_fd();
    let mut st = sys::fstat(root)?;
    stack.show_perms(0, XTarget::Fd(root), &mut st);
    Ok(Entry {
        layer: 0,
        st,
        layers: (0..stack.layers.len()).collect(),
        opaque: false,
        ino: 1,
    })
}

/// Resolve a whole relative path from the root, component by component.
/// Returns the entry and, for a directory, its merged lowers. Used by tools
/// and tests; the FUSE adapter walks one name at a time.
pub fn resolve_path(stack: &Stack, path: &Path) -> io::Result<Option<(Entry, Vec<usize>)>> {
    let mut cur = root(stack)?;
    let mut lowers = cur.lowers(stack);
    let mut cur_path = PathBuf::new();
    for comp in path.iter() {
        if comp == OsStr::new(".") || comp.is_empty() {
            continue;
        }
        if !cur.is_dir() {
            return Err(sys::err(libc::ENOTDIR));
        }
        let d = DirRef {
            path: &cur_path,
            lowers: &lowers,
        };
        match lookup(stack, &d, comp)? {
            None => return Ok(None),
            Some(e) => {
                lowers = e.lowers(stack);
                cur = e;
                cur_path = child_path(&cur_path, comp);
            }
        }
    }
    Ok(Some((cur, lowers)))
}
