//! Health states and the threshold logic that moves an endpoint between them.

use serde::{Deserialize, Serialize};

/// Where an endpoint stands, as shown in the report and in change events.
///
/// Active checks move an endpoint between `Unknown`, `Healthy` and `Unhealthy`. The two
/// others override them: `Ejected` while the endpoint's circuit breaker is open (passive
/// health), `Draining` while an operator drains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    /// Not checked yet, or no active check is configured. Receives traffic: an endpoint is
    /// trusted until a check or its breaker says otherwise.
    Unknown,
    /// The last `healthy_threshold` checks passed (or the first check did).
    Healthy,
    /// The last `unhealthy_threshold` checks failed. Receives no traffic unless the service is in
    /// panic mode.
    Unhealthy,
    /// The endpoint's circuit breaker is open. Receives no traffic until the breaker half-opens.
    Ejected,
    /// Taken out of rotation by [`Registry::set_draining`](crate::Registry::set_draining):
    /// in-flight calls finish, new calls go elsewhere (even in panic mode).
    Draining,
}

impl HealthState {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Healthy => 1,
            Self::Unhealthy => 2,
            Self::Ejected => 3,
            Self::Draining => 4,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Healthy,
            2 => Self::Unhealthy,
            3 => Self::Ejected,
            4 => Self::Draining,
            _ => Self::Unknown,
        }
    }

    /// Whether the state takes new calls outside panic mode.
    pub fn is_eligible(self) -> bool {
        matches!(self, Self::Unknown | Self::Healthy)
    }
}

/// Consecutive-result bookkeeping for one endpoint's active checks (Consul's and Envoy's
/// healthy/unhealthy thresholds): one blip never flips the state.
///
/// - `Unknown` becomes `Healthy` on the first success (a new endpoint should not wait
///   `healthy_threshold` intervals before it counts), and `Unhealthy` after `unhealthy`
///   consecutive failures.
/// - `Healthy` becomes `Unhealthy` after `unhealthy` consecutive failures.
/// - `Unhealthy` becomes `Healthy` after `healthy` consecutive successes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tracker {
    state: HealthState,
    healthy: u32,
    unhealthy: u32,
    successes: u32,
    failures: u32,
}

impl Tracker {
    /// Thresholds must be at least 1 (the config validates this).
    pub(crate) fn new(healthy: u32, unhealthy: u32) -> Self {
        Self {
            state: HealthState::Unknown,
            healthy: healthy.max(1),
            unhealthy: unhealthy.max(1),
            successes: 0,
            failures: 0,
        }
    }

    pub(crate) fn state(&self) -> HealthState {
        self.state
    }

    pub(crate) fn consecutive_successes(&self) -> u32 {
        self.successes
    }

    pub(crate) fn consecutive_failures(&self) -> u32 {
        self.failures
    }

    /// Records one check result; returns the new state when it changed.
    pub(crate) fn record(&mut self, passed: bool) -> Option<HealthState> {
        if passed {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
        } else {
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        }
        let next = match (self.state, passed) {
            (HealthState::Unknown, true) => HealthState::Healthy,
            (HealthState::Unhealthy, true) if self.successes >= self.healthy => {
                HealthState::Healthy
            }
            (HealthState::Unknown | HealthState::Healthy, false)
                if self.failures >= self.unhealthy =>
            {
                HealthState::Unhealthy
            }
            (state, _) => state,
        };
        (next != self.state).then(|| {
            self.state = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn thresholds() {
        let mut t = Tracker::new(2, 3);
        assert_eq!(t.record(true), Some(HealthState::Healthy));
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(HealthState::Unhealthy));
        assert_eq!(t.consecutive_failures(), 3);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(HealthState::Healthy));
        assert_eq!(t.consecutive_successes(), 2);
    }

    #[test]
    fn unknown_goes_unhealthy_after_threshold() {
        let mut t = Tracker::new(2, 2);
        assert_eq!(t.record(false), None);
        assert_eq!(t.state(), HealthState::Unknown);
        assert_eq!(t.record(false), Some(HealthState::Unhealthy));
    }

    #[test]
    fn state_codes_round_trip() {
        for s in [
            HealthState::Unknown,
            HealthState::Healthy,
            HealthState::Unhealthy,
            HealthState::Ejected,
            HealthState::Draining,
        ] {
            assert_eq!(HealthState::from_u8(s.to_u8()), s);
        }
    }

    proptest! {
        /// A change to Unhealthy needs `unhealthy` failures in a row, a change back to Healthy
        /// needs `healthy` successes in a row (after the first check), whatever the sequence.
        #[test]
        fn changes_only_after_consecutive_runs(
            healthy in 1u32..5,
            unhealthy in 1u32..5,
            results in proptest::collection::vec(any::<bool>(), 0..200),
        ) {
            let mut t = Tracker::new(healthy, unhealthy);
            let mut run = 0u32;
            let mut last = None;
            for &r in &results {
                run = if last == Some(r) { run + 1 } else { 1 };
                last = Some(r);
                let before = t.state();
                if let Some(now) = t.record(r) {
                    match now {
                        HealthState::Unhealthy => prop_assert!(!r && run >= unhealthy),
                        HealthState::Healthy => prop_assert!(
                            r && (before == HealthState::Unknown || run >= healthy)
                        ),
                        other => prop_assert!(false, "unexpected state {other:?}"),
                    }
                }
                prop_assert!(matches!(
                    t.state(),
                    HealthState::Unknown | HealthState::Healthy | HealthState::Unhealthy
                ));
            }
        }

        /// With both thresholds at 2 or more, strictly alternating results never flap.
        #[test]
        fn alternating_results_do_not_flap(healthy in 2u32..5, unhealthy in 2u32..5, n in 0usize..100) {
            let mut t = Tracker::new(healthy, unhealthy);
            t.record(true);
            for i in 0..n {
                prop_assert_eq!(t.record(i % 2 == 1), None);
            }
        }
    }
}
