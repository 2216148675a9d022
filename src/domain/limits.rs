//! What one party may use of the server: concurrent delivery streams and a request rate. The
//! configuration gives the defaults; an operator may set a party's own values (audited).

/// A party's limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartyLimits {
    /// Delivery streams open at once (per server process).
    pub max_streams: u32,
    /// Requests per second, sustained (per server process).
    pub requests_per_second: u32,
    /// Requests allowed at once above the sustained rate.
    pub burst: u32,
}

impl PartyLimits {
    /// The defaults when the configuration names none: generous for one well-behaved integration
    /// (one stream carries all of a party's subscriptions), tight enough that a runaway client
    /// cannot take the server from everyone else.
    pub const DEFAULT: PartyLimits = PartyLimits {
        max_streams: 16,
        requests_per_second: 100,
        burst: 200,
    };

    /// These limits with a party's own values where it has them.
    pub fn with(self, own: &LimitOverrides) -> PartyLimits {
        PartyLimits {
            max_streams: own.max_streams.unwrap_or(self.max_streams),
            requests_per_second: own.requests_per_second.unwrap_or(self.requests_per_second),
            burst: own.burst.unwrap_or(self.burst),
        }
    }
}

/// A party's own limits, set by an operator; `None` is the configured default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitOverrides {
    pub max_streams: Option<u32>,
    pub requests_per_second: Option<u32>,
    pub burst: Option<u32>,
}

/// A limit must allow something: zero would lock the party out, which is what suspension and
/// termination are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} must be at least 1 (to stop a party, suspend or terminate it)")]
pub struct ZeroLimit(pub &'static str);

impl LimitOverrides {
    /// Checks that every given value is at least 1.
    pub fn check(&self) -> Result<(), ZeroLimit> {
        for (name, value) in [
            ("max_streams", self.max_streams),
            ("requests_per_second", self.requests_per_second),
            ("burst", self.burst),
        ] {
            if value == Some(0) {
                return Err(ZeroLimit(name));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partys_own_values_replace_only_the_defaults_they_name() {
        let own = LimitOverrides {
            max_streams: Some(2),
            ..LimitOverrides::default()
        };
        assert_eq!(
            PartyLimits::DEFAULT.with(&own),
            PartyLimits {
                max_streams: 2,
                ..PartyLimits::DEFAULT
            }
        );
        assert_eq!(
            PartyLimits::DEFAULT.with(&LimitOverrides::default()),
            PartyLimits::DEFAULT
        );
    }

    #[test]
    fn zero_is_refused() {
        let zero = LimitOverrides {
            burst: Some(0),
            ..LimitOverrides::default()
        };
        assert_eq!(zero.check(), Err(ZeroLimit("burst")));
        assert_eq!(LimitOverrides::default().check(), Ok(()));
    }
}
