//! weir-log: see crate docs (work in progress).
