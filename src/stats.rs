//! Counters since mount, cheap enough to stay on: relaxed atomics only.
//!
//! Serves the teaching goal (issue 7): `ovlfuse stats` reads these through a
//! virtual xattr of the mount root.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How many layers get their own lookup counter; deeper ones share the last.
pub const LAYER_SLOTS: usize = 64;

#[derive(Debug)]
pub struct Stats {
    pub copy_ups: AtomicU64,
    pub copy_up_bytes: AtomicU64,
    pub copy_up_us: AtomicU64,
    pub whiteouts: AtomicU64,
    pub exdev: AtomicU64,
    pub lookups_by_layer: [AtomicU64; LAYER_SLOTS],
    pub negative_lookups: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            copy_ups: AtomicU64::new(0),
            copy_up_bytes: AtomicU64::new(0),
            copy_up_us: AtomicU64::new(0),
            whiteouts: AtomicU64::new(0),
            exdev: AtomicU64::new(0),
            lookups_by_layer: std::array::from_fn(|_| AtomicU64::new(0)),
            negative_lookups: AtomicU64::new(0),
        }
    }
}

impl Stats {
    pub fn whiteout(&self) {
        self.whiteouts.fetch_add(1, Relaxed);
    }
    pub fn exdev(&self) {
        self.exdev.fetch_add(1, Relaxed);
    }
    pub fn copy_up(&self, bytes: u64, us: u64) {
        self.copy_ups.fetch_add(1, Relaxed);
        self.copy_up_bytes.fetch_add(bytes, Relaxed);
        self.copy_up_us.fetch_add(us, Relaxed);
    }
    pub fn lookup(&self, layer: Option<usize>) {
        match layer {
            Some(l) => self.lookups_by_layer[l.min(LAYER_SLOTS - 1)].fetch_add(1, Relaxed),
            None => self.negative_lookups.fetch_add(1, Relaxed),
        };
    }

    /// A human-readable report, `key value` per line.
    pub fn render(&self, layer_names: &[String]) -> String {
        let mut s = String::new();
        let g = |a: &AtomicU64| a.load(Relaxed);
        s += &format!("copy_ups {}\n", g(&self.copy_ups));
        s += &format!("copy_up_bytes {}\n", g(&self.copy_up_bytes));
        s += &format!("copy_up_us_total {}\n", g(&self.copy_up_us));
        s += &format!("whiteouts_created {}\n", g(&self.whiteouts));
        s += &format!("exdev_refusals {}\n", g(&self.exdev));
        s += &format!("negative_lookups {}\n", g(&self.negative_lookups));
        for (i, n) in layer_names.iter().enumerate().take(LAYER_SLOTS) {
            s += &format!("lookups_layer{i} {} {}\n", g(&self.lookups_by_layer[i]), n);
        }
        s
    }
}
