//! `ovlfuse diff UPPERDIR [--lower DIRS ...]`: what a container layer
//! changed, one line a path, in the style of `docker diff`: A(dded),
//! C(hanged: the name exists in a lower layer too), D(eleted by whiteout);
//! opaque directories are marked. Presence below uses the library's lookup.

use super::layerwalk::{self, ItemKind};
use crate::lookup;
use crate::options::MountOptions;
use crate::stack::Stack;
use std::path::{Path, PathBuf};

/// The lower layers of `--lower` values, top first: each value is one
/// directory or a `lowerdir=` list (`A:B`, with or without the key, with
/// the mount option's escapes), so a mount's options can be pasted.
pub fn parse_lowers(values: &[String], cwd: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for v in values {
        let v = v.strip_prefix("lowerdir=").unwrap_or(v);
        out.extend(crate::options::parse_lowerdirs(v, cwd)?);
    }
    Ok(out)
}

/// The diff as lines, for the command and for tests.
pub fn lines(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<String>, String> {
    // A merged view walked as if it were an upper gives a plausible but
    // wrong answer (everything "added"): refuse it.
    if let Some(t) = crate::mount::overlay_view_fstype(upper) {
        return Err(format!(
            "{} is inside a mounted overlay ({t}), not an upper directory: give the mount's upperdir",
            upper.display()
        ));
    }
    // Every form of mark: the layers may be unpacked images or uppers of
    // any overlay, and reading them hides nothing from anyone.
    let marks = crate::markers::MarkPolicy::all();
    let items = layerwalk::walk(upper, &marks).map_err(|e| format!("{}: {e}", upper.display()))?;
    let stack = if lowers.is_empty() {
        None
    } else {
        let o = MountOptions {
            lowerdirs: lowers.to_vec(),
            marks: Some(crate::options::Marks::All),
            ..Default::default()
        };
        Some(Stack::open_readonly(&o)?)
    };
    let in_lower = |p: &Path| match &stack {
        Some(s) => matches!(lookup::resolve_path(s, p), Ok(Some(_))),
        None => false,
    };
    let mut out = Vec::new();
    for it in items {
        let path = format!("/{}", it.rel.display());
        let line = match it.kind {
            ItemKind::Whiteout => format!("D {path}"),
            ItemKind::Dir { opaque } => {
                let c = if in_lower(&it.rel) { 'C' } else { 'A' };
                if opaque {
                    format!("{c} {path} (opaque)")
                } else {
                    format!("{c} {path}")
                }
            }
            ItemKind::Other => format!("{} {path}", if in_lower(&it.rel) { 'C' } else { 'A' }),
        };
        out.push(line);
    }
    Ok(out)
}

pub fn run(upper: &Path, lowers: &[String], cwd: &Path) -> i32 {
    match parse_lowers(lowers, cwd).and_then(|l| lines(upper, &l)) {
        Ok(l) => {
            for x in l {
                println!("{x}");
            }
            0
        }
        Err(e) => {
            eprintln!("ovlfuse: {e}");
            1
        }
    }
}
