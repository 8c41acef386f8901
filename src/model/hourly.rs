//! Hourly aggregates: what one check did in one hour, the stuff availability reports are
//! made of. The state adds rounds up and hands the deltas to the journal every minute; the
//! store adds them to the hour's row. A latency [`Sketch`] rides along for the p95.

/// Where a check sits, as reports group it. Carried with every delta (and its row rewritten
/// when it changed) so a report still names a check that a later reload removed.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckPlace {
    pub check_key: String,
    pub target: String,
    pub target_name: Option<String>,
    pub kind: String,
    /// The area path from the root, as (code, name) pairs.
    pub areas: Vec<(String, String)>,
    pub system: Option<String>,
    pub owner: Option<String>,
}

/// One check's rounds in one hour (a delta to add, or a whole hour read back). Times are
/// milliseconds: each round stands for one interval of the check.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HourStats {
    pub rounds: u32,
    pub failures: u32,
    pub observed_ms: i64,
    /// Failed rounds outside maintenance.
    pub down_ms: i64,
    pub maintenance_ms: i64,
    /// Failed rounds inside a maintenance window.
    pub maintenance_down_ms: i64,
    pub latency_sum: f64,
    pub latency_count: u32,
    pub sketch: Sketch,
}

impl HourStats {
    pub fn add(&mut self, other: &HourStats) {
        self.rounds += other.rounds;
        self.failures += other.failures;
        self.observed_ms += other.observed_ms;
        self.down_ms += other.down_ms;
        self.maintenance_ms += other.maintenance_ms;
        self.maintenance_down_ms += other.maintenance_down_ms;
        self.latency_sum += other.latency_sum;
        self.latency_count += other.latency_count;
        self.sketch.merge(&other.sketch);
    }

    /// One round: `interval` is the time it stands for.
    pub fn round(
        &mut self,
        interval_ms: i64,
        failed: bool,
        maintenance: bool,
        latency: Option<f64>,
    ) {
        self.rounds += 1;
        self.observed_ms += interval_ms;
        if failed {
            self.failures += 1;
        }
        match (maintenance, failed) {
            (true, true) => {
                self.maintenance_ms += interval_ms;
                self.maintenance_down_ms += interval_ms;
            }
            (true, false) => self.maintenance_ms += interval_ms,
            (false, true) => self.down_ms += interval_ms,
            (false, false) => {}
        }
        if let Some(seconds) = latency.filter(|s| s.is_finite() && *s >= 0.0) {
            self.latency_sum += seconds;
            self.latency_count += 1;
            self.sketch.add(seconds);
        }
    }
}

/// A delta for one check's hour, as the journal writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct HourDelta {
    pub place: std::sync::Arc<CheckPlace>,
    /// Unix seconds of the hour's start.
    pub hour: i64,
    pub stats: HourStats,
}

/// Latencies in logarithmic buckets, four to a doubling from 100 µs: a quantile read from it
/// is within 10 % of the true one, and an hour takes a few dozen bytes however many rounds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sketch {
    /// (bucket, count), sorted by bucket.
    buckets: Vec<(u8, u32)>,
}

const SMALLEST: f64 = 1e-4;
const PER_DOUBLING: f64 = 4.0;

impl Sketch {
    fn bucket(seconds: f64) -> u8 {
        if seconds <= SMALLEST {
            return 0;
        }
        let index = ((seconds / SMALLEST).log2() * PER_DOUBLING).ceil();
        // 255 buckets reach 2^63 × 100 µs: anything longer is the last one.
        index.min(255.0) as u8
    }

    /// The geometric middle of a bucket: bucket `b` holds (2^((b-1)/4), 2^(b/4)] × 100 µs.
    fn value(bucket: u8) -> f64 {
        if bucket == 0 {
            return SMALLEST;
        }
        SMALLEST * ((f64::from(bucket) - 0.5) / PER_DOUBLING).exp2()
    }

    pub fn add(&mut self, seconds: f64) {
        let bucket = Sketch::bucket(seconds);
        match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (bucket, 1)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        for &(bucket, count) in &other.buckets {
            match self.buckets.binary_search_by_key(&bucket, |(b, _)| *b) {
                Ok(i) => self.buckets[i].1 += count,
                Err(i) => self.buckets.insert(i, (bucket, count)),
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// The `q` quantile (0..=1), `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(bucket, count) in &self.buckets {
            seen += u64::from(count);
            if seen >= rank {
                return Some(Sketch::value(bucket));
            }
        }
        self.buckets.last().map(|(b, _)| Sketch::value(*b))
    }

    /// Five bytes per bucket: its index and its count, little-endian.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.buckets.len() * 5);
        for &(bucket, count) in &self.buckets {
            out.push(bucket);
            out.extend_from_slice(&count.to_le_bytes());
        }
        out
    }

    /// Reads [`Sketch::to_bytes`]; a torn tail is ignored.
    pub fn from_bytes(bytes: &[u8]) -> Sketch {
        let mut sketch = Sketch::default();
        for chunk in bytes.chunks_exact(5) {
            let count = u32::from_le_bytes([chunk[1], chunk[2], chunk[3], chunk[4]]);
            sketch.merge(&Sketch {
                buckets: vec![(chunk[0], count)],
            });
        }
        sketch
    }
}

#[cfg(test)]
mod tests {
    use super::{HourStats, Sketch};

    #[test]
    fn quantiles_are_within_ten_percent() {
        let mut sketch = Sketch::default();
        // 1 ms … 1000 ms, one each: the p95 is 950 ms, the median 500 ms.
        for ms in 1..=1000 {
            sketch.add(f64::from(ms) / 1000.0);
        }
        for (q, truth) in [(0.95, 0.95), (0.5, 0.5), (0.01, 0.01)] {
            let got = sketch.quantile(q).expect("not empty");
            assert!((got / truth - 1.0).abs() < 0.1, "q{q}: {got} vs {truth}");
        }
        let back = Sketch::from_bytes(&sketch.to_bytes());
        assert_eq!(back, sketch);
        assert_eq!(Sketch::default().quantile(0.95), None);
        let mut tiny = Sketch::default();
        tiny.add(0.0);
        tiny.add(1e9);
        assert_eq!(tiny.count(), 2);
    }

    #[test]
    fn rounds_split_into_down_and_maintenance_time() {
        let mut hour = HourStats::default();
        hour.round(60_000, false, false, Some(0.01));
        hour.round(60_000, true, false, None);
        hour.round(60_000, true, true, None);
        hour.round(60_000, false, true, Some(0.03));
        assert_eq!(
            (hour.rounds, hour.failures, hour.observed_ms, hour.down_ms),
            (4, 2, 240_000, 60_000)
        );
        assert_eq!(
            (hour.maintenance_ms, hour.maintenance_down_ms),
            (120_000, 60_000)
        );
        assert_eq!(hour.latency_count, 2);
        assert!((hour.latency_sum - 0.04).abs() < 1e-12);
        let mut sum = HourStats::default();
        sum.add(&hour);
        sum.add(&hour);
        assert_eq!((sum.rounds, sum.sketch.count()), (8, 4));
    }
}
