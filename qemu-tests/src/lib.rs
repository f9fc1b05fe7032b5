//! The QEMU harness of PXEN's whole-system tests.
//!
//! A [`Machine`] is one emulated PC: QEMU with an SMBIOS serial number, a boot medium (a USB
//! stick holding a PXEN image, or Xen and a kernel loaded directly) and its serial console
//! captured line by line, each line stamped with the time since power-on. Tests wait for
//! console lines with [`Machine::expect`], run shell commands inside dom0 with
//! [`Machine::run`], and print the boot [`Timeline`] of every machine.
//!
//! Machines can be networked: a [`Nic`] plugs an e1000 (with iPXE's boot ROM) into a port
//! of our own Ethernet [`switch`], which logs, counts and can disturb every frame, and powers
//! on machines when a Wake-on-LAN magic packet targets them. The [`lan`] module adds the
//! LAN's own DHCP server (a home router's, knowing nothing of PXE), and a
//! [`cluster::Cluster`] puts it together: host0 on a USB stick, hostUs booting from the
//! network once woken, and one [`cluster::ClusterTimeline`] for all of them.
//!
//! Every machine has a [`qmp`] control socket, through which a test acts on its hardware
//! while it runs: [`Machine::unplug_usb_stick`] pulls host0's stick out.
//!
//! The scenarios themselves live in `tests/` and are `#[ignore]`d: `cargo xtask test` builds
//! the test image (the normal image plus [`overlay::write_test_overlay`]) and runs them.

pub mod cluster;
pub mod console;
pub mod frame;
pub mod image;
pub mod lan;
pub mod machine;
pub mod overlay;
pub mod qmp;
pub mod shell;
pub mod ssh;
pub mod switch;
pub mod timeline;

pub use console::Line;
pub use machine::{Boot, ConsoleContext, ConsoleInput, HarnessError, Machine, MachineConfig, Nic};
pub use shell::CommandOutput;
pub use timeline::Timeline;
