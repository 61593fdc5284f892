//! `ovlfuse which -o lowerdir=...,upperdir=... PATH`: without mounting, show
//! every layer's object at PATH (or its marker), which one wins and why.
//! The verdict comes from the library's own lookup; this file only explains:
//! it walks PATH component by component the way the lookup does, noting for
//! each layer where it drops out of the search and what made it drop out.
//!
//! Layers are numbered as `ovlfuse stats` numbers them (their index in the
//! stack: `[0]` is the upper when there is one, then the lowers top first)
//! and named as the mount options name them (`upper`, `lowerdir #1`, ...).

use crate::lookup::{self, DirRef};
use crate::markers;
use crate::options::MountOptions;
use crate::stack::Stack;
use crate::sys::{self, Stat, XTarget};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Component, Path, PathBuf};

/// Why a layer stopped contributing, noted at the first component of the
/// path where it did (paths are relative to the overlay root).
#[derive(Debug, Clone)]
enum Why {
    /// `dir` is opaque in `layer`: nothing below that layer merges into it.
    Opaque { dir: PathBuf, layer: usize },
    /// `at` is whited out in `layer` (by `marker`): the search ends there.
    WhitedOut {
        at: PathBuf,
        layer: usize,
        marker: String,
    },
    /// `at` is a non-directory in `layer`: the search ends there.
    NotDir { at: PathBuf, layer: usize },
    /// The layer holds nothing at `at`.
    Absent { at: PathBuf },
    /// `at` is an AUFS marker name in this layer, which never shows.
    Marker { at: PathBuf },
    /// The path's non-directory in `by` ends the search above this layer.
    Shadowed { by: usize },
}

impl Why {
    /// Does this reason concern the path itself (not one of its ancestors)?
    fn at_path(&self, path: &Path) -> bool {
        match self {
            Why::Opaque { dir: at, .. }
            | Why::WhitedOut { at, .. }
            | Why::NotDir { at, .. }
            | Why::Absent { at }
            | Why::Marker { at } => at == path,
            Why::Shadowed { .. } => true,
        }
    }
}

/// What ended the search for one name, in the layer it was found in.
#[derive(Debug, Clone)]
enum Stop {
    Whiteout(String),
    Opaque,
    NotDir,
}

/// How the walk of the whole path ended.
#[derive(Debug)]
enum End {
    /// The path exists: its topmost layer, every layer merged (top first;
    /// just the one for a non-directory) and what ended a directory's merge.
    Found {
        layer: usize,
        merged: Vec<usize>,
        stop: Option<(usize, Stop)>,
    },
    /// `at` is whited out in `layer` with nothing above it.
    WhitedOut {
        at: PathBuf,
        layer: usize,
        marker: String,
    },
    /// No layer the search visited holds `at`.
    Absent,
    /// The ancestor `at` is a non-directory, from `layer`.
    NotDir { at: PathBuf, layer: usize },
}

struct Walk {
    why: Vec<Option<Why>>,
    end: End,
}

/// What one layer shows the lookup of `name` in `parent`.
enum Seen {
    ParentAbsent,
    Marker,
    Absent,
    Whiteout(String),
    NotDir,
    Dir { opaque: bool },
}

/// The whiteout that `.wh.NAME` would be, if it exists in `dir` (lowers).
fn aufs_whiteout(
    stack: &Stack,
    layer: usize,
    dir: BorrowedFd,
    name: &OsStr,
) -> io::Result<Option<String>> {
    let w = markers::aufs_whiteout_name(name);
    let found = !stack.is_upper(layer) && stack.marks(layer).aufs_whiteout(dir, name)?;
    Ok(found.then(|| format!("AUFS {}", w.to_string_lossy())))
}

/// Which form of whiteout `name` (already known to be one) is.
fn whiteout_form(stack: &Stack, dir: BorrowedFd, name: &OsStr, st: &Stat) -> String {
    if st.st_mode & libc::S_IFMT == libc::S_IFCHR {
        return "0/0 character device".into();
    }
    stack
        .marks(0)
        .whiteout_names()
        .into_iter()
        .map(|x| x.to_string_lossy().into_owned())
        .find(|x| sys::getxattr(XTarget::At(dir, name), OsStr::new(x)).is_ok())
        .map_or_else(|| "overlay.whiteout xattr".into(), |x| format!("{x} xattr"))
}

