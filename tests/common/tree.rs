//! Snapshots of a directory tree (lstat-based, no symlink following) and
//! readable comparison of two snapshots.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::layer::XattrNs;
use super::sys;

/// Files larger than this are recorded as a digest instead of their bytes.
pub const INLINE_CONTENT_MAX: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    CharDev,
    BlockDev,
    Socket,
    Unknown,
}

impl Kind {
    pub fn from_mode(mode: u32) -> Kind {
        match mode & libc::S_IFMT {
            libc::S_IFREG => Kind::File,
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFLNK => Kind::Symlink,
            libc::S_IFIFO => Kind::Fifo,
            libc::S_IFCHR => Kind::CharDev,
            libc::S_IFBLK => Kind::BlockDev,
            libc::S_IFSOCK => Kind::Socket,
            _ => Kind::Unknown,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Content {
    Bytes(Vec<u8>),
    Digest {
        len: u64,
        fnv1a: u64,
    },
    /// Reading failed with this errno.
    Error(i32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits including suid/sgid/sticky.
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// None for directories (their size is filesystem-specific).
    pub size: Option<u64>,
    /// None for directories (merged directories report their own counts).
    pub nlink: Option<u64>,
    pub content: Option<Content>,
    pub target: Option<PathBuf>,
    /// (major, minor) for device nodes.
    pub rdev: Option<(u32, u32)>,
    /// Name -> value, or the errno getxattr gave for a listed name.
    pub xattrs: BTreeMap<String, Result<Vec<u8>, i32>>,
    pub listxattr_err: Option<i32>,
    pub readdir_err: Option<i32>,
}

/// Path relative to the snapshot root ("." is the root) -> entry, or the
/// errno lstat gave for a listed name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, Result<Node, i32>>,
}

impl Tree {
    pub fn get(&self, rel: &str) -> Option<&Node> {
        self.entries.get(rel).and_then(|r| r.as_ref().ok())
    }
    pub fn get_mut(&mut self, rel: &str) -> Option<&mut Node> {
        self.entries.get_mut(rel).and_then(|r| r.as_mut().ok())
    }
    pub fn paths(&self) -> Vec<&str> {
        self.entries.keys().map(String::as_str).collect()
    }
}

fn fnv1a(reader: &mut impl Read) -> std::io::Result<(u64, u64)> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut len = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok((len, h));
        }
        len += n as u64;
        for b in &buf[..n] {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

fn read_content(p: &Path, size: u64) -> Content {
    let io = |e: std::io::Error| Content::Error(e.raw_os_error().unwrap_or(libc::EIO));
    let mut f = match fs::File::open(p) {
        Ok(f) => f,
        Err(e) => return io(e),
    };
    if size <= INLINE_CONTENT_MAX {
        let mut v = Vec::new();
        match f.read_to_end(&mut v) {
            Ok(_) => Content::Bytes(v),
            Err(e) => io(e),
        }
    } else {
        match fnv1a(&mut f) {
            Ok((len, fnv1a)) => Content::Digest { len, fnv1a },
            Err(e) => io(e),
        }
    }
}

fn node_at(p: &Path) -> Result<Node, i32> {
    let md = fs::symlink_metadata(p).map_err(|e| e.raw_os_error().unwrap_or(libc::EIO))?;
    let kind = Kind::from_mode(md.mode());
    let is_dir = kind == Kind::Dir;
    let mut node = Node {
        kind,
        perm: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: (!is_dir).then_some(md.size()),
        nlink: (!is_dir).then_some(md.nlink()),
        content: None,
        target: None,
        rdev: None,
        xattrs: BTreeMap::new(),
        listxattr_err: None,
        readdir_err: None,
    };
    let ft = md.file_type();
    if ft.is_file() {
        node.content = Some(read_content(p, md.size()));
    } else if ft.is_symlink() {
        node.target = fs::read_link(p).ok();
    } else if ft.is_char_device() || ft.is_block_device() {
        let rdev = md.rdev();
        node.rdev = Some((libc::major(rdev), libc::minor(rdev)));
    }
    match sys::listxattr(p, false) {
        Ok(names) => {
            for n in names {
                let v = sys::getxattr(p, &n, false);
                node.xattrs.insert(n, v);
            }
        }
        Err(e) => node.listxattr_err = Some(e),
    }
    Ok(node)
}

fn walk(root: &Path, rel: &str, out: &mut Tree) {
    let full = if rel == "." {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    let node = node_at(&full);
    let is_dir = matches!(&node, Ok(n) if n.kind == Kind::Dir);
    out.entries.insert(rel.to_string(), node);
    if !is_dir {
        return;
    }
    let mut names = Vec::new();
    match fs::read_dir(&full) {
        Ok(rd) => {
            for ent in rd {
                match ent {
                    Ok(ent) => names.push(ent.file_name().to_string_lossy().into_owned()),
                    Err(e) => {
                        set_readdir_err(out, rel, e);
                        break;
                    }
                }
            }
        }
        Err(e) => set_readdir_err(out, rel, e),
    }
    names.sort();
    for name in names {
        let child = if rel == "." {
            name
        } else {
            format!("{rel}/{name}")
        };
        walk(root, &child, out);
    }
}

fn set_readdir_err(out: &mut Tree, rel: &str, e: std::io::Error) {
    if let Some(n) = out.get_mut(rel) {
        n.readdir_err = Some(e.raw_os_error().unwrap_or(libc::EIO));
    }
}

/// Snapshot everything under `root` (root itself is the entry ".").
pub fn snapshot(root: &Path) -> Tree {
    let mut t = Tree::default();
    walk(root, ".", &mut t);
    t
}

/// Overlay bookkeeping xattrs (after the namespace is normalized to
/// "overlay.") that do not count as a difference between upper layers:
/// origin/impure/redirect per the rule book, plus uuid (on the upper root)
/// and nlink (hard-link accounting) which this kernel also writes.
pub const BOOKKEEPING_XATTRS: &[&str] = &[
    "overlay.origin",
    "overlay.impure",
    "overlay.redirect",
    "overlay.uuid",
    "overlay.nlink",
];

/// Snapshot of an upper layer for comparison with another upper layer:
/// xattrs under `ns` are renamed to "overlay.*", bookkeeping ones dropped,
/// and nlink ignored (the kernel hard-links its whiteouts to a shared one).
pub fn snapshot_upper(root: &Path, ns: XattrNs) -> Tree {
    snapshot_upper_keeping(root, ns, &[])
}

/// `snapshot_upper` that keeps the bookkeeping xattrs named in `keep`
/// ("overlay.redirect": both sides write the same redirects).
pub fn snapshot_upper_keeping(root: &Path, ns: XattrNs, keep: &[&str]) -> Tree {
    let mut t = snapshot(root);
    for node in t.entries.values_mut().filter_map(|r| r.as_mut().ok()) {
        node.nlink = None;
        let old = std::mem::take(&mut node.xattrs);
        for (name, v) in old {
            let name = match name.strip_prefix(ns.prefix()) {
                Some(rest) => format!("overlay.{rest}"),
                None => name,
            };
            if keep.contains(&name.as_str()) || !BOOKKEEPING_XATTRS.contains(&name.as_str()) {
                node.xattrs.insert(name, v);
            }
        }
    }
    t
}

/// One differing field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub field: String,
    pub left: String,
    pub right: String,
}

pub fn show_bytes(b: &[u8]) -> String {
    const MAX: usize = 48;
    let s: String = b[..b.len().min(MAX)].escape_ascii().to_string();
    if b.len() > MAX {
        format!("\"{s}\"... ({} bytes)", b.len())
    } else {
        format!("\"{s}\"")
    }
}

fn show_errno(e: i32) -> String {
    format!("{}({e})", sys::errno_name(e))
}

fn show_opt<T>(v: &Option<T>, f: impl Fn(&T) -> String) -> String {
    v.as_ref().map_or_else(|| "-".to_string(), f)
}

fn show_content(c: &Content) -> String {
    match c {
        Content::Bytes(b) => show_bytes(b),
        Content::Digest { len, fnv1a } => format!("<{len} bytes, fnv1a {fnv1a:016x}>"),
        Content::Error(e) => format!("read error {}", show_errno(*e)),
    }
}

fn show_xval(v: &Option<&Result<Vec<u8>, i32>>) -> String {
    match v {
        None => "absent".into(),
        Some(Ok(b)) => show_bytes(b),
        Some(Err(e)) => format!("getxattr error {}", show_errno(*e)),
    }
}

fn kind_name(n: &Result<Node, i32>) -> String {
    match n {
        Ok(n) => format!("{:?}", n.kind).to_lowercase(),
        Err(e) => format!("lstat error {}", show_errno(*e)),
    }
}

fn diff_nodes(path: &str, a: &Node, b: &Node, out: &mut Vec<Difference>) {
    let mut push = |field: String, l: String, r: String| {
        out.push(Difference {
            path: path.to_string(),
            field,
            left: l,
            right: r,
        });
    };
    if a.kind != b.kind {
        push(
            "type".into(),
            format!("{:?}", a.kind),
            format!("{:?}", b.kind),
        );
    }
    if a.perm != b.perm {
        push(
            "mode".into(),
            format!("{:04o}", a.perm),
            format!("{:04o}", b.perm),
        );
    }
    if a.uid != b.uid {
        push("uid".into(), a.uid.to_string(), b.uid.to_string());
    }
    if a.gid != b.gid {
        push("gid".into(), a.gid.to_string(), b.gid.to_string());
    }
    if a.size != b.size {
        push(
            "size".into(),
            show_opt(&a.size, u64::to_string),
            show_opt(&b.size, u64::to_string),
        );
    }
    if a.nlink != b.nlink {
        push(
            "nlink".into(),
            show_opt(&a.nlink, u64::to_string),
            show_opt(&b.nlink, u64::to_string),
        );
    }
    if a.content != b.content {
        let mut field = "content".to_string();
        if let (Some(Content::Bytes(x)), Some(Content::Bytes(y))) = (&a.content, &b.content) {
            let at = x
                .iter()
                .zip(y)
                .position(|(p, q)| p != q)
                .unwrap_or(x.len().min(y.len()));
            field = format!("content (first difference at byte {at})");
        }
        push(
            field,
            show_opt(&a.content, show_content),
            show_opt(&b.content, show_content),
        );
    }
    if a.target != b.target {
        let t = |p: &PathBuf| format!("{p:?}");
        push(
            "symlink target".into(),
            show_opt(&a.target, t),
            show_opt(&b.target, t),
        );
    }
    if a.rdev != b.rdev {
        let d = |(ma, mi): &(u32, u32)| format!("{ma}:{mi}");
        push("rdev".into(), show_opt(&a.rdev, d), show_opt(&b.rdev, d));
    }
    if a.listxattr_err != b.listxattr_err {
        let e = |e: &i32| show_errno(*e);
        push(
            "listxattr".into(),
            show_opt(&a.listxattr_err, e),
            show_opt(&b.listxattr_err, e),
        );
    }
    if a.readdir_err != b.readdir_err {
        let e = |e: &i32| show_errno(*e);
        push(
            "readdir".into(),
            show_opt(&a.readdir_err, e),
            show_opt(&b.readdir_err, e),
        );
    }
    let names: std::collections::BTreeSet<&String> =
        a.xattrs.keys().chain(b.xattrs.keys()).collect();
    for n in names {
        let (x, y) = (a.xattrs.get(n), b.xattrs.get(n));
        if x != y {
            push(format!("xattr {n}"), show_xval(&x), show_xval(&y));
        }
    }
}

/// All differences between two snapshots. Entries under a path that exists
/// on one side only are not listed again.
pub fn diff_trees(a: &Tree, b: &Tree) -> Vec<Difference> {
    let mut out = Vec::new();
    let paths: std::collections::BTreeSet<&String> =
        a.entries.keys().chain(b.entries.keys()).collect();
    let mut one_sided: Vec<String> = Vec::new();
    for p in paths {
        if one_sided.iter().any(|m| p.starts_with(m.as_str())) {
            continue;
        }
        match (a.entries.get(p), b.entries.get(p)) {
            (Some(Ok(x)), Some(Ok(y))) => diff_nodes(p, x, y, &mut out),
            (Some(x), Some(y)) if x != y => out.push(Difference {
                path: p.clone(),
                field: "lstat".into(),
                left: kind_name(x),
                right: kind_name(y),
            }),
            (Some(_), Some(_)) => {}
            (x, y) => {
                one_sided.push(format!("{p}/"));
                let show =
                    |n: Option<&Result<Node, i32>>| n.map_or_else(|| "missing".into(), kind_name);
                out.push(Difference {
                    path: p.clone(),
                    field: "presence".into(),
                    left: show(x),
                    right: show(y),
                });
            }
        }
    }
    out
}

/// Human-readable report of the first `max` differences.
pub fn format_diff(diffs: &[Difference], left: &str, right: &str, max: usize) -> String {
    let mut s = format!("trees differ: {} difference(s)", diffs.len());
    if diffs.len() > max {
        let _ = write!(s, ", first {max} shown");
    }
    s.push('\n');
    for d in diffs.iter().take(max) {
        let _ = writeln!(
            s,
            "  {}: {}: {left}={} {right}={}",
            d.path, d.field, d.left, d.right
        );
    }
    s
}

pub fn assert_same_tree_labeled(a: &Tree, b: &Tree, left: &str, right: &str) {
    let d = diff_trees(a, b);
    if !d.is_empty() {
        panic!("{}", format_diff(&d, left, right, 40));
    }
}

/// Merged views of ovlfuse and the kernel must match.
pub fn assert_same_tree(fuse: &Tree, kern: &Tree) {
    assert_same_tree_labeled(fuse, kern, "fuse", "kernel");
}

/// Upper layers on disk must hold the same entries, types, modes, owners,
/// contents, targets, whiteouts and opaque marks; each side's overlay xattr
/// namespace is given explicitly.
pub fn assert_same_upper(fuse_upper: &Path, fuse_ns: XattrNs, kern_upper: &Path, kern_ns: XattrNs) {
    assert_same_upper_keeping(fuse_upper, fuse_ns, kern_upper, kern_ns, &[]);
}

/// `assert_same_upper`, comparing the bookkeeping xattrs in `keep` too.
pub fn assert_same_upper_keeping(
    fuse_upper: &Path,
    fuse_ns: XattrNs,
    kern_upper: &Path,
    kern_ns: XattrNs,
    keep: &[&str],
) {
    let (f, k) = (
        snapshot_upper_keeping(fuse_upper, fuse_ns, keep),
        snapshot_upper_keeping(kern_upper, kern_ns, keep),
    );
    let d = diff_trees(&f, &k);
    if !d.is_empty() {
        panic!(
            "upper layers differ ({} vs {}):\n{}",
            fuse_upper.display(),
            kern_upper.display(),
            format_diff(&d, "fuse", "kernel", 40)
        );
    }
}
