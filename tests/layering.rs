//! The module layering that src/lib.rs writes down: no module imports from
//! its own layer or one below it in that list. A source check, no mount.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Layer of each module, from the numbered list in src/lib.rs's doc.
fn layers(lib: &str) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    let mut layer = 0;
    for line in lib.lines().take_while(|l| l.starts_with("//!")) {
        let l = line.trim_start_matches("//!").trim_start();
        if let Some((n, _)) = l.split_once(". ")
            && let Ok(n) = n.parse::<usize>()
        {
            layer = n;
        } else if !line.starts_with("//!    ") {
            // A line that neither starts nor continues an item ends the list.
            layer = 0;
        }
        if layer == 0 {
            continue;
        }
        for link in l.split("[`").skip(1) {
            if let Some((name, _)) = link.split_once("`]") {
                out.insert(name.to_string(), layer);
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The crate modules a source file names through `crate::`.
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in text.split("crate::").skip(1) {
        if let Some(group) = part.strip_prefix('{') {
            let group = group.split('}').next().unwrap_or("");
            out.extend(
                group
                    .split(',')
                    .map(|m| m.trim().split("::").next().unwrap().to_string()),
            );
        } else {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

#[test]
fn no_module_imports_from_its_own_layer_or_below() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer = layers(&std::fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    let mut seen = 0;
    for f in files {
        let rel = f.strip_prefix(&src).unwrap();
        let top = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let module = top.trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" {
            continue;
        }
        let own = *layer
            .get(&module)
            .unwrap_or_else(|| panic!("src/lib.rs's layer list does not name {module}"));
        seen += 1;
        for m in uses(&std::fs::read_to_string(&f).unwrap()) {
            if m == module {
                continue;
            }
            match layer.get(&m) {
                Some(&l) if l < own => {}
                Some(&l) => wrong.push(format!(
                    "src/{} (layer {own}) imports {m} (layer {l})",
                    rel.display()
                )),
                None => wrong.push(format!(
                    "src/{}: crate::{m} is not in the list",
                    rel.display()
                )),
            }
        }
    }
    assert!(seen > 20, "only {seen} files checked: is the list parsed?");
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_check_catches_an_upward_import() {
    let lib = "//! 1. [`sys`]: calls\n//! 2. [`stack`]: layers\n";
    let layer = layers(lib);
    assert_eq!(layer.get("sys"), Some(&1));
    assert_eq!(layer.get("stack"), Some(&2));
    assert_eq!(
        uses("use crate::stack::Stack;\nlet x = crate::sys::err(1);"),
        ["stack", "sys"]
    );
    assert_eq!(uses("use crate::{sys, stack::Stack};"), ["sys", "stack"]);
}
