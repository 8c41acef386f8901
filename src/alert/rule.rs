//! The life of one alert: a pure state machine over rounds (bad or good), with hysteresis and
//! flapping. No I/O and no clock reads: `now` is passed in, so the tests drive it with
//! tokio's paused clock and every sequence is repeatable.
//!
//! - Fires after `fire_after` consecutive bad rounds; resolves after `resolve_after`
//!   consecutive good ones, and no sooner than `keep_firing_for` after its last bad round:
//!   a link that fails again within that time goes on with the same incident, so a link cut
//!   and restored every few seconds is one alert, not a firing and a resolution each time.
//! - Flapping: when the condition changes `flap_threshold` times within `flap_window`, the
//!   alert fires (or stays firing) marked flapping: one alert and one notice, not a storm.
//!   Once the link settles it resolves as any other alert.

use std::collections::VecDeque;

use tokio::time::Instant;

pub use crate::model::RuleParams;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Inactive,
    Pending,
    Firing,
}

/// What a round changed, for the engine to record and notify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Fired { since: Instant, flapping: bool },
    FlappingStarted,
    Resolved { since: Instant },
}

#[derive(Debug, Clone)]
pub struct AlertRule {
    params: RuleParams,
    phase: Phase,
    /// First bad round of the current episode.
    since: Option<Instant>,
    bad_streak: u32,
    good_streak: u32,
    last_bad: Option<bool>,
    /// When the condition last held.
    last_bad_at: Option<Instant>,
    /// When the condition changed, within the flap window.
    changes: VecDeque<Instant>,
    flapping: bool,
}

impl AlertRule {
    pub fn new(params: RuleParams) -> AlertRule {
        AlertRule {
            params,
            phase: Phase::Inactive,
            since: None,
            bad_streak: 0,
            good_streak: 0,
            last_bad: None,
            last_bad_at: None,
            changes: VecDeque::new(),
            flapping: false,
        }
    }

    /// A rule that has seen the condition not hold, and nothing else worth keeping: the engine
    /// forgets such a rule and makes it again from this when a round next says something.
    pub fn quiet(params: RuleParams) -> AlertRule {
        AlertRule {
            last_bad: Some(false),
            ..AlertRule::new(params)
        }
    }

    /// Whether this rule holds no more than [`AlertRule::quiet`] does.
    pub fn is_quiet(&self) -> bool {
        self.phase == Phase::Inactive
            && self.last_bad == Some(false)
            && self.changes.is_empty()
            && !self.flapping
    }

    /// An alert that was firing when the agent stopped: it goes on firing (no second
    /// "fired") and resolves after `resolve_after` good rounds as usual.
    pub fn restored_firing(params: RuleParams, since: Instant, flapping: bool) -> AlertRule {
        AlertRule {
            phase: Phase::Firing,
            since: Some(since),
            bad_streak: params.fire_after,
            last_bad: Some(true),
            flapping,
            ..AlertRule::new(params)
        }
    }

    /// New thresholds from a reload; the episode in progress goes on.
    pub fn set_params(&mut self, params: RuleParams) {
        self.params = params;
    }

