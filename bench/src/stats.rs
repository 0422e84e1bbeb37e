//! Latency percentiles, printed as one table row: exact (nearest rank over every sample) for
//! the bounded scenarios, HDR histograms (microseconds, 3 significant digits) for `chat`.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// p50 / p90 / p99 / max of a sample, in milliseconds.
pub struct Summary {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Summary {
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let count = sorted.len();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        // Nearest-rank percentile: the smallest sample with at least p·n samples at or below it.
        let rank = |p: f64| ms(sorted[((p * count as f64).ceil() as usize).clamp(1, count) - 1]);
        (count > 0).then(|| Summary {
            count,
            p50: rank(0.50),
            p90: rank(0.90),
            p99: rank(0.99),
            max: ms(sorted[count - 1]),
        })
    }
}

pub fn print_header() {
    println!(
        "{:<44} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "measure", "n", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
}

pub fn print_row(label: &str, samples: &[Duration]) {
    match Summary::of(samples) {
        Some(s) => println!(
            "{label:<44} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            s.count, s.p50, s.p90, s.p99, s.max
        ),
        None => println!("{label:<44} {:>7}", 0),
    }
}

/// An empty latency histogram in microseconds: 1 µs to 1 hour at 3 significant digits
/// (a value above the range is clamped to it by [`record`]).
pub fn histogram() -> Histogram<u64> {
    // Cannot fail: the bounds are constants with low ≥ 1, high ≥ 2·low and sigfig ≤ 5.
    Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap_or_else(|_| unreachable!())
}

/// Record one latency (clamped to the histogram's range).
pub fn record(histogram: &mut Histogram<u64>, latency: Duration) {
    let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// A histogram's value at `quantile`, in milliseconds.
pub fn quantile_ms(histogram: &Histogram<u64>, quantile: f64) -> f64 {
    histogram.value_at_quantile(quantile) as f64 / 1000.0
}

pub fn print_hdr_header() {
    println!(
        "{:<44} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "measure", "n", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms"
    );
}

pub fn print_hdr_row(label: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        return println!("{label:<44} {:>7}", 0);
    }
    println!(
        "{label:<44} {:>7} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        h.len(),
        quantile_ms(h, 0.50),
        quantile_ms(h, 0.90),
        quantile_ms(h, 0.99),
        quantile_ms(h, 0.999),
        h.max() as f64 / 1000.0
    );
}

/// `v` to four significant digits: plenty in a JSON line, and small figures (CPU-seconds per
/// 1 000 frames) keep theirs where a fixed number of decimals would not.
pub fn four_significant(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let scale = 10f64.powi(3 - v.abs().log10().floor() as i32);
    (v * scale).round() / scale
}

/// `{"n","p50","p90","p99","p999","max"}` in milliseconds, for the JSON line.
pub fn hdr_json(h: &Histogram<u64>) -> Value {
    let round = |ms: f64| (ms * 1000.0).round() / 1000.0;
    json!({
        "n": h.len(),
        "p50": round(quantile_ms(h, 0.50)),
        "p90": round(quantile_ms(h, 0.90)),
        "p99": round(quantile_ms(h, 0.99)),
        "p999": round(quantile_ms(h, 0.999)),
        "max": round(h.max() as f64 / 1000.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_keep_four_significant_digits() {
        assert_eq!(four_significant(1234.5678), 1235.0);
        assert_eq!(four_significant(0.012345), 0.01235);
        assert_eq!(four_significant(0.0), 0.0);
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples).unwrap_or_else(|| unreachable!());
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert!(Summary::of(&[]).is_none());
    }

    #[test]
    fn hdr_quantiles_are_within_three_significant_digits() {
        let mut h = histogram();
        for ms in 1..=1000 {
            record(&mut h, Duration::from_millis(ms));
        }
        assert!((quantile_ms(&h, 0.99) - 990.0).abs() <= 1.0);
        assert!((quantile_ms(&h, 0.50) - 500.0).abs() <= 0.5);
        record(&mut h, Duration::from_secs(7200));
        assert_eq!(h.len(), 1001, "a value past the range is clamped, not lost");
    }
}
