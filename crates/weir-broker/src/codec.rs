//! The journal codec lives in `weir-store` (shared with `weir-tasks`); re-exported for this crate.

pub(crate) use weir_store::codec::{put_bytes, put_varint, Reader};
