//! `ls -l`-style rendering of a layer directory, showing what overlays leave
//! on disk: 0/0 character-device whiteouts and the opaque xattrs.

use crate::markers;
use crate::sys::{self, XTarget};
use std::ffi::OsStr;
use std::fs;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

fn mode_string(mode: u32) -> String {
    let t = match mode & libc::S_IFMT {
        libc::S_IFDIR => 'd',
        libc::S_IFLNK => 'l',
        libc::S_IFCHR => 'c',
        libc::S_IFBLK => 'b',
        libc::S_IFIFO => 'p',
        libc::S_IFSOCK => 's',
        _ => '-',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

/// Render every entry below `root` (sorted, depth first), one per line.
pub fn render(root: &Path) -> String {
    let mut out = String::new();
    walk(root, root, &mut out);
    if out.is_empty() {
        out.push_str("    (empty)\n");
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut String) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    let mut names: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        let rel = p.strip_prefix(root).unwrap_or(&p).display().to_string();
        let mut note = String::new();
        let size = if m.file_type().is_char_device() || m.file_type().is_block_device() {
            let r = m.rdev();
            let (maj, min) = (libc::major(r), libc::minor(r));
            if m.file_type().is_char_device() && r == 0 {
                note.push_str("  <- whiteout (0/0 character device)");
            }
            format!("{maj},{min}")
        } else if m.is_dir() {
            String::new()
        } else {
            m.len().to_string()
        };
        if let Ok(d) = sys::open_path(dir, libc::O_PATH | libc::O_DIRECTORY)
            && let Ok(names) = sys::listxattr(XTarget::At(d.as_fd(), &n))
        {
            for x in names.iter().filter(|x| markers::is_private_xattr(x)) {
                let v = sys::getxattr(XTarget::At(d.as_fd(), &n), x).unwrap_or_default();
                note.push_str(&format!(
                    "  [{}={}]",
                    x.to_string_lossy(),
                    String::from_utf8_lossy(&v)
                ));
            }
        }
        if m.file_type().is_symlink()
            && let Ok(t) = fs::read_link(&p)
        {
            note.push_str(&format!(" -> {}", t.display()));
        }
        out.push_str(&format!(
            "    {} {:>8}  {}{}\n",
            mode_string(m.mode()),
            size,
            rel,
            note
        ));
        if m.is_dir() && n != OsStr::new(".") {
            walk(root, &p, out);
        }
    }
}
