//! `ovlfuse export UPPERDIR -f layer.tar [--parent-chain ID ...]`: write an
//! upper layer as an OCI image layer: whiteouts become `.wh.NAME`, opaque
//! directories get `.wh..wh..opq`, ownership, modes, times and (non-private)
//! xattrs are kept (PAX `SCHILY.xattr.*`), hard links stay links. Prints the
//! diffID (sha256 of the uncompressed tar) and, given the lower layers'
//! diffIDs bottom first, the chainID as the image spec defines it.

use super::layerwalk::{self, ItemKind};
use crate::markers;
use crate::sys::{self, XTarget};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    h: Sha256,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(b)?;
        self.h.update(&b[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
pub fn chain_id(diff_ids: &[String]) -> Option<String> {
    let mut it = diff_ids.iter();
    let mut chain = it.next()?.clone();
    for d in it {
        chain = format!(
            "sha256:{}",
            hex(&Sha256::digest(format!("{chain} {d}").as_bytes()))
        );
    }
    Some(chain)
}

fn header(st: &sys::Stat, ty: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(ty);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

/// PAX records carrying the xattrs of `abs` (private overlay names excluded).
fn pax_xattrs(abs: &Path) -> Vec<u8> {
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Vec::new();
    };
    let Ok(d) = sys::open_path(parent, libc::O_PATH | libc::O_DIRECTORY) else {
        return Vec::new();
    };
    let t = XTarget::At(d.as_fd(), name);
    let mut out = Vec::new();
    for n in sys::listxattr(t).unwrap_or_default() {
        if markers::is_private_xattr(&n) {
            continue;
        }
        let Ok(v) = sys::getxattr(t, &n) else {
            continue;
        };
        let mut rec = format!(" SCHILY.xattr.{}=", n.to_string_lossy()).into_bytes();
        rec.extend_from_slice(&v);
        rec.push(b'\n');
        // The length prefix counts itself.
        let mut len = rec.len() + 1;
        while (len.to_string().len() + rec.len()) != len {
            len = len.to_string().len() + rec.len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(&rec);
    }
    out
}

/// Whether `s` is a sha256 digest as the image spec writes it.
pub fn is_digest(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Write the tar to `out` (`-`: standard output); returns the diffID.
pub fn export(upper: &Path, out: &Path) -> Result<String, String> {
    // Every form of mark, so that an upper of any overlay exports as the
    // layer it means (see diff.rs).
    let items = layerwalk::walk(upper, &markers::MarkPolicy::all())
        .map_err(|e| format!("{}: {e}", upper.display()))?;
    let sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(io::stdout().lock())
    } else {
        Box::new(fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?)
    };
    let mut b = tar::Builder::new(Hashing {
        inner: io::BufWriter::new(sink),
        h: Sha256::new(),
    });
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let e = |x: io::Error| x.to_string();
    for it in items {
        let abs = upper.join(&it.rel);
        let st = &it.st;
        let pax = if it.kind == ItemKind::Whiteout {
            Vec::new()
        } else {
            pax_xattrs(&abs)
        };
        if !pax.is_empty() {
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            x.set_size(pax.len() as u64);
            x.set_mode(0o644);
            b.append_data(&mut x, "PaxHeaders/x", &pax[..]).map_err(e)?;
        }
        match it.kind {
            ItemKind::Whiteout => {
                let name = it
                    .rel
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let p = it.rel.with_file_name(format!(".wh.{name}"));
                let mut h = header(st, tar::EntryType::Regular);
                h.set_mode(0o644);
                b.append_data(&mut h, p, io::empty()).map_err(e)?;
            }
            ItemKind::Dir { opaque } => {
                let mut h = header(st, tar::EntryType::Directory);
                b.append_data(&mut h, &it.rel, io::empty()).map_err(e)?;
                if opaque {
                    let mut h = header(st, tar::EntryType::Regular);
                    h.set_mode(0o644);
                    b.append_data(&mut h, it.rel.join(markers::AUFS_OPAQUE), io::empty())
                        .map_err(e)?;
                }
            }
            ItemKind::Other => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = links.get(&key) {
                        let mut h = header(st, tar::EntryType::Link);
                        b.append_link(&mut h, &it.rel, first).map_err(e)?;
                        continue;
                    }
                    links.insert(key, it.rel.clone());
                }
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG => {
                        let mut h = header(st, tar::EntryType::Regular);
                        h.set_size(st.st_size as u64);
                        let f = fs::File::open(&abs).map_err(e)?;
                        b.append_data(&mut h, &it.rel, f).map_err(e)?;
                    }
                    libc::S_IFLNK => {
                        let mut h = header(st, tar::EntryType::Symlink);
                        let t = fs::read_link(&abs).map_err(e)?;
                        b.append_link(&mut h, &it.rel, t).map_err(e)?;
                    }
                    m => {
                        let ty = match m {
                            libc::S_IFCHR => tar::EntryType::Char,
                            libc::S_IFBLK => tar::EntryType::Block,
                            _ => tar::EntryType::Fifo,
                        };
                        let mut h = header(st, ty);
                        h.set_device_major(libc::major(st.st_rdev)).map_err(e)?;
                        h.set_device_minor(libc::minor(st.st_rdev)).map_err(e)?;
                        b.append_data(&mut h, &it.rel, io::empty()).map_err(e)?;
                    }
                }
            }
        }
    }
    let mut w = b.into_inner().map_err(e)?;
    w.flush().map_err(e)?;
    Ok(format!("sha256:{}", hex(&w.h.finalize())))
}

pub fn run(upper: &Path, out: &Path, parents: &[String]) -> i32 {
    if let Some(bad) = parents.iter().find(|p| !is_digest(p)) {
        eprintln!(
            "ovlfuse export: --parent-chain {bad} is not a digest (sha256: and 64 hex digits)"
        );
        return 2;
    }
    match export(upper, out) {
        Ok(id) => {
            // With the tar on standard output, the IDs go to standard error.
            let report = |l: String| {
                if out == Path::new("-") {
                    eprintln!("{l}")
                } else {
                    println!("{l}")
                }
            };
            report(format!("diffID {id}"));
            if !parents.is_empty() {
                let mut all = parents.to_vec();
                all.push(id);
                if let Some(c) = chain_id(&all) {
                    report(format!("chainID {c}"));
                }
            }
            0
        }
        Err(e) => {
            eprintln!("ovlfuse export: {e}");
            1
        }
    }
}
