//! Connection slots of the SMTP relay: who may open one more session, and whether the relay is
//! under stress.
//!
//! Untrusted clients (who can only relay after AUTH) share `max_connections - reserved_for_trusted`
//! slots, at most `max_connections_per_ip` per address; clients on `trusted_networks` (Mattermost)
//! may use every slot, so a crowd of idle strangers cannot lock them out. Postfix exempts
//! `mynetworks` from its per-client limits the same way (`smtpd_client_event_limit_exceptions`).
//!
//! Stress mode is Postfix's: while at least `stress_threshold` of the slots are busy, sessions wait
//! `stress_idle_timeout` instead of `idle_timeout` for each command, so idle sessions make room
//! quickly. Nothing in the dialogue changes. Sessions watch the stress period, so the ones already
//! idle when the load arrives are reaped too, not only the ones that come after. The period carries
//! its times: a session whose stress deadline passed while the stress lasted is reaped even if its
//! task only looks after the stress ended (reaping another session often ends it), so which idle
//! sessions go depends on the clock, not on the order the scheduler runs their tasks in.
//!
//! One mutex guards the counts; it is taken once when a connection opens and once when it closes,
//! never per command.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::refusal::Refusal;

/// The configured caps and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// All sessions, trusted or not.
    pub max_connections: usize,
    /// Sessions per untrusted address.
    pub max_per_ip: usize,
    /// Slots only trusted clients may take.
    pub reserved_for_trusted: usize,
    /// Busy slots from which on the relay is under stress (at least 1).
    pub stress_from: usize,
    /// Wait for each command line (or text line) normally.
    pub idle_timeout: Duration,
    /// The same under stress.
    pub stress_idle_timeout: Duration,
}

impl Limits {
    /// Busy slots that start stress mode for `percent` of `max_connections` (rounded up, at least 1).
    pub fn stress_from_percent(max_connections: usize, percent: u8) -> usize {
        (max_connections * usize::from(percent)).div_ceil(100).max(1)
    }

    /// Whether one more session may open, given `total` open sessions and `mine` from this address.
    pub fn admit(&self, total: usize, mine: usize, trusted: bool) -> Result<(), Refusal> {
        if total >= self.max_connections {
            return Err(Refusal::TooManyConnections);
        }
        if trusted {
            return Ok(());
        }
        if mine >= self.max_per_ip {
            return Err(Refusal::TooManyConnectionsPerIp);
        }
        let untrusted_share = self.max_connections.saturating_sub(self.reserved_for_trusted);
        if total >= untrusted_share {
            return Err(Refusal::TooManyUntrustedConnections);
        }
        Ok(())
    }

    /// How long a session waits for its next line.
    pub fn idle_timeout(&self, stressed: bool) -> Duration {
        if stressed {
            self.stress_idle_timeout
        } else {
            self.idle_timeout
        }
    }

    /// When a session waiting for a line since `line_began` times out, given the latest stress
    /// period: at the normal deadline, or at the stress deadline if the stress lasts (or lasted)
    /// beyond it. A deadline in the past means now.
    pub fn idle_deadline(&self, line_began: Instant, stress: Stress) -> Instant {
        let normal = line_began + self.idle_timeout;
        let Some(began) = stress.began else {
            return normal;
        };
        // Under stress from `began` on: the stress deadline counts from then at the earliest.
        let stressed = (line_began + self.stress_idle_timeout).max(began);
        match stress.ended {
            Some(ended) if stressed >= ended => normal,
            _ => normal.min(stressed),
        }
    }
}

/// The latest stress period (the current one while `ended` is `None`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stress {
    pub began: Option<Instant>,
    pub ended: Option<Instant>,
}

impl Stress {
    pub fn on(&self) -> bool {
        self.began.is_some() && self.ended.is_none()
    }
}

#[derive(Default)]
struct Counts {
    total: usize,
    /// Untrusted addresses only: trusted ones have no per-address cap.
    per_ip: HashMap<IpAddr, usize>,
}

/// The open sessions of every SMTP listener of the relay.
pub struct Slots {
    pub limits: Limits,
    counts: Mutex<Counts>,
    stress: watch::Sender<Stress>,
}

