//! The FUSE-free core, no mount: a READDIRPLUS batch lookup that starts at
//! the layer the listing found a name in (`Batch::lookup_listed`) must give
//! exactly what a full top-down `lookup` gives, for every name of every
//! merged directory of a stack with whiteouts of each form, opaque
//! directories and names repeated across layers; and it must still see an
//! upper object made after the listing.

mod common;

use common::*;
use ovlfuse::lookup::{self, Batch, DirRef, Entry, LayerPath};
use ovlfuse::{MountOptions, Stack, readdir};
use ovlfuse::{attr, copy_up, dir_ops};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

fn key(e: &Entry) -> (usize, Vec<LayerPath>, bool, u64, u64, u32) {
    (
        e.layer,
        e.layers.clone(),
        e.opaque,
        e.ino,
        e.st.st_ino,
        e.st.st_mode,
    )
}

/// Compare both lookups for every listed name under `path`, recursively;
/// returns how many names were compared.
fn check_dir(stack: &Stack, path: &Path, lowers: &[LayerPath]) -> usize {
    let d = DirRef { path, lowers };
    let listed = readdir::read_merged(stack, &d).unwrap();
    let mut batch = Batch::new(stack, &d);
    let mut n = 0;
    for m in &listed {
        let full = lookup::lookup(stack, &d, &m.name).unwrap();
        let fast = batch.lookup_listed(&m.name, m.layer).unwrap();
        let (full, fast) = (full.expect("listed name resolves"), fast.expect("listed"));
        assert_eq!(key(&fast), key(&full), "{}", path.join(&m.name).display());
        assert_eq!(m.ino, full.ino, "d_ino of {}", path.join(&m.name).display());
        check_known(stack, &d, &m.name, &full);
        n += 1;
        if full.is_dir() {
            let sub = ovlfuse::stack::child_path(path, &m.name);
            n += check_dir(stack, &sub, &full.lowers(stack));
        }
    }
    n
}

/// `n` lower directories, an upper and a workdir under `b`, created.
fn layer_dirs(b: &Path, n: usize) -> (Vec<PathBuf>, PathBuf, PathBuf) {
    let ls: Vec<PathBuf> = (0..n).map(|i| b.join(format!("l{i}"))).collect();
    let (u, w) = (b.join("u"), b.join("w"));
    for d in ls.iter().chain([&u, &w]) {
        fs::create_dir_all(d).unwrap();
    }
    (ls, u, w)
}

fn open_with_upper(ls: &[PathBuf], u: &Path, w: &Path) -> Stack {
    Stack::open(&MountOptions {
        lowerdirs: ls.to_vec(),
        upperdir: Some(u.to_path_buf()),
        workdir: Some(w.to_path_buf()),
        // The tests below use AUFS marks too.
        marks: Some(ovlfuse::options::Marks::All),
        ..Default::default()
    })
    .unwrap()
}

/// `lookup::known` (a GETATTR's view from the topmost object and the
/// lowers a lookup recorded) must agree with a full `lookup`, or decline:
/// only for a non-directory shown from a lower, whose layer is not recorded.
fn check_known(stack: &Stack, d: &DirRef, name: &OsStr, full: &Entry) {
    let what = d.path.join(name);
    match lookup::known(stack, d, name, &full.lowers(stack)).unwrap() {
        Some((k, _)) => {
            assert_eq!(k.layer, full.layer, "{}", what.display());
            assert_eq!(k.ino, full.ino, "{}", what.display());
            let (a, b) = (attr::merged_stat(&k), attr::merged_stat(full));
            assert_eq!(
                (a.st_ino, a.st_mode, a.st_nlink, a.st_size, a.st_dev),
                (b.st_ino, b.st_mode, b.st_nlink, b.st_size, b.st_dev),
                "{}",
                what.display()
            );
        }
        None => assert!(
            !full.is_dir() && !stack.is_upper(full.layer),
            "known declined {}",
            what.display()
        ),
    }
}

