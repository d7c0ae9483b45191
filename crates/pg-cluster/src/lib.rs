//! [`Cluster`]: a throwaway PostgreSQL server for tests and benchmarks.
//!
//! It is made with the system's own `initdb` and `pg_ctl` in a temporary
//! folder, listens on a free loopback port, trusts local connections, and
//! is stopped and deleted when dropped. PostgreSQL refuses to run as root,
//! so under root the server runs as the `postgres` user that Debian's
//! package creates.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The database user every cluster trusts.
pub const USER: &str = "orchestrator";

/// How the server trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit, as in production: for benchmarks.
    Full,
    /// No fsync: for tests, which lose nothing if the machine crashes.
    Off,
}

/// A running throwaway server; see the module documentation.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    durability: Durability,
    /// `Some("postgres")` when this process is root.
    run_as: Option<String>,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Starts a cluster, or says why it cannot (no PostgreSQL binaries).
    pub fn start(durability: Durability) -> Result<Cluster, String> {
        let bin = binaries().ok_or(
            "no PostgreSQL binaries (initdb, pg_ctl) found; install Debian's `postgresql` package \
             or set ORCHESTRATOR_PG_BIN to their folder",
        )?;
        let dir = tempfile::Builder::new()
            .prefix("orchestrator-pg-")
            .tempdir()
            .map_err(|e| format!("cannot make a folder for the cluster: {e}"))?;
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            let (uid, gid) = user_ids(user).ok_or(format!(
                "running as root, and there is no `{user}` user to run PostgreSQL as"
            ))?;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
                .map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("cannot hand the cluster's folder to {user}: {e}"))?;
        }
        let mut cluster = Cluster {
            dir,
            bin,
            port: 0,
            durability,
            run_as,
        };
        let data = cluster.data();
        cluster.check(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        )?;
        cluster.port = free_port()?;
        cluster.start_server()?;
        Ok(cluster)
    }

    /// Starts a cluster for the test `name`, or prints loudly that the test
    /// is skipped because the binaries are missing. In CI (`CI` is set) a
    /// missing binary fails the test instead.
    pub fn for_test(name: &str) -> Option<Cluster> {
        match Cluster::start(Durability::Off) {
            Ok(cluster) => Some(cluster),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("{name} needs PostgreSQL, and CI must run it: {why}")
            }
            Err(why) => {
                eprintln!("SKIPPED {name}: {why}");
                None
            }
        }
    }

    /// A new, empty database; returns its URL.
    pub fn create_database(&self) -> String {
        let name = format!("batch{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        self.check(
            "createdb",
            &["-h", "127.0.0.1", "-p", &port, "-U", USER, &name],
        )
        .expect("createdb on a running cluster");
        self.url(&name)
    }

    /// Runs `statement` on the database at `url` (a test's back door).
    pub fn sql(&self, url: &str, statement: &str) {
        self.check("psql", &[url, "-v", "ON_ERROR_STOP=1", "-c", statement])
            .expect("psql on a running cluster");
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Stops the server, as an outage would (connections are cut).
    pub fn stop_server(&self) -> Result<(), String> {
        let data = self.data();
        self.check("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"])
            .map(drop)
    }

    /// Starts the server again on the same port, with the same data.
    pub fn start_server(&self) -> Result<(), String> {
        let data = self.data();
        let log = self.dir.path().join("server.log").display().to_string();
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        if self.durability == Durability::Off {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        self.check(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )
        .map(drop)
    }

    /// The cluster's data folder (its `postmaster.pid` names the server's
    /// process, for measuring what the server costs).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn data(&self) -> String {
        self.data_dir().display().to_string()
    }

    /// Runs one of the binaries (as the server's user), failing with its
    /// output when it fails.
    fn check(&self, program: &str, args: &[&str]) -> Result<Output, String> {
        let path = self.bin.join(program);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&path);
                c
            }
            None => Command::new(&path),
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.check("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

/// The folder with `initdb` and `pg_ctl`: `ORCHESTRATOR_PG_BIN`, Debian's
/// versioned folders (newest first), or `PATH`.
fn binaries() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORCHESTRATOR_PG_BIN") {
        return Some(PathBuf::from(dir)).filter(|d| d.join("initdb").exists());
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .find(|d| d.join("initdb").exists() && d.join("pg_ctl").exists())
    })
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

/// A user's uid and gid, from /etc/passwd.
fn user_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string(Path::new("/etc/passwd")).ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&user))
            .then(|| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
            .flatten()
    })
}

/// A loopback port nobody listens on now.
fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}
