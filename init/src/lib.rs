//! PXEN's `/init` and the `pxen` command.
//!
//! The same binary runs as PID 1 of every host (see [`boot`]) and, after the boot, as the
//! `pxen` administration command. Each module owns one concern of the boot:
//!
//! | module | concern |
//! | --- | --- |
//! | [`logger`] | timestamped log lines on the console and in the kernel log |
//! | [`cmdline`] | the `pxen.*` parameters of the kernel command line |
//! | [`mounts`] | the basic file systems PID 1 needs (`/proc`, `/sys`, `/dev`, `/run`) |
//! | [`modules`] | loading the early kernel modules shipped in the initramfs |
//! | [`cpio`] | the newc archive format of the initramfs: writer and reader |
//! | [`config`] | the cluster configuration (RON files) and its validation |
//! | [`identity`] | the machine's stable ID and hostname |
//! | [`drive`] | finding and mounting the PXEN flash drive |
//! | [`rootfs`] | copying the dom0 root filesystem into a size-checked tmpfs |
//! | [`handoff`] | writing the host's identity and PXEN's part of dom0 (the Xen bridge, the report service) into the new root, and `switch_root` |
//! | [`boot`] | the PID 1 sequence that ties them together, and its fatal-error path |
//! | [`net`] | the host's network: NICs, links and addresses (rtnetlink), the DHCP client, MAC addresses |
//! | [`serve`] | host0's boot service for the rest of the cluster (proxyDHCP, TFTP, HTTP, the status page, the hosts' reports) |
//! | [`state`] | per-host state that survives reboots (SSH host keys, machine ID, toolstack state): saving, storing on host0, restoring at boot |
//! | [`report`] | the report every host sends host0 when its dom0 is up: gathering, signing, sending |
//! | [`rand`] | a small deterministic PRNG for jitter and randomized tests |
//! | [`wol`] | Wake-on-LAN: the magic packet, when to send it, and sending it |

pub mod boot;
pub mod cmdline;
pub mod config;
pub mod cpio;
pub mod drive;
pub mod handoff;
pub mod identity;
pub mod logger;
pub mod modules;
pub mod mounts;
pub mod net;
pub mod rand;
pub mod report;
pub mod rootfs;
pub mod serve;
pub mod state;
pub mod wol;
