//! The chunked kernel upload: the client's request sequence and the
//! server's bookkeeping. The server keeps one [`Upload`] per session and
//! drops it when the session ends (the next `Hello`), so nothing is built
//! unless `CreateCommit` of the same session finds every byte in place.

use alloc::vec::Vec;

use abi::convert::u32_const;

use crate::{
    crc32, DomainConfig, MgmtError, Request, UploadError, MAX_IMAGE_BYTES, MAX_IMAGE_CHUNK,
};

/// An upload in progress (server side).
#[derive(Debug)]
pub struct Upload {
    config: DomainConfig,
    image_len: u32,
    image_crc32: u32,
    image: Vec<u8>,
}

impl Upload {
    /// Starts an upload for `CreateBegin`: checks the config and the size
    /// and reserves the buffer.
    pub fn begin(
        config: DomainConfig,
        image_len: u32,
        image_crc32: u32,
    ) -> Result<Self, MgmtError> {
        config.validate()?;
        if image_len > MAX_IMAGE_BYTES {
            return Err(UploadError::ImageTooLarge {
                len: image_len,
                max: MAX_IMAGE_BYTES,
            }
            .into());
        }
        let mut image = Vec::new();
        image
            .try_reserve_exact(image_len as usize)
            .map_err(|_| UploadError::OutOfMemory { len: image_len })?;
        Ok(Self {
            config,
            image_len,
            image_crc32,
            image,
        })
    }

    /// The new domain's config.
    pub fn config(&self) -> &DomainConfig {
        &self.config
    }

    /// Stores an `ImageChunk`; returns the bytes received so far.
    pub fn add_chunk(&mut self, offset: u32, data: &[u8]) -> Result<u32, UploadError> {
        if data.len() > MAX_IMAGE_CHUNK {
            return Err(UploadError::ChunkTooLarge {
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                max: u32_const::<MAX_IMAGE_CHUNK>(),
            });
        }
        let received = self.received();
        if self.repeats_last_chunk(offset, data) {
            // A resend after a `Dropped` that was not about this chunk
            // (the first copy was stored): acknowledge it again.
            return Ok(received);
        }
        if offset != received {
            return Err(UploadError::OutOfOrder {
                expected: received,
                got: offset,
            });
        }
        let end = u64::from(offset) + data.len() as u64;
        if end > u64::from(self.image_len) {
            return Err(UploadError::PastEnd {
                end,
                len: self.image_len,
            });
        }
        self.image.extend_from_slice(data);
        Ok(self.received())
    }

    /// Whether `data` at `offset` is the chunk stored last, byte for byte.
    fn repeats_last_chunk(&self, offset: u32, data: &[u8]) -> bool {
        let start = offset as usize;
        !data.is_empty()
            && start.checked_add(data.len()) == Some(self.image.len())
            && self.image[start..] == *data
    }

    /// For `CreateCommit`: the config and the complete, checked image.
    pub fn finish(self) -> Result<(DomainConfig, Vec<u8>), UploadError> {
        if self.received() != self.image_len {
            return Err(UploadError::Incomplete {
                received: self.received(),
                expected: self.image_len,
            });
        }
        let computed = crc32(&self.image);
        if computed != self.image_crc32 {
            return Err(UploadError::ChecksumMismatch {
                expected: self.image_crc32,
                computed,
            });
        }
        Ok((self.config, self.image))
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        // At most `image_len` (a u32) bytes are ever stored.
        u32::try_from(self.image.len()).unwrap_or(u32::MAX)
    }
}

/// The requests that create a domain from `config` and `image` (client
/// side): `CreateBegin`, one `ImageChunk` per [`MAX_IMAGE_CHUNK`] bytes,
/// `CreateCommit`. `None` if the image is larger than [`MAX_IMAGE_BYTES`].
pub fn create_requests(
    config: DomainConfig,
    image: &[u8],
) -> Option<impl Iterator<Item = Request> + '_> {
    let image_len = u32::try_from(image.len())
        .ok()
        .filter(|&len| len <= MAX_IMAGE_BYTES)?;
    let begin = Request::CreateBegin {
        config,
        image_len,
        image_crc32: crc32(image),
    };
    // Offsets stay below image_len <= MAX_IMAGE_BYTES, a u32.
    let chunks = (0..)
        .step_by(MAX_IMAGE_CHUNK)
        .zip(image.chunks(MAX_IMAGE_CHUNK))
        .map(|(offset, data)| Request::ImageChunk {
            offset,
            data: data.to_vec(),
        });
    Some(between_begin_and_commit(begin, chunks))
}

