//! `pxen state save`: placeholder.
