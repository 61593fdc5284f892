//! `-o` parsing into [`MountOptions`] (the kernel's params.c concern).
//!
//! Rules served (docs/semantics.md "Layers and options"): `lowerdir=a:b:c` stacks `a` on
//! top; `\:` escapes a colon and `\,` a comma inside a path; relative paths
//! resolve against the caller's cwd. Generic flags that mount(8),
//! mount.fuse3 and fstab add are accepted and ignored (each with its reason
//! in [`IGNORED`]); an unknown option is an error.

use crate::idmap::{IdMap, IdMaps};
use std::path::{Path, PathBuf};

/// Everything a mount was asked for, before any directory is opened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MountOptions {
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: Option<PathBuf>,
    pub workdir: Option<PathBuf>,
    /// Force `user.overlay.*` naming of the private xattrs.
    pub userxattr: bool,
    /// Skip the fsync of copied-up files (the kernel's `volatile`).
    pub volatile: bool,
    /// Mount read-only (also implied by a missing upperdir).
    pub ro: bool,
    /// `rw` named (the default; what a remount to read-write says).
    pub rw: bool,
    pub allow_other: bool,
    pub allow_root: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
    /// The mount's access-time rule for what is read through it.
    pub atime: Atime,
    /// Listing a directory never moves its access time.
    pub nodiratime: bool,
    /// Explicit `suid`/`dev`/`exec` (a root FUSE mount defaults to nosuid,nodev).
    pub suid: bool,
    pub dev: bool,
    pub fsname: Option<String>,
    pub subtype: Option<String>,
    /// FUSE event loops; 0 means "pick from the CPU count".
    pub threads: usize,
    /// `nopassthrough`: serve every read and write through the daemon,
    /// even where the kernel could pass them straight to the upper file.
    pub nopassthrough: bool,
    /// `uring` / `nouring`: the FUSE transport; None: io_uring when the
    /// kernel offers it.
    pub uring: Option<bool>,
    /// `uring_depth=N`: ring entries per CPU queue (0: the default, 8).
    pub uring_depth: u16,
    /// `uidmapping=`, `gidmapping=`, `squash_to_*` (fuse-overlayfs's).
    pub ids: IdMaps,
    /// `static_nlink`: directories show nlink 1.
    pub static_nlink: bool,
    /// `xattr_permissions=1|2`: owners and modes of new and changed upper
    /// objects are kept in an xattr (see `perms`); 0: in the inodes.
    pub xattr_permissions: u8,
    /// `noacl`: POSIX ACLs are not enforced by the kernel.
    pub noacl: bool,
    /// `noxattrs=1`: extended attributes are refused (ENOTSUP).
    pub noxattrs: bool,
    /// `nosymfollow`: the mount's MS_NOSYMFOLLOW.
    pub nosymfollow: bool,
    /// `auto_unmount`: fusermount3 unmounts when the daemon dies.
    pub auto_unmount: bool,
    /// `max_read=N`: the kernel's largest read request.
    pub max_read: Option<u32>,
    /// `timeout=S`: how long the kernel may cache entries and attributes.
    pub timeout: Option<std::time::Duration>,
    /// `context=` and the other SELinux labels, as `key=value` for mount(2).
    pub lsm_labels: Vec<String>,
    /// `-o debug`, as `-d`.
    pub debug: bool,
    /// `remount`: change the flags of a running mount (mount -o remount).
    pub remount: bool,
    /// One line each for options accepted without effect.
    pub notices: Vec<String>,
    /// `marks=`: which on-disk marks to obey; None is the default for
    /// whoever runs the daemon (see `markers::MarkPolicy::new`).
    pub marks: Option<Marks>,
    /// `redirect_dir=`: whether `overlay.redirect` marks are followed and
    /// written; None: the default for the mount's xattr namespace (see
    /// `Stack::open`).
    pub redirect_dir: Option<RedirectDir>,
}

