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

/// Where one layer's part of a merged object lives: the layer, and the
/// object's path inside that layer. Without redirects that is the overlay
/// path; a redirect (see [`lookup`]) sends a lower part elsewhere, so each
/// node keeps the places its lookup found (the kernel's lower stack).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerPath {
    pub layer: usize,
    pub path: PathBuf,
}

/// A merged directory as the core sees it: its path inside the overlay
/// (which is also its path in the upper layer) and the lower directories
/// merged into it (top first). Whether the upper layer has it is checked
/// on the spot, since only this mount changes the upper.
#[derive(Debug, Clone, Copy)]
pub struct DirRef<'a> {
    pub path: &'a Path,
    pub lowers: &'a [LayerPath],
}

/// A merged directory held by value (its path and lowers), as a node
/// table keeps it; `dir_ref` lends it to the core.
#[derive(Debug, Clone)]
pub struct DirBuf {
    pub path: PathBuf,
    pub lowers: std::sync::Arc<[LayerPath]>,
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
    /// Every layer in the merge with the object's place in it, top first
    /// (`layers[0].layer == layer`); a non-directory has just its own. The
    /// upper's place is the overlay path at the time of the lookup.
    pub layers: Vec<LayerPath>,
    pub opaque: bool,
    /// The overlay inode number (stable across copy-up).
    pub ino: u64,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        sys::is_dir(&self.st)
    }
    /// Lower directories merged into this directory (empty for
    /// non-directories).
    pub fn lowers(&self, stack: &Stack) -> Vec<LayerPath> {
        if !self.is_dir() {
            return Vec::new();
        }
        self.layers
            .iter()
            .filter(|l| !stack.is_upper(l.layer))
            .cloned()
            .collect()
    }
    pub fn in_upper(&self, stack: &Stack) -> bool {
        stack.is_upper(self.layer)
    }
    /// Does any lower layer contribute to this object?
    pub fn has_lower(&self, stack: &Stack) -> bool {
        self.layers.iter().any(|l| !stack.is_upper(l.layer))
    }
    /// The directory holding the topmost object in its layer, and its name
    /// there. `parent` is the overlay path of the object's parent: the
    /// upper object is reached by it (the upper changes under renames),
    /// a lower one by the place its lookup found.
    pub fn top_dir(
        &self,
        stack: &Stack,
        parent: &Path,
        name: &OsStr,
    ) -> io::Result<(DirFd, OsString)> {
        match self.layers.first() {
            Some(lp) if !stack.is_upper(lp.layer) => {
                let (dir, n) = split(&lp.path);
                Ok((stack.dir(lp.layer, &dir)?, n))
            }
            _ => Ok((stack.upper_dir(parent)?, name.to_os_string())),
        }
    }
    /// The topmost object's name in its layer (`name` for the upper's).
    pub fn top_name<'a>(&'a self, stack: &Stack, name: &'a OsStr) -> &'a OsStr {
        match self.layers.first() {
            Some(lp) if !stack.is_upper(lp.layer) => lp.path.file_name().unwrap_or(name),
            _ => name,
        }
    }
}

/// The lower stack of the overlay root: every lower layer's root.
pub fn root_lowers(stack: &Stack) -> Vec<LayerPath> {
    (stack.first_lower()..stack.layers.len())
        .map(|layer| LayerPath {
            layer,
            path: PathBuf::new(),
        })
        .collect()
}

/// Split a relative path into its parent and final name; the root is
/// `("", ".")`.
pub fn split(path: &Path) -> (PathBuf, OsString) {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => (p.to_path_buf(), n.to_os_string()),
        _ => (PathBuf::new(), OsString::from(".")),
    }
}

/// The layers to visit for children of `dir`, with the directory's path
/// in each: upper (if any) then its lowers.
pub fn visit_order<'a>(stack: &Stack, dir: &DirRef<'a>) -> Vec<(usize, &'a Path)> {
    let mut v = Vec::with_capacity(dir.lowers.len() + 1);
    if stack.has_upper {
        v.push((0, dir.path));
    }
    v.extend(dir.lowers.iter().map(|l| (l.layer, l.path.as_path())));
    v
}

