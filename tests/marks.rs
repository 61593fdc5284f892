//! Which marks a mount obeys (docs/semantics.md "Markers on disk"): a root
//! mount without `marks=all` obeys only its own namespace, as the kernel
//! overlayfs does, so marks an ordinary user can write in a lower layer
//! (`user.overlay.*`, `user.fuseoverlayfs.opaque`, `.wh.` files) are
//! ordinary names and xattrs there, compared with the kernel on identical
//! layers; `marks=all` obeys them; the tools read every form unless told.
//! And a failure to read a mark is an error, never "no mark".

mod common;

use common::*;
use std::fs;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

fn need_twin() -> bool {
    env_ok(&[Need::Root, Need::Fuse, Need::KernelOverlay])
}

/// Names of `p` on both sides, which must agree.
fn both_names(twin: &Twin, p: &str) -> Vec<String> {
    assert_both_eq!(twin, |r: &Path| probe_readdir(&r.join(p))).unwrap()
}

/// `p`'s lstat and content (or errno) on both sides, which must agree.
fn both_read(twin: &Twin, p: &str) -> Result<Vec<u8>, i32> {
    let _ = assert_both_eq!(twin, |r: &Path| probe_lstat(&r.join(p)));
    assert_both_eq!(twin, |r: &Path| probe_read(&r.join(p)))
}

/// A lower an ordinary user could have written, over one with the names
/// it tries to hide; both sides get the very same layers.
fn twin_over(top: Layer, bottom: Layer, opts: &[&str]) -> Twin {
    let mut b = Twin::builder().lower(top).lower(bottom);
    for o in opts {
        b = b.fuse_opt(o);
    }
    b.mount()
}

#[test]
fn root_mount_ignores_user_overlay_opaque_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer().file("etc/mine", "m").opaque("etc", Opaque::UserY);
    let bottom = layer().file("etc/passwd", "root:x:0:0\n");
    let twin = twin_over(top, bottom, &[]);
    assert_eq!(both_names(&twin, "etc"), [".", "..", "mine", "passwd"]);
    assert_eq!(both_read(&twin, "etc/passwd").unwrap(), b"root:x:0:0\n");
}

#[test]
fn root_mount_ignores_user_overlay_whiteout_like_the_kernel() {
    if !need_twin() {
        return;
    }
    // A fake whiteout (and the parent's opaque=x that announces it).
    let top = layer().xattr_whiteout_ns("etc/passwd", XattrNs::User);
    let bottom = layer().file("etc/passwd", "root:x:0:0\n");
    let twin = twin_over(top, bottom, &[]);
    // The kernel shows the empty file itself: it is no whiteout here.
    assert_eq!(both_names(&twin, "etc"), [".", "..", "passwd"]);
    assert_eq!(both_read(&twin, "etc/passwd").unwrap(), b"");
}

#[test]
fn root_mount_shows_aufs_whiteout_files_as_ordinary_files_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer()
        .aufs_whiteout("etc/passwd")
        .aufs_whiteout("gone_dir")
        .file(".wh.orphan", "o");
    let bottom = layer()
        .file("etc/passwd", "root:x:0:0\n")
        .file("gone_dir/x", "x");
    let twin = twin_over(top, bottom, &[]);
    twin.assert_same_view();
    assert_eq!(
        both_names(&twin, "etc"),
        [".", "..", ".wh.passwd", "passwd"]
    );
    assert_eq!(both_read(&twin, "etc/passwd").unwrap(), b"root:x:0:0\n");
    assert_eq!(both_read(&twin, "etc/.wh.passwd").unwrap(), b"");
    assert_eq!(both_read(&twin, ".wh.orphan").unwrap(), b"o");
    assert_eq!(both_read(&twin, "gone_dir/x").unwrap(), b"x");
}

