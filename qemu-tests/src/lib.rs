//! The QEMU harness of PXEN's whole-system tests.
//!
//! A [`Machine`] is one emulated PC: QEMU with an SMBIOS serial number, a boot medium (a USB
//! stick holding a PXEN image, or Xen and a kernel loaded directly) and its serial console
//! captured line by line, each line stamped with the time since power-on. Tests wait for
//! console lines with [`Machine::expect`], run shell commands inside dom0 with
//! [`Machine::run`], and print the boot [`Timeline`] of every machine.
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
pub mod shell;
pub mod switch;
pub mod timeline;

pub use console::Line;
pub use machine::{Boot, ConsoleContext, ConsoleInput, HarnessError, Machine, MachineConfig, Nic};
pub use shell::CommandOutput;
pub use timeline::Timeline;
