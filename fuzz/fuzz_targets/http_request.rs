//! HTTP request heads: parsing never panics; what parses survives emit and parse unchanged;
//! the answers derived from a request (path, body framing, byte range) never panic and keep
//! their invariants.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::serve::http::wire::{resolve_range, Head, Limits, RangeAnswer, RequestRepr};

fuzz_target!(|data: &[u8]| {
    let Ok(head) = Head::new_checked(data, &Limits::default()) else { return };
    assert!(head.len() <= data.len());
    let Ok(request) = RequestRepr::parse(&head) else { return };

    let mut emitted = Vec::new();
    request.emit(&mut emitted);
    assert_eq!(emitted.len(), request.buffer_len());
    let unlimited =
        Limits { max_request_line: usize::MAX, max_header_line: usize::MAX, max_head: usize::MAX, max_headers: usize::MAX };
    let again = Head::new_checked(&emitted[..], &unlimited).expect("an emitted head is complete");
    assert_eq!(RequestRepr::parse(&again).expect("an emitted head parses"), request);

    let _ = request.path();
    let _ = request.body_framing();
    for len in [0, 1, 100, u64::MAX] {
        if let RangeAnswer::Part { first, last } = resolve_range(request.header("range"), false, len) {
            assert!(first <= last && last < len, "{first}-{last} of {len}");
        }
    }
});
