//! The native protocol decoder (`weir_proto::frame`) on arbitrary bytes: never panics, never
//! claims more bytes than it was given, and whatever it accepts re-encodes to a frame that
//! decodes to the same value.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir_proto::frame::{Frame, Hello};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((_, used))) = Hello::decode(data) {
        assert!(used <= data.len());
    }
    // A stream of frames, as the server's reader consumes it (skipping what it may skip).
    let mut rest = data;
    for _ in 0..64 {
        match Frame::decode(rest) {
            Ok(Some((frame, used))) => {
                assert!(used > 0 && used <= rest.len());
                let mut buf = BytesMut::new();
                if frame.encode(&mut buf).is_ok() {
                    let (again, n) = Frame::decode(&buf)
                        .expect("re-encoded frame decodes")
                        .expect("re-encoded frame is complete");
                    assert_eq!(n, buf.len());
                    assert_eq!(again, frame);
                }
                rest = &rest[used..];
            }
            Ok(None) => break,
            Err(e) => match e.skip {
                Some(skip) if skip > 0 && skip <= rest.len() => rest = &rest[skip..],
                _ => break,
            },
        }
    }
});
