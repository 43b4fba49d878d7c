//! The journal codec lives in `weir-store` (shared with `weir-broker`); re-exported for this crate.

pub(crate) use weir_store::codec::{
    put_bytes, put_opt_str, put_opt_u64, put_str, put_varint, Reader,
};
