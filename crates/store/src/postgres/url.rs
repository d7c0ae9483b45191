//! [`without_password`]: a PostgreSQL store's URL as messages show it;
//! [`is_postgres_url`], which tells one from a state file's path; and
//! [`take_tls_params`], which takes out of a URL the parameters
//! tokio-postgres does not know (`sslmode=verify-full`, `sslrootcert`).

/// Whether `url` names a PostgreSQL store rather than a state file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL cut where tokio-postgres cuts it: the user part is everything
/// before the first `@` (so a password may hold `/`, `?` or `:`), and the
/// query follows the first `?` after it.
struct Parts<'a> {
    /// `postgres://` or `postgresql://`, with its `://`.
    scheme: &'a str,
    /// `user` or `user:password`, without its `@`.
    credentials: Option<&'a str>,
    /// Hosts and database, up to the query.
    address: &'a str,
    query: Option<&'a str>,
}

impl<'a> Parts<'a> {
    fn of(url: &'a str) -> Option<Parts<'a>> {
        let at = url.find("://")? + 3;
        let (scheme, rest) = url.split_at(at);
        let (credentials, rest) = match rest.split_once('@') {
            Some((credentials, rest)) => (Some(credentials), rest),
            None => (None, rest),
        };
        let (address, query) = match rest.split_once('?') {
            Some((address, query)) => (address, Some(query)),
            None => (rest, None),
        };
        Some(Parts {
            scheme,
            credentials,
            address,
            query,
        })
    }

    /// The URL again, with `credentials` and `query` as given.
    fn join(&self, credentials: Option<&str>, query: &[&str]) -> String {
        let mut url = self.scheme.to_owned();
        if let Some(credentials) = credentials {
            url.push_str(credentials);
            url.push('@');
        }
        url.push_str(self.address);
        if !query.is_empty() {
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    fn pairs(&self) -> impl Iterator<Item = &'a str> {
        self.query.into_iter().flat_map(|q| q.split('&'))
    }
}

/// A query pair's key as tokio-postgres reads it: percent-decoded
/// (`passw%6Frd` is `password`).
fn key_of(pair: &str) -> String {
    percent_decoded(pair.split_once('=').map_or(pair, |(key, _)| key))
}

fn is_password_pair(pair: &str) -> bool {
    pair.contains('=') && key_of(pair).eq_ignore_ascii_case("password")
}

/// Whether a user part holds `password=` (a query tokio-postgres read as
/// the user part), its escapes undone.
fn holds_password_pair(credentials: &str) -> bool {
    percent_decoded(credentials)
        .to_ascii_lowercase()
        .contains("password=")
}

/// `url` without its password (in the user part or a `password=`
/// parameter), for messages and `--status`.
pub fn without_password(url: &str) -> String {
    let Some(parts) = Parts::of(url) else {
        return url.to_owned();
    };
    // A user part that holds `password=` is a query tokio-postgres read as
    // the user part (`postgres://db/b?password=x@host`): shown as nothing.
    let user = parts.credentials.map(|c| {
        if holds_password_pair(c) {
            ""
        } else {
            c.split_once(':').map_or(c, |(user, _)| user)
        }
    });
    let kept: Vec<&str> = parts.pairs().filter(|p| !is_password_pair(p)).collect();
    parts.join(user, &kept)
}

/// Whether `url` holds a password (in the user part or a `password=`
/// parameter).
pub fn url_has_password(url: &str) -> bool {
    Parts::of(url).is_some_and(|parts| {
        parts
            .credentials
            .is_some_and(|c| c.contains(':') || holds_password_pair(c))
            || parts.pairs().any(is_password_pair)
    })
}

/// The TLS parameters of a URL, taken out of it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TlsParams {
    /// `sslmode`, as written (checked by the caller).
    pub mode: Option<String>,
    /// `sslrootcert`, decoded.
    pub root_cert: Option<String>,
}

/// `url` without its `sslmode` and `sslrootcert` parameters (which
/// tokio-postgres would refuse or not know), and their values.
pub(super) fn take_tls_params(url: &str) -> (String, TlsParams) {
    let Some(parts) = Parts::of(url).filter(|p| p.query.is_some()) else {
        return (url.to_owned(), TlsParams::default());
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in parts.pairs() {
        let value = pair.split_once('=').map_or("", |(_, value)| value);
        match key_of(pair).as_str() {
            "sslmode" => params.mode = Some(percent_decoded(value)),
            "sslrootcert" => params.root_cert = Some(percent_decoded(value)),
            _ => kept.push(pair),
        }
    }
    (parts.join(parts.credentials, &kept), params)
}

/// `text` with its `%XX` escapes undone, as tokio-postgres undoes them.
fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let (url, params) = take_tls_params(
            "postgres://u@db/b?application_name=x&sslmode=verify-full&sslrootcert=%2Fetc%2Fca%20one.pem",
        );
        assert_eq!(url, "postgres://u@db/b?application_name=x");
        assert_eq!(params.mode.as_deref(), Some("verify-full"));
        assert_eq!(params.root_cert.as_deref(), Some("/etc/ca one.pem"));
        let (url, params) = take_tls_params("postgres://u@db/b?sslmode=disable");
        assert_eq!(url, "postgres://u@db/b");
        assert_eq!(params.mode.as_deref(), Some("disable"));
        let plain = "postgres://u@db:5433/b";
        assert_eq!(take_tls_params(plain), (plain.into(), TlsParams::default()));
        // A `?` in the password is the password's, not the query's.
        let (url, params) = take_tls_params("postgres://u:a?b/c@db/b?sslmode=require");
        assert_eq!(url, "postgres://u:a?b/c@db/b");
        assert_eq!(params.mode.as_deref(), Some("require"));
        // An escaped key is the same key to tokio-postgres.
        let (url, params) = take_tls_params("postgres://u@db/b?ssl%6Dode=disable");
        assert_eq!(url, "postgres://u@db/b");
        assert_eq!(params.mode.as_deref(), Some("disable"));
    }