/// One upload's requests: `begin`, the `chunks`, `CreateCommit`.
pub(crate) fn between_begin_and_commit(
    begin: Request,
    chunks: impl Iterator<Item = Request>,
) -> impl Iterator<Item = Request> {
    core::iter::once(begin)
        .chain(chunks)
        .chain(core::iter::once(Request::CreateCommit))
}

#[cfg(test)]
// Fixture constants and test data are chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// Plays `requests` against a fresh server-side upload.
    fn serve(
        requests: impl Iterator<Item = Request>,
    ) -> Result<(DomainConfig, Vec<u8>), MgmtError> {
        let mut upload = None;
        for r in requests {
            match r {
                Request::CreateBegin {
                    config,
                    image_len,
                    image_crc32,
                } => upload = Some(Upload::begin(config, image_len, image_crc32)?),
                Request::ImageChunk { offset, data } => {
                    upload
                        .as_mut()
                        .ok_or(UploadError::NotStarted)?
                        .add_chunk(offset, &data)?;
                }
                Request::CreateCommit => {
                    return Ok(upload.take().ok_or(UploadError::NotStarted)?.finish()?)
                }
                other => panic!("{other:?}"),
            }
        }
        Err(UploadError::NotStarted.into())
    }

    #[test]
    fn chunked_upload_reassembles_the_image() {
        let image: Vec<u8> = (0..MAX_IMAGE_CHUNK * 2 + 5).map(|i| i as u8).collect();
        let requests = create_requests(DomainConfig::fixture(), &image).unwrap();
        assert_eq!(
            serve(requests),
            Ok((DomainConfig::fixture(), image.clone()))
        );
        assert_eq!(
            create_requests(DomainConfig::fixture(), &image)
                .unwrap()
                .count(),
            1 + 3 + 1
        );
        assert_eq!(
            create_requests(DomainConfig::fixture(), &[])
                .unwrap()
                .count(),
            2
        );
        assert_eq!(
            serve(create_requests(DomainConfig::fixture(), &[]).unwrap()),
            Ok((DomainConfig::fixture(), Vec::new()))
        );
    }

    #[test]
    fn upload_rules_are_enforced() {
        let image = [1u8; 100];
        let begin = |len, crc| Upload::begin(DomainConfig::fixture(), len, crc).unwrap();

        let mut u = begin(100, crc32(&image));
        assert_eq!(
            u.add_chunk(10, &image[..10]),
            Err(UploadError::OutOfOrder {
                expected: 0,
                got: 10
            })
        );
        assert_eq!(u.add_chunk(0, &image[..60]), Ok(60));
        assert_eq!(u.add_chunk(0, &image[..60]), Ok(60), "a resent chunk");
        assert_eq!(
            u.add_chunk(30, &[1u8; 30]),
            Ok(60),
            "the stored tail, byte for byte"
        );
        assert_eq!(
            u.add_chunk(30, &[2u8; 30]),
            Err(UploadError::OutOfOrder {
                expected: 60,
                got: 30
            }),
            "different bytes are not a resend"
        );
        assert_eq!(
            u.add_chunk(60, &image[..50]),
            Err(UploadError::PastEnd { end: 110, len: 100 })
        );
        assert_eq!(
            u.finish().unwrap_err(),
            UploadError::Incomplete {
                received: 60,
                expected: 100
            }
        );

        let mut u = begin(100, 0x1234);
        assert_eq!(u.add_chunk(0, &image), Ok(100));
        assert!(matches!(
            u.finish(),
            Err(UploadError::ChecksumMismatch {
                expected: 0x1234,
                ..
            })
        ));

        let mut u = begin(100_000, 0);
        let big = [0u8; MAX_IMAGE_CHUNK + 1];
        assert!(matches!(
            u.add_chunk(0, &big),
            Err(UploadError::ChunkTooLarge { .. })
        ));

        assert_eq!(
            Upload::begin(DomainConfig::fixture(), MAX_IMAGE_BYTES + 1, 0).unwrap_err(),
            MgmtError::Upload(UploadError::ImageTooLarge {
                len: MAX_IMAGE_BYTES + 1,
                max: MAX_IMAGE_BYTES
            })
        );
        let bad = DomainConfig {
            vcpus: 0,
            ..DomainConfig::fixture()
        };
        assert!(matches!(
            Upload::begin(bad, 1, 0),
            Err(MgmtError::InvalidConfig { .. })
        ));
    }
}
