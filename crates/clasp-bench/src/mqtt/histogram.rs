//! The latency histogram of `mqtt`.

/// Log-linear latency histogram in µs: exact below 1024 µs, then 64 buckets per power of two
/// (under 1.6% error).
#[derive(Clone)]
pub(super) struct Histogram {
    counts: Vec<u64>,
}

const LINEAR: u64 = 1024;
const SUB_BITS: u32 = 6;
const BUCKETS: usize = LINEAR as usize + (64 - 10) * (1 << SUB_BITS);

impl Histogram {
    pub(super) fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
        }
    }

    pub(super) fn index(v: u64) -> usize {
        if v < LINEAR {
            return v as usize;
        }
        let e = 63 - v.leading_zeros();
        let sub = (v >> (e - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        LINEAR as usize + (e as usize - 10) * (1 << SUB_BITS) + sub as usize
    }

    /// The middle of bucket `i`.
    pub(super) fn value(i: usize) -> f64 {
        if i < LINEAR as usize {
            return i as f64;
        }
        let j = i - LINEAR as usize;
        let e = (j >> SUB_BITS) as u32 + 10;
        let sub = (j & ((1 << SUB_BITS) - 1)) as u64;
        let width = 1u64 << (e - SUB_BITS);
        let low = (1u64 << e) + sub * width;
        low as f64 + width as f64 / 2.0
    }

    pub(super) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
    }

    pub(super) fn merge(&mut self, o: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
    }

    pub(super) fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub(super) fn quantile(&self, q: f64) -> f64 {
        let n = self.total();
        if n == 0 {
            return 0.0;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i);
            }
        }
        0.0
    }

    pub(super) fn max(&self) -> f64 {
        self.counts
            .iter()
            .rposition(|&c| c > 0)
            .map_or(0.0, Self::value)
    }
}
