//! Any bytes as a host's state archive: checking never panics, and an archive that passes
//! holds only names the list of kept files allows, each a plain relative path, once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::state::archive::check;
use pxen::state::{is_kept, is_plain_relative};

/// `st_mode`'s file type bits and a directory's.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = check(data) {
        let mut names = std::collections::BTreeSet::new();
        for entry in entries {
            assert!(is_plain_relative(&entry.name), "{:?}", entry.name);
            assert!(
                is_kept(&entry.name, entry.mode & S_IFMT == S_IFDIR),
                "{:?}",
                entry.name
            );
            assert!(names.insert(entry.name), "a name twice");
        }
    }
});
