//! Any secret, Authorization header and body: verifying and decoding a report never panics,
//! and only a report that passed every check comes out. The whole input is also decoded
//! signed with a fixed secret, so the JSON parser and the bounds checks are reached: a correct
//! signature is never refused, and what decodes survives encode and decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::report::wire::{decode, encode, sign, ReportError};

const FIXED_SECRET: &[u8] = b"fuzzing secret";

fuzz_target!(|data: &[u8]| {
    let (secret, rest) = split(data);
    let (authorization, body) = split(rest);
    let authorization = std::str::from_utf8(authorization).ok();
    if let Ok(report) = decode(secret, body, authorization) {
        assert_eq!(report.validate(), Ok(()));
    }

    match decode(FIXED_SECRET, data, Some(&sign(FIXED_SECRET, data))) {
        Ok(report) => {
            assert_eq!(report.validate(), Ok(()));
            let again = encode(&report);
            let decoded = decode(FIXED_SECRET, &again, Some(&sign(FIXED_SECRET, &again)));
            assert_eq!(decoded, Ok(report));
        }
        Err(ReportError::Auth(error)) => panic!("a correct signature was refused: {error}"),
        Err(_) => {}
    }
});

/// Splits off a first part whose length is the input's first byte.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&len, rest)) = data.split_first() else { return (&[], &[]) };
    rest.split_at(usize::from(len).min(rest.len()))
}
