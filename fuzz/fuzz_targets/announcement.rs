//! Any datagram on the announce port: decoding never panics, an announcement of our cluster
//! comes out only valid, and another cluster is only ever known by a well-formed cluster ID
//! other than ours. The input is also decoded signed with our secret, so the JSON parser
//! and the bounds checks are reached: what decodes survives encode and decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pxen::config::cluster_id;
use pxen::report::wire::sign;
use pxen::serve::announce::wire::{decode, encode, is_lower_hex, Heard, CLUSTER_ID_LEN, MAGIC};

const SECRET: &str = "fuzzing secret of the cluster";

fuzz_target!(|data: &[u8]| {
    let ours = cluster_id(SECRET);
    check(&ours, decode(SECRET.as_bytes(), &ours, data));

    let mut signed = format!("{MAGIC}\n").into_bytes();
    signed.extend_from_slice(data);
    let mut datagram = format!("{MAGIC} {}\n", sign(SECRET.as_bytes(), &signed)).into_bytes();
    datagram.extend_from_slice(data);
    let heard = decode(SECRET.as_bytes(), &ours, &datagram);
    check(&ours, heard.clone());
    if let Ok(Heard::SameCluster(announcement)) = heard {
        let again = encode(SECRET.as_bytes(), &announcement);
        assert_eq!(
            decode(SECRET.as_bytes(), &ours, &again),
            Ok(Heard::SameCluster(announcement))
        );
    }
});

fn check(ours: &str, heard: Result<Heard, pxen::serve::announce::wire::DecodeError>) {
    match heard {
        Ok(Heard::SameCluster(announcement)) => {
            assert_eq!(announcement.validate(), Ok(()));
            assert_eq!(announcement.cluster_id, ours);
        }
        Ok(Heard::OtherCluster { cluster_id }) => {
            assert!(is_lower_hex(&cluster_id, CLUSTER_ID_LEN) && cluster_id != ours);
        }
        Err(_) => {}
    }
}
