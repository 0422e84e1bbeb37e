//! Where uploads live: one interface ([`Storage`]) over two real object stores, chosen by
//! `ATTACHMENTS_URL` — the local filesystem (`file:///path`, a plain path, or empty for a
//! temporary directory removed at exit) and any S3-compatible store (`s3://bucket/prefix`, with
//! the usual `AWS_*` variables and the `attachments.s3_*` settings on top). Both are
//! `object_store` implementations, so the code above this module never knows which it talks to.

use crate::settings::AttachmentSettings;
use anyhow::Context;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, PutPayload};
use secrecy::ExposeSecret;
use std::ops::Range;
use std::sync::Arc;
use tokio::io::AsyncReadExt;

/// How much of a spooled file one `put` part carries.
const PART_BYTES: usize = 1 << 20;

/// The object store of uploads, with the key prefix every object gets.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    /// What the store is, for the start-up line (no secret).
    pub label: String,
    /// Kept alive while the storage is: the temporary directory of an unset URL.
    _temp: Option<Arc<tempfile::TempDir>>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// A byte stream read from storage.
pub type ByteStream = BoxStream<'static, object_store::Result<Bytes>>;

impl Storage {
    /// Open the store `settings.url` names (creating a local directory when missing).
    pub fn open(settings: &AttachmentSettings) -> anyhow::Result<Self> {
        let url = settings.url.trim();
        if url.is_empty() {
            let dir = tempfile::Builder::new()
                .prefix("parley-attachments-")
                .tempdir()
                .context("creating a temporary directory for attachments")?;
            let label = format!("temporary directory {}", dir.path().display());
            let store = LocalFileSystem::new_with_prefix(dir.path())
                .context("opening the temporary attachments directory")?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: String::new(),
                label,
                _temp: Some(Arc::new(dir)),
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            return Self::s3(rest, settings);
        }
        if let Some((scheme, _)) = url.split_once("://").filter(|(s, _)| *s != "file") {
            anyhow::bail!(
                "ATTACHMENTS_URL has the unsupported scheme {scheme:?}: use file:///path or \
                 s3://bucket/prefix"
            );
        }
        let path = url.strip_prefix("file://").unwrap_or(url);
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating the attachments directory {path}"))?;
        let store = LocalFileSystem::new_with_prefix(path)
            .with_context(|| format!("opening the attachments directory {path}"))?;
        Ok(Self {
            store: Arc::new(store),
            prefix: String::new(),
            label: format!("directory {path}"),
            _temp: None,
        })
    }

    /// `bucket/prefix` on S3 or an S3-compatible server: the `AWS_*` variables first, then the
    /// settings that are set.
    fn s3(rest: &str, settings: &AttachmentSettings) -> anyhow::Result<Self> {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        anyhow::ensure!(
            !bucket.is_empty(),
            "ATTACHMENTS_URL names no bucket: use s3://bucket/prefix"
        );
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(endpoint) = &settings.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if let Some(region) = &settings.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &settings.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &settings.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret.expose_secret());
        }
        let store = builder
            .build()
            .context("configuring the S3 attachments store (ATTACHMENTS_URL, AWS_*)")?;
        let prefix = prefix.trim_matches('/');
        Ok(Self {
            store: Arc::new(store),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            label: format!("s3://{bucket}/{prefix}"),
            _temp: None,
        })
    }

    fn path(&self, key: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{key}", self.prefix))
    }

    /// Store the file at `file` under `key`, streamed in parts (a multipart upload on S3).
    pub async fn put_file(&self, key: &str, file: &std::path::Path) -> anyhow::Result<()> {
        let mut source = tokio::fs::File::open(file)
            .await
            .context("opening the spooled upload")?;
        let len = source.metadata().await?.len() as usize;
        let path = self.path(key);
        if len <= PART_BYTES * 5 {
            let mut data = Vec::with_capacity(len);
            source.read_to_end(&mut data).await?;
            self.store
                .put(&path, PutPayload::from(data))
                .await
                .with_context(|| format!("storing {key}"))?;
            return Ok(());
        }
        let mut upload = self
            .store
            .put_multipart(&path)
            .await
            .with_context(|| format!("starting the upload of {key}"))?;
        loop {
            let mut part = Vec::with_capacity(PART_BYTES * 5);
            (&mut source)
                .take((PART_BYTES * 5) as u64)
                .read_to_end(&mut part)
                .await?;
            if part.is_empty() {
                break;
            }
            if let Err(e) = upload.put_part(PutPayload::from(part)).await {
                let _ = upload.abort().await;
                return Err(e).with_context(|| format!("storing a part of {key}"));
            }
        }
        upload
            .complete()
            .await
            .with_context(|| format!("completing the upload of {key}"))?;
        Ok(())
    }

    /// Store a small object (a thumbnail) held in memory.
    pub async fn put_bytes(&self, key: &str, data: Vec<u8>) -> anyhow::Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(data))
            .await
            .with_context(|| format!("storing {key}"))?;
        Ok(())
    }

    /// The bytes of `key` in `range` (all of it when `None`), as a stream. `Ok(None)` when the
    /// object is missing.
    pub async fn get(
        &self,
        key: &str,
        range: Option<Range<u64>>,
    ) -> anyhow::Result<Option<ByteStream>> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        match self.store.get_opts(&self.path(key), options).await {
            Ok(result) => Ok(Some(result.into_stream().boxed())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {key}")),
        }
    }

    /// The whole of a small object (tests and thumbnails); `None` when missing.
    pub async fn read_all(&self, key: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(mut stream) = self.get(key, None).await? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        while let Some(chunk) = stream.next().await {
            data.extend_from_slice(&chunk.with_context(|| format!("reading {key}"))?);
        }
        Ok(Some(data))
    }

    /// Delete `key`; a missing object is fine (deleting is idempotent).
    pub async fn delete(&self, key: &str) -> anyhow::Result<()> {
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("deleting {key}")),
        }
    }

    /// Whether `key` exists.
    pub async fn exists(&self, key: &str) -> anyhow::Result<bool> {
        match self.store.head(&self.path(key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e).with_context(|| format!("looking up {key}")),
        }
    }
}