#[test]
fn root_mount_shows_aufs_opaque_file_as_an_ordinary_file_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer().file("etc/mine", "m").opaque("etc", Opaque::Aufs);
    let bottom = layer().file("etc/passwd", "root:x:0:0\n");
    let twin = twin_over(top, bottom, &[]);
    twin.assert_same_view();
    assert_eq!(
        both_names(&twin, "etc"),
        [".", "..", ".wh..wh..opq", "mine", "passwd"]
    );
    assert_eq!(both_read(&twin, "etc/passwd").unwrap(), b"root:x:0:0\n");
}

#[test]
fn root_mount_ignores_fuseoverlayfs_opaque_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer()
        .file("etc/mine", "m")
        .opaque("etc", Opaque::FuseOverlayfs);
    let bottom = layer().file("etc/passwd", "root:x:0:0\n");
    let twin = twin_over(top, bottom, &[]);
    assert_eq!(both_names(&twin, "etc"), [".", "..", "mine", "passwd"]);
    assert_eq!(both_read(&twin, "etc/passwd").unwrap(), b"root:x:0:0\n");
}

#[test]
fn root_mount_treats_upper_aufs_opaque_file_as_an_ordinary_file_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let upper = layer().file("d/new", "n").opaque("d", Opaque::Aufs);
    let twin = Twin::builder()
        .upper(upper)
        .lower(layer().file("d/old", "o").file("e/x", "x"))
        .mount();
    assert_eq!(
        both_names(&twin, "d"),
        [".", "..", ".wh..wh..opq", "new", "old"]
    );
    // And it can be made through the mount, as any name.
    let _ = assert_both_eq!(twin, |r: &Path| probe_create(
        &r.join("e/.wh..wh..opq"),
        0o644
    ));
    assert_eq!(both_names(&twin, "e"), [".", "..", ".wh..wh..opq", "x"]);
}

#[test]
fn userxattr_mount_ignores_trusted_marks_like_the_kernel() {
    if !need_twin() {
        return;
    }
    let top = layer()
        .file("o/mine", "m")
        .opaque("o", Opaque::TrustedY)
        .xattr_whiteout_ns("w/f", XattrNs::Trusted);
    let bottom = layer().file("o/below", "b").file("w/f", "real");
    let twin = Twin::builder()
        .lower(top)
        .lower(bottom)
        .opt("userxattr")
        .mount();
    assert_eq!(both_names(&twin, "o"), [".", "..", "below", "mine"]);
    assert_eq!(both_read(&twin, "w/f").unwrap(), b"");
}

