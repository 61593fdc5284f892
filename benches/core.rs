//! In-process benches of the FUSE-free core (no mount): lookup through a
//! deep stack, merged readdir, and the cost of the always-on statistics.
//! `cargo bench --bench core`. Plain timing loops (median of 5 batches).

#[path = "shared/stacks.rs"]
mod stacks;
use stacks::*;

use ovlfuse::lookup::{self, DirRef};
use ovlfuse::readdir;
use ovlfuse::stats::Stats;
use std::path::Path;
use std::time::Instant;

fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                f();
            }
            t.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[2]
}

fn main() {
    let t = tempfile::tempdir().unwrap();
    let stats = Stats::default();
    let c = per_op(1_000_000, || {
        stats.request(std::hint::black_box("getattr"));
        stats.lookup(Some(3));
    });
    println!(
        "stats: counting one request + one lookup: {c:.1} ns (a FUSE round trip costs several microseconds)"
    );
    let c = per_op(1_000_000, || stats.copy_up(std::hint::black_box(4096), 120));
    println!("stats: recording one copy-up (count, bytes, histogram, max): {c:.1} ns");
    for depth in [1, 10, 100, 500] {
        let base = t.path().join(format!("d{depth}"));
        let s = stack_of(depth, &base);
        let lowers = lookup::root_lowers(&s);
        let dir_lowers: Vec<lookup::LayerPath> = lowers
            .iter()
            .map(|l| lookup::LayerPath {
                layer: l.layer,
                path: "dir".into(),
            })
            .collect();
        let root = DirRef {
            path: Path::new(""),
            lowers: &lowers,
        };
        let n = if depth >= 100 { 200 } else { 5000 };
        let c = per_op(n, || {
            assert!(
                lookup::lookup(&s, &root, std::ffi::OsStr::new("bottom"))
                    .unwrap()
                    .is_some()
            );
        });
        let d = per_op(n.min(500), || {
            let dir = DirRef {
                path: Path::new("dir"),
                lowers: &dir_lowers,
            };
            assert_eq!(readdir::read_merged(&s, &dir).unwrap().len(), depth);
        });
        println!(
            "core: lookup of a bottom-layer file through {depth:>3} lowers: {:>10.1} us; merged readdir of {depth} layers: {:>10.1} us",
            c / 1e3,
            d / 1e3
        );
    }
}
