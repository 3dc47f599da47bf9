//! `chat account`: the administrator adds, deletes, re-passwords and lists
//! the server's accounts, in its database, while it runs or not.
//!
//! It opens the database as an ordinary SQLite client: not the server's
//! `flock` (which only keeps a second server out), and with a busy
//! timeout, so it waits out the server's commits. The server reads the
//! accounts table at every `login`, and a thread of it notices changes
//! within a second for `nick`: no restart, no signal.
//!
//! With `--cluster` it changes the cluster's accounts instead, in the
//! key-value bucket on NATS that every server of the cluster watches (see
//! `server::cluster::admin`), and `import` copies a database's accounts
//! there: how a server's accounts come along when it joins a cluster.
//!
//! Exit status: 0 done; 1 the account exists (add) or does not (del,
//! passwd), or the database or NATS failed; 2 a bad name or password, or
//! no password given.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
use zeroize::Zeroizing;

use crate::cli::{AccountAction, AccountArgs};
use crate::fail::{Fail, Outcome};
use crate::server::accounts::{self, Accounts, Book, Cost};
use crate::server::cluster::{self, admin::Bucket, book::Value};

pub fn run(args: &AccountArgs) -> Outcome {
    if let Some(config) = cluster::Config::of(&args.nats, std::time::Duration::ZERO) {
        return in_cluster(args, &config);
    }
    let path = db_path(args)?;
    let open = || {
        if !path.exists() {
            return Err(Fail::runtime(format!(
                "no database at {}; start the server once, or pass --db",
                path.display()
            )));
        }
        Book::Db(path.clone()).open().map_err(Fail::runtime)
    };
    match &args.action {
        AccountAction::List => {
            let list = open()?.list().map_err(Fail::runtime)?;
            let mut out = io::stdout().lock();
            for a in list {
                let _ = writeln!(out, "{}\t{}", a.name, utc(a.created_ms));
            }
            Ok(())
        }
        AccountAction::Add { name } => {
            let key = key_of(name)?;
            let accounts = open()?;
            if accounts.find(&key).map_err(Fail::runtime)?.is_some() {
                return Err(exists(name));
            }
            let hash = new_hash(name)?;
            if !accounts
                .add(name, &key, &hash, now_ms())
                .map_err(Fail::runtime)?
            {
                return Err(exists(name));
            }
            Ok(())
        }
        AccountAction::Del { name } => {
            let key = key_of(name)?;
            if !open()?.delete(&key).map_err(Fail::runtime)? {
                return Err(missing(name));
            }
            Ok(())
        }
        AccountAction::Passwd { name } => {
            let key = key_of(name)?;
            let accounts = open()?;
            if accounts.find(&key).map_err(Fail::runtime)?.is_none() {
                return Err(missing(name));
            }
            let hash = new_hash(name)?;
            set(&accounts, &key, &hash, name)
        }
        AccountAction::Import => Err(Fail::usage(
            "chat account import copies a database's accounts into a cluster's: \
             give the cluster's NATS with --cluster URL",
        )),
    }
}

/// The same actions on the cluster's accounts bucket.
fn in_cluster(args: &AccountArgs, config: &cluster::Config) -> Outcome {
    // Reached before a password is asked for: an unreachable NATS fails
    // first.
    let bucket = Bucket::open(config).map_err(Fail::runtime)?;
    let changed = |name: &str| {
        Fail::runtime(format!(
            "{name} changed on another server meanwhile; run the command again"
        ))
    };
    match &args.action {
        AccountAction::List => {
            let mut out = io::stdout().lock();
            for (value, changed_ms) in bucket.list().map_err(Fail::runtime)? {
                let _ = writeln!(out, "{}\t{}", value.name, utc(changed_ms));
            }
            Ok(())
        }
        AccountAction::Add { name } => {
            let key = key_of(name)?;
            if bucket.find(&key).map_err(Fail::runtime)?.is_some() {
                return Err(exists(name));
            }
            let value = Value {
                name: name.clone(),
                hash: new_hash(name)?,
            };
            if !bucket.add(&key, &value).map_err(Fail::runtime)? {
                return Err(exists(name));
            }
            Ok(())
        }
        AccountAction::Del { name } => {
            let key = key_of(name)?;
            let Some(found) = bucket.find(&key).map_err(Fail::runtime)? else {
                return Err(missing(name));
            };
            if !bucket.delete(&key, &found).map_err(Fail::runtime)? {
                return Err(changed(name));
            }
            Ok(())
        }
        AccountAction::Passwd { name } => {
            let key = key_of(name)?;
            let Some(found) = bucket.find(&key).map_err(Fail::runtime)? else {
                return Err(missing(name));
            };
            let value = Value {
                name: found.value.name.clone(),
                hash: new_hash(name)?,
            };
            if !bucket
                .replace(&key, &found, &value)
                .map_err(Fail::runtime)?
            {
                return Err(changed(name));
            }
            Ok(())
        }
        AccountAction::Import => import(args, &bucket),
    }
}

