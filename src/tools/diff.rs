//! `ovlfuse diff UPPERDIR [--lower DIR ...]`: what a container layer
//! changed, one line a path, in the style of `docker diff`: A(dded),
//! C(hanged: the name exists in a lower layer too), D(eleted by whiteout);
//! opaque directories are marked. Presence below uses the library's lookup.

use super::layerwalk::{self, ItemKind};
use crate::lookup;
use crate::options::MountOptions;
use crate::stack::Stack;
use std::path::{Path, PathBuf};

/// The diff as lines, for the command and for tests.
pub fn lines(upper: &Path, lowers: &[PathBuf]) -> Result<Vec<String>, String> {
    let items = layerwalk::walk(upper).map_err(|e| format!("{}: {e}", upper.display()))?;
    let stack = if lowers.is_empty() {
        None
    } else {
        let o = MountOptions {
            lowerdirs: lowers.to_vec(),
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

pub fn run(upper: &Path, lowers: &[PathBuf]) -> i32 {
    match lines(upper, lowers) {
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
