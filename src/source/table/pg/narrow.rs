//! Re-reading only the rows a notification named.
//!
//! The shipped trigger (`deploy/pg/vassals.sql`) sends the changed row's
//! name as the payload, `OLD/NEW` on a rename (`/` is never part of a vassal
//! name). Any other payload (an older trigger's `INSERT`, `TRUNCATE`, an
//! empty `NOTIFY`, a name that is not a vassal name) asks for the whole
//! query. The rows are looked up by wrapping the operator's query, its
//! columns renamed so that none is ambiguous:
//! `SELECT * FROM (QUERY) AS emperor_rows(c1, c2, …) WHERE c1 = ANY($1)`.
//! A query whose rows depend on other rows (`LIMIT`, `OFFSET`, `FETCH`, a
//! window function, `DISTINCT ON`) is never wrapped: a change to one row
//! can add or drop another, which only the whole query sees.

use crate::source::table::dirty::Dirty;
use reconciler::VassalName;

/// Marks what one notification's payload names in `dirty`.
pub fn note(payload: &str, dirty: &mut Dirty) {
    let names: Vec<&str> = payload.split('/').collect();
    if names.len() > 2 || names.iter().any(|name| VassalName::parse(name).is_err()) {
        dirty.mark_full();
        return;
    }
    for name in names {
        dirty.add(name.to_owned());
    }
}

/// The lookup of a few rows by name for `query` returning `columns`
/// columns, or `None` when wrapping it would change which rows it returns.
pub fn lookup(query: &str, columns: usize) -> Option<String> {
    if depends_on_other_rows(query) {
        return None;
    }
    let aliases: Vec<String> = (1..=columns).map(|i| format!("emperor_c{i}")).collect();
    // The newlines end a trailing `-- comment` of the query.
    Some(format!(
        "SELECT * FROM (\n{query}\n) AS emperor_rows({}) WHERE emperor_c1 = ANY($1::text[])",
        aliases.join(", ")
    ))
}

/// Whether `query` has a clause that makes one row's presence depend on
/// the others: `LIMIT`, `OFFSET`, `FETCH`, `OVER`/`WINDOW`, `DISTINCT ON`.
fn depends_on_other_rows(query: &str) -> bool {
    let words = words(query);
    words.iter().enumerate().any(|(i, word)| match word.as_str() {
        "limit" | "offset" | "fetch" | "over" | "window" => true,
        "distinct" => words.get(i + 1).is_some_and(|next| next == "on"),
        _ => false,
    })
}

/// The keywords and bare identifiers of `sql`, lower-cased, outside string
/// literals, quoted identifiers, dollar quotes and comments.
fn words(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let (mut words, mut i) = (Vec::new(), 0);
    while i < chars.len() {
        let c = chars[i];
        i = match c {
            '\'' => skip_quoted(&chars, i, '\'', i > 0 && matches!(chars[i - 1], 'e' | 'E')),
            '"' => skip_quoted(&chars, i, '"', false),
            '-' if chars.get(i + 1) == Some(&'-') => {
                chars[i..].iter().position(|&c| c == '\n').map_or(chars.len(), |n| i + n)
            }
            '/' if chars.get(i + 1) == Some(&'*') => skip_block_comment(&chars, i),
            '$' => skip_dollar_quote(&chars, i),
            c if c.is_alphabetic() || c == '_' => {
                let end = chars[i..].iter().position(|&c| !(c.is_alphanumeric() || c == '_' || c == '$'));
                let end = end.map_or(chars.len(), |n| i + n);
                words.push(chars[i..end].iter().collect::<String>().to_lowercase());
                end
            }
            _ => i + 1,
        };
    }
    words
}

/// The index after the literal or identifier opened at `start` by `quote`
/// (doubled quotes inside; backslash escapes in an `E'…'` string).
fn skip_quoted(chars: &[char], start: usize, quote: char, backslashes: bool) -> usize {
    let mut i = start + 1;
    while i < chars.len() {
        match chars[i] {
            '\\' if backslashes => i += 2,
            c if c == quote && chars.get(i + 1) == Some(&quote) => i += 2,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    chars.len()
}

/// The index after the (possibly nested) block comment opened at `start`.
fn skip_block_comment(chars: &[char], start: usize) -> usize {
    let (mut depth, mut i) = (0usize, start);
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
            ('*', Some('/')) if depth == 1 => return i + 2,
            ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
            _ => i += 1,
        }
    }
    chars.len()
}

/// The index after the `$tag$…$tag$` string opened at `start` (or after
/// the `$` when it opens none, as in a parameter `$1`).
fn skip_dollar_quote(chars: &[char], start: usize) -> usize {
    let tag_end = chars[start + 1..].iter().position(|&c| !(c.is_alphanumeric() || c == '_'));
    let Some(tag_end) = tag_end.map(|n| start + 1 + n).filter(|&e| chars[e] == '$') else { return start + 1 };
    if chars[start + 1].is_ascii_digit() {
        return start + 1;
    }
    let tag = &chars[start..=tag_end];
    let body = tag_end + 1;
    (body..chars.len().saturating_sub(tag.len() - 1))
        .find(|&i| &chars[i..i + tag.len()] == tag)
        .map_or(chars.len(), |i| i + tag.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noted(payloads: &[&str]) -> Dirty {
        let mut dirty = Dirty::default();
        payloads.iter().for_each(|p| note(p, &mut dirty));
        dirty
    }

    #[test]
    fn payloads_name_rows_or_ask_for_everything() {
        let names = |d: Dirty| d.names().iter().cloned().collect::<Vec<_>>();
        assert_eq!(names(noted(&["a.ini", "b.yaml", "a.ini"])), ["a.ini", "b.yaml"]);
        assert_eq!(names(noted(&["old.ini/new.ini"])), ["new.ini", "old.ini"]);
        for payload in ["", "INSERT", "UPDATE", "TRUNCATE", "*", "../evil.ini", "a.ini/b.ini/c.ini", "run.sh"] {
            assert!(noted(&[payload]).is_full(), "{payload:?}");
        }
    }

    #[test]
    fn a_query_is_wrapped_unless_its_rows_depend_on_each_other() {
        let sql = lookup("SELECT name, config, ts FROM vassals -- all", 3).unwrap();
        assert_eq!(
            sql,
            "SELECT * FROM (\nSELECT name, config, ts FROM vassals -- all\n) AS emperor_rows(emperor_c1, emperor_c2, \
             emperor_c3) WHERE emperor_c1 = ANY($1::text[])"
        );
        for query in [
            "SELECT name, config, ts FROM vassals ORDER BY ts DESC LIMIT 10",
            "SELECT name, config, ts FROM vassals OFFSET 5",
            "SELECT name, config, ts FROM vassals FETCH FIRST 3 ROWS ONLY",
            "SELECT name, config, ts FROM (SELECT *, row_number() OVER (PARTITION BY host) AS n FROM vassals) v",
            "SELECT DISTINCT ON (name) name, config, ts FROM vassals ORDER BY name, ts DESC",
        ] {
            assert_eq!(lookup(query, 3), None, "{query}");
        }
        for query in [
            "SELECT name, config, ts FROM vassals WHERE note = 'no limit here' AND \"offset\" = 1",
            "SELECT name, config, ts FROM vassals /* limit /* nested */ offset */ WHERE x = $$ fetch $$",
            "SELECT name, config, ts FROM vassals WHERE x = E'it\\'s a limit' -- limit",
            "SELECT DISTINCT name, config, ts FROM vassals WHERE host = $tag$ over $tag$",
        ] {
            assert!(lookup(query, 3).is_some(), "{query}");
        }
    }
}
