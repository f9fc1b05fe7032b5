//! proxyDHCP: tells PXE clients where to boot from, next to the LAN's own DHCP server.
//!
//! [`wire`] checks and decodes messages, [`answer`] decides (pure), [`server`] owns the
//! sockets on ports 67 and 4011 and the threads that serve them.

pub mod answer;
pub mod server;
pub mod wire;
