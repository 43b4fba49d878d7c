//! weir-server (work in progress).
