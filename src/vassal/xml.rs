//! XML configs: a `<vassal>` root element makes a native vassal.
//!
//! The document is read into a small element tree (the whole file is always
//! checked for well-formedness); only a `<vassal>` root is interpreted.

use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::Reader;

use super::native::{Key, SpecBuilder};
use super::node::Node;
use super::{line_at, ConfigError, Format, NativeSpec};

/// One element: its name, line, concatenated text and child elements.
#[derive(Debug, Default)]
struct Element {
    name: String,
    line: usize,
    text: String,
    has_attributes: bool,
    children: Vec<Element>,
}

/// Returns the native spec if the root element is `<vassal>`, else None.
pub(super) fn parse(text: &str) -> Result<Option<NativeSpec>, ConfigError> {
    let root = read_root(text)?;
    if root.name == "vassal" {
        native(root).map(Some)
    } else {
        Ok(None)
    }
}

/// An XML syntax error at `line`.
fn syntax(line: usize, message: String) -> ConfigError {
    ConfigError::Syntax { format: Format::Xml, line: Some(line), message }
}

/// Reads the whole document and returns its first root element.
fn read_root(text: &str) -> Result<Element, ConfigError> {
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    loop {
        let event =
            reader.read_event().map_err(|e| syntax(line_at(text, reader.error_position() as usize), e.to_string()))?;
        let line = || line_at(text, reader.buffer_position() as usize);
        match event {
            Event::Start(e) => stack.push(element(&e, line())),
            Event::Empty(e) => attach(&mut stack, &mut root, element(&e, line())),
            Event::End(_) => {
                if let Some(done) = stack.pop() {
                    attach(&mut stack, &mut root, done);
                }
            }
            Event::Text(t) => push_text(&mut stack, &t.xml_content().map_err(|e| syntax(line(), e.to_string()))?),
            Event::CData(c) => push_text(&mut stack, &c.decode().map_err(|e| syntax(line(), e.to_string()))?),
            Event::GeneralRef(r) => {
                let in_vassal = stack.first().is_some_and(|e| e.name == "vassal");
                match resolve_reference(&r) {
                    Some(s) => push_text(&mut stack, &s),
                    None if in_vassal => return Err(syntax(line(), unknown_entity(&r))),
                    None => {} // uWSGI's own XML reader may know it; not our business
                }
            }
            Event::Eof => break,
            Event::Comment(_) | Event::Decl(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
    match (stack.last(), root) {
        (Some(open), _) => Err(syntax(open.line, format!("element <{}> is never closed", open.name))),
        (None, None) => Err(syntax(line_at(text, text.len()), "no root element".into())),
        (None, Some(root)) => Ok(root),
    }
}

/// A fresh element for a start (or empty) tag.
fn element(start: &BytesStart, line: usize) -> Element {
    Element {
        name: String::from_utf8_lossy(start.name().as_ref()).into_owned(),
        line,
        has_attributes: start.attributes().next().is_some(),
        ..Element::default()
    }
}

/// Hangs a finished element under its parent, or makes it the root.
fn attach(stack: &mut [Element], root: &mut Option<Element>, done: Element) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(done),
        None => {
            root.get_or_insert(done);
        }
    }
}

/// Appends text to the element being read, if any (text outside the root is dropped).
fn push_text(stack: &mut [Element], text: &str) {
    if let Some(current) = stack.last_mut() {
        current.text.push_str(text);
    }
}

/// The message for an entity that is neither predefined nor a character reference.
fn unknown_entity(reference: &BytesRef) -> String {
    format!("unknown entity `&{};`", String::from_utf8_lossy(reference))
}

/// The text of a character reference or a predefined entity (`&amp;`...).
fn resolve_reference(reference: &BytesRef) -> Option<String> {
    if let Ok(Some(c)) = reference.resolve_char_ref() {
        return Some(c.to_string());
    }
    let name = reference.decode().ok()?;
    quick_xml::escape::resolve_predefined_entity(&name).map(str::to_string)
}

/// Interprets a `<vassal>` element.
fn native(root: Element) -> Result<NativeSpec, ConfigError> {
    check_plain(&root, "vassal")?;
    if !root.text.trim().is_empty() {
        return Err(bad(&root, "text directly inside <vassal> is not allowed; put it in child elements"));
    }
    let mut builder = SpecBuilder::default();
    let mut args: Vec<(usize, String)> = Vec::new();
    for child in root.children {
        check_plain(&child, &child.name)?;
        only_text(&child)?;
        let text = child.text.trim().to_string();
        if child.name == "arg" {
            args.push((child.line, text));
        } else {
            builder.set(&child.name, Some(child.line), Node::Str(text))?;
        }
    }
    if let Some(&(line, _)) = args.first() {
        if builder.has_exec() {
            let message = "<arg> elements cannot be combined with <exec>; use one or the other";
            return Err(ConfigError::BadValue { key: "arg".into(), line: Some(line), message: message.into() });
        }
        let argv = args.into_iter().map(|(_, a)| Node::Str(a)).collect();
        builder.set_key(Key::Exec, Some(line), Node::List(argv))?;
    }
    builder.finish()
}

/// A bad-value error naming the element and its line.
fn bad(element: &Element, message: &str) -> ConfigError {
    ConfigError::BadValue { key: element.name.clone(), line: Some(element.line), message: message.to_string() }
}

/// Attributes are not part of the native schema; reject them rather than ignore them.
fn check_plain(element: &Element, key: &str) -> Result<(), ConfigError> {
    if element.has_attributes {
        let message = format!("<{key}> takes no attributes");
        return Err(bad(element, &message));
    }
    Ok(())
}

/// Native keys hold text; a nested element is a mistake, not something to skip.
fn only_text(element: &Element) -> Result<(), ConfigError> {
    match element.children.first() {
        Some(nested) => Err(bad(element, &format!("must contain text only, found nested <{}>", nested.name))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{error, native};
    use super::super::{parse, ConfigError, Format, NativeSpec, ReloadMode, VassalConfig};
    use std::time::Duration;

    #[test]
    fn full_native_section() {
        let spec = native(
            Format::Xml,
            "<?xml version=\"1.0\"?>\n<!-- app -->\n<vassal>\n  <exec>python3 -m http.server 'a &amp; b'</exec>\n\
             \x20 <chdir>/srv/app</chdir>\n  <env>PORT=8000</env>\n  <env>Q=&lt;&#x41;&gt;</env>\n\
             \x20 <uid>www-data</uid>\n  <gid>33</gid>\n  <stop-signal>SIGQUIT</stop-signal>\n\
             \x20 <stop-timeout>7</stop-timeout>\n  <reload>SIGUSR2</reload>\n</vassal>\n",
        );
        assert_eq!(
            spec,
            NativeSpec {
                singleton: false,
                exec: vec!["python3".into(), "-m".into(), "http.server".into(), "a & b".into()],
                chdir: Some("/srv/app".into()),
                env: vec![("PORT".into(), "8000".into()), ("Q".into(), "<A>".into())],
                uid: Some("www-data".into()),
                gid: Some("33".into()),
                stop_signal: libc::SIGQUIT,
                stop_timeout: Some(Duration::from_secs(7)),
                reload: ReloadMode::Signal(libc::SIGUSR2),
                sockets: Vec::new(),
                readiness: Default::default(),
            }
        );
    }

    #[test]
    fn arg_elements() {
        let spec =
            native(Format::Xml, "<vassal><arg>echo</arg><arg> two words </arg><arg/><reload>restart</reload></vassal>");
        assert_eq!(spec.exec, ["echo", "two words", ""]);
        let spec = native(Format::Xml, "<vassal><arg>sh</arg><arg><![CDATA[a <b>]]></arg></vassal>");
        assert_eq!(spec.exec, ["sh", "a <b>"]);
        let err = error(Format::Xml, "<vassal><exec><arg>sh</arg></exec></vassal>");
        assert!(err.to_string().contains("nested <arg>"), "{err}");
    }

    #[test]
    fn uwsgi_config() {
        let flag = VassalConfig::Uwsgi { flag: "--xml" };
        let text = "<uwsgi>\n  <http>:8000</http>\n  <master/>\n  <env>&custom;</env>\n</uwsgi>\n";
        assert_eq!(parse(Format::Xml, text).unwrap(), flag);
        assert_eq!(parse(Format::Xml, "<app id=\"x\"><vassal/></app>").unwrap(), flag);
    }

    /// Asserts that each text fails with a message containing its expected part.
    fn fails(cases: &[(&str, &str)]) {
        for (text, expected) in cases {
            let message = error(Format::Xml, text).to_string();
            assert!(message.contains(expected), "{text}: {message}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn errors() {
        let err = error(Format::Xml, "<vassal><chdir>/</chdir></vassal>");
        assert!(matches!(err, ConfigError::MissingExec));
        fails(&[
            ("<vassal>\n<exec>x</exec>\n<exe>y</exe>\n</vassal>", "unknown key `exe` (line 3)"),
            ("<vassal>\n<exec>x</exec>\n<uid>a</uid>\n<uid>b</uid>\n</vassal>", "`uid` (line 4) appears more"),
            ("<vassal><exec>x</exec><stop-signal>X</stop-signal></vassal>", "`stop-signal` (line 1): `X` is not"),
            ("<vassal><exec>x</exec><stop-timeout>-2</stop-timeout></vassal>", "(line 1): `-2` is negative"),
            ("<vassal><exec>   </exec></vassal>", "`exec` (line 1): is empty"),
            ("<vassal><exec>x</exec><arg>y</arg></vassal>", "`arg` (line 1): <arg> elements cannot"),
            ("<vassal><chdir><x/></chdir></vassal>", "`chdir` (line 1): must contain text only"),
            ("<vassal><exec shell=\"yes\">x</exec></vassal>", "<exec> takes no attributes"),
            ("<vassal>x<exec>y</exec></vassal>", "text directly inside <vassal>"),
            ("<vassal><exec>&nope;</exec></vassal>", "(line 1): unknown entity `&nope;`"),
        ]);
    }

    #[test]
    #[rustfmt::skip]
    fn syntax_errors_name_the_line() {
        fails(&[
            ("<uwsgi>\n<http>:8000</htp>\n</uwsgi>\n", "invalid XML (line 2): ill-formed"),
            ("<vassal>\n  <exec>x</exec>\n", "(line 1): element <vassal> is never closed"),
            ("<vassal>\n<exec>x</exec\n", "invalid XML (line 2)"),
            ("<!-- nothing -->\n", "invalid XML (line 2): no root element"),
        ]);
    }
}
