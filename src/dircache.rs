//! Caches of the lower layers' directories (lowers never change while
//! mounted, so what one look at them taught stays true): their fds, their
//! opaque marks, and listings that let a lookup skip a layer without a
//! probe.
//!
//! Rules served (docs/semantics.md "Lookup"): a cached answer is the answer
//! the layer would give; a failure to tell is never cached as "no".

use crate::markers::{self, DirMarks, MarkPolicy};
use crate::sys;
use dashmap::DashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The lower-directory caches of one mount, keyed by (layer, path in the
/// layer); the upper is never cached (it changes under renames).
#[derive(Debug, Default)]
pub struct DirCache {
    /// Lower directories never change, so their fds (None: no such
    /// directory in that layer) are kept instead of re-resolving the path
    /// beneath the layer root on every request.
    lower_dirs: DashMap<(usize, PathBuf), Option<Arc<LowerDir>>>,
    /// Opaque and redirect marks of lower directories, by (layer, path):
    /// they never change, and every lookup below would re-read them.
    lower_marks: DashMap<(usize, PathBuf), DirMarks>,
    /// Bytes of names held by the listings in `lower_dirs` (see
    /// [`LISTED_NAMES_MAX`]).
    listed_bytes: std::sync::atomic::AtomicUsize,
}

/// A cached lower directory.
#[derive(Debug)]
struct LowerDir {
    fd: DirFd,
    /// What one listing of it taught (lowers never change, so it stays
    /// true): made at mount for the layer roots, elsewhere once
    /// [`LIST_AFTER_MISSES`] negative lookups have been seen here.
    listing: std::sync::OnceLock<Listing>,
    /// Negative lookups here so far: the listing waits for
    /// [`LIST_AFTER_MISSES`] of them, so that a directory looked into once
    /// or twice pays a probe each, not a listing.
    misses: std::sync::atomic::AtomicU32,
}

#[derive(Debug)]
struct Listing {
    /// Does the directory hold any `.wh.*` entry? If not, a name missing
    /// from it needs no `.wh.NAME` probe.
    aufs: bool,
    /// Its names, while they fit in [`LISTED_NAMES_MAX`]: a name not among
    /// them needs no probe at all.
    names: Option<Names>,
}

/// The names of a directory, sorted and packed into one buffer (a few
/// bytes each above the name itself, where a set of strings costs ~50).
#[derive(Debug)]
pub struct Names {
    bytes: Box<[u8]>,
    /// End of each name in `bytes`.
    ends: Box<[u32]>,
}

impl Names {
    /// Names of at most 4 GiB in all (offsets are u32).
    pub fn new(mut names: Vec<OsString>) -> Names {
        names.sort_unstable();
        let mut bytes = Vec::with_capacity(names.iter().map(|n| n.len()).sum());
        let mut ends = Vec::with_capacity(names.len());
        for n in &names {
            bytes.extend_from_slice(n.as_bytes());
            ends.push(bytes.len() as u32);
        }
        Names {
            bytes: bytes.into(),
            ends: ends.into(),
        }
    }

    fn at(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        &self.bytes[start..self.ends[i] as usize]
    }

    pub fn contains(&self, name: &[u8]) -> bool {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.at(mid).cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return true,
            }
        }
        false
    }

    /// Memory held by names of these lengths, roughly.
    fn size_of(lens: impl Iterator<Item = usize>) -> usize {
        lens.map(|n| n + 4).sum()
    }
}

/// What a lower directory's listing says of one name.
#[derive(Debug, PartialEq, Eq)]
pub enum Listed {
    /// Not there, and no AUFS whiteout for it: the layer can be skipped.
    Absent,
    /// Not there, but a `.wh.NAME` whiteout is: the lookup ends here.
    WhitedOut,
    /// There, or not known: stat it.
    Unknown,
}

/// Listing a small directory costs about as many syscalls (open, getdents
/// twice, close) as this many `.wh.NAME` probes; a large one costs more,
/// and is listed only once it is clearly being looked into.
const LIST_AFTER_MISSES: u32 = 8;

/// Bound on the memory the kept listings hold, all directories together
/// (a listing past it keeps only its AUFS answer).
const LISTED_NAMES_MAX: usize = 16 << 20;

/// A directory fd of one layer; shared when it comes from the cache.
pub type DirFd = Arc<OwnedFd>;

/// Bound on cached lower directory fds (each is one O_PATH fd): at most a
/// quarter of the open-file limit, so the cache never causes EMFILE.
fn lower_dir_cache_max() -> usize {
    static MAX: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *MAX.get_or_init(|| (sys::nofile_limit() / 4).clamp(64, 16384) as usize)
}

/// Bound on remembered directory marks (no fds: just memory).
const LOWER_MARKS_CACHE: usize = 65536;