/// Which mark makes the directory `name` (already known to be opaque) so.
fn opaque_form(stack: &Stack, dir: BorrowedFd, name: &OsStr) -> String {
    let t = XTarget::At(dir, name);
    let xattr = stack
        .marks(0)
        .opaque_names()
        .into_iter()
        .find(|x| sys::getxattr(t, x).is_ok_and(|v| v == b"y"));
    if let Some(x) = xattr {
        return format!("{}=y", x.to_string_lossy());
    }
    let aufs = sys::openat(dir, name, libc::O_PATH | libc::O_DIRECTORY, 0)
        .is_ok_and(|d| sys::fstatat(d.as_fd(), OsStr::new(markers::AUFS_OPAQUE)).is_ok());
    if aufs {
        markers::AUFS_OPAQUE.into()
    } else {
        "opaque mark".into()
    }
}

/// One step of the lookup (`lookup::lookup_in`) in one layer.
fn see(stack: &Stack, l: usize, parent: &Path, name: &OsStr) -> io::Result<Seen> {
    let d = match stack.dir(l, parent) {
        Ok(d) => d,
        Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
            return Ok(Seen::ParentAbsent);
        }
        Err(e) => return Err(e),
    };
    if stack.marks(l).is_marker_in(name, stack.is_upper(l)) {
        return Ok(Seen::Marker);
    }
    let st = match sys::fstatat(d.as_fd(), name) {
        Ok(st) => st,
        Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => {
            return Ok(match aufs_whiteout(stack, l, d.as_fd(), name)? {
                Some(m) => Seen::Whiteout(m),
                None => Seen::Absent,
            });
        }
        Err(e) => return Err(e),
    };
    Ok(if stack.marks(l).is_whiteout(d.as_fd(), name, &st)? {
        Seen::Whiteout(whiteout_form(stack, d.as_fd(), name, &st))
    } else if sys::is_dir(&st) {
        Seen::Dir {
            opaque: stack.is_opaque(l, d.as_fd(), parent, name)?,
        }
    } else {
        Seen::NotDir
    })
}

/// Walk `comps` from the root as `lookup::resolve_path` does.
fn walk(stack: &Stack, comps: &[OsString]) -> io::Result<Walk> {
    let mut why: Vec<Option<Why>> = vec![None; stack.layers.len()];
    // Only the first reason counts: it is where the layer left the search.
    let mut note = |l: usize, w: Why| {
        why[l].get_or_insert(w);
    };
    // The root merges every layer (`lookup::root`).
    let mut merged: Vec<usize> = (0..stack.layers.len()).collect();
    let mut stop = None;
    let mut cur = PathBuf::new();
    for (j, name) in comps.iter().enumerate() {
        let last = j + 1 == comps.len();
        let at = crate::stack::child_path(&cur, name);
        // This explanation walks each layer at the overlay path (it does
        // not follow redirects).
        let lowers: Vec<lookup::LayerPath> = merged
            .iter()
            .copied()
            .filter(|l| !stack.is_upper(*l))
            .map(|layer| lookup::LayerPath {
                layer,
                path: cur.clone(),
            })
            .collect();
        let dir = DirRef {
            path: &cur,
            lowers: &lowers,
        };
        let order: Vec<usize> = lookup::visit_order(stack, &dir)
            .into_iter()
            .map(|(l, _)| l)
            .collect();
        let mut rest = order.into_iter();
        // The topmost object found (and whether it is a directory).
        let mut winner: Option<(usize, bool)> = None;
        let mut next = Vec::new();
        stop = None;
        for l in rest.by_ref() {
            match see(stack, l, &cur, name)? {
                Seen::ParentAbsent => note(l, Why::Absent { at: cur.clone() }),
                Seen::Marker => note(l, Why::Marker { at: at.clone() }),
                Seen::Absent => note(l, Why::Absent { at: at.clone() }),
                Seen::Whiteout(marker) => {
                    note(
                        l,
                        Why::WhitedOut {
                            at: at.clone(),
                            layer: l,
                            marker: marker.clone(),
                        },
                    );
                    stop = Some((l, Stop::Whiteout(marker)));
                    break;
                }
                Seen::NotDir => {
                    match winner {
                        None => {
                            winner = Some((l, false));
                            next.push(l);
                            if !last {
                                note(
                                    l,
                                    Why::NotDir {
                                        at: at.clone(),
                                        layer: l,
                                    },
                                );
                            }
                        }
                        // Under a directory: hidden by it, and it ends the merge.
                        Some((w, _)) if last => note(l, Why::Shadowed { by: w }),
                        Some(_) => note(
                            l,
                            Why::NotDir {
                                at: at.clone(),
                                layer: l,
                            },
                        ),
                    }
                    stop = Some((l, Stop::NotDir));
                    break;
                }
                Seen::Dir { opaque } => {
                    winner.get_or_insert((l, true));
                    next.push(l);
                    if opaque {
                        stop = Some((l, Stop::Opaque));
                        break;
                    }
                }
            }
        }
        // Layers the search never reached lose to whatever ended it.
        if let Some((k, s)) = &stop {
            for l in rest {
                let w = match s {
                    Stop::Whiteout(m) => Why::WhitedOut {
                        at: at.clone(),
                        layer: *k,
                        marker: m.clone(),
                    },
                    Stop::Opaque => Why::Opaque {
                        dir: at.clone(),
                        layer: *k,
                    },
                    Stop::NotDir if last && winner == Some((*k, false)) => Why::Shadowed { by: *k },
                    Stop::NotDir => Why::NotDir {
                        at: at.clone(),
                        layer: *k,
                    },
                };
                note(l, w);
            }
        }
        match winner {
            None => {
                let end = match stop {
                    Some((layer, Stop::Whiteout(marker))) => End::WhitedOut { at, layer, marker },
                    _ => End::Absent,
                };
                return Ok(Walk { why, end });
            }
            Some((layer, false)) if !last => {
                let end = End::NotDir { at, layer };
                return Ok(Walk { why, end });
            }
            Some(_) => {}
        }
        merged = next;
        cur = at;
    }
    let end = End::Found {
        layer: merged[0],
        merged,
        stop,
    };
    Ok(Walk { why, end })
}

