//! When to send magic packets: each host is woken at once, then again with exponential
//! backoff and jitter, until it reports online or the deadline passes.
//!
//! This is pure logic over a caller-supplied clock (time since the start of the plan), so
//! tests can run a whole plan in simulated time; [`super::send::spawn_waker`] drives it with
//! real time and real packets.
//!
//! Jitter keeps hosts that were woken together from retrying in lockstep, and the backoff
//! keeps a host that is slow to boot (or not there) from flooding the LAN.

use std::time::Duration;

use crate::net::mac::MacAddr;
use crate::rand::XorShift;

/// How often to resend, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The interval between the first and the second packet.
    pub first_interval: Duration,
    /// Each interval is this many times the previous one…
    pub factor: u32,
    /// …up to this interval.
    pub max_interval: Duration,
    /// Each interval is randomly stretched or shrunk by up to this fraction (0.0 to 1.0).
    pub jitter: f64,
    /// No packet is sent after this time since the start; the host is then given up on.
    pub deadline: Duration,
}

impl Default for Backoff {
    /// 1 s, 2 s, 4 s, … up to 30 s, ±20 %, for 15 minutes: a server with a slow firmware
    /// may take minutes to reach its PXE ROM, and a missed packet must not cost much.
    fn default() -> Backoff {
        Backoff {
            first_interval: Duration::from_secs(1),
            factor: 2,
            max_interval: Duration::from_secs(30),
            jitter: 0.2,
            deadline: Duration::from_secs(15 * 60),
        }
    }
}

/// What the plan asks its driver to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send a magic packet to this host; `attempt` counts from 1.
    Send {
        /// The host to wake.
        mac: MacAddr,
        /// Which send this is, from 1.
        attempt: u32,
    },
    /// The host reported online: no more packets for it.
    Online {
        /// The host.
        mac: MacAddr,
        /// How many packets were sent to it.
        attempts: u32,
    },
    /// The deadline passed before the host reported online.
    GaveUp {
        /// The host.
        mac: MacAddr,
        /// How many packets were sent to it.
        attempts: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waking,
    Online,
    GaveUp,
}

#[derive(Debug, Clone)]
struct Target {
    mac: MacAddr,
    state: State,
    attempts: u32,
    next_send: Duration,
    interval: Duration,
}

/// The wake-up plan of a set of hosts.
#[derive(Debug, Clone)]
pub struct WakePlan {
    targets: Vec<Target>,
    backoff: Backoff,
    rng: XorShift,
}

impl WakePlan {
    /// A plan to wake each of `macs` (duplicates once), the first packet at time zero.
    /// `seed` fixes the jitter, so a plan is reproducible.
    pub fn new(macs: impl IntoIterator<Item = MacAddr>, backoff: Backoff, seed: u64) -> WakePlan {
        let mut targets: Vec<Target> = Vec::new();
        for mac in macs {
            if !targets.iter().any(|t| t.mac == mac) {
                targets.push(Target {
                    mac,
                    state: State::Waking,
                    attempts: 0,
                    next_send: Duration::ZERO,
                    interval: backoff.first_interval,
                });
            }
        }
        WakePlan {
            targets,
            backoff,
            rng: XorShift::new(seed),
        }
    }

    /// Advances the plan to `now` (time since the start): hosts `is_online` says are up are
    /// done, hosts past the deadline are given up on, and hosts whose time has come get a
    /// packet. Returns what to do, in host order.
    pub fn poll(
        &mut self,
        now: Duration,
        is_online: &mut dyn FnMut(MacAddr) -> bool,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        for index in 0..self.targets.len() {
            let target = &self.targets[index];
            if target.state != State::Waking {
                continue;
            }
            let (mac, attempts) = (target.mac, target.attempts);
            if is_online(mac) {
                self.targets[index].state = State::Online;
                actions.push(Action::Online { mac, attempts });
            } else if now >= self.backoff.deadline {
                self.targets[index].state = State::GaveUp;
                actions.push(Action::GaveUp { mac, attempts });
            } else if now >= target.next_send {
                let delay = self.jittered(self.targets[index].interval);
                let backoff = self.backoff;
                let target = &mut self.targets[index];
                target.attempts += 1;
                target.next_send = now + delay;
                target.interval = (target.interval * backoff.factor).min(backoff.max_interval);
                actions.push(Action::Send {
                    mac,
                    attempt: target.attempts,
                });
            }
        }
        actions
    }

    /// When the plan next has something to do (a send or the deadline), or `None` when every
    /// host is online or given up on. The driver should also poll regularly before that, to
    /// notice hosts coming online.
    pub fn next_due(&self) -> Option<Duration> {
        self.targets
            .iter()
            .filter(|t| t.state == State::Waking)
            .map(|t| t.next_send.min(self.backoff.deadline))
            .min()
    }

    /// True when every host is online or given up on.
    pub fn is_finished(&self) -> bool {
        self.next_due().is_none()
    }