/// `redirect_dir=`: whether redirects are read (the kernel's) and written
/// (renaming a lower directory otherwise answers EXDEV).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RedirectDir {
    /// The kernel's default: none written, those found followed (the
    /// kernel's `redirect_always_follow`, on by default).
    #[default]
    Off,
    /// None written, those found followed.
    Follow,
    /// None written; a directory whose redirect leads to a lower one
    /// answers EPERM, as in the kernel.
    NoFollow,
    /// Followed, and written: renaming a directory with a lower part
    /// copies up the directory alone and records where its lower is.
    On,
}

impl RedirectDir {
    /// Its word in `redirect_dir=`.
    pub fn name(self) -> &'static str {
        match self {
            RedirectDir::Off => "off",
            RedirectDir::Follow => "follow",
            RedirectDir::NoFollow => "nofollow",
            RedirectDir::On => "on",
        }
    }
    pub fn follows(self) -> bool {
        self != RedirectDir::NoFollow
    }
    /// Does a rename of a directory with a lower part write a redirect
    /// (else it answers EXDEV)?
    pub fn writes(self) -> bool {
        self == RedirectDir::On
    }
}

/// The `squash_to_*` options, applied to [`IdMaps`] once all are read
/// (squash_to_uid and squash_to_gid win over squash_to_root).
#[derive(Debug, Default)]
struct Squash {
    root: bool,
    uid: Option<u32>,
    gid: Option<u32>,
}

/// The `marks=` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marks {
    /// Only the mount's own xattr namespace, as the kernel overlayfs.
    Kernel,
    /// Also the other namespace, `user.fuseoverlayfs.opaque` and AUFS files.
    All,
}

/// When reading an object through the mount moves its access time, as the
/// kernel's `relatime` (the default), `strictatime` and `noatime`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Atime {
    /// Only when the atime is older than the mtime or ctime, or a day old.
    #[default]
    Relative,
    /// On every access.
    Strict,
    /// Never.
    Never,
}

