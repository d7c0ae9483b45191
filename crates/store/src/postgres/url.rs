//! [`without_password`]: a PostgreSQL store's URL as messages show it, and
//! [`is_postgres_url`], which tells one from a state file's path.

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

#[cfg(test)]
mod tests {
    use super::without_password;

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
