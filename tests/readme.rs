//! README.md keeps up with the binary: each synopsis it shows
//! (`chat server [--listen ADDR] ...`) names every option that program's
//! `--help` lists, with the same value name, and no option `--help` lacks.
//! The options are read from `--help` itself, so an option added anywhere
//! is checked without touching this test.

mod common;

use std::path::Path;

use common::chat;

/// One synopsis in README.md: the words after `chat` up to the first `[`
/// (`server`, `bench fanout`), and the whole text, continuation lines
/// included.
#[derive(Debug)]
struct Synopsis {
    program: Vec<String>,
    text: String,
}

/// Every synopsis in README.md's indented code: a line `chat WORDS [...`
/// and the lines after it that go on with `[`.
fn readme_synopses() -> Vec<Synopsis> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let mut found: Vec<Synopsis> = Vec::new();
    let mut open = false;
    for line in readme.lines() {
        let Some(code) = line.strip_prefix("    ") else {
            open = false;
            continue;
        };
        let code = code.trim();
        if open && code.starts_with('[') {
            let last = found.last_mut().unwrap();
            last.text.push(' ');
            last.text.push_str(code);
            continue;
        }
        open = false;
        let Some(rest) = code.strip_prefix("chat ") else {
            continue;
        };
        let Some((words, _)) = rest.split_once(" [") else {
            continue;
        };
        let program: Vec<String> = words.split_whitespace().map(str::to_owned).collect();
        if program
            .iter()
            .all(|w| w.bytes().all(|b| b.is_ascii_lowercase()))
        {
            found.push(Synopsis {
                program,
                text: code.to_owned(),
            });
            open = true;
        }
    }
    found
}

/// The long options `chat PROGRAM --help` lists, with the value name each
/// takes (`("--max-line", Some("BYTES"))`), `--help` and `--version` aside.
fn help_options(program: &[String]) -> Vec<(String, Option<String>)> {
    let out = chat().args(program).arg("--help").output().unwrap();
    assert!(out.status.success(), "chat {program:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut options = Vec::new();
    for line in help.lines() {
        let line = line.trim_start();
        // `-q, --quiet ...` or `--listen <ADDR> ...`; description lines
        // that wrap never start with a dash.
        let rest = match line.as_bytes() {
            [b'-', b'-', ..] => line,
            [b'-', _, b',', b' ', ..] => &line[4..],
            _ => continue,
        };
        let mut words = rest.split_whitespace();
        let Some(long) = words.next().filter(|w| w.starts_with("--")) else {
            continue;
        };
        if long == "--help" || long == "--version" {
            continue;
        }
        let value = words
            .next()
            .and_then(|w| w.strip_prefix('<'))
            .and_then(|w| w.strip_suffix('>'))
            .map(str::to_owned);
        options.push((long.to_owned(), value));
    }
    options
}

/// Whether TEXT has OPTION as a whole word (`--server` is not found in
/// `--server-pid`), followed by ` VALUE` when it takes one.
fn mentions(text: &str, option: &str, value: Option<&str>) -> bool {
    let wanted = match value {
        Some(value) => format!("{option} {value}"),
        None => option.to_owned(),
    };
    text.match_indices(&wanted).any(|(at, _)| {
        !text[at + wanted.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_synopsis_in_the_readme_has_every_option_of_help() {
    let synopses = readme_synopses();
    assert!(
        synopses.iter().any(|s| s.program == ["server"]),
        "the server's synopsis was not found in README.md: {synopses:?}"
    );
    let mut problems = Vec::new();
    for synopsis in &synopses {
        let options = help_options(&synopsis.program);
        assert!(
            options.len() > 1,
            "too few options read from chat {:?} --help: {options:?}",
            synopsis.program
        );
        let program = synopsis.program.join(" ");
        for (long, value) in &options {
            if !mentions(&synopsis.text, long, value.as_deref()) {
                let shown = match value {
                    Some(value) => format!("[{long} {value}]"),
                    None => format!("[{long}]"),
                };
                problems.push(format!("chat {program}: {shown} is missing"));
            }
        }
        for word in synopsis
            .text
            .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        {
            if word.starts_with("--") && !options.iter().any(|(long, _)| long == word) {
                problems.push(format!("chat {program}: {word} is not in --help"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "README.md's synopses and --help differ:\n{}",
        problems.join("\n")
    );
}
