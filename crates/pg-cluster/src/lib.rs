//! [`Cluster`]: a throwaway PostgreSQL server for tests and benchmarks.
//!
//! It is made with the system's own `initdb` and `pg_ctl` in a temporary
//! folder, listens on a free loopback port, trusts local connections, and
//! is stopped and deleted when dropped. PostgreSQL refuses to run as root,
//! so under root the server runs as the `postgres` user that Debian's
//! package creates.
//!
//! [`Setup`] asks for more than that: TLS with a certificate signed by an
//! authority made at start ([`Cluster::ca_file`]), TLS required of every
//! TCP connection, and roles that must log in with a password.

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

/// What a cluster is started with beyond the defaults (no TLS, every
/// local connection trusted).
#[derive(Debug, Clone, Default)]
pub struct Setup {
    /// TLS on (`ssl = on`), with a certificate for these host names or IP
    /// addresses, signed by a certificate authority made at start.
    pub tls_names: Vec<String>,
    /// TCP connections without TLS are refused (`hostssl` rules only).
    pub tls_required: bool,
    /// Roles (name, password) that log in over TCP with a password only
    /// (`scram-sha-256`); the rest of the cluster stays trusted.
    pub password_users: Vec<(String, String)>,
}

impl Setup {
    /// TLS on, for `localhost` and `127.0.0.1`, and required.
    pub fn tls_required() -> Setup {
        Setup {
            tls_names: vec!["localhost".into(), "127.0.0.1".into()],
            tls_required: true,
            ..Setup::default()
        }
    }
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
    /// Whether the server speaks TLS (its files are in `tls/`).
    tls: bool,
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// Starts a cluster, or says why it cannot (no PostgreSQL binaries).
    pub fn start(durability: Durability) -> Result<Cluster, String> {
        Cluster::start_with(durability, &Setup::default())
    }

    /// [`Cluster::start`] with the TLS and password logins of `setup`.
    pub fn start_with(durability: Durability, setup: &Setup) -> Result<Cluster, String> {
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
            tls: !setup.tls_names.is_empty(),
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
        if cluster.tls {
            cluster.make_certificates(&setup.tls_names)?;
        }
        cluster.write_hba(setup)?;
        cluster.port = free_port()?;
        cluster.start_server()?;
        for (name, password) in &setup.password_users {
            let url = cluster.url("postgres");
            cluster.sql(
                &url,
                &format!(
                    "CREATE ROLE \"{}\" LOGIN PASSWORD '{}'",
                    name.replace('"', "\"\""),
                    password.replace('\'', "''")
                ),
            );
        }
        Ok(cluster)
    }

    /// Starts a cluster for the test `name`, or prints loudly that the test
    /// is skipped because the binaries are missing. In CI (`CI` is set) a
    /// missing binary fails the test instead.
    pub fn for_test(name: &str) -> Option<Cluster> {
        Cluster::for_test_with(name, &Setup::default())
    }

    /// [`Cluster::for_test`] with `setup`.
    pub fn for_test_with(name: &str, setup: &Setup) -> Option<Cluster> {
        match Cluster::start_with(Durability::Off, setup) {
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
        let name = self.new_database(USER);
        self.url(&name)
    }

    /// A new, empty database that `owner` (one of the [`Setup`]'s password
    /// users, say) owns; returns its URL, as `owner`, without a password.
    pub fn create_database_for(&self, owner: &str) -> String {
        let name = self.new_database(owner);
        format!("postgres://{owner}@127.0.0.1:{}/{name}", self.port)
    }

    fn new_database(&self, owner: &str) -> String {
        let name = format!("batch{}", DATABASES.fetch_add(1, Ordering::Relaxed));
        let port = self.port.to_string();
        self.check(
            "createdb",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                USER,
                "-O",
                owner,
                &name,
            ],
        )
        .expect("createdb on a running cluster");
        name
    }

    /// The PEM file of the authority that signed the server's certificate,
    /// for `sslrootcert`.
    ///
    /// # Panics
    /// When the cluster was started without TLS.
    pub fn ca_file(&self) -> PathBuf {
        assert!(self.tls, "the cluster was started without TLS");
        self.dir.path().join("tls/ca.pem")
    }

    /// Makes an authority and a server certificate for `names` signed by
    /// it, in `tls/`; the key is the server user's alone, as PostgreSQL
    /// demands.
    fn make_certificates(&self, names: &[String]) -> Result<(), String> {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let e = |e: rcgen::Error| format!("cannot make the test certificates: {e}");
        let ca_key = KeyPair::generate().map_err(e)?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "orchestrator test authority");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).map_err(e)?;
        let key = KeyPair::generate().map_err(e)?;
        let mut server = CertificateParams::new(names.to_vec()).map_err(e)?;
        server
            .distinguished_name
            .push(DnType::CommonName, names.first().map_or("server", |n| n));
        let server = server.signed_by(&key, &ca, &ca_key).map_err(e)?;
        let dir = self.dir.path().join("tls");
        let io = |e: std::io::Error| format!("cannot write the test certificates: {e}");
        std::fs::create_dir(&dir).map_err(io)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).map_err(io)?;
        for (file, text, mode) in [
            ("ca.pem", ca.pem(), 0o644),
            ("server.crt", server.pem(), 0o644),
            ("server.key", key.serialize_pem(), 0o600),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, text).map_err(io)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
            if let Some(user) = &self.run_as {
                let (uid, gid) = user_ids(user).ok_or(format!("no `{user}` user"))?;
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Rewrites `pg_hba.conf` for `setup`: its password users' rules first
    /// (the first rule that matches decides), and `hostssl` for every TCP
    /// rule when TLS is required.
    fn write_hba(&self, setup: &Setup) -> Result<(), String> {
        let path = self.data_dir().join("pg_hba.conf");
        let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
        let host = if setup.tls_required {
            "hostssl"
        } else {
            "host"
        };
        let mut rules: Vec<String> = setup
            .password_users
            .iter()
            .flat_map(|(name, _)| {
                ["127.0.0.1/32", "::1/128"]
                    .map(|net| format!("{host} all \"{name}\" {net} scram-sha-256"))
            })
            .collect();
        for line in text.lines() {
            match line.strip_prefix("host ") {
                Some(rest) if setup.tls_required => rules.push(format!("hostssl {rest}")),
                _ => rules.push(line.to_owned()),
            }
        }
        std::fs::write(&path, rules.join("\n") + "\n").map_err(|e| e.to_string())
    }

    /// Runs `statement` on the database at `url` (a test's back door).
    pub fn sql(&self, url: &str, statement: &str) {
        self.check("psql", &[url, "-v", "ON_ERROR_STOP=1", "-c", statement])
            .expect("psql on a running cluster");
    }

    /// The answer of `query` on the database at `url`, unaligned, without
    /// headers (a test's back door).
    pub fn query(&self, url: &str, query: &str) -> String {
        let output = self
            .check("psql", &[url, "-v", "ON_ERROR_STOP=1", "-At", "-c", query])
            .expect("psql on a running cluster");
        String::from_utf8_lossy(&output.stdout).into_owned()
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
        if self.tls {
            let tls = self.dir.path().join("tls");
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                tls.join("server.crt").display(),
                tls.join("server.key").display()
            ));
        }
        self.check(
            "pg_ctl",
            &["-D", &data, "-l", &log, "-o", &options, "-w", "start"],
        )
        .map(drop)
    }

    /// The folder of the server's Unix socket.
    pub fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// The port the server listens on (and its socket's number).
    pub fn port(&self) -> u16 {
        self.port
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
