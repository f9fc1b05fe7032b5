//! `pxen state sync`: placeholder.