    #[test]
    fn a_password_in_a_url_is_seen_wherever_it_is() {
        assert!(url_has_password("postgres://u:secret@db/b"));
        assert!(url_has_password("postgres://db/b?user=u&password=x"));
        assert!(!url_has_password("postgres://u@db/b?sslmode=require"));
        assert!(!url_has_password("postgres://db:5432/b"));
        // Everything before the first `@` is the user part, as
        // tokio-postgres reads it: a password may hold `/` and `?`.
        assert!(url_has_password("postgres://u:ab/cd@db/b"));
        assert!(url_has_password("postgres://u:a?b@db/b"));
        assert!(url_has_password("postgres://db/b?Password=x@y"));
        // Keys are percent-decoded, as tokio-postgres decodes them.
        assert!(url_has_password("postgres://u@db/b?passw%6Frd=x"));
        assert!(url_has_password("postgres://db/b?%70assword=x@y"));
    }

    #[test]
    fn a_url_is_shown_without_its_password() {
        for (url, shown) in [
            ("postgres://u:secret@db/batch", "postgres://u@db/batch"),
            ("postgres://u@db:5433/batch", "postgres://u@db:5433/batch"),
            (
                "postgresql://db/batch?user=u&password=secret&sslmode=disable",
                "postgresql://db/batch?user=u&sslmode=disable",
            ),
            ("postgres://u:ab/cd@db/b", "postgres://u@db/b"),
            (
                "postgres://u:a?b=c&d@db/b?sslmode=require",
                "postgres://u@db/b?sslmode=require",
            ),
            ("postgres://u:p:q@db/b", "postgres://u@db/b"),
            // tokio-postgres reads all before the `@` as the user part.
            ("postgres://db/b?password=x@y", "postgres://@y"),
            // An escaped key is the same key to tokio-postgres.
            (
                "postgres://u@db/b?passw%6Frd=secret&sslmode=require",
                "postgres://u@db/b?sslmode=require",
            ),
            ("postgres://db/b?%70assword=secret@y", "postgres://@y"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }
}
