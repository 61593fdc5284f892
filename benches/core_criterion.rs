//! Criterion benches of the FUSE-free core (no mount), the same operations
//! `benches/core.rs` times by hand: lookup of a bottom-layer file through a
//! stack of 1, 10, 100 and 500 lowers, merged readdir of a directory present
//! in every one of those lowers, and merged readdir of a 10,000-entry
//! directory spread over 5 lowers.
//!
//! `cargo bench --bench core_criterion` (a few minutes on 2 CPUs);
//! `cargo bench --bench core_criterion -- lookup` runs one group.

#[path = "shared/stacks.rs"]
mod stacks;
use stacks::*;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ovlfuse::lookup::{self, DirRef};
use ovlfuse::{Stack, readdir};
use std::ffi::OsStr;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

const DEPTHS: [usize; 4] = [1, 10, 100, 500];

/// Modest settings: 20 samples over ~3 s per case (5-6 s for the slow
/// listings), about a minute of measuring in all on 2 CPUs.
fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .without_plots()
}

fn by_depth(c: &mut Criterion) {
    let t = tempfile::tempdir().unwrap();
    let stacks: Vec<(usize, Stack)> = DEPTHS
        .iter()
        .map(|&d| (d, stack_of(d, &t.path().join(format!("d{d}")))))
        .collect();

    let mut g = c.benchmark_group("lookup_bottom_file");
    for (depth, s) in &stacks {
        let lowers = lookup::root_lowers(s);
        let root = DirRef {
            path: Path::new(""),
            lowers: &lowers,
        };
        g.bench_with_input(BenchmarkId::from_parameter(depth), depth, |b, _| {
            b.iter(|| {
                let e = lookup::lookup(s, black_box(&root), OsStr::new("bottom")).unwrap();
                assert!(e.is_some());
                e
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("readdir_merged_by_depth");
    // 500 layers take ~10 ms a listing: 20 samples need ~5 s.
    g.measurement_time(Duration::from_secs(5));
    for (depth, s) in &stacks {
        let lowers = at_path(*depth, "dir");
        let dir = DirRef {
            path: Path::new("dir"),
            lowers: &lowers,
        };
        g.bench_with_input(BenchmarkId::from_parameter(depth), depth, |b, &depth| {
            b.iter(|| {
                let v = readdir::read_merged(s, black_box(&dir)).unwrap();
                assert_eq!(v.len(), depth);
                v
            })
        });
    }
    g.finish();
}

fn big_dir(c: &mut Criterion) {
    const ENTRIES: usize = 10_000;
    const LOWERS: usize = 5;
    let t = tempfile::tempdir().unwrap();
    let lowers: Vec<PathBuf> = (0..LOWERS)
        .map(|i| t.path().join(format!("l{i}")))
        .collect();
    for l in &lowers {
        std::fs::create_dir_all(l.join("big")).unwrap();
    }
    for i in 0..ENTRIES {
        std::fs::write(lowers[i % LOWERS].join(format!("big/e{i:05}")), b"e").unwrap();
    }
    let s = open(lowers);
    let idx = at_path(LOWERS, "big");
    let dir = DirRef {
        path: Path::new("big"),
        lowers: &idx,
    };
    let mut g = c.benchmark_group("readdir_merged_big");
    // ~25 ms a listing: 20 samples need ~5 s.
    g.measurement_time(Duration::from_secs(6));
    g.bench_function("10000_entries_5_lowers", |b| {
        b.iter(|| {
            let v = readdir::read_merged(&s, black_box(&dir)).unwrap();
            assert_eq!(v.len(), ENTRIES);
            v
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = config();
    targets = by_depth, big_dir
}
criterion_main!(benches);

/// The lower stack of a directory at `path` in each of `n` lowers.
fn at_path(n: usize, path: &str) -> Vec<lookup::LayerPath> {
    (0..n)
        .map(|layer| lookup::LayerPath {
            layer,
            path: path.into(),
        })
        .collect()
}
