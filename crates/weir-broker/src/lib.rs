//! weir-broker (work in progress).
