//! Times and durations on the command line: seconds since the epoch or
//! `+DURATION` from now; durations as etcdctl writes them (`5s`, `500ms`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `90`, `90s`, `500ms`, `30m`, `2h`, `1d`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a duration such as 90s, 500ms, 30m, 2h"))?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (ms, s, m, h, d)")),
    };
    let secs = n * scale;
    if !secs.is_finite() || secs <= 0.0 || secs > 1e10 {
        return Err(format!("{s:?}: must be greater than 0"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration flag, as seconds for the `OSLIVELY_*` parser.
pub(crate) fn parse_duration_secs(s: &str) -> Result<String, String> {
    parse_duration(s).map(|d| d.as_secs_f64().to_string())
}

/// A positive duration in seconds (`--heartbeat`).
pub(crate) fn parse_positive_secs(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Seconds since the epoch, or `+DURATION` from now.
pub(crate) fn parse_time(s: &str) -> Result<u64, String> {
    if let Some(rel) = s.strip_prefix('+') {
        return parse_duration(rel).map(|d| now() + d.as_secs().max(1));
    }
    s.trim()
        .parse::<u64>()
        .ok()
        .filter(|t| *t > 0)
        .ok_or_else(|| format!("{s:?}: expected seconds since the epoch, or +DURATION (+30m)"))
}

/// `2026-11-30T01:02:03Z` (UTC).
pub(crate) fn show(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_durations() {
        assert_eq!(show(0), "1970-01-01T00:00:00Z");
        assert_eq!(show(1_764_464_523), "2025-11-30T01:02:03Z");
        assert_eq!(show(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("+1m").unwrap() >= now() + 60);
    }
}