/// `/rel`: the path as the merged view shows it.
fn show(p: &Path) -> String {
    format!("/{}", p.display())
}

/// What one layer holds at the path, and whether it is a real object (not
/// a whiteout). `None`: nothing there.
fn describe(stack: &Stack, l: usize, comps: &[OsString]) -> Option<(String, bool)> {
    let Some((name, parent)) = comps.split_last() else {
        // The root: the layer's root directory.
        let st = sys::fstat(stack.layers[l].root.as_fd()).ok()?;
        return Some((format!("dir {:o}", st.st_mode & 0o7777), true));
    };
    let parent: PathBuf = parent.iter().collect();
    let d = stack.dir(l, &parent).ok()?;
    let st = match sys::fstatat(d.as_fd(), name) {
        Ok(st) => st,
        Err(_) => {
            let m = aufs_whiteout(stack, l, d.as_fd(), name).ok()??;
            return Some((format!("whiteout ({m})"), false));
        }
    };
    let mode = st.st_mode & 0o7777;
    let text = match st.st_mode & libc::S_IFMT {
        _ if stack.marks(l).is_whiteout(d.as_fd(), name, &st).ok()? => {
            return Some((
                format!("whiteout ({})", whiteout_form(stack, d.as_fd(), name, &st)),
                false,
            ));
        }
        libc::S_IFDIR if stack.is_opaque(l, d.as_fd(), &parent, name).ok()? => {
            format!(
                "dir {mode:o} opaque ({})",
                opaque_form(stack, d.as_fd(), name)
            )
        }
        libc::S_IFDIR => format!("dir {mode:o}"),
        libc::S_IFLNK => {
            let t = sys::readlinkat(d.as_fd(), name).unwrap_or_default();
            format!("symlink -> {}", t.to_string_lossy())
        }
        libc::S_IFREG => format!("file {mode:o}, {} bytes", st.st_size),
        libc::S_IFIFO => format!("fifo {mode:o}"),
        libc::S_IFSOCK => format!("socket {mode:o}"),
        k => {
            let (maj, min) = (libc::major(st.st_rdev), libc::minor(st.st_rdev));
            let kind = if k == libc::S_IFBLK { "block" } else { "char" };
            format!("{kind} device {maj}:{min} {mode:o}")
        }
    };
    Some((text, true))
}

