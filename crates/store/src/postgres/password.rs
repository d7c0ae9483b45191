//! [`find`]: the password of a store's URL that has none, from where libpq
//! looks (`PGPASSWORD`, the passfile) or a `--password-file`; so that no
//! password need be on a command line, where every local user can read it
//! (`/proc/PID/cmdline`) and the shell's history keeps it.
//!
//! In order: the URL's own password; the `--password-file` (a file that
//! holds the password alone); `PGPASSWORD`; the passfile (`PGPASSFILE`,
//! or `~/.pgpass`), whose first line that matches the connection's host,
//! port, database and user gives it. A password file or passfile that its
//! group or others may read is not read, as libpq refuses it; a
//! `--password-file` given so is an error, a passfile so is said when the
//! server then asks for a password.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tokio_postgres::config::Host;

/// Where a password was found, for messages (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Source {
    Url,
    File(PathBuf),
    Env,
    Passfile(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Url => f.write_str("the URL"),
            Source::File(path) => write!(f, "the password file {}", path.display()),
            Source::Env => f.write_str("PGPASSWORD"),
            Source::Passfile(path) => write!(f, "the passfile {}", path.display()),
        }
    }
}

/// What [`find`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Found {
    /// The password and where it came from.
    pub password: Option<(String, Source)>,
    /// Why a passfile that is there was not read.
    pub passfile_refused: Option<String>,
}

/// The environment variable `name`, as the process has it (tests pass
/// their own).
pub(super) type Env<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// The password for `config`, which has none of its own (see the module
/// documentation); `Err` when `password_file` cannot be used.
pub(super) fn find(
    config: &tokio_postgres::Config,
    password_file: Option<&Path>,
    env: Env<'_>,
) -> Result<Found, String> {
    if config.get_password().is_some() {
        return Ok(Found {
            password: Some((String::new(), Source::Url)),
            passfile_refused: None,
        });
    }
    if let Some(path) = password_file {
        let text = private_file(path).map_err(|why| format!("--password-file: {why}"))?;
        let password = text.trim_end_matches(['\n', '\r']);
        if password.is_empty() || password.contains('\n') {
            return Err(format!(
                "--password-file: {} must hold the password alone, on one line",
                path.display()
            ));
        }
        return Ok(found(password.to_owned(), Source::File(path.to_owned())));
    }
    if let Some(password) = env("PGPASSWORD").filter(|p| !p.is_empty()) {
        let password = password
            .into_string()
            .map_err(|_| "PGPASSWORD is not UTF-8".to_string())?;
        return Ok(found(password, Source::Env));
    }
    let passfile = match env("PGPASSFILE").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => match env("HOME").filter(|h| !h.is_empty()) {
            Some(home) => Path::new(&home).join(".pgpass"),
            None => return Ok(Found::default()),
        },
    };
    if !passfile.exists() {
        return Ok(Found::default());
    }
    let text = match private_file(&passfile) {
        Ok(text) => text,
        Err(why) => {
            tracing::warn!("not reading the passfile: {why}");
            return Ok(Found {
                password: None,
                passfile_refused: Some(why),
            });
        }
    };
    let user = config
        .get_user()
        .map(str::to_owned)
        .or_else(|| env("USER").and_then(|u| u.into_string().ok()))
        .unwrap_or_default();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(name)) if !name.is_empty() => name.clone(),
        _ => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let database = config.get_dbname().unwrap_or(&user).to_owned();
    Ok(Found {
        password: lookup(&text, [&host, &port, &database, &user])
            .map(|password| (password, Source::Passfile(passfile))),
        passfile_refused: None,
    })
}

fn found(password: String, source: Source) -> Found {
    Found {
        password: Some((password, source)),
        passfile_refused: None,
    }
}

/// The text of `path`, a regular file only its owner may read or write
/// (libpq's rule for the passfile: `u=rw`, 0600, or less).
fn private_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    // Opened once, and what was opened is checked: not a name that may
    // point elsewhere by the time it is read (and without waiting on a
    // pipe, which is refused below).
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(format!(
            "{shown} may be read by its group or others (mode {mode:04o}); only its owner may: chmod 600 {shown}"
        ));
    }
    // A passfile of many lines is a few KiB; anything past 1 MiB is not one.
    // Read to one byte past it: a file that grew since it was looked at
    // is refused too, not cut.
    const MOST: u64 = 1 << 20;
    let mut text = String::new();
    file.take(MOST + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.len() as u64 > MOST {
        return Err(format!("{shown} is larger than 1 MiB: not a password file"));
    }
    Ok(text)
}

/// The password of the first line of a passfile's `text` whose host,
/// port, database and user match `wanted` (`*` matches anything; `\:` and
/// `\\` stand for `:` and `\`). Comments (`#`) and lines of fewer than
/// five fields are passed over.
fn lookup(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let fields = fields(line);
            if fields.len() < 5 {
                return None;
            }
            let matches = wanted
                .iter()
                .zip(&fields)
                .all(|(want, field)| field == "*" || field == want);
            // The password is the rest of the line, colons and all.
            matches.then(|| fields[4..].join(":"))
        })
}

