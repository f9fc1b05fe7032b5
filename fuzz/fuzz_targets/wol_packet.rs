//! Any payload or frame: finding a magic packet must never panic, and what is found must
//! round-trip through emit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::wol::wire::{find_in_frame, MagicPacket, Packet};

fuzz_target!(|data: &[u8]| {
    if let Ok(found) = MagicPacket::parse(data) {
        let bytes = found.to_bytes();
        assert_eq!(MagicPacket::parse(&bytes), Ok(found));
        assert_eq!(MagicPacket::from_packet(&Packet::new_unchecked(&bytes[..])), Ok(found));
    }
    let _ = Packet::new_checked(data);
    let _ = find_in_frame(data);
});
