//! weir-client (work in progress).
