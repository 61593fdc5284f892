//! Resolve a path through a layer stack with the library, without mounting:
//!
//!     cargo run --example resolve_path -- LOWER_TOP:LOWER_BOTTOM some/path
//!
//! Prints which layer's object wins and, for a directory, the merged listing.

use ovlfuse::lookup::{self, DirRef};
use ovlfuse::{MountOptions, Stack, readdir};
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(layers), Some(path)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: resolve_path LOWER[:LOWER...] PATH");
        std::process::exit(2);
    };
    let cwd = std::env::current_dir().expect("cwd");
    let opts = MountOptions::parse(&[format!("lowerdir={layers}")], &cwd).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let stack = Stack::open(&opts).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    match lookup::resolve_path(&stack, Path::new(path)) {
        Ok(Some((entry, lowers))) => {
            let layer = &stack.layers[entry.layer];
            println!(
                "{path}: found in layer {} ({})",
                entry.layer,
                layer.path.display()
            );
            if entry.is_dir() {
                let dir = DirRef {
                    path: Path::new(path),
                    lowers: &lowers,
                };
                for e in readdir::read_merged(&stack, &dir).expect("readdir") {
                    println!("  {} (from layer {})", e.name.to_string_lossy(), e.layer);
                }
            }
        }
        Ok(None) => println!("{path}: does not exist in the merged view"),
        Err(e) => println!("{path}: {e}"),
    }
}
