//! Latency percentiles, printed as one table row.

use std::time::Duration;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Summary::of(&samples).unwrap_or_else(|| unreachable!());
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert!(Summary::of(&[]).is_none());
    }
}
