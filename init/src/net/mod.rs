//! Network-level types shared by the configuration, the boot service and Wake-on-LAN, and
//! host0's own network bring-up: its links ([`link`], through [`netlink`]) and its address
//! from the LAN's DHCP server ([`dhcp`]).

pub mod dhcp;
pub mod link;
pub mod mac;
pub mod netlink;
