//! [`Attachments`]: the files of one job, checked by the host, as a
//! contract-0.4.0 poster reads them through the `media` interface.
//!
//! The host reads and checks each file before the attempt (the runner's
//! `media` module) and hands the bytes it checked here: the guest reads
//! exactly those, in pieces of at most [`READ_MAX`] bytes, and learns each
//! file's name, media type, size and alt text, never its path.

use std::sync::Arc;

use bytes::Bytes;

/// The most bytes one `read` call returns, whatever it asks for: a guest's
/// piece of a file is bounded, as a response body is.
pub const READ_MAX: u32 = 1 << 20;

/// One attached file, as checked.
#[derive(Clone, PartialEq, Eq)]
pub struct Attachment {
    /// The file's name without its folders (`launch.png`).
    pub name: String,
    /// `image/png`, `image/jpeg`, `image/gif` or `image/webp`.
    pub media_type: String,
    /// Its alt text, if the job gives one.
    pub description: Option<String>,
    /// The bytes the host checked: all the guest reads.
    pub bytes: Bytes,
}

impl std::fmt::Debug for Attachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attachment")
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A job's attachments, in the payload's order; cheap to clone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attachments(Arc<[Attachment]>);

impl Attachments {
    pub fn new(attachments: Vec<Attachment>) -> Self {
        Attachments(attachments.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn get(&self, index: u32) -> Option<&Attachment> {
        self.0.get(index as usize)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attachment> {
        self.0.iter()
    }

    /// At most `length` (and [`READ_MAX`]) bytes of attachment `index`
    /// from `offset`; none at or past its end. `None`: no such attachment.
    pub fn read(&self, index: u32, offset: u64, length: u32) -> Option<Bytes> {
        let bytes = &self.get(index)?.bytes;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start
            .saturating_add(length.min(READ_MAX) as usize)
            .min(bytes.len());
        Some(bytes.slice(start..end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Attachments {
        let file = |name: &str, len: usize| Attachment {
            name: name.into(),
            media_type: "image/png".into(),
            description: None,
            bytes: Bytes::from(vec![7u8; len]),
        };
        Attachments::new(vec![file("a.png", 10), file("b.png", 3 << 20)])
    }

    #[test]
    fn reads_are_clamped_to_the_file_and_to_a_mebibyte() {
        let media = two();
        assert_eq!(media.read(0, 0, 4).unwrap().len(), 4);
        assert_eq!(media.read(0, 8, 4).unwrap().len(), 2);
        assert_eq!(media.read(0, 10, 4).unwrap().len(), 0);
        assert_eq!(media.read(0, u64::MAX, u32::MAX).unwrap().len(), 0);
        assert_eq!(media.read(1, 0, u32::MAX).unwrap().len(), 1 << 20);
        assert_eq!(media.read(1, (3 << 20) - 1, u32::MAX).unwrap().len(), 1);
        assert!(media.read(2, 0, 1).is_none());
        assert!(media.read(u32::MAX, 0, 1).is_none());
    }
}
