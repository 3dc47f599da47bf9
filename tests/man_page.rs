//! The man page keeps up with the code: every long option of every
//! (sub)command appears in `man/chat.1`, groff reads the page without a
//! warning, and the scripting example in EXAMPLES runs as printed.

use std::path::Path;
use std::process::Command;

use chat::cli::Cli;
use clap::CommandFactory;

/// The page's source with roff's escaped dashes (`\-`) read as plain ones,
/// so `\-\-max\-line` and `--max-line` both count as mentioning the option.
fn man_page() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/chat.1");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace("\\-", "-")
}

/// Every (path, long option) of CMD and its subcommands, recursively.
fn long_options(cmd: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    for arg in cmd.get_arguments() {
        if let Some(long) = arg.get_long() {
            out.push((path.to_string(), long.to_string()));
        }
    }
    for sub in cmd.get_subcommands() {
        long_options(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

/// Whether PAGE has OPTION as a whole word (`--server` is not found in
/// `--server-pid`).
fn mentions(page: &str, option: &str) -> bool {
    page.match_indices(option).any(|(at, _)| {
        !page[at + option.len()..]
            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    })
}

#[test]
fn every_long_option_is_in_the_man_page() {
    let page = man_page();
    let mut options = Vec::new();
    long_options(&Cli::command(), "chat", &mut options);
    assert!(
        options.len() > 10,
        "the walk found too few options: {options:?}"
    );
    let missing: Vec<String> = options
        .iter()
        .filter(|(_, long)| !mentions(&page, &format!("--{long}")))
        .map(|(path, long)| format!("{path} --{long}"))
        .collect();
    assert!(missing.is_empty(), "not in man/chat.1: {missing:?}");
}

#[test]
fn every_subcommand_is_in_the_man_page() {
    let page = man_page();
    let mut names = Vec::new();
    let mut stack = vec![Cli::command()];
    while let Some(cmd) = stack.pop() {
        for sub in cmd.get_subcommands() {
            names.push(sub.get_name().to_string());
            stack.push(sub.clone());
        }
    }
    assert!(
        names.iter().any(|n| n == "fanout"),
        "the walk missed bench's modes: {names:?}"
    );
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !page.contains(n.as_str()))
        .collect();
    assert!(missing.is_empty(), "not in man/chat.1: {missing:?}");
}

#[test]
fn groff_reads_the_man_page_without_warnings() {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/chat.1");
    let out = match Command::new("groff")
        .args(["-man", "-ww", "-z"])
        .arg(&page)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            println!("note: groff is not installed ({e}); man page lint skipped");
            return;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "groff failed: {stderr}");
    assert_eq!(stderr, "", "groff warnings for man/chat.1");
}

/// The `.EX` ... `.EE` blocks of the page's EXAMPLES section, as the
/// reader sees them: roff's escapes turned into the characters they print.
fn example_blocks() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("man/chat.1");
    let source = std::fs::read_to_string(&path).unwrap();
    let section = source
        .split("\n.SH ")
        .find(|s| s.starts_with("EXAMPLES"))
        .expect("an EXAMPLES section in man/chat.1");
    let mut blocks = Vec::new();
    let mut block: Option<String> = None;
    for line in section.lines() {
        match (line, &mut block) {
            (".EX", None) => block = Some(String::new()),
            (".EE", Some(_)) => blocks.extend(block.take()),
            (line, Some(text)) => {
                assert!(!line.starts_with('.'), "a request inside .EX: {line}");
                text.push_str(&unescape_roff(line));
                text.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

/// The escapes an example uses; any other one fails, rather than the test
/// running text that differs from what `man` shows.
fn unescape_roff(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('-') => out.push('-'),
            Some('e') => out.push('\\'),
            Some('&') => {}
            other => panic!("unknown roff escape \\{other:?} in example line {line:?}"),
        }
    }
    out
}

/// The recipe for starting a server on a free port from a script, run with
/// bash exactly as printed (with `chat` the binary under test): it must
/// wait for the server's line, get the address, use it, and stop the
/// server. Run three times, as the race it once had showed every time.
#[test]
fn the_free_port_example_works_as_printed() {
    let recipe = example_blocks()
        .into_iter()
        .find(|b| b.contains("--listen 127.0.0.1:0"))
        .expect("the free-port example in EXAMPLES");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_chat")).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // After the recipe: what it found, and whether its server is gone.
    let check = "\nwait $pid 2>/dev/null\nprintf 'addr=%s\\n' \"$addr\"\nif kill -0 $pid 2>/dev/null; then echo server still running; fi\n";
    for round in 0..3 {
        let dir =
            std::env::temp_dir().join(format!("chat-man-example-{}-{round}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(format!("{recipe}{check}"))
            .current_dir(&dir)
            .env("PATH", &path)
            .env_remove("CHAT_SERVER")
            // The recipe's server keeps no history here: the tester's own
            // history database may be held by a server of theirs.
            .env("CHAT_DB", "none")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run bash");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("the example did not finish:\n{recipe}");
            }
            std::thread::sleep(std::time::Duration::from_millis(10)); // polling a child's exit
        }
        let out = child.wait_with_output().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let addr = stdout
            .lines()
            .find_map(|l| l.strip_prefix("addr="))
            .unwrap_or("");
        assert!(
            addr.parse::<std::net::SocketAddr>()
                .is_ok_and(|a| a.ip().is_loopback() && a.port() != 0),
            "round {round}: the example read the address {addr:?}\n{recipe}\nstdout: {stdout}\nstderr: {stderr}"
        );
        assert!(
            !stdout.contains("server still running"),
            "round {round}: the example left its server running: {stdout}"
        );
        assert!(
            out.status.success() && stderr.is_empty(),
            "round {round}: {}\nstdout: {stdout}\nstderr: {stderr}",
            out.status
        );
    }
}
