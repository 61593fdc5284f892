//! Teaching and inspection tools, each a thin user of the library.

pub mod demo;
pub mod diff;
pub mod export;
pub mod layerwalk;
pub mod stats;
pub mod tree;
pub mod which;