/// The reason `why` as layer `me`'s status, for the path `path`.
fn status(why: &Why, me: usize, path: &Path, found: bool) -> String {
    let kin = |at: &Path| {
        if path.parent() == Some(at) {
            "parent"
        } else {
            "ancestor"
        }
    };
    let at_path = why.at_path(path);
    match why {
        Why::Opaque { dir, layer } => {
            format!("below opaque directory {} in layer [{layer}]", show(dir))
        }
        Why::WhitedOut { layer, .. } if at_path && *layer == me && found => {
            "whiteout: ends the merge here".into()
        }
        Why::WhitedOut { layer, .. } if at_path && *layer == me => {
            "whiteout: hides the name below".into()
        }
        Why::WhitedOut { layer, .. } if at_path => format!("below the whiteout in layer [{layer}]"),
        Why::WhitedOut { at, layer, .. } if *layer == me => {
            format!("{} {} is whited out here", kin(at), show(at))
        }
        Why::WhitedOut { at, layer, .. } => {
            format!("{} {} is whited out in layer [{layer}]", kin(at), show(at))
        }
        Why::NotDir { layer, .. } if at_path => {
            format!("below the non-directory in layer [{layer}]")
        }
        Why::NotDir { at, layer } if *layer == me => {
            format!("{} {} is not a directory here", kin(at), show(at))
        }
        Why::NotDir { at, layer } => {
            format!(
                "{} {} is not a directory in layer [{layer}]",
                kin(at),
                show(at)
            )
        }
        Why::Absent { .. } if at_path => "-".into(),
        Why::Absent { at } if path.parent() == Some(at.as_path()) => {
            "parent directory absent".into()
        }
        Why::Absent { at } => format!("ancestor {} absent here", show(at)),
        Why::Marker { at } => format!("{} is an AUFS marker here, never shown", show(at)),
        Why::Shadowed { by } => format!("shadowed by layer [{by}]"),
    }
}

/// Why the path does not exist, from how the walk ended.
fn missing(walk: &Walk, objs: &[Option<(String, bool)>], path: &Path) -> String {
    match &walk.end {
        End::WhitedOut { at, layer, marker } if at == path => {
            format!("whited out by layer [{layer}] ({marker})")
        }
        End::WhitedOut { at, layer, marker } => {
            format!(
                "an ancestor {} is whited out by layer [{layer}] ({marker})",
                show(at)
            )
        }
        End::NotDir { at, layer } => {
            format!(
                "an ancestor {} is not a directory in layer [{layer}]",
                show(at)
            )
        }
        End::Found { .. } => "the lookup and this explanation disagree".into(),
        End::Absent => {
            // A layer may hold the path yet have left the search above it.
            let holder = objs
                .iter()
                .position(|o| o.as_ref().is_some_and(|(_, real)| *real));
            let Some(h) = holder else {
                return "absent from every layer".into();
            };
            let held = format!("layer [{h}] holds it");
            match &walk.why[h] {
                Some(Why::Opaque { dir, layer }) => format!(
                    "hidden: an ancestor directory {} in layer [{layer}] is opaque ({held})",
                    show(dir)
                ),
                Some(Why::WhitedOut { at, layer, marker }) => format!(
                    "hidden: an ancestor {} is whited out by layer [{layer}] ({marker}; {held})",
                    show(at)
                ),
                Some(Why::NotDir { at, layer }) => format!(
                    "hidden: an ancestor {} is not a directory in layer [{layer}] ({held})",
                    show(at)
                ),
                Some(Why::Marker { at }) => format!(
                    "hidden: {} is an AUFS marker in layer [{h}], never shown",
                    show(at)
                ),
                _ => "absent from every layer the search reaches".into(),
            }
        }
    }
}

/// The path, made relative to the overlay root (`..` taken lexically: the
/// lookup follows no symlinks).
fn components(path: &Path) -> Vec<OsString> {
    let mut v = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => v.push(n.to_os_string()),
            Component::ParentDir => {
                v.pop();
            }
            _ => {}
        }
    }
    v
}

fn layer_list(ls: &[usize]) -> String {
    let l: Vec<String> = ls.iter().map(|x| format!("[{x}]")).collect();
    l.join(" ")
}

