//! A per-client limit on changes: a token bucket per client address (governor's GCRA) for
//! every POST, PATCH and DELETE except the SDK routes (flag events and OFREP, which services
//! call at their own pace), signing in included, so a runaway script or a token guesser cannot
//! flood the log, the outbox and NATS. Beyond it: 429 with `Retry-After`.
//!
//! The client is the connection's peer address: behind a proxy every client is the proxy, so
//! raise the limit there (`TOWER_RATE_LIMIT`) or turn it off.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// How many changes a client may make: `per_second` on average, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// The sustained rate.
    pub per_second: NonZeroU32,
    /// How many may come at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl RateLimit {
    /// The default: 50 changes a second per client, 500 at once (an operator's script at full
    /// speed is well under it; a flood is not).
    pub const DEFAULT: RateLimit = RateLimit::per_second(50);

    /// `n` a second, with a burst of ten times that.
    pub const fn per_second(n: u32) -> Self {
        let n = if n == 0 { 1 } else { n };
        let burst = n.saturating_mul(10);
        match (NonZeroU32::new(n), NonZeroU32::new(burst)) {
            (Some(per_second), Some(burst)) => Self { per_second, burst },
            _ => unreachable!(),
        }
    }
}

/// The buckets of one server.
pub(crate) struct Limiter {
    buckets: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("clients", &self.buckets.len()).finish()
    }
}

impl Limiter {
    pub(crate) fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_second(limit.per_second).allow_burst(limit.burst);
        Self { buckets: DefaultKeyedRateLimiter::hashmap(quota), clock: DefaultClock::default() }
    }

    /// Takes a token for `client`, or says how long until one is free.
    pub(crate) fn check(&self, client: IpAddr) -> Result<(), Duration> {
        self.buckets
            .check_key(&client)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets clients whose buckets are full again (they would start afresh anyway), so the
    /// table holds the recently active clients, not every address ever seen.
    pub(crate) fn forget_idle(&self) {
        self.buckets.retain_recent();
        self.buckets.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_not_held_up() {
        let limiter = Limiter::new(RateLimit::per_second(2));
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for i in 0..20 {
            assert!(limiter.check(a).is_ok(), "burst {i}");
        }
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(500), "{wait:?}");
        assert!(limiter.check(b).is_ok(), "another client has its own bucket");
        limiter.forget_idle();
        assert!(limiter.check(a).is_err(), "a busy client is remembered");
    }
}