#[test]
fn marks_all_obeys_every_form() {
    if !env_ok(&[Need::Root, Need::Fuse]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    let (top, bottom, m) = (b.join("top"), b.join("bottom"), b.join("m"));
    for d in [&top, &bottom, &m] {
        fs::create_dir(d).unwrap();
    }
    layer()
        .file("uo/mine", "m")
        .opaque("uo", Opaque::UserY)
        .opaque("fo", Opaque::FuseOverlayfs)
        .opaque("ao", Opaque::Aufs)
        .xattr_whiteout_ns("uw", XattrNs::User)
        .aufs_whiteout("aw")
        .apply(&top);
    layer()
        .file("uo/below", "b")
        .file("fo/below", "b")
        .file("ao/below", "b")
        .file("uw", "real")
        .file("aw", "real")
        .apply(&bottom);
    let o = ovlfuse_options(&[top, bottom], None, &["marks=all"]);
    let _fm = FuseMount::try_mount(&o, &m, None).unwrap();
    assert_eq!(probe_readdir(&m).unwrap(), [".", "..", "ao", "fo", "uo"]);
    assert_eq!(probe_readdir(&m.join("uo")).unwrap(), [".", "..", "mine"]);
    assert_eq!(probe_readdir(&m.join("fo")).unwrap(), [".", ".."]);
    assert_eq!(probe_readdir(&m.join("ao")).unwrap(), [".", ".."]);
    assert_eq!(probe_lstat(&m.join("uw")).map(|_| ()), Err(libc::ENOENT));
    assert_eq!(probe_lstat(&m.join("aw")).map(|_| ()), Err(libc::ENOENT));
}

#[test]
fn marks_option_takes_kernel_or_all_only() {
    let cwd = Path::new("/");
    let p = |s: &str| ovlfuse::MountOptions::parse(&[s], cwd).map(|o| o.marks);
    use ovlfuse::options::Marks;
    assert_eq!(p("lowerdir=a"), Ok(None));
    assert_eq!(p("lowerdir=a,marks=kernel"), Ok(Some(Marks::Kernel)));
    assert_eq!(p("lowerdir=a,marks=all"), Ok(Some(Marks::All)));
    let e = p("lowerdir=a,marks=some").unwrap_err();
    assert!(e.contains("marks=kernel or marks=all"), "{e}");
}

/// `ovlfuse which` reads every form by default (unpacked layers), and
/// what a root mount shows with `-o marks=kernel`; its verdict is the
/// library's lookup under that policy.
#[test]
fn which_reads_every_form_unless_told_marks_kernel() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let b = t.path();
    let (top, bottom) = (b.join("top"), b.join("bottom"));
    for d in [&top, &bottom] {
        fs::create_dir(d).unwrap();
    }
    layer().aufs_whiteout("g").apply(&top);
    layer().file("g", "real").apply(&bottom);
    let which = |extra: &str| {
        let o = Command::new(ovlfuse_bin())
            .args(["which", "-o"])
            .arg(ovlfuse_options(
                &[top.clone(), bottom.clone()],
                None,
                &[extra],
            ))
            .arg("g")
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        (o.status.success(), out)
    };
    let (ok, out) = which("ro");
    assert!(!ok && out.contains("(AUFS .wh.g)"), "{out}");
    let (ok, out) = which("marks=kernel");
    assert!(ok && out.contains("the file from layer [1] wins"), "{out}");
}

/// Item 19: a failure to read a mark (here ENAMETOOLONG, from a name no
/// directory can hold; EIO or EMFILE take the same path) is reported, not
/// taken for "no mark", which would let the layers below show through. A
/// core test, through the policy and the stack's cached opaque check that
/// lookup uses: no test filesystem here returns EIO on getxattr.
#[test]
fn an_error_reading_a_mark_is_an_error_not_no_mark() {
    if !env_ok(&[Need::Root]) {
        return;
    }
    let t = tempdir();
    let l = t.path().join("l");
    fs::create_dir(&l).unwrap();
    fs::write(l.join("empty"), "").unwrap();
    let stack = ovlfuse::Stack::open(&ovlfuse::MountOptions {
        lowerdirs: vec![l.clone()],
        ..Default::default()
    })
    .unwrap();
    let dir = fs::File::open(&l).unwrap();
    let st = ovlfuse::sys::fstatat(dir.as_fd(), std::ffi::OsStr::new("empty")).unwrap();
    let long = std::ffi::OsString::from("n".repeat(300));
    let errno = |r: std::io::Result<bool>| r.map_err(|e| e.raw_os_error());
    for all in [false, true] {
        let mut marks = stack.marks(0);
        marks.foreign = all;
        assert_eq!(
            errno(marks.is_whiteout(dir.as_fd(), &long, &st)),
            Err(Some(libc::ENAMETOOLONG)),
            "whiteout check, foreign marks {all}"
        );
        assert_eq!(
            errno(marks.is_opaque(dir.as_fd(), &long)),
            Err(Some(libc::ENAMETOOLONG)),
            "opaque check, foreign marks {all}"
        );
        // An absent mark is a plain "no".
        let empty = std::ffi::OsStr::new("empty");
        assert_eq!(errno(marks.is_whiteout(dir.as_fd(), empty, &st)), Ok(false));
    }
    assert_eq!(
        errno(stack.is_opaque(0, dir.as_fd(), Path::new(""), &long)),
        Err(Some(libc::ENAMETOOLONG)),
        "the stack's opaque check of a lower"
    );
}
