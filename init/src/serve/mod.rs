//! The boot service host0 runs for the rest of the cluster: the protocols PXE firmware and
//! boot loaders speak, and the files they fetch.
//!
//! | module | concern |
//! | --- | --- |
//! | [`files`] | safe request paths and the sources of served files, shared by every protocol |
//! | [`tftp`] | the read-only TFTP server |

pub mod files;
pub mod tftp;