    /// `interval` stretched or shrunk by a random fraction within ±jitter.
    fn jittered(&mut self, interval: Duration) -> Duration {
        let jitter = self.backoff.jitter.clamp(0.0, 1.0);
        // A uniform value in [-1, 1] from the top 53 bits (the precision of an f64).
        interval.mul_f64(1.0 + jitter * self.rng.signed_unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 0, 0xa]);
    const B: MacAddr = MacAddr::new([0x52, 0x54, 0, 0, 0, 0xb]);

    fn no_jitter() -> Backoff {
        Backoff {
            first_interval: Duration::from_secs(1),
            factor: 2,
            max_interval: Duration::from_secs(8),
            jitter: 0.0,
            deadline: Duration::from_secs(40),
        }
    }

    /// Runs a plan in simulated time, polling at every due time (and every `step`), and
    /// returns the send times of each host with the final action.
    fn simulate(
        plan: &mut WakePlan,
        step: Duration,
        online_at: &dyn Fn(MacAddr) -> Option<Duration>,
    ) -> Vec<(Duration, Action)> {
        let mut log = Vec::new();
        let mut now = Duration::ZERO;
        while plan.next_due().is_some() {
            for action in plan.poll(now, &mut |mac| online_at(mac).is_some_and(|t| now >= t)) {
                log.push((now, action));
            }
            // After a poll everything due has been done, so the next due time is later.
            if let Some(due) = plan.next_due() {
                assert!(
                    due > now,
                    "plan due at {due:?} again after polling at {now:?}"
                );
                now = due.min(now + step);
            }
        }
        log
    }

    fn sends_of(log: &[(Duration, Action)], of: MacAddr) -> Vec<f64> {
        log.iter()
            .filter(|(_, a)| matches!(a, Action::Send { mac, .. } if *mac == of))
            .map(|(t, _)| t.as_secs_f64())
            .collect()
    }

    #[test]
    fn without_jitter_sends_double_up_to_the_cap_then_give_up_at_the_deadline() {
        let mut plan = WakePlan::new([A], no_jitter(), 1);
        let log = simulate(&mut plan, Duration::from_secs(100), &|_| None);
        assert_eq!(
            sends_of(&log, A),
            [0.0, 1.0, 3.0, 7.0, 15.0, 23.0, 31.0, 39.0]
        );
        assert_eq!(
            log.last(),
            Some(&(
                Duration::from_secs(40),
                Action::GaveUp {
                    mac: A,
                    attempts: 8
                }
            ))
        );
        assert!(plan.is_finished());
    }

    #[test]
    fn jitter_is_deterministic_for_a_seed_and_bounded() {
        let backoff = Backoff {
            jitter: 0.5,
            ..no_jitter()
        };
        let run = |seed| {
            sends_of(
                &simulate(
                    &mut WakePlan::new([A], backoff, seed),
                    Duration::from_secs(100),
                    &|_| None,
                ),
                A,
            )
        };
        let first = run(42);
        assert_eq!(first, run(42), "same seed, same schedule");
        assert_ne!(first, run(43), "another seed, another schedule");
        let gaps: Vec<f64> = first.windows(2).map(|w| w[1] - w[0]).collect();
        let nominal = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0];
        for (gap, nominal) in gaps.iter().zip(nominal) {
            assert!(
                *gap >= nominal * 0.5 - 1e-9 && *gap <= nominal * 1.5 + 1e-9,
                "gap {gap} for {nominal}: {first:?}"
            );
        }
    }

    #[test]
    fn stops_sending_once_the_host_is_online() {
        let mut plan = WakePlan::new([A, B], no_jitter(), 7);
        let online_at = |mac| (mac == A).then_some(Duration::from_secs(5));
        let log = simulate(&mut plan, Duration::from_millis(500), &online_at);
        assert_eq!(sends_of(&log, A), [0.0, 1.0, 3.0]);
        assert!(log.contains(&(
            Duration::from_secs(5),
            Action::Online {
                mac: A,
                attempts: 3
            }
        )));
        assert_eq!(
            sends_of(&log, B).len(),
            8,
            "B, never online, runs to the deadline"
        );
        assert!(log.iter().any(|(_, a)| *a
            == Action::GaveUp {
                mac: B,
                attempts: 8
            }));
    }

    #[test]
    fn a_host_already_online_gets_no_packet_and_duplicates_are_woken_once() {
        let mut plan = WakePlan::new([A, A, B], no_jitter(), 3);
        let actions = plan.poll(Duration::ZERO, &mut |mac| mac == A);
        assert_eq!(
            actions,
            [
                Action::Online {
                    mac: A,
                    attempts: 0
                },
                Action::Send { mac: B, attempt: 1 }
            ]
        );
        assert_eq!(plan.next_due(), Some(Duration::from_secs(1)));
    }

    #[test]
    fn an_empty_plan_is_finished_at_once() {
        let plan = WakePlan::new([], Backoff::default(), 0);
        assert!(plan.is_finished());
    }
}