/// Every option that changes what ovlfuse does, with its default. The `-o`
/// help and the man page are built from this table, and a test checks that
/// README's option table names each, so the three cannot drift apart.
pub const EFFECTIVE: &[(&str, &str)] = &[
    (
        "lowerdir=A:B:C",
        "lower layers, A on top (required); \\: and \\, escape : and , in a path; \
         relative paths resolve against the current directory",
    ),
    (
        "upperdir=U",
        "the writable layer; without it the mount is read-only (every write: EROFS)",
    ),
    (
        "workdir=W",
        "scratch directory for copy-up, on the same filesystem as U and inside no layer",
    ),
    (
        "userxattr",
        "write the private marks as user.overlay.* (automatic when not root; default as root: trusted.overlay.*)",
    ),
    (
        "marks=kernel|all",
        "which whiteout and opaque marks to obey. kernel: 0/0 devices and the mount's own namespace \
         only (trusted.overlay.*, or user.overlay.* with userxattr), as the kernel overlayfs. all: \
         also the other namespace, user.fuseoverlayfs.opaque and OCI/AUFS .wh.NAME and \
         .wh..wh..opq files (unpacked image layers, fuse-overlayfs uppers); every user who can \
         write a lower can then hide what lies below it. Default: kernel as root, all as a user",
    ),
    (
        "volatile",
        "do not fsync copied-up files (the kernel's volatile); a crash may lose them",
    ),
    (
        "nopassthrough",
        "serve every read and write through the daemon (default as root: upper files' I/O is passed \
         to the upper file in the kernel; lower files never are)",
    ),
    (
        "threads=N",
        "FUSE event loops on /dev/fuse (default: the CPU count, at least 4, at most 8; with \
         io_uring one, for what the kernel still sends there)",
    ),
    (
        "uring, nouring",
        "insist on FUSE over io_uring (one queue and one thread per CPU; fails if the kernel does \
         not offer it) or refuse it. Default: io_uring when the kernel offers it (Linux 6.14+ with \
         Y in /sys/module/fuse/parameters/enable_uring), else /dev/fuse",
    ),
    (
        "uring_depth=N",
        "io_uring entries per CPU queue: requests in flight per CPU (default 8, 1-1024)",
    ),
    (
        "ro",
        "mount read-only (default: rw when there is an upperdir)",
    ),
    ("rw", "read-write, the default; on a remount, undoes ro"),
    (
        "allow_other",
        "let other users see the mount (default: only the mounting user; as a user \
         it needs user_allow_other in /etc/fuse.conf)",
    ),
    ("allow_root", "let root and the mounting user see the mount"),
    (
        "suid, nosuid",
        "honour setuid/setgid bits (default: nosuid; mount -t fuse.ovlfuse passes suid as root)",
    ),
    (
        "dev, nodev",
        "allow device files (default: nodev; mount -t fuse.ovlfuse passes dev as root)",
    ),
    ("exec, noexec", "allow executing files (default: exec)"),
    (
        "relatime, strictatime, noatime",
        "when a read, exec or listing through the mount moves the access time of an upper \
         object, as the kernel overlayfs (default: relatime); lower objects' never moves",
    ),
    (
        "nodiratime",
        "listing a directory never moves its access time",
    ),
    (
        "atime, nostrictatime, diratime",
        "undo an earlier noatime, strictatime or nodiratime",
    ),
    (
        "uidmapping=D:S:N",
        "show the uids D..D+N-1 stored in the layers as S..S+N-1 and store them back so; \
         several D:S:N ranges may follow each other; ids outside them show as 65534 (as fuse-overlayfs)",
    ),
    ("gidmapping=D:S:N", "the same for gids"),
    (
        "squash_to_root",
        "every object shows owner 0:0 (stored owners are kept)",
    ),
    (
        "squash_to_uid=N, squash_to_gid=N",
        "every object shows owner N (wins over squash_to_root)",
    ),
    ("static_nlink", "directories show nlink 1"),
    (
        "xattr_permissions=0|1|2",
        "keep owners and modes the mount changes in an xattr, not in the files (fuse-overlayfs's \
         record: 1 security.fuseoverlayfs.override_stat, 2 user.fuseoverlayfs.override_stat; 0, \
         the default, in the files). A layer whose root has such a record is always read through it",
    ),
    ("noacl", "the kernel enforces no POSIX ACLs"),
    (
        "noxattrs=1",
        "refuse every extended attribute (ENOTSUP); noxattrs=0 is the default",
    ),
    ("fsync=0", "the same as volatile; fsync=1 is the default"),
    (
        "timeout=S",
        "how long the kernel may cache names and attributes, in seconds (default: a day; \
         ovlfuse's own changes are never stale)",
    ),
    (
        "max_threads=N, threaded=0",
        "the same as threads=N, threads=1",
    ),
    (
        "max_read=N",
        "the largest read request the kernel sends, in bytes",
    ),
    (
        "nosymfollow",
        "the mount does not follow symlinks in paths (MS_NOSYMFOLLOW)",
    ),
    (
        "auto_unmount",
        "fusermount3 unmounts the mount when the daemon dies (also as root)",
    ),
    (
        "context=LABEL, fscontext=, defcontext=, rootcontext=",
        "SELinux labels for the mount, quoted if they hold a comma; without SELinux they have no effect",
    ),
    (
        "redirect_dir=off, redirect_dir=follow, redirect_dir=nofollow, redirect_dir=on",
        "off (the default), follow and nofollow write no redirect: renaming a lower directory answers EXDEV; off and follow read the overlay.redirect marks the kernel writes with redirect_dir=on, nofollow answers EPERM for a directory whose redirect finds a lower one (as the kernel); on reads them and renames such a directory as the kernel does, writing one",
    ),
    ("debug", "the same as -d"),
    (
        "remount",
        "change the flags it names (ro, rw, nosuid, ...) on a running mount, as mount -o remount does; no second daemon",
    ),
    (
        "fsname=NAME",
        "the source shown in /proc/mounts (default: the SOURCE argument, else ovlfuse)",
    ),
    (
        "subtype=NAME",
        "the type shown as fuse.NAME (default: ovlfuse)",
    ),
];

