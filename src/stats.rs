//! Counters since mount, cheap enough to stay on: relaxed atomics only.
//!
//! Serves the teaching goal (issue 7): `ovlfuse stats` reads these through a
//! virtual xattr of the mount root.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

thread_local! {
    /// The layer that answered this thread's latest lookup, for `-d` logs.
    static LAST_LAYER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Take (and clear) the layer that answered this thread's latest lookup.
pub fn take_last_layer() -> Option<usize> {
    LAST_LAYER.with(|c| c.take())
}

/// How many layers get their own lookup counter; deeper ones share the last.
pub const LAYER_SLOTS: usize = 64;

/// Request kinds counted separately (the FUSE operations we serve).
pub const OPS: [&str; 32] = [
    "lookup",
    "forget",
    "getattr",
    "setattr",
    "readlink",
    "mknod",
    "mkdir",
    "unlink",
    "rmdir",
    "symlink",
    "rename",
    "link",
    "open",
    "read",
    "write",
    "flush",
    "release",
    "fsync",
    "opendir",
    "readdir",
    "readdirplus",
    "releasedir",
    "fsyncdir",
    "statfs",
    "setxattr",
    "getxattr",
    "listxattr",
    "removexattr",
    "access",
    "create",
    "fallocate",
    "lseek",
];

/// Log2 buckets of copy-up latency in microseconds (bucket i: < 2^i us).
const BUCKETS: usize = 40;

#[derive(Debug)]
pub struct Stats {
    pub requests: [AtomicU64; OPS.len()],
    pub copy_up_hist: [AtomicU64; BUCKETS],
    pub copy_up_max_us: AtomicU64,
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
            requests: std::array::from_fn(|_| AtomicU64::new(0)),
            copy_up_hist: std::array::from_fn(|_| AtomicU64::new(0)),
            copy_up_max_us: AtomicU64::new(0),
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
    /// Count one request of kind `op` (an entry of [`OPS`]).
    pub fn request(&self, op: &str) {
        if let Some(i) = OPS.iter().position(|o| *o == op) {
            self.requests[i].fetch_add(1, Relaxed);
        }
    }

    /// Approximate latency percentile `q` (0..1) from the histogram: the
    /// upper bound of the bucket holding it.
    pub fn copy_up_percentile(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self.copy_up_hist.iter().map(|a| a.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let want = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= want {
                return (1u64 << i).min(self.copy_up_max_us.load(Relaxed).max(1));
            }
        }
        self.copy_up_max_us.load(Relaxed)
    }

    pub fn copy_up(&self, bytes: u64, us: u64) {
        let b = (64 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.copy_up_hist[b].fetch_add(1, Relaxed);
        self.copy_up_max_us.fetch_max(us, Relaxed);
        self.copy_ups.fetch_add(1, Relaxed);
        self.copy_up_bytes.fetch_add(bytes, Relaxed);
        self.copy_up_us.fetch_add(us, Relaxed);
    }
    pub fn lookup(&self, layer: Option<usize>) {
        LAST_LAYER.with(|c| c.set(layer));
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
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
            s += &format!("copy_up_us_{name} {}\n", self.copy_up_percentile(q));
        }
        s += &format!("copy_up_us_max {}\n", g(&self.copy_up_max_us));
        s += &format!("whiteouts_created {}\n", g(&self.whiteouts));
        s += &format!("exdev_refusals {}\n", g(&self.exdev));
        s += &format!("negative_lookups {}\n", g(&self.negative_lookups));
        for (i, op) in OPS.iter().enumerate() {
            let n = g(&self.requests[i]);
            if n > 0 {
                s += &format!("requests_{op} {n}\n");
            }
        }
        for (i, n) in layer_names.iter().enumerate().take(LAYER_SLOTS) {
            s += &format!("lookups_layer{i} {} {}\n", g(&self.lookups_by_layer[i]), n);
        }
        s
    }
}
