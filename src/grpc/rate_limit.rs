//! Each party's request rate: a token bucket per party (governor's GCRA), sized by the party's own
//! limits or the configured defaults. A call over the rate gets RESOURCE_EXHAUSTED RATE_LIMITED
//! with a RetryInfo delay and does not reach its service. Operators' calls (the admin API) and
//! the open paths (health, reflection) carry no party and are not counted.
//!
//! The buckets are per process: with several replicas a party may make its rate at each.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::domain::limits::PartyLimits;
use crate::identity::PartyPrincipal;

/// Every party's bucket in this process.
#[derive(Debug)]
pub struct RateLimits {
    defaults: PartyLimits,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: (u32, u32),
    limiter: Arc<DefaultDirectRateLimiter>,
}

impl RateLimits {
    pub fn new(defaults: PartyLimits) -> Self {
        Self {
            defaults,
            buckets: Mutex::default(),
        }
    }

    /// The limits in force for `party`.
    pub fn limits_of(&self, party: &PartyPrincipal) -> PartyLimits {
        self.defaults.with(&party.limits)
    }

    /// Takes one request from the party's bucket, or says how long until one is there. A bucket
    /// whose rate changed (an operator set the party's limits) starts afresh at the new rate.
    pub fn take(&self, party: &PartyPrincipal) -> Result<(), (PartyLimits, Duration)> {
        let limits = self.limits_of(party);
        let rate = (limits.requests_per_second, limits.burst);
        let limiter = {
            let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            match buckets.get_mut(&party.party_id) {
                // Every call after the party's first: no allocation on this path.
                Some(bucket) if bucket.rate == rate => Arc::clone(&bucket.limiter),
                Some(bucket) => {
                    *bucket = Bucket::new(rate);
                    Arc::clone(&bucket.limiter)
                }
                None => {
                    let bucket = Bucket::new(rate);
                    let limiter = Arc::clone(&bucket.limiter);
                    buckets.insert(party.party_id.clone(), bucket);
                    limiter
                }
            }
        };
        limiter
            .check()
            .map_err(|not_until| (limits, not_until.wait_time_from(DefaultClock::default().now())))
    }
}

impl Bucket {
    fn new((per_second, burst): (u32, u32)) -> Self {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(at_least_one(per_second)).allow_burst(at_least_one(burst));
        Self {
            rate: (per_second, burst),
            limiter: Arc::new(RateLimiter::direct(quota)),
        }
    }
}

/// Checks every party call against its party's rate; sits inside the identity layer (which puts
/// the party into the request) and inside the metrics layer (which counts the refusals).
#[derive(Debug, Clone)]
pub struct RateLimitLayer {
    limits: Arc<RateLimits>,
}

impl RateLimitLayer {
    pub fn new(limits: Arc<RateLimits>) -> Self {
        Self { limits }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limits: Arc::clone(&self.limits),
        }
    }
}

/// The service [`RateLimitLayer`] wraps around a listener's routes.
#[derive(Debug, Clone)]
pub struct RateLimitService<S> {
    inner: S,
    limits: Arc<RateLimits>,
}

impl<S, B> tower::Service<http::Request<B>> for RateLimitService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let refused = req
            .extensions()
            .get::<PartyPrincipal>()
            .and_then(|party| self.limits.take(party).err());
        match refused {
            Some((limits, retry_after)) => {
                let status = crate::grpc::status::rate_limited(limits, retry_after);
                Box::pin(async move { Ok(status.into_http()) })
            }
            None => Box::pin(self.inner.call(req)),
        }
    }
}
