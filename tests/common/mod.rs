//! Shared harness for ovlfuse integration tests: environment checks,
//! declarative layers, twin mounts (ovlfuse vs the kernel's overlayfs),
//! tree snapshots with diffs, and errno probes.
//!
//! Each test crate uses a different subset, hence the allows.
#![allow(dead_code, unused_imports)]

pub mod containers;
pub mod dirs;
pub mod env;
pub mod layer;
pub mod mounts;
pub mod probe;
pub mod sys;
pub mod transport;
pub mod tree;
pub mod user;

pub use dirs::Dirs;
pub use env::*;
pub use layer::*;
pub use mounts::*;
pub use probe::*;
pub use sys::errno_name;
pub use tree::*;
pub use user::*;

/// Run an operation on both twin mountpoints and assert equal results;
/// evaluates to the fuse result. The message names the operation.
///
/// `assert_both_eq!(twin, |r| probe_unlink(&r.join("x")));`
#[macro_export]
macro_rules! assert_both_eq {
    ($twin:expr, $op:expr $(,)?) => {
        $twin.same(stringify!($op), $op)
    };
    ($twin:expr, $op:expr, $($msg:tt)+) => {
        $twin.same(&format!($($msg)+), $op)
    };
}
