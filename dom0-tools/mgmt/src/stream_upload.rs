//! The streamed create (2.8): the client's request sequence and the
//! server's bookkeeping of the chunks' order and checksums. The bytes
//! themselves are not kept: the server writes each new chunk into the
//! domain being built and forgets it (but for the last one, to know a
//! resend).

use alloc::vec::Vec;

use abi::convert::u32_const;
use crc::{Crc, Digest, CRC_32_ISO_HDLC};

use crate::upload::between_begin_and_commit;
use crate::{
    crc32, DomainConfig, Request, UploadError, MAX_IMAGE_CHUNK, MAX_KERNEL_BYTES, MAX_RAMDISK_BYTES,
};

/// The CRC-32 of [`crate::crc32`], computed piece by piece.
static CRC32: Crc<u32> = Crc::<u32>::new(&CRC_32_ISO_HDLC);

/// What to do with a chunk [`StreamUpload::accept`] took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// New bytes: write them.
    New,
    /// The last chunk again, byte for byte (a resend after a `Dropped`
    /// that was about another frame): acknowledge it, write nothing.
    Resent,
}

/// A streamed upload in progress (server side).
pub struct StreamUpload {
    kernel_len: u32,
    kernel_crc32: u32,
    ramdisk_len: u32,
    ramdisk_crc32: u32,
    received: u32,
    kernel_digest: Digest<'static, u32>,
    ramdisk_digest: Digest<'static, u32>,
    /// The last chunk accepted, for [`Accepted::Resent`].
    last: Vec<u8>,
}

impl core::fmt::Debug for StreamUpload {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("StreamUpload")
            .field("kernel_len", &self.kernel_len)
            .field("ramdisk_len", &self.ramdisk_len)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl StreamUpload {
    /// Starts a streamed upload for `CreateStreamBegin`: checks the sizes.
    pub fn begin(
        kernel_len: u32,
        kernel_crc32: u32,
        ramdisk_len: u32,
        ramdisk_crc32: u32,
    ) -> Result<Self, UploadError> {
        if kernel_len > MAX_KERNEL_BYTES {
            return Err(UploadError::ImageTooLarge {
                len: kernel_len,
                max: MAX_KERNEL_BYTES,
            });
        }
        if ramdisk_len > MAX_RAMDISK_BYTES {
            return Err(UploadError::RamdiskTooLarge {
                len: ramdisk_len,
                max: MAX_RAMDISK_BYTES,
            });
        }
        Ok(Self {
            kernel_len,
            kernel_crc32,
            ramdisk_len,
            ramdisk_crc32,
            received: 0,
            kernel_digest: CRC32.digest(),
            ramdisk_digest: CRC32.digest(),
            last: Vec::new(),
        })
    }

    /// The kernel's and ramdisk's lengths, bytes.
    pub fn lengths(&self) -> (u32, u32) {
        (self.kernel_len, self.ramdisk_len)
    }

    /// Bytes received so far.
    pub fn received(&self) -> u32 {
        self.received
    }

    /// The whole stream's length (at most 256 MiB: fits).
    fn len(&self) -> u32 {
        self.kernel_len + self.ramdisk_len
    }

    /// Checks an `ImageChunk`: in order, within the announced length, at
    /// most [`MAX_IMAGE_CHUNK`] bytes; counts it into the checksums.
    pub fn accept(&mut self, offset: u32, data: &[u8]) -> Result<Accepted, UploadError> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&len| len as usize <= MAX_IMAGE_CHUNK)
            .ok_or(UploadError::ChunkTooLarge {
                len: u32::try_from(data.len()).unwrap_or(u32::MAX),
                max: u32_const::<MAX_IMAGE_CHUNK>(),
            })?;
        if !data.is_empty() && offset.checked_add(len) == Some(self.received) && self.last == data {
            return Ok(Accepted::Resent);
        }
        if offset != self.received {
            return Err(UploadError::OutOfOrder {
                expected: self.received,
                got: offset,
            });
        }
        let end = u64::from(offset) + u64::from(len);
        if end > u64::from(self.len()) {
            return Err(UploadError::PastEnd {
                end,
                len: self.len(),
            });
        }
        let in_kernel = usize::try_from(self.kernel_len.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(data.len());
        self.kernel_digest.update(&data[..in_kernel]);
        self.ramdisk_digest.update(&data[in_kernel..]);
        self.received += len;
        self.last.clear();
        self.last.extend_from_slice(data);
        Ok(Accepted::New)
    }

