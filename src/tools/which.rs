//! `ovlfuse which -o lowerdir=...,upperdir=... PATH`: without mounting, show
//! every layer's object at PATH (or its marker), which one wins and why.
//! The verdict comes from the library's own lookup; this file only explains.

use crate::lookup::{self, split};
use crate::markers;
use crate::options::MountOptions;
use crate::resolve;
use crate::stack::Stack;
use std::os::fd::AsFd;
use std::path::Path;

/// What one layer holds at the path.
fn describe(stack: &Stack, layer: usize, parent: &Path, name: &std::ffi::OsStr) -> String {
    let Ok(d) = stack.dir(layer, parent) else {
        return "-      (parent directory absent)".into();
    };
    match resolve::fstatat(d.as_fd(), name) {
        Ok(st) if markers::is_whiteout(d.as_fd(), name, &st) => {
            "whiteout (hides the name in every layer below)".into()
        }
        Ok(st) if resolve::is_dir(&st) => {
            let lower = !stack.is_upper(layer);
            if markers::is_opaque(d.as_fd(), name, lower) {
                format!(
                    "dir  {:o}  OPAQUE (nothing below merges in)",
                    st.st_mode & 0o7777
                )
            } else {
                format!("dir  {:o}", st.st_mode & 0o7777)
            }
        }
        Ok(st) if resolve::is_lnk(&st) => {
            let t = resolve::readlinkat(d.as_fd(), name).unwrap_or_default();
            format!("symlink -> {}", t.to_string_lossy())
        }
        Ok(st) => format!("file {:o}  {} bytes", st.st_mode & 0o7777, st.st_size),
        Err(_) => {
            let mut w = std::ffi::OsString::from(".wh.");
            w.push(name);
            if !stack.is_upper(layer) && resolve::fstatat(d.as_fd(), &w).is_ok() {
                "AUFS whiteout .wh. file (hides the name below)".into()
            } else {
                "-".into()
            }
        }
    }
}

pub fn run(opts: &[String], path: &Path, cwd: &Path) -> i32 {
    let o = match MountOptions::parse(opts, cwd) {
        Ok(o) => o,
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
    let rel: std::path::PathBuf = path
        .components()
        .filter(|c| matches!(c, std::path::Component::Normal(_)))
        .collect();
    let (parent, name) = split(&rel);
    println!("{}:", rel.display());
    for (i, l) in stack.layers.iter().enumerate() {
        let role = if l.is_upper {
            "upper".to_string()
        } else {
            format!("lower{}", i - stack.first_lower() + 1)
        };
        println!(
            "  [{i}] {role:<7} {:<40} {}",
            l.path.display(),
            describe(&stack, i, &parent, &name)
        );
    }
    match lookup::resolve_path(&stack, &rel) {
        Ok(Some((e, _))) => {
            let kind = if e.is_dir() { "directory" } else { "object" };
            println!(
                "result: the {kind} from layer [{}] wins (topmost non-whiteout, searched top-down)",
                e.layer
            );
            if e.is_dir() {
                let l: Vec<String> = e.layers.iter().map(|x| format!("[{x}]")).collect();
                println!(
                    "        merged from layers {}{}",
                    l.join(" "),
                    if e.opaque {
                        " (stops at an opaque directory)"
                    } else {
                        ""
                    }
                );
            }
            0
        }
        Ok(None) => {
            println!(
                "result: does not exist in the merged view (absent, or a whiteout ends the search first)"
            );
            1
        }
        Err(e) => {
            println!("result: error {e}");
            1
        }
    }
}
