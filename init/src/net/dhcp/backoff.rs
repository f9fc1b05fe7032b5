//! When a DHCP client retransmits: RFC 2131 §4.1's exponential backoff with jitter.

use std::time::Duration;

use crate::rand::XorShift;

/// The most jitter added to or taken from a delay: RFC 2131 §4.1's "-1 to +1" second.
const MAX_JITTER: Duration = Duration::from_secs(1);

/// The delays between retransmissions: `first`, then doubling up to `max`, each moved by a
/// random jitter of at most ±1 s (and at most a quarter of the delay, so short test delays
/// stay short), so that clients powered on together do not retransmit together.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
    rng: XorShift,
}

impl Backoff {
    /// The schedule starting at `first` (RFC 2131: 4 s) and capped at `max` (64 s), with a
    /// jitter drawn from `seed` (the same seed gives the same schedule).
    pub fn new(first: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            next: first.min(max),
            max,
            rng: XorShift::new(seed),
        }
    }

    /// The delay before the next retransmission.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (base * 2).min(self.max);
        let spread = MAX_JITTER.min(base / 4);
        // A uniform offset in [-spread, +spread], in microseconds.
        let spread_us = spread.as_micros() as u64;
        let offset_us = self.rng.next_u64() % (2 * spread_us + 1);
        (base + Duration::from_micros(offset_us)).saturating_sub(spread)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn doubles_from_four_seconds_up_to_the_cap_within_one_second_of_jitter() {
        let mut backoff = Backoff::new(S(4), S(64), 42);
        for expected in [4, 8, 16, 32, 64, 64, 64] {
            let delay = backoff.next_delay();
            assert!(
                delay >= S(expected) - S(1) && delay <= S(expected) + S(1),
                "{delay:?} is not {expected} s ± 1 s"
            );
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule_and_others_differ() {
        let schedule = |seed| {
            let mut backoff = Backoff::new(S(4), S(64), seed);
            (0..6).map(|_| backoff.next_delay()).collect::<Vec<_>>()
        };
        assert_eq!(schedule(7), schedule(7));
        assert_ne!(schedule(7), schedule(8));
    }

    #[test]
    fn short_delays_get_at_most_a_quarter_of_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(300), 1);
        for expected_ms in [100, 200, 300, 300] {
            let delay = backoff.next_delay().as_millis() as u64;
            let spread = expected_ms / 4;
            assert!(
                (expected_ms - spread..=expected_ms + spread).contains(&delay),
                "{delay} ms is not {expected_ms} ms ± {spread} ms"
            );
        }
    }

    #[test]
    fn jitter_covers_both_sides() {
        let mut early = false;
        let mut late = false;
        for seed in 1..200 {
            let delay = Backoff::new(S(4), S(64), seed).next_delay();
            early |= delay < S(4) - Duration::from_millis(500);
            late |= delay > S(4) + Duration::from_millis(500);
        }
        assert!(early && late, "early {early}, late {late}");
    }

    #[test]
    fn a_zero_seed_still_generates() {
        let mut rng = XorShift::new(0);
        assert_ne!(rng.next_u64(), rng.next_u64());
    }
}