    /// For `CreateCommit`: every byte arrived and both checksums match.
    pub fn finish(self) -> Result<(), UploadError> {
        if self.received != self.len() {
            return Err(UploadError::Incomplete {
                received: self.received,
                expected: self.len(),
            });
        }
        let computed = self.kernel_digest.finalize();
        if computed != self.kernel_crc32 {
            return Err(UploadError::ChecksumMismatch {
                expected: self.kernel_crc32,
                computed,
            });
        }
        let computed = self.ramdisk_digest.finalize();
        if computed != self.ramdisk_crc32 {
            return Err(UploadError::RamdiskChecksumMismatch {
                expected: self.ramdisk_crc32,
                computed,
            });
        }
        Ok(())
    }
}

/// The requests of a streamed create of `config` from `kernel` and
/// `ramdisk` (client side): `CreateStreamBegin`, one `ImageChunk` per
/// [`MAX_IMAGE_CHUNK`] bytes of the kernel then the ramdisk (a chunk may
/// hold the kernel's end and the ramdisk's start), `CreateCommit`.
/// `None` if either is larger than its limit.
pub fn stream_requests<'a>(
    config: DomainConfig,
    kernel: &'a [u8],
    ramdisk: &'a [u8],
) -> Option<impl Iterator<Item = Request> + 'a> {
    let kernel_len = u32::try_from(kernel.len())
        .ok()
        .filter(|&len| len <= MAX_KERNEL_BYTES)?;
    let ramdisk_len = u32::try_from(ramdisk.len())
        .ok()
        .filter(|&len| len <= MAX_RAMDISK_BYTES)?;
    let begin = Request::CreateStreamBegin {
        config,
        kernel_len,
        kernel_crc32: crc32(kernel),
        ramdisk_len,
        ramdisk_crc32: crc32(ramdisk),
    };
    let (k, total) = (kernel.len(), kernel.len() + ramdisk.len());
    // Offsets stay below 256 MiB: u32.
    let chunks = (0..total).step_by(MAX_IMAGE_CHUNK).map(move |start| {
        let end = (start + MAX_IMAGE_CHUNK).min(total);
        let mut data = Vec::with_capacity(end - start);
        data.extend_from_slice(&kernel[start.min(k)..end.min(k)]);
        data.extend_from_slice(&ramdisk[start.max(k) - k..end.max(k) - k]);
        Request::ImageChunk {
            offset: u32::try_from(start).unwrap_or(u32::MAX),
            data,
        }
    });
    Some(between_begin_and_commit(begin, chunks))
}

#[cfg(test)]
// Test data is chosen to fit; a wrong one fails the test.
#[allow(clippy::cast_possible_truncation)]
mod tests {
    use super::*;

    /// Plays `requests` against a fresh server side; the bytes it would
    /// write, in order.
    fn serve(requests: impl Iterator<Item = Request>) -> Result<Vec<u8>, UploadError> {
        let mut upload = None;
        let mut written = Vec::new();
        for r in requests {
            match r {
                Request::CreateStreamBegin {
                    kernel_len,
                    kernel_crc32,
                    ramdisk_len,
                    ramdisk_crc32,
                    ..
                } => {
                    upload = Some(StreamUpload::begin(
                        kernel_len,
                        kernel_crc32,
                        ramdisk_len,
                        ramdisk_crc32,
                    )?)
                }
                Request::ImageChunk { offset, data } => {
                    let u = upload.as_mut().ok_or(UploadError::NotStarted)?;
                    if u.accept(offset, &data)? == Accepted::New {
                        written.extend_from_slice(&data);
                    }
                }
                Request::CreateCommit => {
                    upload.take().ok_or(UploadError::NotStarted)?.finish()?;
                    return Ok(written);
                }
                other => panic!("{other:?}"),
            }
        }
        Err(UploadError::NotStarted)
    }

