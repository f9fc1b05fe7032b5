//! A small deterministic pseudo-random generator (xorshift64*), for the jitter of retries and
//! Wake-on-LAN and for the randomized tests of the packet codecs. Never for secrets.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// A xorshift64* generator: the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero, which xorshift cannot leave, is replaced).
    pub fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next pseudo-random number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (which must not be zero).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` pseudo-random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// A number in [0, 1), evenly spread (the top 53 bits, as many as an f64 holds).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in [-1, 1), evenly spread: for ± jitter.
    pub fn signed_unit(&mut self) -> f64 {
        self.unit() * 2.0 - 1.0
    }
}

/// A seed that differs between runs and between machines, from the standard library's
/// per-process random hash keys (taken from the kernel's random source), without `unsafe`
/// and without a dependency.
pub fn random_seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(std::process::id().into());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_sequence() {
        let (mut a, mut b) = (XorShift::new(7), XorShift::new(7));
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        assert_ne!(XorShift::new(0).next_u64(), 0, "a zero seed still moves");
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut rng = XorShift::new(42);
        for _ in 0..10_000 {
            assert!(rng.below(10) < 10);
            let unit = rng.signed_unit();
            assert!((-1.0..1.0).contains(&unit), "{unit}");
        }
        assert_eq!(rng.bytes(5).len(), 5);
        assert_ne!(random_seed(), random_seed());
    }
}
