//! Percent-decoding of URI components (`%40` → `@`), strict: a bad escape
//! or bytes that are not UTF-8 are refused. The error never quotes the
//! input, so it is safe for passwords; callers add the component's name.

/// Why a component cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PercentError {
    /// A `%` not followed by two hex digits.
    #[error("a bad %-escape")]
    BadEscape,
    /// The decoded bytes are not UTF-8.
    #[error("not UTF-8 once decoded")]
    NotUtf8,
}

/// `text` with every `%XX` escape decoded.
pub fn decode(text: &str) -> Result<String, PercentError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or(PercentError::BadEscape)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PercentError::NotUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_decoded_strictly() {
        assert_eq!(decode("p%40ss%3Aw").as_deref(), Ok("p@ss:w"));
        assert_eq!(decode("plain").as_deref(), Ok("plain"));
        assert_eq!(decode("%zz"), Err(PercentError::BadEscape));
        assert_eq!(decode("%4"), Err(PercentError::BadEscape));
        assert_eq!(decode("%ff"), Err(PercentError::NotUtf8));
    }
}
