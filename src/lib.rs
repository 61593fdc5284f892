//! ovlfuse: a userspace overlay filesystem.
//!
//! The overlay rules live in this library, which knows nothing of FUSE; the
//! adapter in [`fuse`] only decodes requests, calls these modules and encodes
//! replies. One module per concern, as the kernel's fs/overlayfs:
//!
//! - [`options`]: `-o` parsing; [`stack`]: layers, workdir, inode numbers
//! - [`sys`]: system call wrappers; fd-relative, no-follow access inside a layer
//! - [`markers`]: whiteouts and opaque marks
//! - [`lookup`]: top-down resolution; [`readdir`]: merged listings
//! - [`copy_up`]: copy-up; [`dir_ops`]: create/unlink/rmdir/rename/link
//! - [`attr`]: getattr/setattr; [`xattr`]: extended attributes
//! - [`stats`]: counters since mount

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
