//! A temporary directory holding a mount's layer, work and mount point
//! directories, for tests that build their layers by hand.

use std::path::PathBuf;

pub struct Dirs {
    _t: tempfile::TempDir,
    pub base: PathBuf,
}

impl Dirs {
    /// `l`, `u`, `w` and `m`: one lower, the upper, work and mount point.
    pub fn new() -> Dirs {
        Dirs::with(&["l", "u", "w", "m"])
    }

    /// These subdirectories, empty.
    pub fn with(subdirs: &[&str]) -> Dirs {
        let t = super::tempdir();
        let base = t.path().to_path_buf();
        for d in subdirs {
            std::fs::create_dir(base.join(d)).unwrap();
        }
        Dirs { _t: t, base }
    }

    pub fn p(&self, s: &str) -> PathBuf {
        self.base.join(s)
    }

    /// The options of a mount of `l` under `u` (work `w`), plus `extra`.
    pub fn opts(&self, extra: &str) -> String {
        let o = format!(
            "lowerdir={},upperdir={},workdir={}",
            self.p("l").display(),
            self.p("u").display(),
            self.p("w").display()
        );
        if extra.is_empty() {
            o
        } else {
            format!("{o},{extra}")
        }
    }
}
