//! Layer stacks for the in-process benches (core, core_criterion): no
//! mount, no test harness.
#![allow(dead_code)]

use ovlfuse::{MountOptions, Stack};
use std::path::{Path, PathBuf};

/// `depth` lowers under `base`: each has `dir/f<i>`, the bottom one also
/// holds `bottom` at its root.
pub fn stack_of(depth: usize, base: &Path) -> Stack {
    let lowers: Vec<PathBuf> = (0..depth).map(|i| base.join(format!("l{i}"))).collect();
    for (i, l) in lowers.iter().enumerate() {
        std::fs::create_dir_all(l.join("dir")).unwrap();
        std::fs::write(l.join(format!("dir/f{i}")), "x").unwrap();
    }
    std::fs::write(lowers[depth - 1].join("bottom"), "b").unwrap();
    open(lowers)
}

/// A read-only stack of these lowers.
pub fn open(lowers: Vec<PathBuf>) -> Stack {
    Stack::open(&MountOptions {
        lowerdirs: lowers,
        ..Default::default()
    })
    .unwrap()
}
