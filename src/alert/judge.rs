//! Judging one round of a check against one of its conditions: the windows of loss and
//! latency, and what each kind of result says about each condition.
//!
//! A window judges nothing until it holds enough: a quarter of its length in time and a
//! minimum of samples (10 echoes for loss, 3 measurements for latency). Without that, the
//! first round after a start (one of two echoes lost) would read as 50 % loss.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::model::{Condition, Test};
use crate::probe::{Detail, Outcome};

/// Samples a windowed condition keeps. Every ICMP check keeps one (its loss window), so a
/// sample is kept small (16 bytes, not 32): its time in milliseconds after the window's base,
/// and its weight (echoes, or 1) in single precision.
#[derive(Debug, Default, Clone)]
pub struct Window {
    base: Option<Instant>,
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Milliseconds after `base`.
    at: u32,
    weight: f32,
    value: f64,
}

/// A mean over a window merges the rounds within this fraction of it into one sample.
const MEAN_SLICES: u32 = 12;

/// Bound on samples per window, whatever the interval: a 1 s ICMP check with 20 echoes over
/// 5 minutes would otherwise keep 6,000.
const MAX_SAMPLES: usize = 2048;
/// Echoes a loss window needs before it judges.
const MIN_ECHOES: f64 = 10.0;
/// Measurements a latency window needs before it judges.
const MIN_LATENCIES: usize = 3;
/// Sample times are moved to a new base before their offsets could overflow (~24 days).
const REBASE_AFTER_MS: u64 = 1 << 31;

impl Window {
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// How long before `now` a sample was taken.
    fn age(&self, now: Instant, sample: &Sample) -> Duration {
        self.base.map_or(Duration::ZERO, |base| {
            now.saturating_duration_since(base + Duration::from_millis(u64::from(sample.at)))
        })
    }

    /// `now` as an offset from the base, moving the base forward when the offset grows large.
    fn offset(&mut self, now: Instant) -> u32 {
        let base = *self.base.get_or_insert(now);
        let mut offset =
            u64::try_from(now.saturating_duration_since(base).as_millis()).unwrap_or(u64::MAX);
        if offset >= REBASE_AFTER_MS {
            let shift = self.samples.front().map_or(offset, |s| u64::from(s.at));
            self.base = Some(base + Duration::from_millis(shift));
            let shift = u32::try_from(shift).unwrap_or(u32::MAX);
            for sample in &mut self.samples {
                sample.at = sample.at.saturating_sub(shift);
            }
            offset = offset.saturating_sub(u64::from(shift));
        }
        u32::try_from(offset).unwrap_or(u32::MAX)
    }

    fn push(&mut self, now: Instant, over: Duration, value: f64, weight: f64) {
        let at = self.offset(now);
        self.samples.push_back(Sample {
            at,
            weight: weight as f32,
            value,
        });
        while self
            .samples
            .front()
            .is_some_and(|s| self.age(now, s) > over)
            || self.samples.len() > MAX_SAMPLES
        {
            self.samples.pop_front();
        }
    }

    /// Adds to a mean over the window: rounds within the same 1/12 of the window share one
    /// sample, so a loss window holds at most 13 samples whatever the interval.
    /// (A merged sample leaves the window with its first round: up to 1/12 early.)
    fn push_to_mean(&mut self, now: Instant, over: Duration, value: f64, weight: f64) {
        if let Some(&last) = self.samples.back() {
            let total = f64::from(last.weight) + weight;
            if self.age(now, &last) < over / MEAN_SLICES && total > 0.0 {
                let mean = (last.value * f64::from(last.weight) + value * weight) / total;
                if let Some(last) = self.samples.back_mut() {
                    last.value = mean;
                    last.weight = total as f32;
                }
                return;
            }
        }
        self.push(now, over, value, weight);
    }

    /// Whether the window has covered a quarter of its length since its oldest sample.
    fn covers(&self, now: Instant, over: Duration) -> bool {
        self.samples
            .front()
            .is_some_and(|s| self.age(now, s) >= over / 4)
    }

    fn weight(&self) -> f64 {
        self.samples.iter().map(|s| f64::from(s.weight)).sum()
    }

    fn weighted_mean(&self) -> Option<f64> {
        let (sum, weight) = self.samples.iter().fold((0.0, 0.0), |(sum, weight), s| {
            let w = f64::from(s.weight);
            (sum + s.value * w, weight + w)
        });
        (weight > 0.0).then(|| sum / weight)
    }

    fn percentile(&self, p: f64) -> Option<f64> {
        let mut values: Vec<f64> = self.samples.iter().map(|s| s.value).collect();
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len());
        Some(values[rank - 1])
    }
}

/// The verdict on one round: whether the condition held, and the value behind it for the
/// message (loss ratio, latency in seconds, days left). `None`: the round says nothing
/// about this condition (no certificate seen, no page compared).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub bad: bool,
    pub value: Option<f64>,
    pub note: Option<String>,
}

