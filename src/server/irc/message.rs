//! IRC messages as the Modern IRC documents describe them: IRCv3 tags,
//! an optional source, a command and up to 15 parameters, the last of
//! which may be a "trailing" one holding spaces.
//!
//! Parsing borrows from the line; only escaped tag values are copied.
//! Parsing is lenient where clients differ (several spaces between atoms,
//! as RFC 1459 reads) and never fails on content: anything that is not a
//! message (no command) is `None`, and the door answers it.

use std::borrow::Cow;

/// The most parameters a message has; from the 15th on, the rest of the
/// line is one parameter even without a `:`.
pub const MAX_PARAMS: usize = 15;

#[derive(Debug, PartialEq, Eq)]
pub struct Message<'a> {
    /// In order, values unescaped; a tag without a value has `""`.
    pub tags: Vec<(&'a str, Cow<'a, str>)>,
    /// Without its `:`.
    pub source: Option<&'a str>,
    pub command: &'a str,
    pub params: Vec<&'a str>,
}

impl<'a> Message<'a> {
    /// Parses one line, without its line ending (a trailing `\r` or `\n`
    /// is dropped if present). `None` when there is no command.
    pub fn parse(line: &'a str) -> Option<Message<'a>> {
        let mut rest = line.trim_end_matches(['\r', '\n']);
        let mut tags = Vec::new();
        if let Some(after) = rest.strip_prefix('@') {
            let (raw, tail) = after.split_once(' ').unwrap_or((after, ""));
            for tag in raw.split(';').filter(|t| !t.is_empty()) {
                let (name, value) = tag.split_once('=').unwrap_or((tag, ""));
                tags.push((name, unescape_tag(value)));
            }
            rest = tail;
        }
        rest = rest.trim_start_matches(' ');
        let mut source = None;
        if let Some(after) = rest.strip_prefix(':') {
            let (src, tail) = after.split_once(' ').unwrap_or((after, ""));
            source = Some(src);
            rest = tail.trim_start_matches(' ');
        }
        let (command, tail) = rest.split_once(' ').unwrap_or((rest, ""));
        if command.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut rest = tail;
        loop {
            rest = rest.trim_start_matches(' ');
            if rest.is_empty() {
                break;
            }
            if let Some(trailing) = rest.strip_prefix(':') {
                params.push(trailing);
                break;
            }
            if params.len() == MAX_PARAMS - 1 {
                params.push(rest);
                break;
            }
            let (param, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            params.push(param);
            rest = tail;
        }
        Some(Message {
            tags,
            source,
            command,
            params,
        })
    }
}

/// Tag values escape `;`, space, `\`, CR and LF; an unknown escape is the
/// character itself and a lone `\` at the end is dropped, as IRCv3
/// message-tags says.
fn unescape_tag(value: &str) -> Cow<'_, str> {
    if !value.contains('\\') {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some(':') => out.push(';'),
            Some('s') => out.push(' '),
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    Cow::Owned(out)
}

fn escape_tag(value: &str, out: &mut Vec<u8>) {
    for c in value.chars() {
        match c {
            ';' => out.extend_from_slice(b"\\:"),
            ' ' => out.extend_from_slice(b"\\s"),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\n' => out.extend_from_slice(b"\\n"),
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

/// Appends a message and its CRLF. The last parameter is sent as a
/// trailing one when it must be (empty, holding a space, starting with
/// `:`); callers keep parameters free of CR, LF and NUL.
pub fn write(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    write_as(out, tags, source, command, params, false);
}

/// [`write()`] with the last parameter always sent as a trailing one, as
/// servers send text (a message, a reason) whatever it holds.
pub fn write_text(out: &mut Vec<u8>, source: Option<&str>, command: &str, params: &[&str]) {
    write_as(out, &[], source, command, params, true);
}

/// [`write_text()`] with IRCv3 tags.
pub fn write_text_tagged(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
) {
    write_as(out, tags, source, command, params, true);
}

fn write_as(
    out: &mut Vec<u8>,
    tags: &[(&str, &str)],
    source: Option<&str>,
    command: &str,
    params: &[&str],
    trailing: bool,
) {
    if !tags.is_empty() {
        out.push(b'@');
        for (i, (name, value)) in tags.iter().enumerate() {
            if i > 0 {
                out.push(b';');
            }
            out.extend_from_slice(name.as_bytes());
            if !value.is_empty() {
                out.push(b'=');
                escape_tag(value, out);
            }
        }
        out.push(b' ');
    }
    if let Some(source) = source {
        out.push(b':');
        out.extend_from_slice(source.as_bytes());
        out.push(b' ');
    }
    out.extend_from_slice(command.as_bytes());
    if let Some((last, middle)) = params.split_last() {
        for param in middle {
            out.push(b' ');
            out.extend_from_slice(param.as_bytes());
        }
        out.push(b' ');
        if trailing || last.is_empty() || last.contains(' ') || last.starts_with(':') {
            out.push(b':');
        }
        out.extend_from_slice(last.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A source split as `nick!user@host`; absent parts are `""`.
pub fn split_userhost(source: &str) -> (&str, &str, &str) {
    let (rest, host) = source.split_once('@').unwrap_or((source, ""));
    let (nick, user) = rest.split_once('!').unwrap_or((rest, ""));
    (nick, user, host)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::Value;

    use super::*;

    fn fixture(name: &str) -> Vec<Value> {
        let path = format!(
            "{}/tests/fixtures/irc-parser-tests/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        doc["tests"].as_array().unwrap().clone()
    }

    fn strs(v: &Value) -> Vec<String> {
        v.as_array()
            .map(|a| a.iter().map(|s| s.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    }

    fn tag_map(v: &Value) -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn the_shared_split_vectors_parse() {
        let tests = fixture("msg-split");
        assert!(tests.len() > 30);
        for t in tests {
            let input = t["input"].as_str().unwrap();
            let atoms = &t["atoms"];
            let m = Message::parse(input).unwrap_or_else(|| panic!("{input:?} did not parse"));
            assert_eq!(m.command, atoms["verb"].as_str().unwrap(), "{input:?}");
            assert_eq!(m.source, atoms["source"].as_str(), "{input:?}");
            assert_eq!(m.params, strs(&atoms["params"]), "{input:?}");
            let tags: BTreeMap<String, String> = m
                .tags
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.to_string()))
                .collect();
            assert_eq!(tags, tag_map(&atoms["tags"]), "{input:?}");
        }
    }

    #[test]
    fn the_shared_join_vectors_serialise() {
        let tests = fixture("msg-join");
        assert!(tests.len() > 10);
        for t in tests {
            let atoms = &t["atoms"];
            let tags = tag_map(&atoms["tags"]);
            let tags: Vec<(&str, &str)> =
                tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let params = strs(&atoms["params"]);
            let params: Vec<&str> = params.iter().map(String::as_str).collect();
            let mut out = Vec::new();
            write(
                &mut out,
                &tags,
                atoms["source"].as_str(),
                atoms["verb"].as_str().unwrap(),
                &params,
            );
            let line = String::from_utf8(out).unwrap();
            let line = line.strip_suffix("\r\n").unwrap();
            let matches = strs(&t["matches"]);
            assert!(
                matches.iter().any(|m| m == line),
                "{line:?} is none of {matches:?}"
            );
        }
    }

    #[test]
    fn the_shared_userhost_vectors_split() {
        for t in fixture("userhost-split") {
            let source = t["source"].as_str().unwrap();
            let atoms = &t["atoms"];
            let want = (
                atoms["nick"].as_str().unwrap_or(""),
                atoms["user"].as_str().unwrap_or(""),
                atoms["host"].as_str().unwrap_or(""),
            );
            assert_eq!(split_userhost(source), want, "{source:?}");
        }
    }

    #[test]
    fn a_fifteenth_parameter_takes_the_rest_of_the_line() {
        let line = "CMD 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 and more";
        let m = Message::parse(line).unwrap();
        assert_eq!(m.params.len(), MAX_PARAMS);
        assert_eq!(m.params[14], "15 and more");
    }

    #[test]
    fn nothing_but_tags_or_a_source_is_no_message() {
        assert_eq!(Message::parse(""), None);
        assert_eq!(Message::parse("   "), None);
        assert_eq!(Message::parse("@a=b"), None);
        assert_eq!(Message::parse(":src"), None);
        assert_eq!(Message::parse("\r\n"), None);
    }

    #[test]
    fn tag_values_round_trip_through_escaping() {
        let mut out = Vec::new();
        write(&mut out, &[("k", "a;b c\\d\r\n")], None, "X", &[]);
        let line = String::from_utf8(out).unwrap();
        let m = Message::parse(&line).unwrap();
        assert_eq!(m.tags, vec![("k", Cow::Owned("a;b c\\d\r\n".to_owned()))]);
    }
}
