//! Mount an overlay from code, in the foreground of this process, and
//! unmount it on Ctrl-C (or `fusermount3 -u MOUNTPOINT`):
//!
//!     cargo run --example mount_from_code -- LOWER[:LOWER...] UPPER WORK MOUNTPOINT
//!
//! The directories must exist (README's "Using the library" makes them).
//! This drives the same code path as the `ovlfuse -f` command.

use ovlfuse::MountOptions;
use ovlfuse::mount::{self, MountRequest};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let [lowers, upper, work, mnt] = a.as_slice() else {
        eprintln!("usage: mount_from_code LOWER[:LOWER...] UPPER WORK MOUNTPOINT");
        std::process::exit(2);
    };
    // The same parser as `-o`: escapes, and relative paths made absolute.
    let cwd = std::env::current_dir().expect("cwd");
    let spec = format!("lowerdir={lowers},upperdir={upper},workdir={work}");
    let options = MountOptions::parse(&[spec], &cwd).unwrap_or_else(|e| {
        eprintln!("{e}");
        std::process::exit(1)
    });
    let code = mount::run(MountRequest {
        options,
        source: None,
        mountpoint: cwd.join(mnt),
        foreground: true,
        debug: false,
    });
    std::process::exit(code);
}