/// A passfile line split at its unescaped colons, escapes undone.
fn fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(next) => fields.last_mut().expect("one field").push(next),
                None => fields.last_mut().expect("one field").push('\\'),
            },
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const WANTED: [&str; 4] = ["db.internal", "5432", "batch", "worker"];

    #[test]
    fn the_first_matching_line_of_a_passfile_gives_the_password() {
        let text = "\
# host:port:database:user:password
other:5432:batch:worker:not-this
db.internal:5432:batch:worker:s3cret
*:*:*:*:fallback
";
        assert_eq!(lookup(text, WANTED).as_deref(), Some("s3cret"));
        assert_eq!(
            lookup(text, ["x", "1", "y", "z"]).as_deref(),
            Some("fallback")
        );
        assert_eq!(lookup("db.internal:5432:batch:worker", WANTED), None);
        assert_eq!(lookup("*:5433:*:*:p", WANTED), None);
    }

    #[test]
    fn escapes_and_colons_in_a_passfile_are_undone() {
        let text = r"db.internal:5432:batch:worker:a\:b\\c:d";
        assert_eq!(lookup(text, WANTED).as_deref(), Some(r"a:b\c:d"));
        let text = r"db\.internal:5432:ba\:tch:worker:p";
        assert_eq!(
            lookup(text, ["db.internal", "5432", "ba:tch", "worker"]).as_deref(),
            Some("p")
        );
    }

    fn config(url: &str) -> tokio_postgres::Config {
        url.parse().unwrap()
    }

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn the_password_is_looked_for_in_libpqs_order_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let passfile = write(dir.path(), "pgpass", "*:*:*:worker:from-passfile\n", 0o600);
        let file = write(dir.path(), "password", "from-file\n", 0o600);
        let mut vars: HashMap<&str, OsString> = HashMap::new();
        vars.insert("PGPASSFILE", passfile.clone().into());
        let url = config("postgres://worker@db.internal/batch");
        let lookup = |vars: &HashMap<&str, OsString>, file: Option<&Path>| {
            let env = |name: &str| vars.get(name).cloned();
            find(&url, file, &env).unwrap()
        };

        let found = lookup(&vars, None);
        assert_eq!(
            found.password,
            Some(("from-passfile".into(), Source::Passfile(passfile.clone())))
        );
        vars.insert("PGPASSWORD", "from-env".into());
        assert_eq!(
            lookup(&vars, None).password,
            Some(("from-env".into(), Source::Env))
        );
        assert_eq!(
            lookup(&vars, Some(&file)).password,
            Some(("from-file".into(), Source::File(file.clone())))
        );
        // The URL's own wins; it is not copied.
        let env = |_: &str| None;
        let own = find(&config("postgres://worker:pw@db/batch"), Some(&file), &env).unwrap();
        assert_eq!(own.password, Some((String::new(), Source::Url)));
        let shown = Source::File(file.clone()).to_string();
        assert!(!shown.contains("from-file"), "{shown}");
    }

    #[test]
    fn a_pipe_a_folder_or_a_huge_file_is_no_password_file() {
        let dir = tempfile::tempdir().unwrap();
        let pipe = dir.path().join("pipe");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &pipe,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        // Refused at once: a pipe with no writer is not waited on.
        assert!(
            private_file(&pipe)
                .unwrap_err()
                .ends_with("is not a regular file")
        );
        assert!(
            private_file(dir.path())
                .unwrap_err()
                .ends_with("is not a regular file")
        );
        let huge = write(dir.path(), "huge", &"x".repeat((1 << 20) + 1), 0o600);
        assert!(
            private_file(&huge)
                .unwrap_err()
                .contains("larger than 1 MiB")
        );
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let passfile = write(dir.path(), "pgpass", "*:*:*:*:secret\n", 0o644);
        let file = write(dir.path(), "password", "secret\n", 0o640);
        let url = config("postgres://worker@db.internal/batch");
        let env = |name: &str| (name == "PGPASSFILE").then(|| passfile.clone().into());

        let found = find(&url, None, &env).unwrap();
        assert_eq!(found.password, None);
        let why = found.passfile_refused.unwrap();
        assert!(
            why.contains("may be read by its group or others (mode 0644)")
                && why.contains("chmod 600"),
            "{why}"
        );
        let error = find(&url, Some(&file), &env).unwrap_err();
        assert!(
            error.starts_with("--password-file: ") && error.contains("(mode 0640)"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");

        // No passfile at all is no error.
        let missing = dir.path().join("none");
        let env = |name: &str| (name == "PGPASSFILE").then(|| missing.clone().into());
        assert_eq!(find(&url, None, &env).unwrap(), Found::default());
    }
}