/// Flags that mount(8), mount.fuse3 and fstab add, accepted with no
/// effect, each group with the reason it changes nothing here.
pub const IGNORED: &[(&[&str], &str)] = &[
    (
        &["default_permissions"],
        "always on: the kernel checks permissions",
    ),
    (
        &["norelatime"],
        "relatime stays the default either way, as in the kernel",
    ),
    (
        &["lazytime", "nolazytime"],
        "when times reach the disk is the upper filesystem's own setting",
    ),
    (
        &["sync", "async", "dirsync"],
        "each request reaches the upper filesystem before it is answered; \
         durability is the upper's (copy-ups are fsynced unless volatile)",
    ),
    (
        &["iversion", "noiversion", "mand", "nomand"],
        "not supported by FUSE",
    ),
    (
        &["user_id=", "group_id=", "rootmode=", "blksize="],
        "set by ovlfuse itself for the kernel; mount(8) repeats them on a remount",
    ),
    (
        &[
            "defaults", "auto", "noauto", "user", "nouser", "users", "owner", "group", "_netdev",
            "nofail", "comment=", "x-*",
        ],
        "read by mount(8) and fstab, not by a filesystem",
    ),
];

/// Options of fuse-overlayfs and libfuse accepted for compatibility with no
/// effect here; each, when given, is said once on stderr with its reason.
pub const NO_EFFECT: &[(&str, &str)] = &[
    ("plugins", "ovlfuse has no plugins"),
    ("fast_ino", "inode numbers never cost an extra lookup here"),
    (
        "writeback",
        "the writeback cache acknowledges writes before the daemon has them; \
         a killed daemon would lose them",
    ),
    (
        "clone_fd",
        "every event loop has its own /dev/fuse fd already",
    ),
    ("max_idle_threads", "the event loops are fixed at mount"),
    (
        "kernel_cache",
        "the page cache of a file is kept across opens already",
    ),
];

/// Whether `key` is one of the [`IGNORED`] flags: a name written with `=`
/// there takes a value, any other takes none; `x-*` is a prefix.
fn ignored(key: &str, has_value: bool) -> bool {
    if key.starts_with("x-") {
        return true;
    }
    IGNORED
        .iter()
        .flat_map(|(names, _)| names.iter())
        .any(|n| match n.strip_suffix('=') {
            Some(k) => has_value && k == key,
            None => !has_value && *n == key,
        })
}

/// The `-o` help (and the man page's): [`EFFECTIVE`], then [`IGNORED`].
pub fn help_text() -> String {
    // Blank lines between the parts keep the man page from running them
    // into one paragraph.
    let mut s = String::from("Mount options, comma separated; -o may be repeated.\n\n");
    for (name, what) in EFFECTIVE {
        s += &format!("  {name:<16} {what}\n");
    }
    s += "\nAccepted and ignored:\n\n";
    for (names, why) in IGNORED {
        s += &format!("  {}: {why}\n", names.join(", "));
    }
    s += "\nAccepted for fuse-overlayfs and libfuse, with no effect (said on stderr):\n\n";
    for (name, why) in NO_EFFECT {
        s += &format!("  {name}: {why}\n");
    }
    s += "\nAnything else is an error.";
    s
}