#[test]
fn listed_lookup_skipping_upper_lowers_equals_full_lookup() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let (ls, u, w) = layer_dirs(t.path(), 4);
    // Names repeated down the stack, shadowed, hidden and cut off.
    layer()
        .file("top", "0")
        .whiteout("gone")
        .xattr_whiteout("d/xgone")
        .aufs_whiteout("d/agone")
        .file("d/f0", "0")
        .dir("opq")
        .opaque("opq", Opaque::TrustedY)
        .file("opq/mine", "0")
        .apply(&ls[0]);
    layer()
        .file("top", "1")
        .file("gone", "1")
        .file("d/xgone", "1")
        .file("d/agone", "1")
        .file("d/f1", "1")
        .dir("d/sub")
        .file("d/sub/s1", "1")
        .file("opq/hidden", "1")
        .file("mid", "1")
        .hardlink("mid2", "mid")
        .apply(&ls[1]);
    layer()
        .file("d/f1", "2")
        .file("d/f2", "2")
        .file("d/sub/s2", "2")
        .dir("d/sub/deep")
        .file("d/sub/deep/x", "2")
        .file("low", "2")
        .apply(&ls[2]);
    layer()
        .file("d/f3", "3")
        .file("d/sub/s1", "3")
        // A file under a directory of the same name stops the merge.
        .file("d/sub/deep", "3")
        .file("low", "3")
        .file("bottom", "3")
        .apply(&ls[3]);
    // The upper holds some of its own, a shadowing file and a whiteout.
    layer()
        .file("d/f2", "u")
        .whiteout("d/f3")
        .file("up", "u")
        .apply(&u);
    let stack = open_with_upper(&ls, &u, &w);
    let root = lookup::root(&stack).unwrap();
    let n = check_dir(&stack, Path::new(""), &root.lowers(&stack));
    // root: top d opq mid mid2 low bottom up; d: f0 f1 f2 sub; opq: mine;
    // d/sub: s1 s2 deep; d/sub/deep: x.
    assert_eq!(n, 17, "names visible in the merged tree");

    // Listed from a lower; then the upper gets its own object by that name.
    let d = PathBuf::from("d");
    let dl = lookup::resolve_path(&stack, &d).unwrap().unwrap().1;
    let dref = DirRef {
        path: &d,
        lowers: &dl,
    };
    let listed = readdir::read_merged(&stack, &dref).unwrap();
    let f1 = listed.iter().find(|m| m.name == "f1").unwrap();
    assert_ne!(f1.layer, 0, "f1 listed from a lower");
    fs::write(u.join("d/f1"), "new upper").unwrap();
    let mut batch = Batch::new(&stack, &dref);
    let e = batch
        .lookup_listed(OsStr::new("f1"), f1.layer)
        .unwrap()
        .unwrap();
    assert_eq!(e.layer, 0, "the upper object made after the listing wins");
    assert_eq!(e.st.st_size, 9);
}

/// An AUFS `.wh.NAME` in a lower hides NAME whether the lookup probes for
/// the marker (a directory's first misses) or decides from the listing it
/// makes after a few misses (or at mount, for the roots); a directory
/// without markers, once listed, still resolves names found further down.
#[test]
fn aufs_whiteouts_hide_names_before_and_after_the_listing() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    let (l0, l1, l2) = (b.join("l0"), b.join("l1"), b.join("l2"));
    for d in [&l0, &l1, &l2] {
        fs::create_dir_all(d).unwrap();
    }
    let mut top = layer().dir("plain").file("plain/other", "o");
    let mut bottom = layer();
    for i in 0..20 {
        top = top.aufs_whiteout(format!("w/gone{i}"));
        bottom = bottom
            .file(format!("w/gone{i}"), "g")
            .file(format!("w/kept{i}"), "k")
            .file(format!("plain/low{i}"), "l");
    }
    top.aufs_whiteout("rootgone").apply(&l0);
    layer().dir("w").dir("plain").apply(&l1);
    bottom
        .file("rootgone", "g")
        .file("rootkept", "k")
        .apply(&l2);
    let stack = Stack::open(&MountOptions {
        lowerdirs: vec![l0, l1, l2],
        marks: Some(ovlfuse::options::Marks::All),
        ..Default::default()
    })
    .unwrap();
    // The roots are listed up front, as a mount does: their answers come
    // from the listings from the first lookup on.
    stack.warm_root();
    let root_lowers = lookup::root_lowers(&stack);
    let root = DirRef {
        path: Path::new(""),
        lowers: &root_lowers,
    };
    let at = |n: &str| lookup::lookup(&stack, &root, OsStr::new(n)).unwrap();
    assert!(at("rootgone").is_none(), "rootgone is whited out");
    assert_eq!(at("rootkept").expect("rootkept shows").layer, 2);
    let layers: Vec<usize> = at("plain")
        .expect("plain shows")
        .layers
        .iter()
        .map(|l| l.layer)
        .collect();
    assert_eq!(layers, vec![0, 1, 2]);
    assert!(at("nothing").is_none());
    for dir in ["w", "plain"] {
        let p = PathBuf::from(dir);
        let lowers = lookup::resolve_path(&stack, &p).unwrap().unwrap().1;
        let d = DirRef {
            path: &p,
            lowers: &lowers,
        };
        // Twenty rounds: well past the misses after which a layer's
        // directory is listed instead of probed.
        for i in 0..20 {
            if dir == "w" {
                let gone = lookup::lookup(&stack, &d, OsStr::new(&format!("gone{i}"))).unwrap();
                assert!(gone.is_none(), "w/gone{i} is whited out (round {i})");
                let kept = lookup::lookup(&stack, &d, OsStr::new(&format!("kept{i}"))).unwrap();
                assert_eq!(kept.expect("w/kept shows").layer, 2, "w/kept{i}");
            } else {
                let low = lookup::lookup(&stack, &d, OsStr::new(&format!("low{i}"))).unwrap();
                assert_eq!(low.expect("plain/low shows").layer, 2, "plain/low{i}");
                let none = lookup::lookup(&stack, &d, OsStr::new(&format!("none{i}"))).unwrap();
                assert!(none.is_none(), "plain/none{i} does not exist");
            }
        }
    }
}

