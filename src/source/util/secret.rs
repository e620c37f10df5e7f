//! The one masker of secrets in source URIs: a source id is logged and
//! stored, so no password may survive in it.
//!
//! Masked: libpq conninfo `password=VALUE` (quoted values included, as in
//! `password='a \' b'`), key-value `password=VALUE` pairs, and the password
//! of a URL's user info (`scheme://user:secret@host`).

/// A password taken from a source URI: `Debug` prints `***`, so a struct
/// that holds one can derive `Debug` without leaking it into a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `text`.
    pub fn new(text: impl Into<String>) -> Self {
        Password(text.into())
    }

    /// The password itself, for the login that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// `text` with every password replaced by `***`.
pub fn mask(text: &str) -> String {
    mask_url_password(&mask_password_keys(text))
}

/// `text` with the password of a URL's user info left out entirely
/// (`scheme://user@host`): the form `amqp://` ids have always had, kept so
/// that ids already recorded in a state store stay the same.
pub fn strip(text: &str) -> String {
    let masked = mask(text);
    match userinfo_password(&masked) {
        Some((colon, at)) => format!("{}{}", &masked[..colon], &masked[at..]),
        None => masked,
    }
}

/// Masks the values of `password=` keys.
fn mask_password_keys(text: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        out.push_str(&rest[..at + KEY.len()]);
        out.push_str("***");
        rest = &rest[at + KEY.len()..];
        let end = match rest.starts_with('\'') {
            true => quoted_len(rest),
            false => rest.find(|c: char| c.is_whitespace() || c == '&' || c == ';').unwrap_or(rest.len()),
        };
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Length of the libpq quoted value at the start of `text` (`\'` escapes a
/// quote), closing quote included; all of `text` when it is not closed.
fn quoted_len(text: &str) -> usize {
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' => return i + 1,
            _ => {}
        }
    }
    text.len()
}

/// `scheme://user:secret@host` → `scheme://user:***@host`.
fn mask_url_password(text: &str) -> String {
    match userinfo_password(text) {
        Some((colon, at)) => format!("{}:***{}", &text[..colon], &text[at..]),
        None => text.to_owned(),
    }
}

/// Where the password of the first URL's user info starts (its `:`) and
/// ends (the `@`).
fn userinfo_password(text: &str) -> Option<(usize, usize)> {
    let start = text.find("://")? + 3;
    let authority_end = text[start..].find(['/', '?', '#', ';']).map_or(text.len(), |i| start + i);
    let at = start + text[start..authority_end].rfind('@')?;
    let colon = start + text[start..at].find(':')?;
    Some((colon, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_debugs_as_stars() {
        let p = Password::new("s3cret");
        assert_eq!(format!("{p:?}"), "***");
        assert_eq!(format!("{:?}", Some(("u", p.clone()))), "Some((\"u\", ***))");
        assert_eq!(p.expose(), "s3cret");
    }

    #[test]
    fn conninfo_passwords() {
        assert_eq!(mask("host=db password=s3cret user=u"), "host=db password=*** user=u");
        assert_eq!(mask(r"host=db password='a \' b' user=u"), "host=db password=*** user=u");
        assert_eq!(mask(r"password='open \'"), "password=***");
        assert_eq!(mask("password=pw"), "password=***");
    }

    #[test]
    fn url_passwords() {
        assert_eq!(mask("postgresql://u:s3cret@db/x"), "postgresql://u:***@db/x");
        assert_eq!(mask("mongodb://u:pw@h:1/?a=b#e.v"), "mongodb://u:***@h:1/?a=b#e.v");
        assert_eq!(mask("mongodb://u@h:1/"), "mongodb://u@h:1/");
        assert_eq!(mask("mongodb://h:1/x@y"), "mongodb://h:1/x@y");
        assert_eq!(strip("amqp://u:secret@h:1/v?queue=q"), "amqp://u@h:1/v?queue=q");
        assert_eq!(strip("amqp://h:1"), "amqp://h:1");
    }
}