/// The directory `dir` in `layer`: the upper by its overlay path, a lower
/// by its place in `dir`'s lower stack (ENOENT where it has none).
pub fn dir_in(stack: &Stack, dir: &DirRef, layer: usize) -> io::Result<DirFd> {
    if stack.is_upper(layer) {
        return stack.upper_dir(dir.path);
    }
    match dir.lowers.iter().find(|l| l.layer == layer) {
        Some(l) => stack.dir(layer, &l.path),
        None => Err(sys::err(libc::ENOENT)),
    }
}

/// Resolve `name` in the merged directory `dir`. `Ok(None)`: no such name.
pub fn lookup(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<Option<Entry>> {
    lookup_in(stack, dir, name, true, 0, &mut |l| dir_in(stack, dir, l))
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
        lookup_in(stack, dir, name, true, 0, &mut |l| {
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
            .get_or_insert_with(|| dir_in(stack, dir, l).map_err(|e| sys::errno(&e)))
            .clone()
            .map_err(io::Error::from_raw_os_error)
    }

    /// `lookup` of a name a merged listing found first in `layer`: lower
    /// layers above that one did not list it and never change, so they are
    /// skipped (nothing there can redirect the lookup either); the upper
    /// layer, which may have changed since, is not.
    pub fn lookup_listed(&mut self, name: &OsStr, layer: usize) -> io::Result<Option<Entry>> {
        let (stack, dir, fds) = (self.stack, self.dir, &mut self.fds);
        let skip = dir
            .lowers
            .iter()
            .position(|x| x.layer == layer)
            .unwrap_or(0);
        lookup_in(stack, dir, name, true, skip, &mut |l| {
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
    lowers: &[LayerPath],
) -> io::Result<Option<(Entry, DirFd)>> {
    // The object `n` in the directory `dir` of layer `l`.
    let at = |l: usize, dir: &Path, n: &OsStr| -> io::Result<Option<(Stat, DirFd)>> {
        let d = match stack.dir(l, dir) {
            Ok(d) => d,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        match sys::fstatat(d.as_fd(), n) {
            Ok(st) if stack.marks(l).is_whiteout(d.as_fd(), n, &st)? => Err(sys::err(libc::ENOENT)),
            Ok(mut st) => {
                stack.as_stored(l, XTarget::At(d.as_fd(), n), &mut st);
                Ok(Some((st, d)))
            }
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => Ok(None),
            Err(e) => Err(e),
        }
    };
    if stack.has_upper {
        match at(0, parent.path, name) {
            Ok(Some((st, d))) if sys::is_dir(&st) || lowers.is_empty() => {
                let path = child_path(parent.path, name);
                let ino = stack.inos.ino_at(0, &path, &st);
                let up = LayerPath { layer: 0, path };
                let layers = std::iter::once(up).chain(lowers.iter().cloned());
                let e = Entry {
                    layer: 0,
                    st,
                    layers: layers.collect(),
                    opaque: false,
                    ino,
                };
                return Ok(Some((e, d)));
            }
            Ok(Some(_)) => return Ok(None),
            Ok(None) => {}
            Err(e) if sys::errno(&e) == libc::ENOENT => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    let Some(top) = lowers.first() else {
        return Ok(None);
    };
    let (dir, n) = split(&top.path);
    match at(top.layer, &dir, &n) {
        Ok(Some((st, d))) if sys::is_dir(&st) => {
            let e = Entry {
                layer: top.layer,
                st,
                layers: lowers.to_vec(),
                opaque: false,
                ino: stack.inos.ino_at(top.layer, &top.path, &st),
            };
            Ok(Some((e, d)))
        }
        Ok(_) => Ok(None),
        Err(e) if sys::errno(&e) == libc::ENOENT => Ok(None),
        Err(e) => Err(e),
    }
}

/// Does some lower layer still show `name` (so removing the upper object
/// must leave a whiteout)?
pub fn lower_positive(stack: &Stack, dir: &DirRef, name: &OsStr) -> io::Result<bool> {
    let found = lookup_in(stack, dir, name, false, 0, &mut |l| dir_in(stack, dir, l))?;
    Ok(found.is_some())
}

/// What one layer holds at one name.
enum Probe {
    Absent,
    Whiteout,
    Found(Stat),
}

/// The object `name` in the directory `dfd` (at `dir` in `layer`), as a
/// lookup sees it: markers never show, whiteouts end the search.
fn probe(stack: &Stack, layer: usize, dfd: &DirFd, dir: &Path, name: &OsStr) -> io::Result<Probe> {
    let upper = stack.is_upper(layer);
    if stack.marks(layer).is_marker_in(name, upper) {
        // The AUFS markers themselves never show.
        return Ok(Probe::Absent);
    }
    let st = match sys::fstatat(dfd.as_fd(), name) {
        Ok(st) => st,
        Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
            if !upper
                && stack.marks(layer).aufs()
                && stack
                    .dirs
                    .may_have_aufs(stack.layers[layer].root.as_fd(), layer, dir)
                && stack.marks(layer).aufs_whiteout(dfd.as_fd(), name)?
            {
                return Ok(Probe::Whiteout);
            }
            return Ok(Probe::Absent);
        }
        Err(e) => return Err(e),
    };
    if stack.marks(layer).is_whiteout(dfd.as_fd(), name, &st)? {
        return Ok(Probe::Whiteout);
    }
    let mut st = st;
    stack.as_stored(layer, XTarget::At(dfd.as_fd(), name), &mut st);
    Ok(Probe::Found(st))
}

/// A lookup in progress (the kernel's `ovl_lookup_data`): what it found
/// so far and the name it looks for in the next layers.
struct Walk {
    found: Option<Entry>,
    /// The name to find in the next lower: one component in the parent's
    /// lower directory, or, starting with `/`, a path from the layer root
    /// (a redirect changed it).
    target: Vec<u8>,
    /// Set by a redirect; with `redirect_dir=nofollow`, finding a lower
    /// object through one is refused.
    redirected: bool,
    stop: bool,
}

impl Walk {
    fn absolute(&self) -> bool {
        self.target.first() == Some(&b'/')
    }

    /// An object found as `st` in `layer` at `path` (its parent open as
    /// `dfd`): the target's component `span` (start, end), the target's
    /// last one if `end`; a redirect on it rewrites that component and
    /// keeps what comes before and after, as the kernel does. `last`: no
    /// layer follows whose lookup a redirect could steer. Returns whether
    /// the walk in this layer may go on below it.
    #[allow(clippy::too_many_arguments)]
    fn found(
        &mut self,
        stack: &Stack,
        layer: usize,
        dfd: &DirFd,
        path: PathBuf,
        st: Stat,
        end: bool,
        span: (usize, usize),
        last: bool,
    ) -> io::Result<bool> {
        let is_dir = sys::is_dir(&st);
        if !is_dir {
            // A non-directory is the answer only as the first object found
            // at the end of the path; anywhere else it ends the search.
            if end && self.found.is_none() {
                self.found = Some(Entry {
                    layer,
                    ino: stack.inos.ino_at(layer, &path, &st),
                    st,
                    layers: vec![LayerPath { layer, path }],
                    opaque: false,
                });
            }
            self.stop = true;
            return Ok(false);
        }
        let (dir, name) = split(&path);
        let marks = stack.dir_marks(layer, dfd.as_fd(), &dir, &name)?;
        if end {
            match &mut self.found {
                None => {
                    self.found = Some(Entry {
                        layer,
                        ino: stack.inos.ino_at(layer, &path, &st),
                        st,
                        layers: vec![LayerPath { layer, path }],
                        opaque: marks.opaque,
                    })
                }
                Some(e) => e.layers.push(LayerPath { layer, path }),
            }
        }
        if last {
            return Ok(true);
        }
        if marks.opaque {
            // An opaque directory inside a path from the root still lets
            // the walk reach the end in this layer, but no layer below.
            self.stop = true;
            return Ok(true);
        }
        if let Some(r) = marks.redirect {
            let r = checked_redirect(&r)?;
            let (start, stop) = span;
            let post = self.target[stop..].to_vec();
            let mut t = if r.first() == Some(&b'/') {
                // A redirect from the root undoes a stop an opaque
                // ancestor on the way set.
                self.stop = false;
                Vec::new()
            } else {
                self.target[..start].to_vec()
            };
            t.extend_from_slice(r);
            t.extend_from_slice(&post);
            self.target = t;
            self.redirected = true;
        }
        Ok(true)
    }
}

/// A redirect's value, if well formed: a path from the root (`/a/b`, no
/// empty component) or one name, read up to a NUL as the kernel reads it
/// (a C string); an empty value, a path with an empty component or a name
/// with a slash is refused (EINVAL) as the kernel refuses it. A `.`, `..` or empty name
/// passes here: the kernel's per-name lookup refuses it (EACCES) only when
/// the walk reaches it in a lower ([`no_climb`]), so no redirect climbs.
fn checked_redirect(raw: &[u8]) -> io::Result<&[u8]> {
    let r = raw.split(|b| *b == 0).next().unwrap_or(raw);
    let names: Vec<&[u8]> = match r.strip_prefix(b"/") {
        Some(rest) => rest.split(|b| *b == b'/').collect(),
        None => vec![r],
    };
    let absolute = r.starts_with(b"/");
    if raw.is_empty()
        || (absolute && names.iter().any(|n| n.is_empty()))
        || (!absolute && r.contains(&b'/'))
    {
        tracing::warn!(redirect = ?OsStr::from_bytes(raw), "invalid overlay.redirect");
        return Err(sys::err(libc::EINVAL));
    }
    if names.iter().any(|n| n.len() > 255) {
        return Err(sys::err(libc::ENAMETOOLONG));
    }
    Ok(r)
}

/// A name a redirect sends the walk to, as the kernel's lookup of one
/// name takes it: `.`, `..` and the empty name are refused (EACCES).
fn no_climb(name: &OsStr) -> io::Result<&OsStr> {
    match name.as_bytes() {
        b"" | b"." | b".." => {
            tracing::warn!(name = ?name, "overlay.redirect climbs");
            Err(sys::err(libc::EACCES))
        }
        _ => Ok(name),
    }
}

/// Look `name` up in `dir`: the upper first (if `upper`), then the lowers
/// of `dir` from index `skip` on, whose directories `layer_dir` opens.
///
/// As the kernel's namei.c: a directory found may carry a redirect, which
/// changes what the lowers below are asked for: a name (relative: the
/// same parent's lower directories, under that name) or a path from each
/// layer's root (absolute: then every lower below the layer it was found
/// in is asked, whatever the parent's stack). A redirect found further
/// down applies as well, to the layers below it.
fn lookup_in(
    stack: &Stack,
    dir: &DirRef,
    name: &OsStr,
    upper: bool,
    skip: usize,
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
    let follow = stack.redirect_dir.follows();
    let bottom = stack.layers.len() - 1;
    let mut w = Walk {
        found: None,
        target: name.as_bytes().to_vec(),
        redirected: false,
        stop: false,
    };
    let tlen = w.target.len();
    if upper && stack.has_upper {
        match layer_dir(0) {
            Ok(d) => match probe(stack, 0, &d, dir.path, name)? {
                Probe::Absent => {}
                Probe::Whiteout => w.stop = true,
                Probe::Found(st) => {
                    // Following redirects, even a directory with no
                    // lower part may hold one into the lowers.
                    let last = if follow {
                        stack.layers.len() == 1
                    } else {
                        dir.lowers.len() <= skip
                    };
                    let path = child_path(dir.path, name);
                    w.found(stack, 0, &d, path, st, true, (0, tlen), last)?;
                }
            },
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {}
            Err(e) => return Err(e),
        }
    }
    // The lowers still to ask: the parent's, until an absolute redirect
    // sends the walk to every lower below the layer that holds it.
    // The lowers still to ask: the parent's (by index), until an absolute
    // redirect sends the walk to every lower below the layer holding it
    // (`from_root`: the next such layer).
    let mut from_root = w.absolute().then_some(stack.first_lower());
    let mut i = skip;
    while !w.stop {
        let (l, parent, last_here) = match from_root {
            Some(l) if l < stack.layers.len() => (l, Path::new(""), l == bottom),
            Some(_) => break,
            None if i < dir.lowers.len() => {
                let lp = &dir.lowers[i];
                (lp.layer, lp.path.as_path(), i + 1 == dir.lowers.len())
            }
            None => break,
        };
        let last = if follow { l == bottom } else { last_here };
        let before = w.found.as_ref().map_or(0, |e| e.layers.len());
        if w.absolute() {
            walk_from_root(stack, &mut w, l, last)?;
        } else {
            let t = no_climb(OsStr::from_bytes(&w.target))?;
            let root = stack.layers[l].root.as_fd();
            let hit = match stack.dirs.listed(root, l, parent, t, stack.marks(l)) {
                Listed::Absent => Probe::Absent,
                Listed::WhitedOut => Probe::Whiteout,
                Listed::Unknown => match layer_dir(l) {
                    Ok(d) => match probe(stack, l, &d, parent, t)? {
                        Probe::Found(st) => {
                            let path = child_path(parent, t);
                            let span = (0, w.target.len());
                            w.found(stack, l, &d, path, st, true, span, last)?;
                            Probe::Absent
                        }
                        p => p,
                    },
                    Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
                        Probe::Absent
                    }
                    Err(e) => return Err(e),
                },
            };
            if matches!(hit, Probe::Whiteout) {
                w.stop = true;
            }
        }
        let grew = w.found.as_ref().map_or(0, |e| e.layers.len()) > before;
        if grew && w.redirected && !follow {
            // The kernel's redirect_dir=nofollow: a redirect is like a
            // symlink into a lower layer, which this mount does not follow.
            tracing::warn!(name = ?name, "refusing to follow a redirect (redirect_dir=nofollow)");
            return Err(sys::err(libc::EPERM));
        }
        i += 1;
        from_root = match from_root {
            Some(_) => Some(l + 1),
            None if w.absolute() => Some(l + 1),
            None => None,
        };
    }
    stack.stats.lookup(w.found.as_ref().map(|e| e.layer));
    Ok(w.found)
}

/// Ask lower `layer` for the walk's absolute target, one component at a
/// time from the layer root (the kernel's `ovl_lookup_layer`). A missing
/// component means the layer has nothing; a whiteout or non-directory on
/// the way ends the whole search.
fn walk_from_root(stack: &Stack, w: &mut Walk, layer: usize, last: bool) -> io::Result<()> {
    let target = w.target.clone();
    let mut cur = PathBuf::new();
    let mut start = 1;
    while start <= target.len() {
        let stop = target[start..]
            .iter()
            .position(|b| *b == b'/')
            .map_or(target.len(), |p| start + p);
        let comp = no_climb(OsStr::from_bytes(&target[start..stop]))?;
        let end = stop == target.len();
        match stack.dirs.listed(
            stack.layers[layer].root.as_fd(),
            layer,
            &cur,
            comp,
            stack.marks(layer),
        ) {
            Listed::Absent => return Ok(()),
            Listed::WhitedOut => {
                w.stop = true;
                return Ok(());
            }
            Listed::Unknown => {}
        }
        let d = match stack.dir(layer, &cur) {
            Ok(d) => d,
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => return Ok(()),
            Err(e) => return Err(e),
        };
        match probe(stack, layer, &d, &cur, comp)? {
            Probe::Absent => return Ok(()),
            Probe::Whiteout => {
                w.stop = true;
                return Ok(());
            }
            Probe::Found(st) => {
                let path = child_path(&cur, comp);
                if !w.found(stack, layer, &d, path.clone(), st, end, (start, stop), last)? {
                    return Ok(());
                }
                cur = path;
            }
        }
        start = stop + 1;
    }
    Ok(())
}

/// The root of the overlay: the upper root (or top lower) with every lower
/// merged beneath.
pub fn root(stack: &Stack) -> io::Result<Entry> {
    let root = stack.layers[0].root.as_fd();
    let mut st = sys::fstat(root)?;
    stack.as_stored(0, XTarget::Fd(root), &mut st);
    Ok(Entry {
        layer: 0,
        st,
        layers: (0..stack.layers.len())
            .map(|layer| LayerPath {
                layer,
                path: PathBuf::new(),
            })
            .collect(),
        opaque: false,
        ino: 1,
    })
}

/// Resolve a whole relative path from the root, component by component.
/// Returns the entry and, for a directory, its merged lowers. Used by tools
/// and tests; the FUSE adapter walks one name at a time.
pub fn resolve_path(stack: &Stack, path: &Path) -> io::Result<Option<(Entry, Vec<LayerPath>)>> {
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
