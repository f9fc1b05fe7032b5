//! Network-level types shared by the configuration, the boot service and Wake-on-LAN.

pub mod mac;
