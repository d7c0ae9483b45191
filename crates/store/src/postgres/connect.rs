//! [`prepare`]: how a store connects, from its URL and [`PgOptions`] (its
//! TLS, its password), and [`explained`], which adds to why a connection
//! failed what to do about it.

use std::path::PathBuf;
use std::time::Duration;

use super::PgOptions;
use super::password::{self, Env, Source};
use super::tls::{self, Check, MakeRustls, SslMode, Trust};
use super::url::take_tls_params;

/// What a store connects with, and what messages say of it.
pub(super) struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustls,
    pub facts: Facts,
}

/// What explains a failed connection, or `--status` shows.
#[derive(Debug, Clone)]
pub(super) struct Facts {
    pub mode: SslMode,
    /// Where the password came from; `None` when there is none.
    pub password: Option<Source>,
    /// Why the passfile was not read, when it was not.
    pub passfile_refused: Option<String>,
    pub pool_size: usize,
}

/// The connection settings of `url` with `options`; `Err` (one line) for a
/// URL or a setting that cannot be used. The URL's `sslmode` and
/// `sslrootcert` win over the options'.
pub(super) fn prepare(url: &str, options: &PgOptions, env: Env<'_>) -> Result<Connection, String> {
    let (url, params) = take_tls_params(url);
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e: tokio_postgres::Error| chain(&e))?;
    let mode = match params.mode.as_deref() {
        Some(text) => {
            let mode = SslMode::parse(text).ok_or_else(|| {
                let modes: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                format!("sslmode must be one of {}, not {text:?}", modes.join(", "))
            })?;
            if let Some(other) = options.tls.mode.filter(|m| *m != mode) {
                tracing::warn!("the URL's sslmode={mode} wins over sslmode {other}");
            }
            mode
        }
        None => options.tls.mode.unwrap_or_default(),
    };
    let root_cert = params
        .root_cert
        .map(PathBuf::from)
        .or_else(|| options.tls.root_cert.clone());
    let trust = Trust::of(root_cert, options.tls.extra_roots.clone());
    // PostgreSQL speaks no TLS over a Unix socket, and libpq ignores
    // sslmode there: so does this, rather than refuse a socket whenever a
    // shell or file sets sslmode=require for the TCP hosts (nor read an
    // authority's file it would not use).
    let over_sockets = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, tokio_postgres::config::Host::Unix(_)));
    let check = if over_sockets {
        Check::Nothing
    } else {
        tls::check_of(mode, &trust)?
    };
    let tls = tls::connector(check, &trust)?;
    config.ssl_mode(if over_sockets {
        tokio_postgres::config::SslMode::Disable
    } else {
        mode.negotiation()
    });
    // A host that never answers is an error in seconds, not minutes.
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    let found = password::find(&config, options.password_file.as_deref(), env)?;
    let source = found.password.map(|(password, source)| {
        if source != Source::Url {
            config.password(password);
        }
        source
    });
    Ok(Connection {
        config,
        tls,
        facts: Facts {
            mode,
            password: source,
            passfile_refused: found.passfile_refused,
            pool_size: options.pool_size,
        },
    })
}

/// `error` and its causes, on one line: tokio-postgres says "error
/// performing TLS handshake" and leaves why to its source.
pub(super) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let said = cause.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        source = cause.source();
    }
    text
}

/// What to change when the server refuses a connection for too many
/// clients (SQLSTATE 53300).
pub(super) const TOO_MANY_CLIENTS: &str = "the server takes no more connections: each orchestrator process opens up to --db-pool connections plus 1 for its writer; lower --db-pool, run fewer processes, or raise the server's max_connections or the role's CONNECTION LIMIT";

/// `reason`, why a first connection failed, with what to do about it
/// when the failure is one a setting of ours causes.
pub(super) fn explained(reason: &str, facts: &Facts) -> String {
    let hint = if reason.contains("password missing") {
        let mut hint = "the server asks for a password and none was given: set PGPASSWORD, add a line to ~/.pgpass (or the PGPASSFILE), or give --password-file".to_string();
        if let Some(why) = &facts.passfile_refused {
            hint.push_str(&format!("; the passfile was not read: {why}"));
        }
        hint
    } else if reason.contains("SQLSTATE 28P01") {
        match &facts.password {
            Some(source) => format!("the password came from {source}"),
            None => return reason.to_owned(),
        }
    } else if reason.contains("not valid for any names") {
        "the server's certificate lists no names in its subjectAltName, and sslmode=verify-full reads names only there (a common name alone does not count): reissue it with the host's name as a subjectAltName, or use sslmode=verify-ca".to_string()
    } else if reason.contains("CaUsedAsEndEntity") {
        "the server presents an authority's certificate (CA:TRUE) as its own, which rustls refuses: sign a server certificate with that authority and give the server that one (PostgreSQL's documentation, \"Creating Certificates\"), or use sslmode=require, which encrypts without checking".to_string()
    } else if reason.contains("certificate not valid for name") {
        "sslmode=verify-full checks that the server's certificate names the URL's host: connect by a name the certificate lists, or use sslmode=verify-ca".to_string()
    } else if reason.contains("BadSignature") {
        "the server's certificate names an authority of the same name as one trusted here, but another signed it: name the authority that signed it with sslrootcert=FILE (or --ca-file FILE)".to_string()
    } else if reason.contains("UnknownIssuer") || reason.contains("unknown issuer") {
        "the server's certificate is signed by an authority not trusted here: name it with sslrootcert=FILE (or --ca-file FILE)".to_string()
    } else if reason.contains("SQLSTATE 28000") && facts.mode == SslMode::Disable {
        // The same code says the role does not exist, so the hint is an if.
        "sslmode is disable: if the server takes only encrypted connections, use sslmode=require, verify-ca or verify-full".to_string()
    } else if reason.contains("server does not support TLS") {
        format!(
            "sslmode={} needs TLS, which the server does not offer: turn ssl on in the server, or use sslmode=prefer to connect in the clear",
            facts.mode
        )
    } else if reason.contains(TOO_MANY_CLIENTS) {
        return reason.replace(
            "up to --db-pool connections",
            &format!("up to --db-pool connections ({} now)", facts.pool_size),
        );
    } else {
        return reason.to_owned();
    };
    format!("{reason} ({hint})")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(mode: SslMode) -> Facts {
        Facts {
            mode,
            password: Some(Source::Env),
            passfile_refused: None,
            pool_size: 16,
        }
    }

    #[test]
    fn a_refused_login_is_explained_by_its_code_in_any_language() {
        let german = "Passwort-Authentifizierung für Benutzer »x« fehlgeschlagen (SQLSTATE 28P01)";
        assert_eq!(
            explained(german, &facts(SslMode::Prefer)),
            format!("{german} (the password came from PGPASSWORD)")
        );
        let no_line = "kein pg_hba.conf-Eintrag für Host »127.0.0.1«, Benutzer »x«, Datenbank »d«, keine Verschlüsselung (SQLSTATE 28000)";
        assert!(
            explained(no_line, &facts(SslMode::Disable))
                .ends_with("(sslmode is disable: if the server takes only encrypted connections, use sslmode=require, verify-ca or verify-full)")
        );
        // Under another sslmode the same code has nothing of ours to blame.
        assert_eq!(explained(no_line, &facts(SslMode::Prefer)), no_line);
        // Text without the code is not guessed at.
        let english = "password authentication failed for user \"x\"";
        assert_eq!(explained(english, &facts(SslMode::Prefer)), english);
    }
}
