//! [`without_password`]: a PostgreSQL store's URL as messages show it;
//! [`is_postgres_url`], which tells one from a state file's path; and
//! [`take_tls_params`], which takes out of a URL the parameters
//! tokio-postgres does not know (`sslmode=verify-full`, `sslrootcert`).

/// Whether `url` names a PostgreSQL store rather than a state file.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password (in the user part or a `password=`
/// parameter), for messages and `--status`.
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (address, query) = match rest.split_once('?') {
        Some((address, query)) => (address, Some(query)),
        None => (rest, None),
    };
    // The user part ends at the last `@` before the path.
    let authority_end = address.find('/').unwrap_or(address.len());
    let (authority, path) = address.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((user, host)) => {
            let user = user.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let mut shown = format!("{scheme}://{authority}{path}");
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.to_ascii_lowercase().starts_with("password="))
            .collect();
        if !kept.is_empty() {
            shown.push('?');
            shown.push_str(&kept.join("&"));
        }
    }
    shown
}

/// Whether `url` holds a password (in the user part or a `password=`
/// parameter).
pub fn url_has_password(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let (address, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = &address[..address.find('/').unwrap_or(address.len())];
    let in_user = authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'));
    in_user
        || query
            .split('&')
            .any(|pair| pair.to_ascii_lowercase().starts_with("password="))
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
    let Some((address, query)) = url.split_once('?') else {
        return (url.to_owned(), TlsParams::default());
    };
    let mut params = TlsParams::default();
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => params.mode = Some(percent_decoded(value)),
            "sslrootcert" => params.root_cert = Some(percent_decoded(value)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        address.to_owned()
    } else {
        format!("{address}?{}", kept.join("&"))
    };
    (url, params)
}

/// `text` with its `%XX` escapes undone (and `+` left as it is, as
/// tokio-postgres leaves it).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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
    }

    #[test]
    fn a_password_in_a_url_is_seen_wherever_it_is() {
        assert!(url_has_password("postgres://u:secret@db/b"));
        assert!(url_has_password("postgres://db/b?user=u&password=x"));
        assert!(!url_has_password("postgres://u@db/b?sslmode=require"));
        assert!(!url_has_password("postgres://db:5432/b"));
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
            ("postgres://db/b?password=x@y", "postgres://db/b"),
        ] {
            assert_eq!(without_password(url), shown);
        }
    }
}
