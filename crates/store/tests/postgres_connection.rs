//! How the PostgreSQL store connects, against real servers: TLS in each
//! `sslmode` (and really encrypted: the server's `pg_stat_ssl` says so), a
//! certificate for another name or authority refused in one clear line,
//! the password from a file only its owner may read, and a server that
//! takes no more connections naming the setting to change.

use orchestrator_pg_cluster::{Cluster, Setup};
use orchestrator_store::prelude::*;
use orchestrator_store::{
    DEFAULT_LEASE, PgOptions, PostgresStore, SslMode, StoreConnection, StoreError, TlsOptions,
};

/// `url` with `query` added.
fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// The reason a store could not be opened at `url`.
fn refused(url: &str, options: &PgOptions) -> String {
    match PostgresStore::open_with(url, options) {
        Ok(_) => panic!("{url} opened"),
        Err(StoreError::Open { reason, .. }) => reason,
        Err(other) => panic!("not an open error: {other}"),
    }
}

fn connection(store: &PostgresStore) -> StoreConnection {
    store.connection().unwrap().expect("a server's store says")
}

#[test]
fn each_sslmode_connects_to_a_server_that_requires_tls_and_is_encrypted() {
    let Some(cluster) =
        Cluster::for_test_with("each_sslmode_connects_over_tls", &Setup::tls_required())
    else {
        return;
    };
    let url = cluster.create_database();
    let ca = cluster.ca_file();
    for (query, mode) in [
        ("sslmode=require".to_string(), "require"),
        (
            format!("sslmode=verify-ca&sslrootcert={}", ca.display()),
            "verify-ca",
        ),
        (
            format!("sslmode=verify-full&sslrootcert={}", ca.display()),
            "verify-full",
        ),
        // The default, as libpq's: TLS when the server offers it.
        (String::new(), "prefer"),
    ] {
        let store = PostgresStore::open(&with(&url, &query), DEFAULT_LEASE)
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        let seen = connection(&store);
        assert!(seen.encrypted, "{query}: {seen:?}");
        assert_eq!(seen.sslmode, mode);
        assert!(seen.to_string().starts_with("TLS"), "{seen}");
        assert_eq!(store.job_count().unwrap(), 0);
    }
    // The authority may come from the options (`sslrootcert` in
    // orchestrator.toml, or --ca-file) rather than the URL.
    for tls in [
        TlsOptions {
            mode: Some(SslMode::VerifyFull),
            root_cert: Some(ca.clone()),
            ..TlsOptions::default()
        },
        TlsOptions {
            mode: Some(SslMode::VerifyFull),
            extra_roots: pem_certificates(&ca),
            ..TlsOptions::default()
        },
    ] {
        let options = PgOptions {
            tls,
            ..PgOptions::default()
        };
        let store = PostgresStore::open_with(&url, &options).unwrap();
        assert_eq!(connection(&store).sslmode, "verify-full");
        assert!(connection(&store).encrypted);
    }
}

fn pem_certificates(path: &std::path::Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name_or_authority() {
    let setup = Setup {
        tls_names: vec!["localhost".into()],
        ..Setup::default()
    };
    let Some(cluster) = Cluster::for_test_with("verify_full_refuses_another_name", &setup) else {
        return;
    };
    let url = cluster.create_database();
    let ca = cluster.ca_file().display().to_string();
    // The URL says 127.0.0.1; the certificate is for localhost only.
    let reason = refused(
        &with(&url, &format!("sslmode=verify-full&sslrootcert={ca}")),
        &PgOptions::default(),
    );
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.contains(r#"certificate not valid for name "127.0.0.1""#)
            && reason.contains("use sslmode=verify-ca"),
        "{reason}"
    );
    // verify-ca checks the authority, not the name.
    let store = PostgresStore::open(
        &with(&url, &format!("sslmode=verify-ca&sslrootcert={ca}")),
        Default::default(),
    )
    .unwrap();
    assert!(connection(&store).encrypted);
    // By the name the certificate lists, verify-full connects.
    let by_name = url.replacen("127.0.0.1", "localhost", 1);
    PostgresStore::open(
        &with(&by_name, &format!("sslmode=verify-full&sslrootcert={ca}")),
        Default::default(),
    )
    .unwrap();
    // Without the authority (the Mozilla roots alone), the chain fails.
    let reason = refused(
        &with(&by_name, "sslmode=verify-full"),
        &PgOptions::default(),
    );
    assert!(
        reason.contains("UnknownIssuer") && reason.contains("sslrootcert=FILE"),
        "{reason}"
    );
    // verify-ca trusts the named authority alone: another's, here another
    // test cluster's (of the same name, so the signature is what fails),
    // does not vouch for this server.
    let other = Cluster::for_test_with("verify_ca_other_authority", &setup)
        .expect("a second cluster starts where the first did");
    let theirs = other.ca_file().display().to_string();
    let reason = refused(
        &with(&url, &format!("sslmode=verify-ca&sslrootcert={theirs}")),
        &PgOptions::default(),
    );
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.contains("BadSignature")
            && reason.contains(
                "but another signed it: name the authority that signed it with sslrootcert=FILE"
            ),
        "{reason}"
    );
    // An unknown mode is named.
    let reason = refused(&with(&url, "sslmode=verify"), &PgOptions::default());
    assert_eq!(
        reason,
        r#"sslmode must be one of disable, prefer, require, verify-ca, verify-full, not "verify""#
    );
}

