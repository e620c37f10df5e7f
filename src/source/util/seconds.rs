//! The one parser for durations given in seconds: command-line flags,
//! native vassal configs (`stop-timeout`) and source URIs (`interval=`).
//!
//! Strict decimals only (`10`, `2.5`): no sign, exponent, `inf` or `nan`,
//! so that a typo is refused rather than read as something surprising.

use std::time::Duration;

/// Why a text is not a usable number of seconds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecondsError {
    /// Not a plain decimal number.
    #[error("`{0}` is not a number of seconds (e.g. 10 or 2.5)")]
    NotANumber(String),
    /// A negative number.
    #[error("`{0}` is negative; expected a number of seconds >= 0")]
    Negative(String),
    /// Zero where a period is needed.
    #[error("`{0}` is zero; expected a positive number of seconds")]
    Zero(String),
    /// Too large to be a duration.
    #[error("`{0}` is not a usable number of seconds")]
    TooLarge(String),
}

/// Parses a non-negative number of seconds: digits with an optional
/// `.digits` fraction.
pub fn parse(text: &str) -> Result<Duration, SecondsError> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !(all_digits(whole) && all_digits(frac)) {
        return Err(SecondsError::NotANumber(text.to_owned()));
    }
    if digits.len() != text.len() && digits.bytes().any(|b| b.is_ascii_digit() && b != b'0') {
        return Err(SecondsError::Negative(text.to_owned()));
    }
    let secs: f64 = digits.parse().map_err(|_| SecondsError::NotANumber(text.to_owned()))?;
    Duration::try_from_secs_f64(secs).map_err(|_| SecondsError::TooLarge(text.to_owned()))
}

/// Parses a positive number of seconds (a period: zero would spin).
pub fn parse_positive(text: &str) -> Result<Duration, SecondsError> {
    match parse(text)? {
        d if d.is_zero() => Err(SecondsError::Zero(text.to_owned())),
        d => Ok(d),
    }
}

/// A number of seconds already read as a float (a YAML or TOML number).
pub fn from_f64(secs: f64) -> Result<Duration, SecondsError> {
    if secs < 0.0 {
        return Err(SecondsError::Negative(secs.to_string()));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| SecondsError::TooLarge(secs.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_decimals() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("2.5"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse("0.25"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("-1"), Err(SecondsError::Negative("-1".into())));
        for text in ["", ".5", "5.", "1e3", "inf", "NaN", "+1", "1_000", " 1", "x", "-"] {
            assert_eq!(parse(text), Err(SecondsError::NotANumber(text.into())), "{text}");
        }
        assert!(matches!(parse(&"9".repeat(30)), Err(SecondsError::TooLarge(_))));
    }

    #[test]
    fn periods_are_positive() {
        assert_eq!(parse_positive("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_positive("0.0"), Err(SecondsError::Zero("0.0".into())));
        assert!(parse_positive("-1").is_err());
    }

    #[test]
    fn floats() {
        assert_eq!(from_f64(1.5), Ok(Duration::from_millis(1500)));
        assert!(from_f64(-1.0).is_err());
        assert!(from_f64(f64::NAN).is_err());
        assert!(from_f64(f64::INFINITY).is_err());
    }
}
