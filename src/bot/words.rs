//! The words of a bot-script line: blanks, words, a TEXT that may be
//! quoted JSON-style, and a trailing `within DURATION`. Kept apart from the
//! verbs so that every verb splits its arguments the same way.

/// `within WORD` and nothing else: the WORD (a duration to check).
pub fn within_clause(s: &str) -> Option<&str> {
    let (first, rest) = split_word(s);
    let (second, tail) = split_word(rest);
    (first == "within" && !second.is_empty() && tail.is_empty()).then_some(second)
}

/// Splits a trailing `within DURATION` off an unquoted TEXT.
pub fn strip_within(text: &str) -> Result<(&str, Option<&str>), String> {
    let (head, last) = rsplit_word(text);
    if last == "within" {
        return Err(
            "`within` at the end of the line needs a DURATION (quote the TEXT if it ends with that word)"
                .to_owned(),
        );
    }
    let (body, before) = rsplit_word(head);
    if before == "within" && !body.is_empty() {
        Ok((body, Some(last)))
    } else {
        Ok((text, None))
    }
}

/// A TEXT that must be there and not empty (the server refuses empty
/// messages, so a script cannot mean one).
pub fn required_text(args: &str, missing: &str) -> Result<String, String> {
    match optional_text(args)? {
        Some(text) if !text.is_empty() => Ok(text),
        _ => Err(missing.to_owned()),
    }
}

/// The rest of the line, trimmed, or the JSON string it starts with.
/// `None` when there is nothing (or only `""`).
pub fn optional_text(args: &str) -> Result<Option<String>, String> {
    if args.starts_with('"') {
        let (text, after) = quoted(args)?;
        if !after.is_empty() {
            return Err(format!("unexpected \"{after}\" after the closing quote"));
        }
        return Ok((!text.is_empty()).then_some(text));
    }
    Ok((!args.is_empty()).then(|| args.to_owned()))
}

/// A JSON string at the start of `s`, decoded, and what follows it
/// (trimmed). What follows must be separated from the closing quote.
pub fn quoted(s: &str) -> Result<(String, &str), String> {
    let mut escaped = false;
    let mut end = None;
    for (i, c) in s.char_indices().skip(1) {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => {
                end = Some(i);
                break;
            }
            _ => {}
        }
    }
    let end = end.ok_or("unterminated quote: a quoted TEXT needs its closing \"")?;
    let literal = &s[..=end];
    let text: String = serde_json::from_str(literal)
        .map_err(|e| format!("bad quoted text {literal}: {}", json_reason(&e)))?;
    let after = &s[end + 1..];
    if !after.is_empty() && !after.starts_with(is_blank) {
        return Err(format!(
            "unexpected \"{}\" right after the closing quote",
            trim(after)
        ));
    }
    Ok((text, trim(after)))
}

/// serde's message without its "at line 1 column 7" tail, which would
/// point into the quoted text rather than the script.
fn json_reason(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

pub fn one_word<'a>(args: &'a str, missing: &str) -> Result<&'a str, String> {
    let (word, rest) = split_word(args);
    if word.is_empty() {
        return Err(missing.to_owned());
    }
    if !rest.is_empty() {
        return Err(format!(
            "unexpected \"{rest}\" after \"{word}\" ({missing})"
        ));
    }
    Ok(word)
}

/// Blanks are spaces and tabs; other whitespace is part of the text.
fn is_blank(c: char) -> bool {
    c == ' ' || c == '\t'
}

pub fn trim(s: &str) -> &str {
    s.trim_matches(is_blank)
}

/// The first word and the rest, trimmed.
pub fn split_word(s: &str) -> (&str, &str) {
    let s = trim(s);
    match s.find(is_blank) {
        Some(i) => (&s[..i], trim(&s[i..])),
        None => (s, ""),
    }
}

/// Everything before the last word (trimmed) and the last word.
fn rsplit_word(s: &str) -> (&str, &str) {
    let s = trim(s);
    match s.rfind(is_blank) {
        Some(i) => (trim(&s[..i]), &s[i + 1..]),
        None => ("", s),
    }
}
