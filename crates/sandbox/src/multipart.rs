//! `multipart/form-data` (RFC 7578) over a body already read whole, for
//! Mastodon's media upload.
//!
//! The key type is [`Part`], borrowed from the body. Written here rather
//! than taken from `multer`: the sandbox bounds and buffers an upload's body
//! before looking at it anyway, so a streaming parser (and the crates it
//! brings into the workspace) would buy nothing, and a small one can refuse
//! exactly what it does not understand.

/// A media upload has two or three parts; more is not one.
const MAX_PARTS: usize = 16;
/// A part's header block longer than this is refused.
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// One part of a form.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The `name` of its `Content-Disposition: form-data`.
    pub(crate) name: String,
    /// The `filename`, which makes the part a file to Rails.
    pub(crate) filename: Option<String>,
    /// Its `Content-Type` without parameters, lowercase.
    pub(crate) content_type: Option<String>,
    pub(crate) body: &'a [u8],
}

/// The `boundary` of a `multipart/form-data` content type; `None` for any
/// other type or a boundary RFC 2046 does not allow (empty, over 70).
pub(crate) fn boundary(content_type: &str) -> Option<String> {
    let (essence, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    let (_, boundary) = parameters(params)
        .into_iter()
        .find(|(key, _)| key.eq_ignore_ascii_case("boundary"))?;
    (1..=70).contains(&boundary.len()).then_some(boundary)
}

/// A content type's essence (`image/png` of `image/png; q=1`), lowercase.
pub(crate) fn essence(content_type: &str) -> String {
    let essence = content_type.split(';').next().unwrap_or("");
    essence.trim().to_ascii_lowercase()
}

/// The parts of `body`, or why it is not a form with that `boundary`.
pub(crate) fn parse<'a>(body: &'a [u8], boundary: &str) -> Result<Vec<Part<'a>>, &'static str> {
    let delimiter = format!("--{boundary}").into_bytes();
    // "\r\n--boundary" ends every part; the first delimiter may also open
    // the body, with no line break before it.
    let mut closing = b"\r\n".to_vec();
    closing.extend_from_slice(&delimiter);
    let mut at = if body.starts_with(&delimiter) {
        delimiter.len()
    } else {
        find(body, &closing).ok_or("no opening boundary")? + closing.len()
    };
    let mut parts = Vec::new();
    loop {
        if body[at..].starts_with(b"--") {
            // The close delimiter; an epilogue after it is ignored.
            return Ok(parts);
        }
        let padding = body[at..]
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        at += padding;
        if !body[at..].starts_with(b"\r\n") {
            return Err("a boundary line goes on after the boundary");
        }
        at += 2;
        if parts.len() == MAX_PARTS {
            return Err("too many parts");
        }
        let (head, content_start) = if body[at..].starts_with(b"\r\n") {
            ("", at + 2)
        } else {
            let window = &body[at..body.len().min(at + MAX_HEADER_BYTES)];
            let end = find(window, b"\r\n\r\n").ok_or("a part's headers do not end")?;
            let head = std::str::from_utf8(&window[..end]).map_err(|_| "part headers not UTF-8")?;
            (head, at + end + 4)
        };
        let length = find(&body[content_start..], &closing).ok_or("no closing boundary")?;
        parts.push(part(head, &body[content_start..content_start + length])?);
        at = content_start + length + closing.len();
    }
}

fn part<'a>(head: &str, body: &'a [u8]) -> Result<Part<'a>, &'static str> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in head.split("\r\n").filter(|line| !line.is_empty()) {
        let Some((field, value)) = line.split_once(':') else {
            return Err("a part header without a colon");
        };
        let field = field.trim();
        if field.eq_ignore_ascii_case("content-disposition") {
            let (kind, params) = value.split_once(';').unwrap_or((value, ""));
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err("a part that is not form-data");
            }
            for (key, value) in parameters(params) {
                if key.eq_ignore_ascii_case("name") {
                    name = Some(value);
                } else if key.eq_ignore_ascii_case("filename") {
                    filename = Some(value);
                }
            }
        } else if field.eq_ignore_ascii_case("content-type") {
            content_type = Some(essence(value));
        }
    }
    Ok(Part {
        name: name.ok_or("a part without a name")?,
        filename,
        content_type,
        body,
    })
}

