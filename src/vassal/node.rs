//! The syntax-neutral value every config reader produces.
//!
//! The five readers reduce their native section to [`Node`]s; the value
//! checkers and the spec builder work on nodes only, so all syntaxes accept
//! the same shapes and describe wrong ones with the same words.

/// A syntax-neutral value: what YAML, JSON and TOML values (and INI/XML text) map to.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// An explicit null (`null`, `~`).
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A whole number that fits in 64 bits.
    Int(i64),
    /// A decimal number, or a JSON integer too large for `Int`.
    Float(f64),
    /// Text; all INI and XML values are text.
    Str(String),
    /// A sequence, in file order.
    List(Vec<Node>),
    /// Entries in file order (duplicates kept, so they can be reported).
    Map(Vec<(String, Node)>),
    /// A value no key accepts (TOML date-time, YAML alias...), described with its article.
    Other(&'static str),
}

impl Node {
    /// The value's type with its article ("a string"), for error messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a decimal number",
            Node::Str(_) => "a string",
            Node::List(_) => "a list",
            Node::Map(_) => "a mapping",
            Node::Other(kind) => kind,
        }
    }

    /// The text of a scalar (numbers and booleans in decimal/`true` form).
    pub(super) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Str(s) => Some(s.clone()),
            Node::Int(n) => Some(n.to_string()),
            Node::Float(f) => Some(f.to_string()),
            Node::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}
