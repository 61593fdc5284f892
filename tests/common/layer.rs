//! Declarative description of a layer directory, materialized with `Layer::apply`.

use std::fs;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Component, Path, PathBuf};

use super::sys;

/// Which xattr namespace overlay markers live in (`trusted.overlay.` or the
/// kernel's `userxattr` naming `user.overlay.`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrNs {
    Trusted,
    User,
}

impl XattrNs {
    pub fn prefix(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.",
            XattrNs::User => "user.overlay.",
        }
    }
    /// The namespace a mount with these -o options writes.
    pub fn for_opts<S: AsRef<str>>(opts: &[S]) -> XattrNs {
        if opts.iter().any(|o| o.as_ref() == "userxattr") {
            XattrNs::User
        } else {
            XattrNs::Trusted
        }
    }
}

/// On-disk forms of an opaque-directory mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opaque {
    /// `trusted.overlay.opaque=y` (kernel, root).
    TrustedY,
    /// `user.overlay.opaque=y` (kernel with `userxattr`).
    UserY,
    /// `user.fuseoverlayfs.opaque=y`.
    FuseOverlayfs,
    /// OCI/AUFS marker file `.wh..wh..opq` inside the directory.
    Aufs,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    File {
        path: PathBuf,
        content: Vec<u8>,
        mode: u32,
    },
    /// `data`, then a hole up to `len` bytes.
    DataThenHole {
        path: PathBuf,
        data: Vec<u8>,
        len: u64,
    },
    /// Sparse file of `len` bytes holding no data at all.
    Sparse {
        path: PathBuf,
        len: u64,
    },
    Dir {
        path: PathBuf,
        mode: u32,
    },
    Symlink {
        path: PathBuf,
        target: PathBuf,
    },
    Hardlink {
        path: PathBuf,
        existing: PathBuf,
    },
    Fifo {
        path: PathBuf,
    },
    Device {
        path: PathBuf,
        block: bool,
        major: u32,
        minor: u32,
        mode: u32,
    },
    /// 0/0 character device, mode 0000 like the kernel writes it.
    Whiteout {
        path: PathBuf,
    },
    /// Empty file with `<ns>whiteout=""`; the parent gets `<ns>opaque=x`.
    XattrWhiteout {
        path: PathBuf,
        ns: XattrNs,
    },
    /// Creates the directory if missing, then marks it.
    Opaque {
        path: PathBuf,
        form: Opaque,
    },
    /// Empty file `.wh.NAME` next to `path`.
    AufsWhiteout {
        path: PathBuf,
    },
    Xattr {
        path: PathBuf,
        name: String,
        value: Vec<u8>,
    },
    /// lchown; the mode bits (suid/sgid, which chown clears) are restored.
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    Chmod {
        path: PathBuf,
        mode: u32,
    },
}

/// A layer: items applied in order; missing parents are created with 0755.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Layer {
    pub items: Vec<Item>,
}

pub fn layer() -> Layer {
    Layer::default()
}

fn pb(p: impl AsRef<Path>) -> PathBuf {
    p.as_ref().to_path_buf()
}