    #[test]
    fn a_stream_carries_the_kernel_then_the_ramdisk() {
        let kernel: Vec<u8> = (0..MAX_IMAGE_CHUNK + 10).map(|i| i as u8).collect();
        let ramdisk: Vec<u8> = (0..MAX_IMAGE_CHUNK * 2).map(|i| (i * 3) as u8).collect();
        let requests = stream_requests(DomainConfig::fixture(), &kernel, &ramdisk).unwrap();
        assert_eq!(serve(requests), Ok([&kernel[..], &ramdisk[..]].concat()));
        assert_eq!(
            stream_requests(DomainConfig::fixture(), &kernel, &ramdisk)
                .unwrap()
                .count(),
            1 + 4 + 1,
            "the kernel's end and the ramdisk's start share a chunk"
        );
        let no_ramdisk = stream_requests(DomainConfig::fixture(), &kernel, &[]).unwrap();
        assert_eq!(serve(no_ramdisk), Ok(kernel.clone()));
    }

    #[test]
    fn stream_rules_are_enforced() {
        let kernel = [1u8; 100];
        let ramdisk = [2u8; 50];
        let begin = || StreamUpload::begin(100, crc32(&kernel), 50, crc32(&ramdisk)).unwrap();

        let mut u = begin();
        assert_eq!(
            u.accept(10, &kernel[..10]),
            Err(UploadError::OutOfOrder {
                expected: 0,
                got: 10
            })
        );
        assert_eq!(u.accept(0, &kernel[..60]), Ok(Accepted::New));
        assert_eq!(u.accept(0, &kernel[..60]), Ok(Accepted::Resent));
        assert_eq!(
            u.accept(0, &[9; 60]),
            Err(UploadError::OutOfOrder {
                expected: 60,
                got: 0
            }),
            "different bytes are not a resend"
        );
        assert_eq!(
            u.accept(60, &[1; 100]),
            Err(UploadError::PastEnd { end: 160, len: 150 })
        );
        assert_eq!(
            u.accept(0, &[0; MAX_IMAGE_CHUNK + 1]),
            Err(UploadError::ChunkTooLarge {
                len: MAX_IMAGE_CHUNK as u32 + 1,
                max: MAX_IMAGE_CHUNK as u32
            })
        );
        assert_eq!(
            begin().finish(),
            Err(UploadError::Incomplete {
                received: 0,
                expected: 150
            })
        );

        // The kernel's end and the ramdisk's start in one chunk; a bad
        // ramdisk checksum.
        let mut u = StreamUpload::begin(100, crc32(&kernel), 50, 0x1234).unwrap();
        assert_eq!(
            u.accept(0, &[&kernel[..], &ramdisk[..]].concat()),
            Ok(Accepted::New)
        );
        assert!(matches!(
            u.finish(),
            Err(UploadError::RamdiskChecksumMismatch {
                expected: 0x1234,
                ..
            })
        ));
        let mut u = StreamUpload::begin(100, 0x99, 0, crc32(&[])).unwrap();
        assert_eq!(u.accept(0, &kernel), Ok(Accepted::New));
        assert!(matches!(
            u.finish(),
            Err(UploadError::ChecksumMismatch { expected: 0x99, .. })
        ));

        assert_eq!(
            StreamUpload::begin(MAX_KERNEL_BYTES + 1, 0, 0, 0).unwrap_err(),
            UploadError::ImageTooLarge {
                len: MAX_KERNEL_BYTES + 1,
                max: MAX_KERNEL_BYTES
            }
        );
        assert_eq!(
            StreamUpload::begin(1, 0, MAX_RAMDISK_BYTES + 1, 0).unwrap_err(),
            UploadError::RamdiskTooLarge {
                len: MAX_RAMDISK_BYTES + 1,
                max: MAX_RAMDISK_BYTES
            }
        );
    }
}