impl DirCache {
    /// The fd of the lower directory `rel` of `layer`, whose root is `root`.
    pub fn dir(&self, root: BorrowedFd, layer: usize, rel: &Path) -> io::Result<DirFd> {
        self.lower_dir(root, layer, rel).map(|d| d.fd.clone())
    }

    /// Open and list the root of lower `layer` now (see `Stack::warm_root`).
    pub fn warm(&self, root: BorrowedFd, layer: usize) {
        if let Ok(d) = self.lower_dir(root, layer, Path::new("")) {
            self.listing(root, Path::new(""), &d);
        }
    }

    fn lower_dir(&self, root: BorrowedFd, layer: usize, rel: &Path) -> io::Result<Arc<LowerDir>> {
        let key = (layer, rel.to_path_buf());
        if let Some(d) = self.lower_dirs.get(&key) {
            return d.clone().ok_or_else(|| sys::err(libc::ENOENT));
        }
        let r = match sys::open_dir(root, rel) {
            Ok(fd) => Some(Arc::new(LowerDir {
                fd: Arc::new(fd),
                listing: Default::default(),
                misses: Default::default(),
            })),
            Err(e) if matches!(sys::errno(&e), libc::ENOENT | libc::ENOTDIR) => None,
            // EACCES and the like may pass: not cached.
            Err(e) => return Err(e),
        };
        if self.lower_dirs.len() >= lower_dir_cache_max() {
            self.lower_dirs.clear();
            // Listings still held by requests in flight go with them.
            self.listed_bytes
                .store(0, std::sync::atomic::Ordering::Relaxed);
        }
        self.lower_dirs.insert(key, r.clone());
        r.ok_or_else(|| sys::err(libc::ENOENT))
    }

    /// The marks of the lower directory `key`: remembered, else
    /// `probe`d. A failed probe is not remembered.
    pub fn marks(
        &self,
        key: (usize, PathBuf),
        probe: impl FnOnce() -> io::Result<DirMarks>,
    ) -> io::Result<DirMarks> {
        if let Some(m) = self.lower_marks.get(&key) {
            return Ok(m.clone());
        }
        let m = probe()?;
        if self.lower_marks.len() >= LOWER_MARKS_CACHE {
            self.lower_marks.clear();
        }
        self.lower_marks.insert(key, m.clone());
        Ok(m)
    }

    /// What the listing of the lower directory `rel`, if made, says of
    /// `name` (a lookup asks before probing the layer).
    pub fn listed(
        &self,
        root: BorrowedFd,
        layer: usize,
        rel: &Path,
        name: &OsStr,
        marks: MarkPolicy,
    ) -> Listed {
        let Ok(d) = self.lower_dir(root, layer, rel) else {
            return Listed::Unknown;
        };
        let Some(Listing {
            aufs,
            names: Some(names),
        }) = d.listing.get()
        else {
            return Listed::Unknown;
        };
        if names.contains(name.as_bytes()) {
            return Listed::Unknown;
        }
        if *aufs && marks.aufs() && names.contains(markers::aufs_whiteout_name(name).as_bytes()) {
            return Listed::WhitedOut;
        }
        Listed::Absent
    }

    /// May the lower directory hold AUFS `.wh.*` markers, so that a name
    /// missing from it needs a `.wh.NAME` probe? (true when unsure). After
    /// a few misses, answered from one listing kept with the cached fd.
    pub fn may_have_aufs(&self, root: BorrowedFd, layer: usize, rel: &Path) -> bool {
        let Ok(d) = self.lower_dir(root, layer, rel) else {
            return true;
        };
        if let Some(l) = d.listing.get() {
            return l.aufs;
        }
        if d.misses.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < LIST_AFTER_MISSES {
            return true;
        }
        self.listing(root, rel, &d).aufs
    }

    /// The listing of a cached lower directory, made on first use.
    fn listing<'d>(&self, root: BorrowedFd, rel: &Path, d: &'d LowerDir) -> &'d Listing {
        use std::sync::atomic::Ordering::Relaxed;
        d.listing.get_or_init(|| {
            let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOATIME;
            let listing = sys::open_beneath(root, rel, flags)
                .or_else(|_| sys::open_beneath(root, rel, flags & !libc::O_NOATIME))
                .and_then(sys::read_dir_fd);
            let Ok(v) = listing else {
                return Listing {
                    aufs: true,
                    names: None,
                };
            };
            let aufs = v.iter().any(|e| markers::is_aufs_marker(&e.name));
            // Room is reserved before packing: a listing past the bound is
            // never packed (and so never overflows `Names`' u32 offsets).
            let size = Names::size_of(v.iter().map(|e| e.name.len()));
            let kept = self.listed_bytes.fetch_add(size, Relaxed) + size <= LISTED_NAMES_MAX;
            if !kept {
                self.listed_bytes.fetch_sub(size, Relaxed);
            }
            Listing {
                aufs,
                names: kept.then(|| Names::new(v.into_iter().map(|e| e.name).collect())),
            }
        })
    }
}