/// Copies every account of the database into the bucket, hash and all;
/// a name the cluster has already keeps the cluster's account.
fn import(args: &AccountArgs, bucket: &Bucket) -> Outcome {
    let path = db_path(args)?;
    if !path.exists() {
        return Err(Fail::runtime(format!(
            "no database at {}; pass the server's --db",
            path.display()
        )));
    }
    let accounts = Book::Db(path).open().map_err(Fail::runtime)?;
    let (mut added, mut kept) = (0, Vec::new());
    for account in accounts.list().map_err(Fail::runtime)? {
        let key = key_of(&account.name)?;
        let Some((name, hash)) = accounts.find(&key).map_err(Fail::runtime)? else {
            continue; // deleted meanwhile
        };
        if bucket
            .add(&key, &Value { name, hash })
            .map_err(Fail::runtime)?
        {
            added += 1;
        } else {
            kept.push(account.name);
        }
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{added} accounts copied into the cluster");
    if !kept.is_empty() {
        let _ = writeln!(
            out,
            "{} kept as the cluster has them (the names were accounts there already): {}",
            kept.len(),
            kept.join(", ")
        );
    }
    Ok(())
}

/// Exit status 1: `add` of a name that is an account.
fn exists(name: &str) -> Fail {
    Fail::runtime(format!("{name} is an account already"))
}

/// Exit status 1: `del` or `passwd` of a name that is none.
fn missing(name: &str) -> Fail {
    Fail::runtime(format!("{name} is not an account"))
}

fn set(accounts: &Accounts, key: &str, hash: &str, name: &str) -> Outcome {
    if accounts.set_hash(key, hash).map_err(Fail::runtime)? {
        Ok(())
    } else {
        Err(missing(name))
    }
}

fn db_path(args: &AccountArgs) -> Result<PathBuf, Fail> {
    match args.db.as_deref() {
        Some(p) if p.as_os_str() == "none" => Err(Fail::usage(
            "--db none keeps accounts in the server's memory only; \
             chat account needs the database file",
        )),
        Some(p) => Ok(p.to_owned()),
        None => crate::server::default_db(
            std::env::var("XDG_DATA_HOME").ok().as_deref(),
            std::env::var("HOME").ok().as_deref(),
        )
        .ok_or_else(|| Fail::usage("no database given: pass --db PATH or set HOME")),
    }
}

fn key_of(name: &str) -> Result<String, Fail> {
    accounts::account_key(name)
        .map(|k| k.as_str().to_owned())
        .map_err(|why| Fail::usage(format!("{name} cannot be an account: {why}")))
}

/// Reads the password and hashes it; the plaintext is wiped on return.
fn new_hash(name: &str) -> Result<String, Fail> {
    let password = read_password(name)?;
    if let Some(why) = accounts::check_password(&password) {
        return Err(Fail::usage(why));
    }
    accounts::hash(password.as_bytes(), Cost::OWASP).map_err(Fail::runtime)
}

/// From the terminal without echo, twice; else one line of stdin.
fn read_password(name: &str) -> Result<Zeroizing<String>, Fail> {
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        let mut line = Zeroizing::new(String::new());
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| Fail::runtime(format!("cannot read the password: {e}")))?;
        let trimmed = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(trimmed);
        if line.is_empty() {
            return Err(Fail::usage("no password on standard input"));
        }
        return Ok(line);
    }
    let first = prompt(&format!("Password for {name}: "))?;
    let second = prompt("Again: ")?;
    if *first != *second {
        return Err(Fail::usage("the two passwords differ; nothing was changed"));
    }
    Ok(first)
}

/// One line from the terminal with echo off, restored however it ends.
fn prompt(text: &str) -> Result<Zeroizing<String>, Fail> {
    let stdin = io::stdin();
    let fail = |e: &dyn std::fmt::Display| Fail::runtime(format!("cannot read the password: {e}"));
    let saved = tcgetattr(&stdin).map_err(|e| fail(&e))?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    // Echo off before the prompt shows, so nothing typed after it is seen.
    tcsetattr(&stdin, SetArg::TCSAFLUSH, &quiet).map_err(|e| fail(&e))?;
    eprint!("{text}");
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSAFLUSH, &saved);
    read.map_err(|e| fail(&e))?;
    let trimmed = line.trim_end_matches(['\n', '\r']).len();
    line.truncate(trimmed);
    Ok(line)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// `2026-12-02T22:40:46Z`, from milliseconds since the epoch.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::utc(1_796_251_715_308), "2026-12-02T22:48:35Z");
    }
}