impl Slots {
    pub fn new(limits: Limits) -> Arc<Slots> {
        Arc::new(Slots {
            limits,
            counts: Mutex::default(),
            stress: watch::Sender::new(Stress::default()),
        })
    }

    /// Takes a slot for a client at `ip`, or says why not. The slot is given back when dropped.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, trusted: bool) -> Result<Slot, Refusal> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = if trusted {
            0
        } else {
            counts.per_ip.get(&ip).copied().unwrap_or(0)
        };
        self.limits.admit(counts.total, mine, trusted)?;
        counts.total += 1;
        if !trusted {
            *counts.per_ip.entry(ip).or_insert(0) += 1;
        }
        self.set_stress(counts.total);
        Ok(Slot {
            slots: self.clone(),
            ip: (!trusted).then_some(ip),
        })
    }

    /// Follows stress mode (the current period, then every change).
    pub fn stress(&self) -> watch::Receiver<Stress> {
        self.stress.subscribe()
    }

    fn release(&self, ip: Option<IpAddr>) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(ip) = ip {
            if let Some(n) = counts.per_ip.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
        self.set_stress(counts.total);
    }

    /// Called with the counts locked, so flips are ordered like the counts (and so are their times).
    fn set_stress(&self, total: usize) {
        let stressed = total >= self.limits.stress_from;
        self.stress.send_if_modified(|s| {
            if s.on() == stressed {
                return false;
            }
            let now = Some(Instant::now());
            *s = if stressed {
                Stress {
                    began: now,
                    ended: None,
                }
            } else {
                Stress { ended: now, ..*s }
            };
            true
        });
    }
}

