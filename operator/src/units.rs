//! Quantities and times as the API server writes them. A leaf: used by the applier (to compare
//! with what the server stores) and by the status (to sum and show usage).

use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The value of a Kubernetes quantity (`500m`, `2Gi`, `1e3`), exactly, as a fraction of
/// 10^9 (nano units), or `None` when the text is not a quantity.
#[must_use]
pub fn quantity(text: &str) -> Option<i128> {
    const BINARY: [(&str, u32); 6] = [
        ("Ki", 10),
        ("Mi", 20),
        ("Gi", 30),
        ("Ti", 40),
        ("Pi", 50),
        ("Ei", 60),
    ];
    const DECIMAL: [(&str, i32); 8] = [
        ("n", -9),
        ("u", -6),
        ("m", -3),
        ("k", 3),
        ("M", 6),
        ("G", 9),
        ("T", 12),
        ("P", 15),
    ];
    let (number, scale) = if let Some((n, shift)) = BINARY
        .iter()
        .find_map(|(s, shift)| text.strip_suffix(s).map(|n| (n, *shift)))
    {
        (n, Scale::Binary(shift))
    } else if let Some((n, exp)) = DECIMAL
        .iter()
        .find_map(|(s, exp)| text.strip_suffix(s).map(|n| (n, *exp)))
    {
        (n, Scale::Decimal(exp))
    } else if let Some((n, exp)) = text.split_once(['e', 'E']) {
        (n, Scale::Decimal(exp.parse().ok()?))
    } else {
        (text, Scale::Decimal(0))
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    // Digits as an integer, with the decimal point moved into the exponent.
    let digits: i128 = format!("{whole}{fraction}").parse().ok()?;
    let point = i32::try_from(fraction.len()).ok()?;
    let (multiplier, exponent) = match scale {
        Scale::Binary(shift) => (1_i128 << shift, 9 - point),
        Scale::Decimal(exp) => (1, exp + 9 - point),
    };
    let value = digits.checked_mul(multiplier)?;
    if exponent >= 0 {
        value.checked_mul(10_i128.checked_pow(u32::try_from(exponent).ok()?)?)
    } else {
        let divisor = 10_i128.checked_pow(u32::try_from(-exponent).ok()?)?;
        (value % divisor == 0).then(|| value / divisor)
    }
}

enum Scale {
    Binary(u32),
    Decimal(i32),
}

/// `now` truncated to whole seconds, as the API server stores times.
#[must_use]
pub fn seconds(now: Timestamp) -> Timestamp {
    Timestamp::from_second(now.as_second()).unwrap_or(now)
}

/// How long from `now` until a second past `deadline`, so that the next look finds it passed.
#[must_use]
pub fn until(now: Timestamp, deadline: Timestamp) -> Duration {
    Duration::try_from(deadline.duration_since(now)).unwrap_or_default() + Duration::from_secs(1)
}

/// The sooner of an optional wait and another.
#[must_use]
pub fn shortest(a: Option<Duration>, b: Duration) -> Duration {
    a.map_or(b, |a| a.min(b))
}

/// `bytes` as lowercase hex digits, two per byte.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_value() {
        assert_eq!(quantity("2Gi"), quantity("2048Mi"));
        assert_eq!(quantity("1"), quantity("1000m"));
        assert_eq!(quantity("1.5"), quantity("1500m"));
        assert_eq!(quantity("1e3"), quantity("1k"));
        assert_ne!(quantity("1G"), quantity("1Gi"));
        assert_eq!(quantity("abc"), None);
        assert_eq!(quantity(""), None);
    }

    #[test]
    fn waits_end_a_second_past_the_deadline() {
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().expect("time");
        let later: Timestamp = "2026-11-28T00:01:00Z".parse().expect("time");
        assert_eq!(until(now, later), Duration::from_secs(61));
        assert_eq!(until(later, now), Duration::from_secs(1));
        assert_eq!(
            shortest(Some(Duration::from_secs(3)), Duration::from_secs(5)),
            Duration::from_secs(3)
        );
        assert_eq!(
            shortest(None, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