pub fn run(opts: &[String], path: &Path, cwd: &Path) -> i32 {
    let o = match MountOptions::parse(opts, cwd) {
        // Layers inspected without a mount are mostly unpacked images or
        // uppers of any overlay: every form of mark, unless -o marks= says.
        Ok(o) => MountOptions {
            marks: o.marks.or(Some(crate::options::Marks::All)),
            ..o
        },
        Err(e) => {
            eprintln!("ovlfuse: {e}");
            return 1;
        }
    };
    let stack = match Stack::open_readonly(&o) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ovlfuse: {e}");
            return 1;
        }
    };
    let comps = components(path);
    let rel: PathBuf = comps.iter().collect();
    let walk = walk(&stack, &comps);
    let objs: Vec<Option<(String, bool)>> = (0..stack.layers.len())
        .map(|l| describe(&stack, l, &comps))
        .collect();
    // The read-only stack reads the upper as its top layer: `is_upper` is
    // the layer's own flag, not `stack.is_upper` (false throughout there).
    let uppers = usize::from(stack.layers.first().is_some_and(|l| l.is_upper));
    let found = matches!(
        walk,
        Ok(Walk {
            end: End::Found { .. },
            ..
        })
    );
    let rows: Vec<[String; 4]> = stack
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let role = if l.is_upper {
                "upper".to_string()
            } else {
                format!("lowerdir #{}", i + 1 - uppers)
            };
            let obj = objs[i].as_ref().map_or("-", |(t, _)| t.as_str());
            let st = match &walk {
                Err(_) => "?".to_string(),
                Ok(Walk {
                    end: End::Found { layer, .. },
                    ..
                }) if *layer == i => "<- wins".into(),
                Ok(Walk {
                    end: End::Found { merged, .. },
                    ..
                }) if merged.contains(&i) => "merged".into(),
                Ok(w) => match &w.why[i] {
                    // A layer with nothing at the path loses nothing there.
                    Some(y) if objs[i].is_none() && y.at_path(&rel) => "-".into(),
                    Some(y) => status(y, i, &rel, found),
                    None => "-".into(),
                },
            };
            [
                format!("[{i}] {role}"),
                l.path.display().to_string(),
                obj.to_string(),
                st,
            ]
        })
        .collect();
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let n = stack.layers.len();
    println!(
        "{} in {n} layer{} (top first):",
        show(&rel),
        if n == 1 { "" } else { "s" }
    );
    for r in &rows {
        println!("  {:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]);
    }
    let code = match (lookup::resolve_path(&stack, &rel), &walk) {
        (Ok(Some((e, _))), _) => {
            let kind = match e.st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => "directory",
                libc::S_IFREG => "file",
                libc::S_IFLNK => "symlink",
                _ => "special file",
            };
            let mut s = format!(
                "result: {} exists: the {kind} from layer [{}] wins",
                show(&rel),
                e.layer
            );
            let e_layers: Vec<usize> = e.layers.iter().map(|l| l.layer).collect();
            if e.is_dir() {
                s += &format!(", merged from layers {}", layer_list(&e_layers));
            }
            let agrees = match &walk {
                Ok(Walk {
                    end:
                        End::Found {
                            layer,
                            merged,
                            stop,
                        },
                    ..
                }) if *layer == e.layer && *merged == e_layers => {
                    if let (true, Some((k, why))) = (e.is_dir(), stop) {
                        s += &match why {
                            Stop::Opaque => {
                                format!("; the opaque directory in layer [{k}] stops the merge")
                            }
                            Stop::Whiteout(m) => {
                                format!("; the whiteout in layer [{k}] ({m}) stops the merge")
                            }
                            Stop::NotDir => {
                                format!("; the non-directory in layer [{k}] stops the merge")
                            }
                        };
                    }
                    true
                }
                _ => false,
            };
            // Lower parts a redirect put elsewhere than at the overlay path.
            let moved: Vec<String> = e
                .layers
                .iter()
                .filter(|l| !stack.is_upper(l.layer) && l.path != rel)
                .map(|l| format!("[{}] at {}", l.layer, show(&l.path)))
                .collect();
            if !moved.is_empty() {
                s += &format!("; through overlay.redirect: {}", moved.join(", "));
            }
            println!("{s}");
            if !agrees && moved.is_empty() {
                println!(
                    "note: the layer notes above disagree with the lookup (a bug: please report it)"
                );
            } else if !agrees {
                println!(
                    "note: the layer notes above look at the overlay path only; a redirect on the way sends the lookup elsewhere"
                );
            }
            0
        }
        (Ok(None), Ok(w)) if matches!(w.end, End::WhitedOut { .. } | End::Absent) => {
            let why = missing(w, &objs, &rel);
            println!(
                "result: {} does not exist in the merged view: {why}",
                show(&rel)
            );
            1
        }
        // The lookup refuses to look inside a non-directory.
        (Err(e), Ok(w))
            if sys::errno(&e) == libc::ENOTDIR && matches!(w.end, End::NotDir { .. }) =>
        {
            let why = missing(w, &objs, &rel);
            println!(
                "result: {} does not exist in the merged view: {why}",
                show(&rel)
            );
            1
        }
        (Ok(None), _) => {
            println!(
                "result: {} does not exist in the merged view (the layer notes above disagree with the lookup: a bug, please report it)",
                show(&rel)
            );
            1
        }
        (Err(e), _) => {
            println!("result: error {e}");
            1
        }
    };
    if let Err(e) = &walk {
        println!("note: could not explain the layers: {e}");
    }
    code
}
