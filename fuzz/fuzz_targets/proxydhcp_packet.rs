//! Any datagram reaching the proxyDHCP ports: decoding and deciding must never panic, and
//! every reply must encode.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use pxen::serve::proxydhcp::answer::{answer, Arrival, Decision, ProxyContext};
use pxen::serve::proxydhcp::wire;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = wire::parse(data) else { return };
    let ctx = ProxyContext::new(Ipv4Addr::new(10, 0, 0, 1), 80);
    let from = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 50), 68);
    for arrival in [Arrival::DhcpPort, Arrival::PxePort { from }] {
        if let Decision::Reply { message, .. } = answer(&request, arrival, &ctx) {
            assert_eq!(message.yiaddr(), Ipv4Addr::UNSPECIFIED, "a proxy never gives an address");
            wire::emit(&message).expect("a reply encodes");
        }
    }
    let reparsed = wire::parse(&wire::emit(&request).expect("a parsed request encodes"));
    assert_eq!(reparsed.as_ref(), Ok(&request), "parse(emit(parse(x))) == parse(x)");
});
