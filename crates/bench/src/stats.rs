//! Percentiles of latencies in microseconds.

/// The `p`-th percentile (nearest rank) of `sorted`, in milliseconds.
pub fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted.get(index).copied().unwrap_or(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::percentile_ms;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert!((percentile_ms(&v, 50.0) - 50.0).abs() < 1e-9);
        assert!((percentile_ms(&v, 99.0) - 99.0).abs() < 1e-9);
        assert!((percentile_ms(&v[..1], 99.0) - 1.0).abs() < 1e-9);
        assert!(percentile_ms(&[], 50.0).is_nan());
    }
}
