//! ovlfuse: a userspace overlay filesystem.
//!
//! The overlay rules live in this library, which knows nothing of FUSE; the
//! adapter in [`fuse`] only decodes requests, calls these modules and encodes
//! replies. One module per concern, as the kernel's fs/overlayfs.
//!
//! # Layers
//!
//! The modules form layers, numbered from the bottom. A module imports only
//! from layers with a smaller number, never from its own or a larger one, so
//! each can be read knowing only what comes before it (`tests/layering.rs`
//! checks every `crate::` path in `src/` against this list):
//!
//! 1. [`sys`] — system call wrappers; fd-relative, no-follow access inside a
//!    layer (`sys/resolve.rs`), and every other call the crate makes
//! 2. [`idmap`] — stored and shown uids/gids; [`stats`] — counters since mount
//! 3. [`options`] — `-o` parsing
//! 4. [`view`] — how the mount shows attributes (id mapping, `static_nlink`, ...)
//! 5. [`markers`] — whiteouts and opaque marks, which a mount obeys, writing them;
//!    [`perms`] — owners and modes kept in an xattr (`xattr_permissions`)
//! 6. [`ino`] — overlay inode numbers; [`dircache`] — lower-directory caches
//! 7. [`stack`] — the layers and the workdir, as one mount stands on them
//! 8. [`lookup`] — top-down resolution
//! 9. [`readdir`] — merged listings
//! 10. [`copy_up`] — copy-up
//! 11. [`attr`] — getattr/setattr; [`xattr`] — extended attributes;
//!     [`dir_ops`] — create/unlink/rmdir/rename/link
//! 12. [`file`](mod@file) — open files: copy-up on open for write,
//!     following a copy-up, what may be passed through
//! 13. [`fuse`] — the FUSE adapter, the only module that imports `fuser`
//! 14. [`mount`] — mount lifecycle, daemonizing, signals
//! 15. [`tools`] — demo, which, stats, diff, export

// Every unsafe block says why it is sound; clippy refuses one that does not.
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod attr;
pub mod copy_up;
pub mod dir_ops;
pub mod dircache;
pub mod file;
pub mod fuse;
pub mod idmap;
pub mod ino;
pub mod lookup;
pub mod markers;
pub mod mount;
pub mod options;
pub mod perms;
pub mod readdir;
pub mod stack;
pub mod stats;
pub mod sys;
pub mod tools;
pub mod view;
pub mod xattr;

pub use lookup::{DirRef, Entry};
pub use options::MountOptions;
pub use stack::Stack;