/// Judges one round of a check against `condition`; `window` is that condition's own.
pub fn judge(
    condition: &Condition,
    outcome: &Outcome,
    window: &mut Window,
    now: Instant,
    wall: SystemTime,
) -> Option<Verdict> {
    let verdict = |bad, value, note| Some(Verdict { bad, value, note });
    match (&condition.test, &outcome.detail) {
        (Test::Down, detail) => {
            // A forbidden phrase is a defacement, raised by its own condition.
            let defaced = matches!(detail, Detail::Http(h)
                    if h.content.as_ref().is_some_and(|c| !c.forbidden_found.is_empty()));
            verdict(
                outcome.failure.is_some() && !defaced,
                None,
                outcome.failure.map(|r| r.label().to_owned()),
            )
        }
        // A round without a single reply is the down condition's business: counted here
        // too, an outage would leave a "packet loss" alert behind for the whole window
        // after the link came back.
        (Test::Loss { above, over }, Detail::Icmp(stats))
            if stats.sent > 0 && stats.received() > 0 =>
        {
            window.push_to_mean(now, *over, stats.loss_ratio(), f64::from(stats.sent));
            if !window.covers(now, *over) || window.weight() < MIN_ECHOES {
                return None;
            }
            let loss = window.weighted_mean()?;
            verdict(loss > *above, Some(loss), None)
        }
        (
            Test::Slow {
                percentile,
                above,
                over,
            },
            detail,
        ) => {
            match detail {
                Detail::Icmp(stats) => {
                    for rtt in &stats.rtts {
                        window.push(now, *over, rtt.as_secs_f64(), 1.0);
                    }
                }
                Detail::Tcp { connect } => window.push(now, *over, connect.as_secs_f64(), 1.0),
                _ if outcome.success() => {
                    window.push(now, *over, outcome.duration.as_secs_f64(), 1.0)
                }
                _ => {}
            }
            if !window.covers(now, *over) || window.samples.len() < MIN_LATENCIES {
                return None;
            }
            let p = window.percentile(*percentile)?;
            verdict(p > above.as_secs_f64(), Some(p), None)
        }
        (Test::CertExpiry { within }, detail) => {
            let not_after = match detail {
                Detail::Http(h) => h.cert_not_after,
                Detail::Tls(t) => match (t.leaf_not_after, t.chain_not_after) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                },
                _ => None,
            }?;
            let left = not_after
                .duration_since(wall)
                .map_or(0.0, |d| d.as_secs_f64());
            verdict(left < within.as_secs_f64(), Some(left / 86400.0), None)
        }
        (Test::TlsGrade { below }, Detail::Tls(t)) => verdict(
            t.grade < *below,
            Some(t.grade.value()),
            Some(format!("{}: {}", t.grade.letter(), t.reasons.join(", "))),
        ),
        (Test::ContentChanged, Detail::Http(h)) => {
            let c = h.content.as_ref()?;
            verdict(c.changed, None, c.summary.clone())
        }
        (Test::ForbiddenPhrase, Detail::Http(h)) => {
            let c = h.content.as_ref()?;
            verdict(
                !c.forbidden_found.is_empty(),
                None,
                (!c.forbidden_found.is_empty()).then(|| c.forbidden_found.join(", ")),
            )
        }
        (Test::DnsChanged, Detail::Dns(d)) => {
            verdict(d.changed, None, d.changed.then(|| d.answers.join(", ")))
        }
        (Test::UnexpectedPort, Detail::Ports(p)) => {
            let open: Vec<String> = p.unexpected_open.iter().map(u16::to_string).collect();
            verdict(
                !open.is_empty(),
                Some(open.len() as f64),
                (!open.is_empty()).then(|| open.join(", ")),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::condition::{resolve, AlertsConfig};
    use crate::model::{AlertName, Kind};

    fn conditions(kind: Kind, yaml: &str) -> Vec<Condition> {
        let layer: AlertsConfig = crate::model::parse_test_yaml(yaml);
        resolve(kind, &[&layer]).expect("valid")
    }

    /// Sample times are offsets from a base; a window kept for months moves its base on and
    /// still ages its samples right.
    #[test]
    fn a_window_kept_for_months_keeps_its_times() {
        let over = Duration::from_secs(300);
        let day = Duration::from_secs(86_400);
        let start = Instant::now();
        let mut window = Window::default();
        // A round every 10 s for 20 minutes, on day 0, 30 and 60.
        for offset in [Duration::ZERO, 30 * day, 60 * day] {
            for n in 0..120u32 {
                let now = start + offset + Duration::from_secs(u64::from(n) * 10);
                window.push_to_mean(now, over, f64::from(n % 2), 1.0);
            }
        }
        let end = start + 60 * day + Duration::from_secs(1190);
        let oldest = window.samples.front().map(|s| window.age(end, s));
        // Merging into the newest sample does not drop the oldest: it may outstay by a slice.
        let slice = over / MEAN_SLICES;
        assert!(
            oldest.is_some_and(|age| age >= over - slice && age <= over + slice),
            "oldest {oldest:?}"
        );
        assert!(window.covers(end, over));
        assert!(
            window.samples.len() <= 13,
            "{} samples",
            window.samples.len()
        );
        let mean = window.weighted_mean().expect("samples");
        assert!((mean - 0.5).abs() < 0.05, "mean {mean}");
        let last = window.samples.back().map(|s| window.age(end, s));
        assert!(last.is_some_and(|age| age < slice), "newest {last:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn loss_and_latency_are_judged_over_their_window() {
        use crate::probe::icmp::IcmpStats;
        let loss = &conditions(Kind::Icmp, "loss: {above: 20%, over: 1m}\n")[1];
        let mut window = Window::default();
        let round = |received: usize| Outcome {
            duration: Duration::from_millis(10),
            failure: None,
            detail: Detail::Icmp(IcmpStats {
                sent: 10,
                rtts: vec![Duration::from_millis(20); received],
            }),
        };
        let mut verdicts = Vec::new();
        // 0 %, 50 %, 0 %, 0 %: the mean over the window is what counts, from the round that
        // makes the window cover a quarter of its length.
        for received in [10, 5, 10, 10] {
            tokio::time::advance(Duration::from_secs(20)).await;
            let v = judge(
                loss,
                &round(received),
                &mut window,
                Instant::now(),
                SystemTime::now(),
            );
            verdicts.push(v.map(|v| v.bad));
        }
        assert_eq!(verdicts, [None, Some(true), Some(false), Some(false)]);
        // A round without any reply is an outage, judged by `down`, not loss.
        assert_eq!(
            judge(
                loss,
                &round(0),
                &mut window,
                Instant::now(),
                SystemTime::now()
            ),
            None
        );
        // Rounds close together share a sample: a 1 s check keeps ~12, not 300, per window.
        let mut dense = Window::default();
        for i in 0..300 {
            tokio::time::advance(Duration::from_millis(200)).await;
            let received = if i % 2 == 0 { 10 } else { 8 };
            judge(
                loss,
                &round(received),
                &mut dense,
                Instant::now(),
                SystemTime::now(),
            );
        }
        assert!(dense.samples.len() <= 13, "{} samples", dense.samples.len());
        let mean = dense.weighted_mean().expect("mean");
        assert!((mean - 0.1).abs() < 0.01, "mean loss {mean}");
        // After the window passes, the lossy round is forgotten (and the window fills anew).
        tokio::time::advance(Duration::from_secs(61)).await;
        judge(
            loss,
            &round(10),
            &mut window,
            Instant::now(),
            SystemTime::now(),
        );
        tokio::time::advance(Duration::from_secs(20)).await;
        let v = judge(
            loss,
            &round(10),
            &mut window,
            Instant::now(),
            SystemTime::now(),
        )
        .expect("judged");
        assert_eq!(v.value, Some(0.0));

        let all = conditions(
            Kind::Icmp,
            "slow: {above: 30ms, percentile: 0.5, over: 1m}\n",
        );
        let slow = all
            .iter()
            .find(|c| c.name == AlertName::Slow)
            .expect("slow");
        let mut window = Window::default();
        let first = judge(
            slow,
            &round(10),
            &mut window,
            Instant::now(),
            SystemTime::now(),
        );
        assert_eq!(first, None, "one round is not enough");
        tokio::time::advance(Duration::from_secs(20)).await;
        let v = judge(
            slow,
            &round(10),
            &mut window,
            Instant::now(),
            SystemTime::now(),
        )
        .expect("judged");
        assert!(!v.bad, "20 ms median is under 30 ms");
        assert_eq!(v.value, Some(0.02));
    }

    /// The first rounds after a start: 1 of 2 echoes lost is not "50 % loss" until the
    /// window holds enough to say so.
    #[tokio::test(start_paused = true)]
    async fn a_window_without_enough_data_says_nothing() {
        use crate::probe::icmp::IcmpStats;
        let loss = &conditions(Kind::Icmp, "loss: {}\n")[1];
        let mut window = Window::default();
        let round = |received: usize| Outcome {
            duration: Duration::from_millis(10),
            failure: None,
            detail: Detail::Icmp(IcmpStats {
                sent: 2,
                rtts: vec![Duration::from_millis(1); received],
            }),
        };
        let mut first_verdict = None;
        for second in 1..=120 {
            tokio::time::advance(Duration::from_secs(1)).await;
            let received = if second == 1 { 1 } else { 2 };
            let v = judge(
                loss,
                &round(received),
                &mut window,
                Instant::now(),
                SystemTime::now(),
            );
            if let Some(v) = v {
                first_verdict = Some((second, v.bad));
                break;
            }
        }
        // A 5-minute window judges after 75 s; by then one lost echo is 0.7 %.
        assert_eq!(first_verdict, Some((76, false)));
    }
}
