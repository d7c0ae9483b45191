//! An HTTP response as the posters read it, whatever client fetched it:
//! shared by the sandboxed poster's `wasi:http` client, the misbehaving test
//! poster and the native example's TCP client, which include this file.

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
