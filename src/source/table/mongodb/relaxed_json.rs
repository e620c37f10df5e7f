//! Upstream's relaxed JSON filters (`{enabled:1}`, `{host:'a'}`) made
//! strict: unquoted keys are quoted and single-quoted strings become
//! double-quoted, so a strict JSON parser (and then extended JSON to BSON)
//! can take them.

/// Why a filter is not relaxed JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelaxedJsonError {
    /// A string is not closed.
    #[error("unterminated string starting at byte {0}")]
    Unterminated(usize),
    /// A bare word that is not a key, `true`, `false` or `null`.
    #[error("unquoted value {word:?} at byte {at}")]
    BareWord {
        /// The word.
        word: String,
        /// Where it starts.
        at: usize,
    },
}

/// Rewrites relaxed JSON to strict JSON text (it does not check the rest of
/// the syntax: the JSON parser does that afterwards).
pub fn to_strict(text: &str) -> Result<String, RelaxedJsonError> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 8);
    let mut i = 0;
    while i < text.len() {
        let c = text[i..].chars().next().unwrap_or('\0');
        match c {
            '"' | '\'' => {
                let (body, end) = string_body(text, i, c)?;
                out.push('"');
                out.push_str(&body);
                out.push('"');
                i = end;
            }
            c if c.is_ascii_digit() || c == '-' || c == '+' || c == '.' => {
                // A number, exponent included: copied as it is.
                let start = i;
                while i < text.len() && (bytes[i].is_ascii_alphanumeric() || b"+-.".contains(&bytes[i])) {
                    i += 1;
                }
                out.push_str(&text[start..i]);
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' => {
                let start = i;
                while i < text.len() && (bytes[i].is_ascii_alphanumeric() || b"_$.".contains(&bytes[i])) {
                    i += 1;
                }
                let word = &text[start..i];
                let is_key = text[i..].trim_start().starts_with(':');
                match word {
                    _ if is_key => {
                        out.push('"');
                        out.push_str(word);
                        out.push('"');
                    }
                    "true" | "false" | "null" => out.push_str(word),
                    _ => return Err(RelaxedJsonError::BareWord { word: word.to_owned(), at: start }),
                }
            }
            c => {
                out.push(c);
                i += c.len_utf8();
            }
        }
    }
    Ok(out)
}

/// The body of the string starting at `start` with `quote`, re-escaped for a
/// double-quoted JSON string, and the index just past its closing quote.
fn string_body(text: &str, start: usize, quote: char) -> Result<(String, usize), RelaxedJsonError> {
    let mut body = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                // `\'` is only needed inside single quotes; JSON does not know it.
                Some((_, '\'')) => body.push('\''),
                Some((_, e)) => {
                    body.push('\\');
                    body.push(e);
                }
                None => break,
            },
            '"' if quote == '\'' => body.push_str("\\\""),
            c if c == quote => return Ok((body, start + 1 + off + 1)),
            c => body.push(c),
        }
    }
    Err(RelaxedJsonError::Unterminated(start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_bare_keys() {
        assert_eq!(to_strict("{enabled:1}").unwrap(), r#"{"enabled":1}"#);
        assert_eq!(
            to_strict("{ a : 1, b.c: true, $or: [{x: null}] }").unwrap(),
            r#"{ "a" : 1, "b.c": true, "$or": [{"x": null}] }"#
        );
    }

    #[test]
    fn converts_single_quoted_strings() {
        assert_eq!(to_strict("{host:'web-1'}").unwrap(), r#"{"host":"web-1"}"#);
        assert_eq!(to_strict(r#"{'k':'it\'s "x"'}"#).unwrap(), r#"{"k":"it's \"x\""}"#);
    }

    #[test]
    fn keeps_strict_json() {
        let strict = r#"{"a": "x:y", "b": [1, -2.5e3], "c": {"$date": "2024-01-01T00:00:00Z"}, "ü": "ß"}"#;
        assert_eq!(to_strict(strict).unwrap(), strict);
    }

    #[test]
    fn refuses_garbage() {
        assert!(matches!(to_strict("{a: yes}"), Err(RelaxedJsonError::BareWord { .. })));
        assert!(matches!(to_strict("{a: 'x}"), Err(RelaxedJsonError::Unterminated(4))));
    }
}