    pub fn params(&self) -> RuleParams {
        self.params
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn flapping(&self) -> bool {
        self.flapping
    }

    /// Firing, but good again: waiting out `resolve_after` or `keep_firing_for`.
    pub fn recovering(&self) -> bool {
        self.phase == Phase::Firing && self.good_streak > 0
    }

    /// When the current episode began (its first bad round), while pending or firing.
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Feeds one round: `bad` is whether the condition held.
    pub fn observe(&mut self, bad: bool, now: Instant) -> Option<Transition> {
        if self.last_bad.is_some_and(|last| last != bad) {
            self.changes.push_back(now);
        }
        self.last_bad = Some(bad);
        while self
            .changes
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) > self.params.flap_window)
        {
            self.changes.pop_front();
        }
        let flapping_now = self.changes.len() >= self.params.flap_threshold as usize;
        if bad {
            self.bad_streak += 1;
            self.good_streak = 0;
            self.since.get_or_insert(now);
            self.last_bad_at = Some(now);
        } else {
            self.good_streak += 1;
            self.bad_streak = 0;
        }
        match self.phase {
            Phase::Inactive | Phase::Pending => {
                if self.bad_streak >= self.params.fire_after || flapping_now {
                    self.phase = Phase::Firing;
                    self.flapping = flapping_now;
                    let since = *self.since.get_or_insert(now);
                    return Some(Transition::Fired {
                        since,
                        flapping: flapping_now,
                    });
                }
                if bad {
                    self.phase = Phase::Pending;
                } else {
                    // Recovered before firing: the episode is forgotten.
                    self.phase = Phase::Inactive;
                    self.since = None;
                }
                None
            }
            Phase::Firing => {
                if flapping_now && !self.flapping {
                    self.flapping = true;
                    return Some(Transition::FlappingStarted);
                }
                let kept = self.last_bad_at.is_some_and(|t| {
                    now.saturating_duration_since(t) < self.params.keep_firing_for
                });
                if !bad && self.good_streak >= self.params.resolve_after && !kept {
                    let since = self.since.take().unwrap_or(now);
                    self.phase = Phase::Inactive;
                    self.flapping = false;
                    // Settled: flapping again takes changes seen from now on.
                    self.changes.clear();
                    return Some(Transition::Resolved { since });
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ROUND: Duration = Duration::from_secs(30);

    /// Runs `rounds` ('B' bad, 'G' good), one per `every` on the paused clock, and returns
    /// the transitions as letters: F fired, f fired flapping, P flapping started, R resolved.
    async fn run(params: RuleParams, every: Duration, rounds: &str) -> String {
        let mut rule = AlertRule::new(params);
        let mut out = String::new();
        for c in rounds.chars() {
            tokio::time::advance(every).await;
            match rule.observe(c == 'B', Instant::now()) {
                Some(Transition::Fired {
                    flapping: false, ..
                }) => out.push('F'),
                Some(Transition::Fired { flapping: true, .. }) => out.push('f'),
                Some(Transition::FlappingStarted) => out.push('P'),
                Some(Transition::Resolved { .. }) => out.push('R'),
                None => out.push('.'),
            }
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn sequences_of_rounds_give_these_notifications() {
        // Fire after 3 bad, resolve after 2 good and 1 minute after the last bad round,
        // flapping at 6 changes in 10 minutes; one round every 30 s.
        let p = RuleParams::default();
        let table = [
            ("GGGG", "...."),
            ("BB", ".."),                 // pending, never fires
            ("BBB", "..F"),               // fires on the third bad round
            ("BBBBBB", "..F..."),         // one notification, not one per round
            ("BBBGG", "..F.R"),           // resolves after two good rounds (1 minute)
            ("BBBGBGG", "..F...R"),       // a single good round does not resolve
            ("BBGBBGBB", "........"),     // never three in a row, few changes: nothing
            ("BGBGBGBGBG", "......f..."), // flapping fires once, marked flapping
            ("BBBGBGBGBG", "..F.....P."), // a firing alert that starts flapping says so once
            // Once the link settles, a flapping alert resolves like any other.
            ("BBBGBGBGBGGGGGGG", "..F.....P.R....."),
        ];
        let mut mismatches = Vec::new();
        for (rounds, expected) in table {
            let got = run(p, ROUND, rounds).await;
            if got != expected {
                mismatches.push(format!("{rounds}: expected {expected}, got {got}"));
            }
        }
        assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    }

    /// The engine forgets a quiet rule and makes it again with [`AlertRule::quiet`]: after
    /// a good round, that is the same as keeping it, for any rounds that follow.
    #[tokio::test(start_paused = true)]
    async fn a_forgotten_quiet_rule_judges_as_the_kept_one_would() {
        let p = RuleParams::default();
        for rounds in [
            "GBGBGBGBGBGG",
            "GBBBGBGBGBGGGGGGBGBG",
            "GGBBGBBGBBGGGGGGGGBBB",
        ] {
            let mut kept = AlertRule::new(p);
            let mut forgetful = AlertRule::new(p);
            let mut forgotten = 0;
            for c in rounds.chars() {
                tokio::time::advance(ROUND).await;
                let now = Instant::now();
                let expected = kept.observe(c == 'B', now);
                assert_eq!(forgetful.observe(c == 'B', now), expected, "{rounds}");
                if forgetful.is_quiet() {
                    forgetful = AlertRule::quiet(p);
                    forgotten += 1;
                }
            }
            assert!(forgotten > 0, "{rounds}: the rule was never quiet");
        }
    }

    /// A link cut and restored every 7 s for 3 minutes, probed every 2 s: each outage and
    /// each recovery lasts 3–4 rounds. One alert, one flapping notice, one resolution a
    /// minute after it settles; never a resolution in between.
    #[tokio::test(start_paused = true)]
    async fn a_link_flapping_for_minutes_is_one_incident() {
        let every = Duration::from_secs(2);
        let flapping: String = "BBBBGGG".repeat(13);
        let rounds = format!("{flapping}{}", "G".repeat(45));
        let got = run(RuleParams::default(), every, &rounds).await;
        let letters: String = got.chars().filter(|c| *c != '.').collect();
        assert_eq!(letters, "FPR", "{got}");
        let resolved = got.find('R').expect("resolved");
        let last_bad = rounds.rfind('B').expect("bad round");
        let after = (resolved - last_bad) as u64 * every.as_secs();
        assert!(
            (60..=64).contains(&after),
            "resolved {after} s after the last bad round"
        );
        // Shorter hold, more changes needed: both are settings.
        let quick = RuleParams {
            keep_firing_for: Duration::ZERO,
            flap_threshold: 100,
            ..RuleParams::default()
        };
        let storm = run(quick, every, &rounds).await;
        assert_eq!(storm.matches('F').count(), 13, "without the hold: {storm}");
    }

    #[tokio::test(start_paused = true)]
    async fn since_is_the_first_bad_round() {
        let mut rule = AlertRule::new(RuleParams::default());
        tokio::time::advance(ROUND).await;
        let first = Instant::now();
        assert_eq!(rule.observe(true, first), None);
        tokio::time::advance(ROUND).await;
        rule.observe(true, Instant::now());
        tokio::time::advance(ROUND).await;
        assert_eq!(
            rule.observe(true, Instant::now()),
            Some(Transition::Fired {
                since: first,
                flapping: false
            })
        );
        assert_eq!(rule.since(), Some(first));
        assert_eq!(rule.phase(), Phase::Firing);
    }
}
