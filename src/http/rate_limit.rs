//! Per-client token buckets: each token (or, for requests without a valid token, each
//! client address) may make `per_second` requests a second on average, in bursts of up to
//! `burst`. In memory, per process: a cap on abuse, not an accounting.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Whose requests a bucket counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    Token(i64),
    Address(IpAddr),
}

impl Client {
    fn kind(&self) -> &'static str {
        match self {
            Client::Token(_) => "token",
            Client::Address(_) => "address",
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<Client, Bucket>>,
}

/// Buckets kept before full ones are dropped.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// `per_second` 0 turns the limiter off.
    pub fn new(per_second: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_second: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn off() -> RateLimiter {
        RateLimiter::new(0, 0)
    }

    pub fn is_on(&self) -> bool {
        self.per_second > 0.0
    }

    /// Takes one request from `client`'s bucket, or says how many whole seconds to wait.
    pub fn check(&self, client: Client) -> Result<(), u64> {
        self.check_at(client, Instant::now())
    }

    fn check_at(&self, client: Client, now: Instant) -> Result<(), u64> {
        if !self.is_on() {
            return Ok(());
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= PRUNE_AT {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(client).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            drop(buckets);
            metrics::counter!("ordo_rate_limited_total", "client" => client.kind()).increment(1);
            Err(wait.ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(2, 3);
        let t0 = Instant::now();
        let me = Client::Token(1);
        for _ in 0..3 {
            assert_eq!(limiter.check_at(me, t0), Ok(()));
        }
        assert_eq!(limiter.check_at(me, t0), Err(1));
        // Others have their own buckets.
        assert_eq!(limiter.check_at(Client::Token(2), t0), Ok(()));
        // Two a second come back.
        let later = t0 + Duration::from_millis(500);
        assert_eq!(limiter.check_at(me, later), Ok(()));
        assert_eq!(limiter.check_at(me, later), Err(1));
    }

    #[test]
    fn off_lets_everything_through() {
        let limiter = RateLimiter::off();
        for _ in 0..1000 {
            assert_eq!(limiter.check(Client::Token(1)), Ok(()));
        }
    }
}
