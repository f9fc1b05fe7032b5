//! Any bytes as a TFTP packet: parsing never panics, and what parses emits to bytes that
//! parse to the same packet; the option negotiation of any read request never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::serve::tftp::options::{negotiate, Limits};
use pxen::serve::tftp::wire::Repr;

fuzz_target!(|bytes: &[u8]| {
    let Ok(repr) = Repr::parse_bytes(bytes) else { return };
    let emitted = repr.to_bytes();
    assert_eq!(Repr::parse_bytes(&emitted).as_ref(), Ok(&repr));
    if let Repr::ReadRequest(request) = &repr {
        let limits = Limits { max_blksize: 65464, max_windowsize: 64, max_window_bytes: 65536 };
        let negotiated = negotiate(&request.options, limits, bytes.len() as u64);
        assert!((8..=65464).contains(&negotiated.blksize) && negotiated.windowsize >= 1);
    }
});
