//! One rule's state machine: `ok` → (`pending`) → `firing` → `ok`.
//!
//! Each evaluation gives the rule a value (or `None`: no data, e.g. no request in the window) and
//! the rule's condition (`above` / `below` its threshold) is checked on it; no data never meets a
//! condition. A rule whose condition holds becomes *pending*; once it has held for `for` without
//! interruption it *fires*. A firing rule resolves at the first evaluation where the condition no
//! longer holds (as Prometheus does). Only the two changes `ok → firing` and `firing → ok` are
//! notifications; `pending` is visible in `GET /admin/alerts` but never POSTed.
//!
//! Times are passed in (`Instant` for durations, `SystemTime` for what is shown), so tests drive
//! the machine exactly.

use std::time::{Instant, SystemTime};

use orchestra_config::AlertRule;

/// Where a rule stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The condition does not hold.
    Ok,
    /// The condition holds, for less than `for` so far.
    Pending {
        /// When it started to hold.
        since: Instant,
        /// The same moment, as wall-clock time.
        since_wall: SystemTime,
    },
    /// The condition has held for at least `for`.
    Firing,
}

/// A change of state to notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// `ok → firing`.
    Fired,
    /// `firing → ok`.
    Resolved,
}

/// One rule and its state.
#[derive(Debug)]
pub struct RuleState {
    /// The rule as compiled.
    pub rule: AlertRule,
    /// Where it stands.
    pub phase: Phase,
    /// When the current state (`ok` or `firing`) began.
    pub since: SystemTime,
    /// The value of the last evaluation (`None`: no data or not evaluated yet).
    pub last_value: Option<f64>,
    /// When it was last evaluated.
    pub last_evaluated: Option<SystemTime>,
}

impl RuleState {
    /// A new rule, `ok` since `wall`.
    pub fn new(rule: AlertRule, wall: SystemTime) -> Self {
        RuleState {
            rule,
            phase: Phase::Ok,
            since: wall,
            last_value: None,
            last_evaluated: None,
        }
    }

    /// True while firing.
    pub fn is_firing(&self) -> bool {
        self.phase == Phase::Firing
    }

    /// Applies one evaluation's value; returns the change to notify, if any.
    pub fn step(&mut self, value: Option<f64>, now: Instant, wall: SystemTime) -> Option<Change> {
        self.last_value = value;
        self.last_evaluated = Some(wall);
        let holds = value.is_some_and(|v| self.rule.comparison.holds(v, self.rule.threshold));
        match (self.phase, holds) {
            (Phase::Ok, false) => None,
            (Phase::Ok, true) => {
                self.phase = Phase::Pending {
                    since: now,
                    since_wall: wall,
                };
                self.fire_if_due(now, wall)
            }
            (Phase::Pending { .. }, true) => self.fire_if_due(now, wall),
            (Phase::Pending { .. }, false) => {
                self.phase = Phase::Ok;
                None
            }
            (Phase::Firing, true) => None,
            (Phase::Firing, false) => {
                self.phase = Phase::Ok;
                self.since = wall;
                Some(Change::Resolved)
            }
        }
    }

    fn fire_if_due(&mut self, now: Instant, wall: SystemTime) -> Option<Change> {
        let Phase::Pending { since, .. } = self.phase else {
            return None;
        };
        if now.saturating_duration_since(since) >= self.rule.for_ {
            self.phase = Phase::Firing;
            self.since = wall;
            Some(Change::Fired)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn rule(for_: &str) -> AlertRule {
        let text = format!(
            "[[upstreams]]\nname = \"u\"\ntargets = [{{ addr = \"127.0.0.1:1\" }}]\n\
             [[routes]]\nname = \"r\"\nupstream = \"u\"\n\
             [[alerts]]\nname = \"a\"\nmetric = \"p99\"\nseries = \"route:r:total\"\n\
             above = \"100ms\"\nfor = \"{for_}\"\n"
        );
        let s = orchestra_config::from_str(&text, "t.toml").expect("config");
        s.alerts[0].clone()
    }

    #[test]
    fn fires_after_for_and_resolves_at_once() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let s = Duration::from_secs(1);
        let mut r = RuleState::new(rule("2s"), w0);
        assert_eq!(r.step(Some(50_000.0), t0, w0), None);
        assert_eq!(r.phase, Phase::Ok);
        assert_eq!(r.step(Some(150_000.0), t0 + s, w0 + s), None);
        assert!(matches!(r.phase, Phase::Pending { .. }));
        assert_eq!(r.step(Some(150_000.0), t0 + 2 * s, w0 + 2 * s), None);
        assert_eq!(
            r.step(Some(150_000.0), t0 + 3 * s, w0 + 3 * s),
            Some(Change::Fired)
        );
        assert_eq!(r.since, w0 + 3 * s);
        assert_eq!(r.step(Some(150_000.0), t0 + 4 * s, w0 + 4 * s), None);
        assert_eq!(r.step(None, t0 + 5 * s, w0 + 5 * s), Some(Change::Resolved));
        assert_eq!(r.phase, Phase::Ok);
        assert_eq!(r.since, w0 + 5 * s);
        assert_eq!(r.last_value, None);
    }

    #[test]
    fn an_interruption_restarts_the_pending_time() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH;
        let s = Duration::from_secs(1);
        let mut r = RuleState::new(rule("2s"), w0);
        r.step(Some(200_000.0), t0, w0);
        r.step(Some(200_000.0), t0 + s, w0 + s);
        assert_eq!(r.step(Some(10.0), t0 + 2 * s, w0 + 2 * s), None);
        assert_eq!(r.step(Some(200_000.0), t0 + 3 * s, w0 + 3 * s), None);
        assert_eq!(r.step(Some(200_000.0), t0 + 4 * s, w0 + 4 * s), None);
        assert_eq!(
            r.step(Some(200_000.0), t0 + 5 * s, w0 + 5 * s),
            Some(Change::Fired)
        );
    }

    #[test]
    fn zero_for_fires_at_the_first_evaluation() {
        let t0 = Instant::now();
        let w0 = SystemTime::UNIX_EPOCH;
        let mut r = RuleState::new(rule("0s"), w0);
        assert_eq!(r.step(Some(100_001.0), t0, w0), Some(Change::Fired));
        assert_eq!(
            r.step(Some(100_000.0), t0, w0),
            Some(Change::Resolved),
            "not above"
        );
    }
}