/// `; key=value; key="quoted \"value\""` as pairs; a bare token is skipped.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ';' || c.is_ascii_whitespace());
        if rest.is_empty() {
            return pairs;
        }
        let Some(eq) = rest
            .find(['=', ';'])
            .filter(|&i| rest.as_bytes()[i] == b'=')
        else {
            rest = rest.find(';').map_or("", |i| &rest[i..]);
            continue;
        };
        let key = rest[..eq].trim().to_owned();
        rest = rest[eq + 1..].trim_start();
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut end = quoted.len();
            let mut chars = quoted.char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next().map(|(_, c)| c)),
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            rest = &quoted[end..];
            value
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            let value = rest[..end].trim().to_owned();
            rest = &rest[end..];
            value
        };
        pairs.push((key, value));
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while let Some(i) = haystack.get(from..)?.iter().position(|&b| b == first) {
        let at = from + i;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &[u8] = b"preamble\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"description\"\r\n\r\n\
        a cat\r\non two lines\r\n\
        --XyZ  \r\n\
        content-disposition: form-data; name=\"file\"; filename=\"c\\\"at.png\"\r\n\
        Content-Type: IMAGE/PNG; x=1\r\n\r\n\
        \x89PNG\r\n--Xy\r\n-XyZ\r\n\r\n\
        --XyZ--\r\nepilogue";

    #[test]
    fn parts_are_read_with_their_names_files_and_types() {
        let parts = parse(FORM, "XyZ").unwrap();
        assert_eq!(
            parts,
            vec![
                Part {
                    name: "description".into(),
                    filename: None,
                    content_type: None,
                    body: b"a cat\r\non two lines",
                },
                Part {
                    name: "file".into(),
                    filename: Some("c\"at.png".into()),
                    content_type: Some("image/png".into()),
                    body: b"\x89PNG\r\n--Xy\r\n-XyZ\r\n",
                },
            ]
        );
    }

    #[test]
    fn a_body_may_open_with_its_boundary_and_parts_may_be_empty() {
        let body =
            b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b\r\n\r\nx\r\n--b--";
        let err = parse(body, "b").unwrap_err();
        assert_eq!(err, "a part without a name");
        let body = b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\n\r\n--b--";
        let parts = parse(body, "b").unwrap();
        assert_eq!((parts[0].name.as_str(), parts[0].body), ("a", &b""[..]));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (body, why) in [
            (&b"no boundary at all"[..], "no opening boundary"),
            (
                b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx",
                "no closing boundary",
            ),
            (
                b"--b\r\nContent-Disposition: form-data; name=a\r\nx",
                "a part's headers do not end",
            ),
            (b"--bx\r\n", "a boundary line goes on after the boundary"),
            (
                b"--b\r\nContent-Disposition: attachment; name=a\r\n\r\nx\r\n--b--",
                "a part that is not form-data",
            ),
            (
                b"--b\r\nno colon\r\n\r\nx\r\n--b--",
                "a part header without a colon",
            ),
        ] {
            assert_eq!(
                parse(body, "b"),
                Err(why),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let many =
            "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".repeat(17) + "--b--";
        assert_eq!(parse(many.as_bytes(), "b"), Err("too many parts"));
        let long = format!(
            "--b\r\nX: {}\r\n\r\nx\r\n--b--",
            "y".repeat(MAX_HEADER_BYTES)
        );
        assert_eq!(
            parse(long.as_bytes(), "b"),
            Err("a part's headers do not end")
        );
    }

    #[test]
    fn boundaries_come_from_form_data_content_types_only() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").as_deref(),
            Some("abc")
        );
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a b;c\"").as_deref(),
            Some("a b;c")
        );
        assert_eq!(boundary("multipart/mixed; boundary=abc"), None);
        assert_eq!(boundary("multipart/form-data"), None);
        assert_eq!(boundary("multipart/form-data; boundary=\"\""), None);
        assert_eq!(
            boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))),
            None
        );
    }

    #[test]
    fn parameters_skip_bare_tokens_and_unescape_quotes() {
        assert_eq!(
            parameters(" inline; a=1 ; b=\"x\\\\y\\\"z\"; c"),
            vec![("a".into(), "1".into()), ("b".into(), "x\\y\"z".into())]
        );
        assert_eq!(essence(" Image/JPEG ;q=1"), "image/jpeg");
    }
}