/// Split on commas not preceded by a backslash, keeping other escapes.
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    // A value that opens with a double quote runs to the next one, commas
    // included (containers/storage quotes SELinux labels: context="a,b").
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '"' && (quoted || cur.ends_with('=')) {
            quoted = !quoted;
            cur.push(c);
        } else if quoted {
            cur.push(c);
        } else if c == '\\' {
            match chars.next() {
                Some(n) if n == sep => cur.push(n),
                Some(n) => {
                    cur.push('\\');
                    cur.push(n);
                }
                None => cur.push('\\'),
            }
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Remove the remaining escapes (`\:` `\,` `\\`) from one path.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn absolute(p: &str, cwd: &Path) -> PathBuf {
    let p = PathBuf::from(p);
    if p.is_absolute() { p } else { cwd.join(p) }
}

/// An option's unsigned number.
fn number(key: &str, v: &str) -> Result<u32, String> {
    v.parse().map_err(|_| format!("{key}={v} is not a number"))
}

/// A `lowerdir=` value (without the key): colon separated, top first, with
/// `\:` `\,` escapes; relative paths resolve against `cwd`.
pub fn parse_lowerdirs(v: &str, cwd: &Path) -> Result<Vec<PathBuf>, String> {
    split_unescaped(v, ':')
        .iter()
        .map(|p| {
            if p.is_empty() {
                Err("lowerdir has an empty path".to_string())
            } else {
                Ok(absolute(&unescape(p), cwd))
            }
        })
        .collect()
}

impl MountOptions {
    /// Parse every `-o` argument (each comma separated) in order.
    pub fn parse<S: AsRef<str>>(opts: &[S], cwd: &Path) -> Result<Self, String> {
        let mut m = MountOptions::default();
        let mut sq = Squash::default();
        for o in opts {
            for item in split_unescaped(o.as_ref(), ',') {
                m.apply(&item, cwd, &mut sq)?;
            }
        }
        if let Some(u) = sq.uid.or(sq.root.then_some(0)) {
            m.ids.uid.set_squash(u);
        }
        if let Some(g) = sq.gid.or(sq.root.then_some(0)) {
            m.ids.gid.set_squash(g);
        }
        Ok(m)
    }

    fn apply(&mut self, item: &str, cwd: &Path, sq: &mut Squash) -> Result<(), String> {
        let (key, val) = match item.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (item, None),
        };
        let need = |v: Option<&str>| -> Result<String, String> {
            match v {
                Some(v) if !v.is_empty() => Ok(v.to_string()),
                _ => Err(format!("option '{key}' needs a value")),
            }
        };
        match key {
            "" => {}
            "lowerdir" => self.lowerdirs = parse_lowerdirs(&need(val)?, cwd)?,
            "upperdir" => self.upperdir = Some(absolute(&unescape(&need(val)?), cwd)),
            "workdir" => self.workdir = Some(absolute(&unescape(&need(val)?), cwd)),
            "userxattr" => self.userxattr = true,
            "nopassthrough" => self.nopassthrough = true,
            "uring" => self.uring = Some(true),
            "nouring" => self.uring = Some(false),
            "uring_depth" => {
                self.uring_depth = Some(number(key, &need(val)?)?)
                    .filter(|n| (1..=1024).contains(n))
                    .ok_or_else(|| format!("uring_depth={}: give 1 to 1024", val.unwrap_or("")))?
                    as u16
            }
            "marks" => {
                self.marks = Some(match need(val)?.as_str() {
                    "kernel" => Marks::Kernel,
                    "all" => Marks::All,
                    v => return Err(format!("marks={v}: say marks=kernel or marks=all")),
                })
            }
            "volatile" => self.volatile = true,
            "ro" => self.ro = true,
            "rw" => self.rw = true,
            "allow_other" => self.allow_other = true,
            "allow_root" => self.allow_root = true,
            "nosuid" => self.nosuid = true,
            "nodev" => self.nodev = true,
            "noexec" => self.noexec = true,
            "noatime" => self.atime = Atime::Never,
            "strictatime" => self.atime = Atime::Strict,
            "relatime" => self.atime = Atime::Relative,
            // As mount(8): each clears only its own flag.
            "atime" if self.atime == Atime::Never => self.atime = Atime::Relative,
            "nostrictatime" if self.atime == Atime::Strict => self.atime = Atime::Relative,
            "atime" | "nostrictatime" => {}
            "nodiratime" => self.nodiratime = true,
            "diratime" => self.nodiratime = false,
            "suid" => self.suid = true,
            "dev" => self.dev = true,
            "exec" => {}
            "fsname" => self.fsname = Some(need(val)?),
            "subtype" => self.subtype = Some(need(val)?),
            "threads" => {
                self.threads = need(val)?
                    .parse()
                    .map_err(|_| format!("threads={} is not a number", val.unwrap_or("")))?
            }
            "uidmapping" => self.ids.uid = IdMap::parse(&need(val)?)?,
            "gidmapping" => self.ids.gid = IdMap::parse(&need(val)?)?,
            "squash_to_root" => sq.root = true,
            "squash_to_uid" => sq.uid = Some(number(key, &need(val)?)?),
            "squash_to_gid" => sq.gid = Some(number(key, &need(val)?)?),
            "static_nlink" => self.static_nlink = true,
            "xattr_permissions" => {
                self.xattr_permissions = match need(val)?.as_str() {
                    "0" => 0,
                    "1" => 1,
                    "2" => 2,
                    v => {
                        return Err(format!(
                            "xattr_permissions={v}: want 0 (owners in the files), 1 (in \
                             security.fuseoverlayfs.override_stat) or 2 (in user.fuseoverlayfs.override_stat)"
                        ));
                    }
                }
            }
            "noacl" => self.noacl = true,
            "noxattrs" => self.noxattrs = val.map_or(Ok(1), |v| number(key, v))? != 0,
            "fsync" => self.volatile |= number(key, &need(val)?)? == 0,
            "timeout" => {
                let v = need(val)?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| format!("timeout={v} is not a number of seconds"))?;
                self.timeout = Some(
                    std::time::Duration::try_from_secs_f64(secs)
                        .map_err(|_| format!("timeout={v} is too large"))?,
                );
            }
            "max_threads" => self.threads = number(key, &need(val)?)? as usize,
            "threaded" => {
                if number(key, &need(val)?)? == 0 {
                    self.threads = 1;
                }
            }
            "max_read" => self.max_read = Some(number(key, &need(val)?)?),
            "nosymfollow" => self.nosymfollow = true,
            "auto_unmount" => self.auto_unmount = true,
            "context" | "fscontext" | "defcontext" | "rootcontext" => {
                let v = need(val)?;
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(&v);
                self.lsm_labels.push(format!("{key}=\"{v}\""));
            }
            "redirect_dir" => {
                let v = need(val)?;
                self.redirect_dir = Some(match v.as_str() {
                    "off" => RedirectDir::Off,
                    "follow" => RedirectDir::Follow,
                    "nofollow" => RedirectDir::NoFollow,
                    "on" => RedirectDir::On,
                    _ => {
                        return Err(format!(
                            "redirect_dir={v}: the values are on, follow, nofollow and off"
                        ));
                    }
                });
            }
            "debug" => self.debug = true,
            "remount" => self.remount = true,
            k if ignored(k, val.is_some()) => {}
            k if NO_EFFECT.iter().any(|(n, _)| *n == k) => {
                // writeback=0 asks for what is so.
                if val != Some("0") {
                    let why = NO_EFFECT.iter().find(|(n, _)| *n == k).map_or("", |x| x.1);
                    self.notices
                        .push(format!("option '{item}' has no effect: {why}"));
                }
            }
            _ => return Err(format!("unknown option '{item}'")),
        }
        Ok(())
    }

    /// Every layer path with its role, for validation messages.
    pub fn roles(&self) -> Vec<(String, &Path)> {
        let mut v: Vec<(String, &Path)> = Vec::new();
        if let Some(u) = &self.upperdir {
            v.push(("upperdir".into(), u));
        }
        if let Some(w) = &self.workdir {
            v.push(("workdir".into(), w));
        }
        for (i, l) in self.lowerdirs.iter().enumerate() {
            v.push((format!("lowerdir #{}", i + 1), l));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(o: &[&str]) -> Result<MountOptions, String> {
        MountOptions::parse(o, Path::new("/cwd"))
    }

    #[test]
    fn lowerdir_order_escapes_and_relative_paths() {
        let m = parse(&[r"lowerdir=a\:b:/abs/c\,d,upperdir=u", "workdir=w"]).unwrap();
        assert_eq!(
            m.lowerdirs,
            vec![PathBuf::from("/cwd/a:b"), PathBuf::from("/abs/c,d")]
        );
        assert_eq!(m.upperdir, Some(PathBuf::from("/cwd/u")));
        assert_eq!(m.workdir, Some(PathBuf::from("/cwd/w")));
    }

    #[test]
    fn generic_flags_are_quiet_and_unknown_ones_fail() {
        let m = parse(&["lowerdir=a,rw,norelatime,defaults,_netdev,x-systemd.automount,dev,suid"])
            .unwrap();
        assert_eq!(m.lowerdirs.len(), 1);
        assert!(m.dev && m.suid);
        let e = parse(&["lowerdir=a,frobnicate"]).unwrap_err();
        assert!(e.contains("frobnicate"), "{e}");
        assert!(parse(&["lowerdir="]).is_err());
        assert!(parse(&["lowerdir=a::b"]).is_err());
    }

    #[test]
    fn fuse_options_pass_through() {
        let m =
            parse(&["lowerdir=a,allow_other,ro,nosuid,nodev,noexec,noatime,fsname=x,subtype=y"])
                .unwrap();
        assert!(m.allow_other && m.ro && m.nosuid && m.nodev && m.noexec);
        assert_eq!(m.atime, Atime::Never);
        assert_eq!(m.fsname.as_deref(), Some("x"));
        assert_eq!(m.subtype.as_deref(), Some("y"));
    }

    /// redirect_dir: off (the default), follow, nofollow and on; only on
    /// writes redirects.
    #[test]
    fn redirect_dir_values() {
        let rd =
            |v: &str| parse(&[&format!("lowerdir=a,redirect_dir={v}")]).map(|m| m.redirect_dir);
        assert_eq!(parse(&["lowerdir=a"]).unwrap().redirect_dir, None);
        assert_eq!(rd("off"), Ok(Some(RedirectDir::Off)));
        assert_eq!(rd("follow"), Ok(Some(RedirectDir::Follow)));
        assert_eq!(rd("nofollow"), Ok(Some(RedirectDir::NoFollow)));
        assert_eq!(rd("on"), Ok(Some(RedirectDir::On)));
        assert!(rd("yes").is_err());
        assert!(RedirectDir::Off.follows() && !RedirectDir::NoFollow.follows());
        assert!(RedirectDir::On.writes() && !RedirectDir::Follow.writes());
    }

    /// The option tables (the -o help, the man page) name only options the
    /// parser takes, every one of them as written there.
    #[test]
    fn every_documented_option_parses() {
        // A placeholder becomes a value of its kind; a literal value (off,
        // 0, 1) is taken as written.
        let sample = |n: &str| match n.split_once('=') {
            Some(("marks", _)) => "marks=all".to_string(),
            // A choice: its last value.
            Some((k, v)) if v.contains('|') => {
                format!("{k}={}", v.rsplit('|').next().unwrap_or(""))
            }
            Some((k, "D:S:N")) => format!("{k}=0:1000:10"),
            Some((k, "N" | "S")) => format!("{k}=2"),
            Some((k, v)) if v.chars().all(|c| c.is_ascii_uppercase() || c == ':') => {
                format!("{k}=x")
            }
            Some((k, "")) => format!("{k}=x"),
            Some(_) => n.to_string(),
            None => n.replace('*', "foo"),
        };
        for (names, _) in EFFECTIVE {
            for n in names.split(", ") {
                let item = sample(n);
                parse(&[&format!("lowerdir=a,{item}")]).unwrap_or_else(|e| panic!("{item}: {e}"));
            }
        }
        for (names, _) in IGNORED {
            for n in *names {
                let item = sample(n);
                let m = parse(&[&format!("lowerdir=a,{item}")])
                    .unwrap_or_else(|e| panic!("{item}: {e}"));
                assert_eq!(
                    m,
                    parse(&["lowerdir=a"]).unwrap(),
                    "{item} changed something"
                );
            }
        }
    }
}
