//! Wake-on-LAN: powering on the hosts of the cluster from host0.
//!
//! [`wire`] is the magic packet codec (and the frame inspection the test switch uses),
//! [`schedule`] decides when to send to which host (pure, deterministic given a seed), and
//! [`send`] puts packets on the network and runs the schedule in a thread.

pub mod schedule;
pub mod send;
pub mod wire;
