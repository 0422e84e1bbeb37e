//! Reading an upload's body to a temporary file while hashing it, never holding it whole in
//! memory. The type is decided from the first bytes as soon as they arrive, and the size limit
//! of that type (before: the larger of the two) is enforced chunk by chunk: the read stops at
//! the first byte past it, and the rest of the body is never pulled.

use super::sniff::{sniff, Format, Kind, SNIFF_BYTES};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// A body spooled to disk.
#[derive(Debug)]
pub struct Spooled {
    pub file: tempfile::NamedTempFile,
    pub format: Format,
    pub bytes: u64,
    pub sha256: [u8; 32],
}

/// Why a body was not spooled.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the file is not an image (JPEG, PNG, WebP, GIF) nor a voice note (Ogg/Opus, WebM/Opus, MP4/AAC, MP3)")]
    Unsupported,
    #[error("{kind} uploads are limited to {limit} bytes")]
    TooLarge { kind: &'static str, limit: u64 },
    #[error("the upload is empty")]
    Empty,
    /// The client's body failed (disconnect, deadline).
    #[error("reading the upload failed: {0}")]
    Body(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The size limits per kind.
#[derive(Debug, Clone, Copy)]
pub struct SizeLimits {
    pub image: u64,
    pub voice: u64,
}

impl SizeLimits {
    pub fn of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Image => self.image,
            Kind::Voice => self.voice,
        }
    }

    pub fn largest(&self) -> u64 {
        self.image.max(self.voice)
    }
}

impl From<&crate::settings::AttachmentSettings> for SizeLimits {
    fn from(settings: &crate::settings::AttachmentSettings) -> Self {
        Self {
            image: settings.image_max_bytes,
            voice: settings.voice_max_bytes,
        }
    }
}

/// Spool `body` into a temporary file in `dir`.
pub async fn spool<S, E>(
    mut body: S,
    limits: SizeLimits,
    dir: &std::path::Path,
) -> Result<Spooled, SpoolError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let file = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(dir)?;
    let mut out = tokio::fs::File::from_std(file.reopen()?);
    let mut hasher = Sha256::new();
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_BYTES);
    let mut format: Option<Format> = None;
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| SpoolError::Body(e.to_string()))?;
        total += chunk.len() as u64;
        if format.is_none() && head.len() < SNIFF_BYTES {
            let take = (SNIFF_BYTES - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
            if head.len() >= SNIFF_BYTES {
                format = Some(sniff(&head).ok_or(SpoolError::Unsupported)?);
            }
        }
        let limit = format.map_or(limits.largest(), |f| limits.of(f.kind()));
        if total > limit {
            return Err(SpoolError::TooLarge {
                kind: format.map_or("file", |f| f.kind().as_str()),
                limit,
            });
        }
        hasher.update(&chunk);
        out.write_all(&chunk).await?;
    }
    if total == 0 {
        return Err(SpoolError::Empty);
    }
    let format = match format {
        Some(f) => f,
        None => sniff(&head).ok_or(SpoolError::Unsupported)?,
    };
    let limit = limits.of(format.kind());
    if total > limit {
        return Err(SpoolError::TooLarge {
            kind: format.kind().as_str(),
            limit,
        });
    }
    out.flush().await?;
    out.sync_all().await?;
    Ok(Spooled {
        file,
        format,
        bytes: total,
        sha256: hasher.finalize().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const LIMITS: SizeLimits = SizeLimits {
        image: 1000,
        voice: 500,
    };

    fn png_head() -> Vec<u8> {
        let mut head = b"\x89PNG\r\n\x1a\n".to_vec();
        head.resize(100, 0);
        head
    }

    #[tokio::test]
    async fn a_body_is_spooled_hashed_and_typed() {
        let chunks = vec![
            Ok::<_, String>(Bytes::from(png_head())),
            Ok(Bytes::from(vec![1u8; 50])),
        ];
        let spooled = spool(futures::stream::iter(chunks), LIMITS, &std::env::temp_dir())
            .await
            .unwrap();
        assert_eq!((spooled.format, spooled.bytes), (Format::Png, 150));
        assert_eq!(std::fs::read(spooled.file.path()).unwrap().len(), 150);
    }

    #[tokio::test]
    async fn reading_stops_at_the_first_chunk_past_the_limit() {
        let pulled = Arc::new(AtomicUsize::new(0));
        let counter = pulled.clone();
        let body = futures::stream::iter(0..1000).map(move |i| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, String>(Bytes::from(if i == 0 {
                png_head()
            } else {
                vec![0u8; 100]
            }))
        });
        let refused = spool(Box::pin(body), LIMITS, &std::env::temp_dir()).await;
        assert!(matches!(
            refused,
            Err(SpoolError::TooLarge {
                kind: "image",
                limit: 1000
            })
        ));
        // Ten chunks make exactly the limit; the eleventh passes it, and nothing after it is pulled.
        assert_eq!(pulled.load(Ordering::SeqCst), 11);
    }

    #[tokio::test]
    async fn an_unknown_type_is_refused_after_its_first_bytes() {
        let body = futures::stream::iter(vec![Ok::<_, String>(Bytes::from(vec![b'M'; 100]))]);
        let refused = spool(body, LIMITS, &std::env::temp_dir()).await;
        assert!(matches!(refused, Err(SpoolError::Unsupported)));
    }
}