impl Layer {
    pub fn item(mut self, item: Item) -> Self {
        self.items.push(item);
        self
    }
    pub fn file(self, path: impl AsRef<Path>, content: impl AsRef<[u8]>) -> Self {
        self.file_mode(path, content, 0o644)
    }
    pub fn file_mode(self, path: impl AsRef<Path>, content: impl AsRef<[u8]>, mode: u32) -> Self {
        self.item(Item::File {
            path: pb(path),
            content: content.as_ref().to_vec(),
            mode,
        })
    }
    pub fn data_then_hole(self, path: impl AsRef<Path>, data: &[u8], len: u64) -> Self {
        self.item(Item::DataThenHole {
            path: pb(path),
            data: data.to_vec(),
            len,
        })
    }
    pub fn sparse(self, path: impl AsRef<Path>, len: u64) -> Self {
        self.item(Item::Sparse {
            path: pb(path),
            len,
        })
    }
    pub fn dir(self, path: impl AsRef<Path>) -> Self {
        self.dir_mode(path, 0o755)
    }
    pub fn dir_mode(self, path: impl AsRef<Path>, mode: u32) -> Self {
        self.item(Item::Dir {
            path: pb(path),
            mode,
        })
    }
    pub fn symlink(self, path: impl AsRef<Path>, target: impl AsRef<Path>) -> Self {
        self.item(Item::Symlink {
            path: pb(path),
            target: pb(target),
        })
    }
    pub fn hardlink(self, path: impl AsRef<Path>, existing: impl AsRef<Path>) -> Self {
        self.item(Item::Hardlink {
            path: pb(path),
            existing: pb(existing),
        })
    }
    pub fn fifo(self, path: impl AsRef<Path>) -> Self {
        self.item(Item::Fifo { path: pb(path) })
    }
    pub fn chardev(self, path: impl AsRef<Path>, major: u32, minor: u32) -> Self {
        self.item(Item::Device {
            path: pb(path),
            block: false,
            major,
            minor,
            mode: 0o644,
        })
    }
    pub fn blockdev(self, path: impl AsRef<Path>, major: u32, minor: u32) -> Self {
        self.item(Item::Device {
            path: pb(path),
            block: true,
            major,
            minor,
            mode: 0o644,
        })
    }
    pub fn whiteout(self, path: impl AsRef<Path>) -> Self {
        self.item(Item::Whiteout { path: pb(path) })
    }
    pub fn xattr_whiteout(self, path: impl AsRef<Path>) -> Self {
        self.xattr_whiteout_ns(path, XattrNs::Trusted)
    }
    pub fn xattr_whiteout_ns(self, path: impl AsRef<Path>, ns: XattrNs) -> Self {
        self.item(Item::XattrWhiteout { path: pb(path), ns })
    }
    pub fn opaque(self, path: impl AsRef<Path>, form: Opaque) -> Self {
        self.item(Item::Opaque {
            path: pb(path),
            form,
        })
    }
    pub fn aufs_whiteout(self, path: impl AsRef<Path>) -> Self {
        self.item(Item::AufsWhiteout { path: pb(path) })
    }
    pub fn xattr(self, path: impl AsRef<Path>, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.item(Item::Xattr {
            path: pb(path),
            name: name.to_string(),
            value: value.as_ref().to_vec(),
        })
    }
    pub fn chown(self, path: impl AsRef<Path>, uid: u32, gid: u32) -> Self {
        self.item(Item::Chown {
            path: pb(path),
            uid,
            gid,
        })
    }
    pub fn chmod(self, path: impl AsRef<Path>, mode: u32) -> Self {
        self.item(Item::Chmod {
            path: pb(path),
            mode,
        })
    }

    /// The same layer with every marker in the kernel's own form for a
    /// mount using `ns`: AUFS whiteouts become 0/0 devices, all opaque forms
    /// become `<ns>opaque=y`, xattr whiteouts move to `ns`.
    pub fn for_kernel(&self, ns: XattrNs) -> Layer {
        let native = match ns {
            XattrNs::Trusted => Opaque::TrustedY,
            XattrNs::User => Opaque::UserY,
        };
        let items = self.items.iter().cloned().map(|it| match it {
            Item::Opaque { path, .. } => Item::Opaque { path, form: native },
            Item::AufsWhiteout { path } => Item::Whiteout { path },
            Item::XattrWhiteout { path, .. } => Item::XattrWhiteout { path, ns },
            other => other,
        });
        Layer {
            items: items.collect(),
        }
    }

    /// Materialize into the existing directory `root`. Panics with context on failure.
    pub fn apply(&self, root: &Path) {
        for item in &self.items {
            if let Err(e) = apply_item(root, item) {
                panic!(
                    "layer spec: cannot apply {item:?} under {}: {e}",
                    root.display()
                );
            }
        }
    }
}

type Res = Result<(), String>;

fn sys_err(what: &str, p: &Path, e: i32) -> String {
    format!("{what} {}: {} ({e})", p.display(), sys::errno_name(e))
}

fn io_err(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// Join a spec path onto the layer root, refusing anything that could escape it.
fn resolve(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    if rel.components().all(|c| matches!(c, Component::Normal(_)))
        && rel.components().next().is_some()
    {
        Ok(root.join(rel))
    } else {
        Err(format!(
            "spec path {rel:?} must be relative, non-empty and without . or .."
        ))
    }
}

/// Create missing parents of `rel` with mode 0755 (explicit, so umask does not matter).
fn parents(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let full = resolve(root, rel)?;
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len() - 1] {
        cur.push(c);
        mkdir_if_missing(&cur, 0o755)?;
    }
    Ok(full)
}

fn mkdir_if_missing(p: &Path, mode: u32) -> Res {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("{} exists and is not a directory", p.display())),
        Err(_) => {
            fs::create_dir(p).map_err(|e| io_err("mkdir", p, e))?;
            sys::chmod(p, mode).map_err(|e| sys_err("chmod", p, e))
        }
    }
}

