//! Mount an overlay from code, in the foreground of this process, and
//! unmount it on Ctrl-C (or `fusermount3 -u MOUNTPOINT`):
//!
//!     cargo run --example mount_from_code -- LOWER UPPER WORK MOUNTPOINT
//!
//! This drives the same code path as the `ovlfuse -f` command.

use ovlfuse::MountOptions;
use ovlfuse::mount::{self, MountRequest};
use std::path::PathBuf;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [lower, upper, work, mnt] = a.as_slice() else {
        eprintln!("usage: mount_from_code LOWER UPPER WORK MOUNTPOINT");
        std::process::exit(2);
    };
    let options = MountOptions {
        lowerdirs: vec![PathBuf::from(lower)],
        upperdir: Some(PathBuf::from(upper)),
        workdir: Some(PathBuf::from(work)),
        ..Default::default()
    };
    let code = mount::run(MountRequest {
        options,
        source: None,
        mountpoint: PathBuf::from(mnt),
        foreground: true,
        debug: false,
    });
    std::process::exit(code);
}
