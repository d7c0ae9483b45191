//! An HTTP response as `mastodon.rs` reads it, whatever client fetched it:
//! the misbehaving test poster's and the native example's clients include
//! this file; the sandboxed poster's client (`plugins/shared/http.rs`) has
//! one of the same shape.

pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}