fn empty_file(p: &Path, mode: u32) -> Res {
    fs::write(p, b"").map_err(|e| io_err("create", p, e))?;
    sys::chmod(p, mode).map_err(|e| sys_err("chmod", p, e))
}

fn set_x(p: &Path, name: &str, value: &[u8]) -> Res {
    sys::setxattr(p, name, value, 0, false)
        .map_err(|e| sys_err(&format!("setxattr {name} on"), p, e))
}

fn apply_item(root: &Path, item: &Item) -> Res {
    match item {
        Item::File {
            path,
            content,
            mode,
        } => {
            let p = parents(root, path)?;
            fs::write(&p, content).map_err(|e| io_err("write", &p, e))?;
            sys::chmod(&p, *mode).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::DataThenHole { path, data, len } => {
            let p = parents(root, path)?;
            fs::write(&p, data).map_err(|e| io_err("write", &p, e))?;
            let f = fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .map_err(|e| io_err("open", &p, e))?;
            f.set_len(*len).map_err(|e| io_err("truncate", &p, e))?;
            sys::chmod(&p, 0o644).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::Sparse { path, len } => {
            let p = parents(root, path)?;
            let f = fs::File::create(&p).map_err(|e| io_err("create", &p, e))?;
            f.set_len(*len).map_err(|e| io_err("truncate", &p, e))?;
            sys::chmod(&p, 0o644).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::Dir { path, mode } => {
            let p = parents(root, path)?;
            mkdir_if_missing(&p, *mode)?;
            sys::chmod(&p, *mode).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::Symlink { path, target } => {
            let p = parents(root, path)?;
            symlink(target, &p).map_err(|e| io_err("symlink", &p, e))
        }
        Item::Hardlink { path, existing } => {
            let p = parents(root, path)?;
            let src = resolve(root, existing)?;
            fs::hard_link(&src, &p).map_err(|e| io_err("link", &p, e))
        }
        Item::Fifo { path } => {
            let p = parents(root, path)?;
            sys::mknod(&p, libc::S_IFIFO | 0o644, 0, 0).map_err(|e| sys_err("mkfifo", &p, e))?;
            sys::chmod(&p, 0o644).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::Device {
            path,
            block,
            major,
            minor,
            mode,
        } => {
            let p = parents(root, path)?;
            let kind = if *block { libc::S_IFBLK } else { libc::S_IFCHR };
            sys::mknod(&p, kind | mode, *major, *minor).map_err(|e| sys_err("mknod", &p, e))?;
            sys::chmod(&p, *mode).map_err(|e| sys_err("chmod", &p, e))
        }
        Item::Whiteout { path } => {
            let p = parents(root, path)?;
            sys::mknod(&p, libc::S_IFCHR, 0, 0).map_err(|e| sys_err("mknod whiteout", &p, e))
        }
        Item::XattrWhiteout { path, ns } => {
            let p = parents(root, path)?;
            empty_file(&p, 0o644)?;
            set_x(&p, &format!("{}whiteout", ns.prefix()), b"")?;
            set_x(p.parent().unwrap(), &format!("{}opaque", ns.prefix()), b"x")
        }
        Item::Opaque { path, form } => {
            let p = parents(root, path)?;
            mkdir_if_missing(&p, 0o755)?;
            match form {
                Opaque::TrustedY => set_x(&p, "trusted.overlay.opaque", b"y"),
                Opaque::UserY => set_x(&p, "user.overlay.opaque", b"y"),
                Opaque::FuseOverlayfs => set_x(&p, "user.fuseoverlayfs.opaque", b"y"),
                Opaque::Aufs => empty_file(&p.join(".wh..wh..opq"), 0o644),
            }
        }
        Item::AufsWhiteout { path } => {
            let p = parents(root, path)?;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            empty_file(&p.with_file_name(format!(".wh.{name}")), 0o644)
        }
        Item::Xattr { path, name, value } => set_x(&resolve(root, path)?, name, value),
        Item::Chown { path, uid, gid } => {
            let p = resolve(root, path)?;
            let md = fs::symlink_metadata(&p).map_err(|e| io_err("lstat", &p, e))?;
            sys::lchown(&p, *uid, *gid).map_err(|e| sys_err("lchown", &p, e))?;
            if md.file_type().is_symlink() {
                Ok(())
            } else {
                sys::chmod(&p, md.mode() & 0o7777).map_err(|e| sys_err("chmod", &p, e))
            }
        }
        Item::Chmod { path, mode } => {
            let p = resolve(root, path)?;
            sys::chmod(&p, *mode).map_err(|e| sys_err("chmod", &p, e))
        }
    }
}
