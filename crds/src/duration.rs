//! The short durations of the API (`30s`, `15m`, `720h`, `7d`): one number and one unit.

use std::time::Duration;

/// Parses a duration such as `7d`; `None` when it is not a number followed by `s`, `m`, `h`
/// or `d`. The CRD schema refuses such strings already; this is for values read back.
#[must_use]
pub fn parse(text: &str) -> Option<Duration> {
    let unit = text.chars().last()?;
    let number: u64 = text.get(..text.len() - unit.len_utf8())?.parse().ok()?;
    let seconds = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    number.checked_mul(seconds).map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::parse;
    use std::time::Duration;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse("720h"), Some(Duration::from_secs(720 * 3600)));
        assert_eq!(parse("7d"), Some(Duration::from_secs(7 * 86_400)));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "d", "7", "7w", "-1d", "1.5h", "7dd", "ß"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