#[test]
fn sslmode_disable_fails_clearly_against_a_server_that_requires_tls() {
    let Some(cluster) = Cluster::for_test_with("sslmode_disable_fails", &Setup::tls_required())
    else {
        return;
    };
    let url = cluster.create_database();
    let reason = refused(&with(&url, "sslmode=disable"), &PgOptions::default());
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.contains("no encryption (SQLSTATE 28000)")
            && reason.contains("sslmode is disable: if the server takes only encrypted connections, use sslmode=require"),
        "{reason}"
    );

    // And the other way round: a server without TLS and sslmode=require.
    let Some(plain) = Cluster::for_test("sslmode_require_against_no_tls") else {
        return;
    };
    let url = plain.create_database();
    let reason = refused(&with(&url, "sslmode=require"), &PgOptions::default());
    assert!(reason.contains("the server does not offer"), "{reason}");
    // prefer goes on in the clear, and says so.
    let store = PostgresStore::open(&url, DEFAULT_LEASE).unwrap();
    assert_eq!(
        connection(&store).to_string(),
        "not encrypted (sslmode=prefer)"
    );
}

#[test]
fn a_password_comes_from_a_file_only_its_owner_may_read() {
    use std::os::unix::fs::PermissionsExt;
    let setup = Setup {
        password_users: vec![("worker".into(), "pw:with'odd\\chars".into())],
        ..Setup::tls_required()
    };
    let Some(cluster) = Cluster::for_test_with("a_password_from_a_file", &setup) else {
        return;
    };
    let url = with(&cluster.create_database_for("worker"), "sslmode=require");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("password");
    std::fs::write(&file, "pw:with'odd\\chars\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let options = PgOptions {
        password_file: Some(file.clone()),
        ..PgOptions::default()
    };
    let store = PostgresStore::open_with(&url, &options).unwrap();
    assert_eq!(store.job_count().unwrap(), 0);

    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let reason = refused(&url, &options);
    assert!(
        reason.starts_with("--password-file: ") && reason.contains("chmod 600"),
        "{reason}"
    );
    assert!(
        !reason.contains("odd"),
        "the password is not shown: {reason}"
    );

    // A wrong one is refused by the server; the message says where it
    // came from, never what it is.
    std::fs::write(&file, "wrong-password\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let reason = refused(&url, &options);
    assert!(
        reason.contains("password authentication failed for user \"worker\" (SQLSTATE 28P01)")
            && reason.contains(&format!(
                "the password came from the password file {}",
                file.display()
            )),
        "{reason}"
    );
    assert!(!reason.contains("wrong-password"), "{reason}");
}

#[test]
fn a_server_that_takes_no_more_connections_names_the_setting_to_change() {
    let Some(cluster) = Cluster::for_test("no_more_connections") else {
        return;
    };
    let url = cluster.create_database();
    cluster.sql(&url, "CREATE ROLE crowded LOGIN CONNECTION LIMIT 0");
    let crowded = url.replacen(orchestrator_pg_cluster::USER, "crowded", 1);
    let options = PgOptions {
        pool_size: 4,
        ..PgOptions::default()
    };
    let reason = refused(&crowded, &options);
    assert_eq!(reason.lines().count(), 1, "{reason}");
    assert!(
        reason.contains("too many connections")
            && reason.contains("up to --db-pool connections (4 now) plus 1")
            && reason.contains("max_connections"),
        "{reason}"
    );
}

#[test]
fn a_process_opens_no_more_connections_than_its_pool_and_writer() {
    let Some(cluster) = Cluster::for_test("no_more_than_its_pool") else {
        return;
    };
    let url = cluster.create_database();
    let options = PgOptions {
        pool_size: 2,
        ..PgOptions::default()
    };
    let store = std::sync::Arc::new(PostgresStore::open_with(&url, &options).unwrap());
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    store.status().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let database = url.rsplit('/').next().unwrap();
    let count = cluster.query(
        &url,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ),
    );
    let count: usize = count.trim().parse().unwrap();
    assert!(
        (1..=2 + orchestrator_store::WRITER_CONNECTIONS).contains(&count),
        "{count} connections"
    );
}

#[test]
fn a_unix_socket_url_connects_in_the_clear_as_before() {
    let Some(cluster) = Cluster::for_test("a_unix_socket_url") else {
        return;
    };
    let url = cluster.create_database();
    let database = url.rsplit('/').next().unwrap();
    let socket = format!(
        "postgres://{}@/{database}?host={}&port={}",
        orchestrator_pg_cluster::USER,
        cluster.socket_dir().display(),
        cluster.port()
    );
    let store = PostgresStore::open(&socket, DEFAULT_LEASE).unwrap();
    assert_eq!(
        connection(&store).to_string(),
        "not encrypted (sslmode=prefer)"
    );
    // A mode that demands TLS (from PGSSLMODE, say) is for TCP: a socket
    // ignores it, as libpq does.
    let options = PgOptions {
        tls: TlsOptions {
            mode: Some(SslMode::Require),
            ..TlsOptions::default()
        },
        ..PgOptions::default()
    };
    let store = PostgresStore::open_with(&socket, &options).unwrap();
    assert_eq!(
        connection(&store).to_string(),
        "not encrypted (sslmode=require)"
    );
    // Nor is an authority asked for, or its file read: verify-ca with no
    // root file, or one that is not there, is for TCP too.
    for root_cert in [None, Some("/nonexistent/ca.pem".into())] {
        let options = PgOptions {
            tls: TlsOptions {
                mode: Some(SslMode::VerifyCa),
                root_cert,
                ..TlsOptions::default()
            },
            ..PgOptions::default()
        };
        PostgresStore::open_with(&socket, &options).unwrap();
    }
}