/// A taken connection slot (the address is kept for untrusted clients only).
pub struct Slot {
    slots: Arc<Slots>,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            max_per_ip: 3,
            reserved_for_trusted: 4,
            stress_from: 8,
            idle_timeout: Duration::from_secs(120),
            stress_idle_timeout: Duration::from_secs(10),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([203, 0, 113, last])
    }

    const MATTERMOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn untrusted_clients_leave_the_reserve_to_trusted_ones() {
        let slots = Slots::new(limits());
        let mut held = Vec::new();
        // Two strangers with three sessions each fill the untrusted share (10 - 4 = 6).
        for last in [1, 1, 1, 2, 2, 2] {
            held.push(slots.acquire(ip(last), false).unwrap());
        }
        assert_eq!(
            slots.acquire(ip(3), false).err(),
            Some(Refusal::TooManyUntrustedConnections)
        );
        // The trusted network still gets every reserved slot, and no per-address cap applies.
        for _ in 0..4 {
            held.push(slots.acquire(MATTERMOST, true).unwrap());
        }
        assert_eq!(
            slots.acquire(MATTERMOST, true).err(),
            Some(Refusal::TooManyConnections)
        );
        assert_eq!(
            slots.acquire(ip(3), false).err(),
            Some(Refusal::TooManyConnections)
        );
    }

    #[test]
    fn per_address_cap_applies_to_untrusted_clients_only() {
        let slots = Slots::new(limits());
        let _a: Vec<_> = (0..3).map(|_| slots.acquire(ip(1), false).unwrap()).collect();
        assert_eq!(
            slots.acquire(ip(1), false).err(),
            Some(Refusal::TooManyConnectionsPerIp)
        );
        assert!(
            slots.acquire(ip(2), false).is_ok(),
            "another address is not affected"
        );
        let _t: Vec<_> = (0..5).map(|_| slots.acquire(MATTERMOST, true).unwrap()).collect();
    }

    #[test]
    fn closing_gives_the_slot_back() {
        let slots = Slots::new(limits());
        let held: Vec<_> = (0..3).map(|_| slots.acquire(ip(1), false).unwrap()).collect();
        assert!(slots.acquire(ip(1), false).is_err());
        drop(held);
        let _again: Vec<_> = (0..3).map(|_| slots.acquire(ip(1), false).unwrap()).collect();
        let _trusted: Vec<_> = (0..7).map(|_| slots.acquire(MATTERMOST, true).unwrap()).collect();
        assert_eq!(
            slots.acquire(MATTERMOST, true).err(),
            Some(Refusal::TooManyConnections),
            "exactly max_connections: nothing leaked"
        );
    }

    #[test]
    fn a_reserve_of_everything_shuts_out_untrusted_clients() {
        let slots = Slots::new(Limits {
            reserved_for_trusted: 10,
            ..limits()
        });
        assert_eq!(
            slots.acquire(ip(1), false).err(),
            Some(Refusal::TooManyUntrustedConnections)
        );
        assert!(slots.acquire(MATTERMOST, true).is_ok());
    }

    #[test]
    fn stress_follows_the_busy_slots_both_ways() {
        let slots = Slots::new(limits());
        let stress = slots.stress();
        let line_began = Instant::now();
        let deadline = |s: Stress| slots.limits.idle_deadline(line_began, s);
        let mut held: Vec<_> = (0..7).map(|_| slots.acquire(MATTERMOST, true).unwrap()).collect();
        assert!(!stress.borrow().on());
        assert_eq!(deadline(*stress.borrow()), line_began + Duration::from_secs(120));
        held.push(slots.acquire(MATTERMOST, true).unwrap());
        assert!(stress.borrow().on(), "8 of 10 busy");
        assert_eq!(deadline(*stress.borrow()), line_began + Duration::from_secs(10));
        held.pop();
        assert!(!stress.borrow().on(), "back under the threshold");
        assert_eq!(
            deadline(*stress.borrow()),
            line_began + Duration::from_secs(120),
            "the stress ended before the session's stress deadline"
        );
    }

    #[test]
    fn a_session_idle_past_the_stress_deadline_goes_even_if_it_looks_after_the_stress_ended() {
        let slots = Slots::new(limits());
        let stress = slots.stress();
        // Idle for 11 s when the load arrives; reaping another session ends the stress before
        // this session's task gets to run (a busy machine).
        let line_began = Instant::now() - Duration::from_secs(11);
        let held: Vec<_> = (0..8).map(|_| slots.acquire(MATTERMOST, true).unwrap()).collect();
        drop(held);
        let seen = *stress.borrow();
        assert!(!seen.on());
        assert!(
            slots.limits.idle_deadline(line_began, seen) <= Instant::now(),
            "its time ran out while the stress lasted: {seen:?}"
        );
    }

    #[test]
    fn the_stress_deadline_counts_only_while_the_stress_lasts() {
        let l = limits();
        let t0 = Instant::now();
        let s = |from: u64, to: Option<u64>| Stress {
            began: Some(t0 + Duration::from_secs(from)),
            ended: to.map(|to| t0 + Duration::from_secs(to)),
        };
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        // Idle since t0; the stress deadline is t0 + 10 s.
        assert_eq!(l.idle_deadline(t0, Stress::default()), at(120), "never stressed");
        assert_eq!(l.idle_deadline(t0, s(1, None)), at(10), "stressed now");
        assert_eq!(
            l.idle_deadline(t0, s(30, None)),
            at(30),
            "idle too long when it began"
        );
        assert_eq!(
            l.idle_deadline(t0, s(1, Some(12))),
            at(10),
            "ended after the deadline"
        );
        assert_eq!(
            l.idle_deadline(t0, s(30, Some(31))),
            at(30),
            "began after it, ended later"
        );
        assert_eq!(
            l.idle_deadline(t0, s(1, Some(9))),
            at(120),
            "ended before the deadline"
        );
        assert_eq!(
            l.idle_deadline(at(20), s(1, Some(12))),
            at(140),
            "ended before the line began"
        );
    }

    #[test]
    fn stress_threshold_from_percent() {
        assert_eq!(Limits::stress_from_percent(100, 75), 75);
        assert_eq!(Limits::stress_from_percent(10, 75), 8, "rounded up");
        assert_eq!(
            Limits::stress_from_percent(3, 1),
            1,
            "never 0: an idle relay is not stressed"
        );
        assert_eq!(Limits::stress_from_percent(100, 100), 100);
    }
}
