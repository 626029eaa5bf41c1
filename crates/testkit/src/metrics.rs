//! Figures read from a node's `/metrics` (Prometheus text).

/// The value of the unlabelled series `name`, if the text has it.
pub fn value(text: &str, name: &str) -> Option<f64> {
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))?
        .trim()
        .parse()
        .ok()
}

/// The sum of the series of `name` whose labels include `label="value"` (0 if none).
pub fn sum(text: &str, name: &str, label: &str, value: &str) -> f64 {
    let (series, pair) = (format!("{name}{{"), format!("{label}=\"{value}\""));
    text.lines()
        .filter(|l| l.starts_with(&series) && l.contains(&pair))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# TYPE up gauge\nup 1\nup_total 7\n\
        d_count{store=\"redis\",op=\"claim\"} 3\nd_count{store=\"redis\",op=\"finish\"} 4\n\
        d_count{store=\"redb\",op=\"claim\"} 2\n";

    #[test]
    fn series_are_read_by_name_and_label() {
        assert_eq!(value(TEXT, "up"), Some(1.0));
        assert_eq!(value(TEXT, "down"), None);
        assert_eq!(sum(TEXT, "d_count", "op", "claim"), 5.0);
        assert_eq!(sum(TEXT, "d_count", "op", "purge"), 0.0);
    }
}
