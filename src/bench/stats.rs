//! Latency histogram: constant memory however many millions of samples a
//! run records, percentiles within 0.8% of the true value.
//!
//! Log-linear buckets in the manner of HdrHistogram: values below 256 ns are
//! counted exactly, every power of two above that is split into 128 equal
//! buckets. Recording is one `leading_zeros` and an increment, cheap enough
//! for every delivery; a `Vec` of samples would need gigabytes for the
//! standard runs.

/// Bits of precision: each power of two holds `1 << (SUB_BITS - 1)` buckets.
const SUB_BITS: u32 = 8;
const HALF: usize = 1 << (SUB_BITS - 1);
/// Enough buckets for any `u64`.
const BUCKETS: usize = (64 - SUB_BITS as usize + 2) * HALF;

#[derive(Clone, Debug)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    min: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Histogram {
    pub fn record(&mut self, value: u64) {
        self.counts[index(value)] += 1;
        self.total += 1;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds another event loop's samples.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.total += other.total;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    /// The largest sample (exact); 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The buckets holding samples: `(lowest, highest, count)`, in order,
    /// for drawing the distribution.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|&(_, &c)| c > 0)
            .map(|(i, &c)| {
                let lowest = if i == 0 { 0 } else { highest(i - 1) + 1 };
                (lowest, highest(i), c)
            })
    }

    /// The value at quantile `q` (0.5 for the median): the highest value of
    /// the bucket holding that sample, so never an understatement, and never
    /// above the true maximum. 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return highest(i).clamp(self.min, self.max);
            }
        }
        self.max
    }
}

fn index(value: u64) -> usize {
    let msb = 63 - (value | 1).leading_zeros();
    if msb < SUB_BITS {
        return value as usize;
    }
    // Shift the value down until it is in [HALF, 2 * HALF).
    let shift = msb - (SUB_BITS - 1);
    shift as usize * HALF + (value >> shift) as usize
}

/// The largest value that lands in bucket `i`.
fn highest(i: usize) -> u64 {
    if i < 2 * HALF {
        return i as u64;
    }
    let shift = (i / HALF - 1) as u32;
    let sub = (i % HALF + HALF) as u128;
    // The top bucket ends at u64::MAX, which u64 arithmetic cannot reach.
    u64::try_from(((sub + 1) << shift) - 1).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order() {
        let mut last = 0;
        for v in (0..100_000u64).chain([u64::MAX / 3, u64::MAX - 1, u64::MAX]) {
            let i = index(v);
            assert!(i < BUCKETS, "{v}");
            assert!(i >= last, "{v}");
            assert!(highest(i) >= v, "{v} in bucket {i} up to {}", highest(i));
            last = i;
        }
        assert_eq!(index(255), 255);
        assert_eq!(highest(index(256)), 257);
    }

    #[test]
    fn percentiles_of_a_uniform_spread_are_within_precision() {
        let mut h = Histogram::default();
        for v in 1..=1_000_000u64 {
            h.record(v * 1000);
        }
        assert_eq!(h.count(), 1_000_000);
        for (q, exact) in [(0.5, 500_000_000.0), (0.99, 990_000_000.0), (0.999, 999e6)] {
            let got = h.quantile(q) as f64;
            assert!(
                got >= exact && got <= exact * 1.008,
                "q{q}: {got} vs {exact}"
            );
        }
        assert_eq!(h.quantile(1.0), 1_000_000_000);
        assert_eq!(h.max(), 1_000_000_000);
    }

    #[test]
    fn small_values_are_exact_and_merging_adds() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        for v in [3, 3, 3, 7] {
            a.record(v);
        }
        b.record(200);
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.quantile(0.5), 3);
        assert_eq!(a.quantile(0.8), 7);
        assert_eq!(a.quantile(0.99), 200);
        assert_eq!(a.max(), 200);
    }

    #[test]
    fn buckets_hold_every_sample_within_their_bounds() {
        let mut h = Histogram::default();
        for v in [5, 5, 1000, 123_456_789] {
            h.record(v);
        }
        let buckets: Vec<_> = h.buckets().collect();
        assert_eq!(buckets.iter().map(|b| b.2).sum::<u64>(), 4);
        assert_eq!(buckets[0], (5, 5, 2));
        for (v, (lo, hi, _)) in [1000, 123_456_789].iter().zip(&buckets[1..]) {
            assert!(lo <= v && v <= hi, "{v} in {lo}..={hi}");
        }
    }

    #[test]
    fn empty_reports_zero() {
        let h = Histogram::default();
        assert_eq!((h.count(), h.quantile(0.99), h.max()), (0, 0, 0));
    }
}