/// A merged directory seen by `known` through its life: from a lower, then
/// copied up (same inode number, still merged: nlink 1), then emptied and
/// removed (a whiteout: `known` declines, and `lookup` finds nothing);
/// the same for a copied-up file.
#[test]
fn known_follows_a_directory_through_copy_up_and_removal() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let (ls, u, w) = layer_dirs(t.path(), 3);
    layer().file("d/a", "0").apply(&ls[0]);
    layer().file("d/b", "1").file("f", "1").apply(&ls[2]);
    let stack = open_with_upper(&ls, &u, &w);
    let root = lookup::root(&stack).unwrap();
    let rl = root.lowers(&stack);
    let rd = DirRef {
        path: Path::new(""),
        lowers: &rl,
    };
    let name = OsStr::new("d");
    let first = lookup::lookup(&stack, &rd, name).unwrap().unwrap();
    let dl = first.lowers(&stack);
    assert_eq!(dl.len(), 2, "d merges two lowers");
    check_known(&stack, &rd, name, &first);

    copy_up::ensure_upper_dir(&stack, Path::new("d")).unwrap();
    let (up, _) = lookup::known(&stack, &rd, name, &dl).unwrap().unwrap();
    assert_eq!(up.layer, 0, "the copy in the upper is the top now");
    assert_eq!(up.ino, first.ino, "copy-up keeps the inode number");
    assert_eq!(
        attr::merged_stat(&up).st_nlink,
        1,
        "still a merged directory"
    );
    check_known(
        &stack,
        &rd,
        name,
        &lookup::lookup(&stack, &rd, name).unwrap().unwrap(),
    );

    let dp = PathBuf::from("d");
    let dd = DirRef {
        path: &dp,
        lowers: &dl,
    };
    for f in ["a", "b"] {
        dir_ops::unlink(&stack, &dd, OsStr::new(f)).unwrap();
    }
    dir_ops::rmdir(&stack, &rd, name).unwrap();
    assert!(lookup::known(&stack, &rd, name, &dl).unwrap().is_none());
    assert!(lookup::lookup(&stack, &rd, name).unwrap().is_none());

    // A file copied up, then removed: the whiteout left in its place is
    // not the file's attributes.
    let f = OsStr::new("f");
    let fe = lookup::lookup(&stack, &rd, f).unwrap().unwrap();
    copy_up::copy_up(&stack, Path::new("f"), &fe, copy_up::CopyUp { data: true }).unwrap();
    let (fk, _) = lookup::known(&stack, &rd, f, &[]).unwrap().unwrap();
    assert_eq!(
        (fk.layer, fk.ino),
        (0, fe.ino),
        "copied up, same inode number"
    );
    dir_ops::unlink(&stack, &rd, f).unwrap();
    assert!(lookup::known(&stack, &rd, f, &[]).unwrap().is_none());
}

/// The packed, sorted name list a lower directory's listing keeps: every
/// name is found (bytes, not UTF-8), nothing else is, prefixes included.
#[test]
fn listed_names_answer_membership_exactly() {
    use std::os::unix::ffi::OsStringExt;
    let names: Vec<std::ffi::OsString> = ["b", "a", "ab", ".wh.x", "zz"]
        .iter()
        .map(|n| std::ffi::OsString::from(*n))
        .chain([std::ffi::OsString::from_vec(vec![0xff, 0x80])])
        .collect();
    let set = ovlfuse::dircache::Names::new(names.clone());
    for n in &names {
        assert!(set.contains(n.as_encoded_bytes()), "{n:?} is listed");
    }
    for n in ["", "aa", "abc", ".wh.", "c", "z", "zzz"] {
        assert!(!set.contains(n.as_bytes()), "{n:?} is not listed");
    }
    assert!(!set.contains(&[0xff]));
    assert!(!ovlfuse::dircache::Names::new(Vec::new()).contains(b"a"));
}
