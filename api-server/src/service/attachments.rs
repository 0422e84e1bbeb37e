//! Uploads: take a body to storage (typed, measured, thumbnailed), describe uploads with signed
//! URLs on the messages that carry them, and collect the garbage of uploads never attached.

use crate::attachments::sniff::{Format, Kind};
use crate::attachments::spool::{spool, SizeLimits, SpoolError};
use crate::attachments::{image, object_key, scrub, thumbnail_key, voice, Attachments};
use crate::error::{ApiError, ApiResult};
use crate::settings::AttachmentSettings;
use crate::state::AppState;
use crate::store::{AttachmentRow, Store, StoreError, StoreResult, UploadQuota};
use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::Stream;
use shared::errors::ErrorCode;
use shared::ids::UserId;
use shared::wire::{Attachment, AttachmentKind, Message, UploadedAttachment};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Uploads claimed per garbage-collection statement.
const GC_BATCH: i64 = 100;

/// What probing the spooled file found.
struct Probed {
    width: Option<i64>,
    height: Option<i64>,
    duration_ms: Option<i64>,
    thumbnail: Option<Vec<u8>>,
    /// The file's size and SHA-256 once its metadata was removed (a JPEG or PNG), if it was
    /// rewritten.
    scrubbed: Option<(u64, [u8; 32])>,
}

/// Store one upload of `user` read from `body` (raw bytes, already out of any multipart
/// envelope). `declared`: the body's `Content-Length`, when known, refused at once when over
/// every limit.
#[tracing::instrument(skip_all, fields(user_id = %user))]
pub async fn upload<S, E>(
    state: &AppState,
    user: UserId,
    declared: Option<u64>,
    body: S,
) -> ApiResult<UploadedAttachment>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let a = &state.attachments;
    let settings = &a.settings;
    let limits = SizeLimits::from(&**settings);
    if let Some(len) = declared.filter(|&len| len > limits.largest()) {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "the upload is {len} bytes; images are limited to {} and voice notes to {}",
                limits.image, limits.voice
            ),
        ));
    }
    let window = Duration::from_secs(settings.user_quota_window_secs);
    let quota = UploadQuota {
        bytes: i64::try_from(settings.user_quota_bytes).unwrap_or(i64::MAX),
        since: Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX),
    };
    // Checked before the body is read, and again with the upload's record (atomically: see
    // `Store::create_attachment`).
    let used = state.store.attachment_bytes_of(user, quota.since).await?;
    if used >= quota.bytes {
        return Err(over_quota(settings));
    }
    let spooled = spool(body, limits, &std::env::temp_dir())
        .await
        .map_err(spool_refusal)?;
    if used.saturating_add(i64::try_from(spooled.bytes).unwrap_or(i64::MAX)) > quota.bytes {
        return Err(over_quota(settings));
    }
    let format = spooled.format;
    let probed = probe(a, user, spooled.file.path().to_owned(), format).await?;
    let (stored_bytes, sha256) = probed.scrubbed.unwrap_or((spooled.bytes, spooled.sha256));
    let bytes = i64::try_from(stored_bytes).unwrap_or(i64::MAX);
    let id = uuid::Uuid::new_v4().simple().to_string();
    a.storage
        .put_file(&object_key(&id), spooled.file.path())
        .await?;
    if let Some(thumbnail) = probed.thumbnail {
        if let Err(e) = a.storage.put_bytes(&thumbnail_key(&id), thumbnail).await {
            let _ = a.storage.delete(&object_key(&id)).await;
            return Err(e.into());
        }
    }
    let row = AttachmentRow {
        id: id.clone(),
        owner_id: user.get(),
        kind: format.kind().as_str().to_owned(),
        mime: format.mime().to_owned(),
        bytes,
        sha256: crate::attachments::signing::to_hex(&sha256),
        width: probed.width,
        height: probed.height,
        duration_ms: probed.duration_ms,
        message_id: None,
        created_at: now_micros(),
    };
    if let Err(e) = state.store.create_attachment(row.clone(), quota).await {
        // Nothing references the objects: remove them (garbage collection would not see them).
        let _ = a.storage.delete(&object_key(&id)).await;
        let _ = a.storage.delete(&thumbnail_key(&id)).await;
        return Err(match e {
            StoreError::QuotaExceeded => over_quota(settings),
            e => e.into(),
        });
    }
    tracing::info!(attachment_id = %id, kind = %row.kind, bytes, "upload stored");
    Ok(UploadedAttachment {
        attachment: describe(a, &row),
        sha256: row.sha256,
        created_at: row.created_at,
    })
}

fn over_quota(settings: &AttachmentSettings) -> ApiError {
    ApiError::new(
        ErrorCode::QuotaExceeded,
        format!(
            "your uploads would pass {} bytes within {} s; older uploads leave that count as \
             they pass that age",
            settings.user_quota_bytes, settings.user_quota_window_secs
        ),
    )
}

fn spool_refusal(e: SpoolError) -> ApiError {
    match e {
        SpoolError::Unsupported => ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string()),
        SpoolError::TooLarge { .. } => ApiError::new(ErrorCode::PayloadTooLarge, e.to_string()),
        SpoolError::Empty => ApiError::invalid("body", "the upload is empty"),
        SpoolError::Body(ref reason) if reason.contains("in time") => {
            ApiError::code(ErrorCode::RequestTimeout)
        }
        SpoolError::Body(reason) => ApiError::invalid("body", reason),
        SpoolError::Io(e) => ApiError::Unexpected(anyhow::Error::new(e).context("spooling")),
    }
}

/// Dimensions and thumbnail, or duration, of `user`'s upload on a blocking thread, once it is
/// their turn and a place among the probes of this replica is free ([`decode_slot`]).
async fn probe(
    a: &Attachments,
    user: UserId,
    path: std::path::PathBuf,
    format: Format,
) -> ApiResult<Probed> {
    let settings = a.settings.clone();
    let slot = decode_slot(a, user).await?;
    let probed = tokio::task::spawn_blocking(move || -> ApiResult<Probed> {
        // Held until the decode ends, even when the request is dropped before: the thread goes
        // on, and so does its memory.
        let _slot = slot;
        match format.kind() {
            Kind::Image => {
                let info = image::probe(
                    &path,
                    format,
                    settings.image_max_pixels,
                    settings.thumbnail_px,
                )
                .map_err(|e| match e {
                    image::ImageRefusal::TooManyPixels { .. } => {
                        ApiError::new(ErrorCode::PayloadTooLarge, e.to_string())
                    }
                    image::ImageRefusal::Unreadable(_) => {
                        ApiError::new(ErrorCode::UnsupportedMediaType, e.to_string())
                    }
                })?;
                let scrubbed = scrub_file(&path, format, info.orientation)?;
                Ok(Probed {
                    width: Some(i64::from(info.width)),
                    height: Some(i64::from(info.height)),
                    duration_ms: None,
                    thumbnail: Some(info.thumbnail),
                    scrubbed,
                })
            }
            Kind::Voice => {
                // At most `voice_max_bytes` (5 MiB by default): read whole.
                let data = std::fs::read(&path).context("reading the spooled voice note")?;
                let ms = voice::duration_ms(format, &data).ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::UnsupportedMediaType,
                        format!("the {} file's duration cannot be read", format.mime()),
                    )
                })?;
                if ms > settings.voice_max_ms {
                    return Err(ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        format!(
                            "the voice note lasts {ms} ms; at most {} ms",
                            settings.voice_max_ms
                        ),
                    ));
                }
                Ok(Probed {
                    width: None,
                    height: None,
                    duration_ms: Some(i64::try_from(ms).unwrap_or(i64::MAX)),
                    thumbnail: None,
                    scrubbed: None,
                })
            }
        }
    })
    .await
    .context("joining the probe")?;
    probed
}

/// Rewrite the spooled JPEG, PNG or WebP at `path` without its metadata ([`scrub`]), keeping
/// `orientation`; its new size and SHA-256 (`None` for other formats, stored as uploaded). A file
/// whose segments or chunks cannot be followed to its end (cut short, or not well formed) is
/// refused: 415.
fn scrub_file(
    path: &std::path::Path,
    format: Format,
    orientation: u8,
) -> ApiResult<Option<(u64, [u8; 32])>> {
    use sha2::{Digest, Sha256};
    let rewrite = match format {
        Format::Jpeg => scrub::jpeg,
        Format::Png => scrub::png,
        Format::WebP => scrub::webp,
        _ => return Ok(None),
    };
    let data = std::fs::read(path).context("reading the spooled image")?;
    let clean = rewrite(&data, orientation).ok_or_else(|| {
        ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("the {} file is cut short or not well formed", format.mime()),
        )
    })?;
    std::fs::write(path, &clean).context("writing the image without its metadata")?;
    Ok(Some((clean.len() as u64, Sha256::digest(&clean).into())))
}

/// `user`'s turn ([`crate::attachments::DecodeTurns`]), then a place among the uploads probed
/// at once (`attachments.decodes_at_once`): a decoded image holds all its pixels. Both waited
/// for `attachments.decode_wait_secs` at most in all; beyond, 503 `service_unavailable`
/// (retryable). Held together until the probe ends.
async fn decode_slot(
    a: &Attachments,
    user: UserId,
) -> ApiResult<[tokio::sync::OwnedSemaphorePermit; 2]> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(a.settings.decode_wait_secs);
    let closed = || ApiError::Unexpected(anyhow::anyhow!("a decoders' semaphore is closed"));
    let turn = tokio::time::timeout_at(deadline, a.turns.of(user).acquire_owned())
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "your other uploads are still being processed, try again shortly",
            )
        })?
        .map_err(|_| closed())?;
    let slot = tokio::time::timeout_at(deadline, a.decodes.clone().acquire_owned())
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::ServiceUnavailable,
                "too many uploads are being processed, try again shortly",
            )
        })?
        .map_err(|_| closed())?;
    Ok([turn, slot])
}

fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn unix_now() -> u64 {
    u64::try_from(Utc::now().timestamp()).unwrap_or(0)
}

/// The download path of an upload (`thumbnail`: of its thumbnail).
pub fn path_of(id: &str, thumbnail: bool) -> String {
    if thumbnail {
        format!("/api/attachments/{id}/thumbnail")
    } else {
        format!("/api/attachments/{id}")
    }
}

/// An upload as messages carry it: its metadata and signed URLs.
pub fn describe(a: &Attachments, row: &AttachmentRow) -> Attachment {
    let now = unix_now();
    let image = row.kind == Kind::Image.as_str();
    Attachment {
        id: row.id.clone(),
        kind: if image {
            AttachmentKind::Image
        } else {
            AttachmentKind::Voice
        },
        mime: row.mime.clone(),
        bytes: row.bytes,
        width: row.width,
        height: row.height,
        duration_ms: row.duration_ms,
        url: Some(a.signer.sign(&path_of(&row.id, false), now)),
        thumbnail_url: image.then(|| a.signer.sign(&path_of(&row.id, true), now)),
    }
}

/// Fill in the `attachment` of every message that references an upload (one query for all).
pub async fn decorate(state: &AppState, messages: &mut [Message]) -> ApiResult<()> {
    let ids: Vec<String> = messages
        .iter()
        .filter_map(|m| m.attachment_id.clone())
        .collect();
    if ids.is_empty() {
        return Ok(());
    }
    let rows: HashMap<String, AttachmentRow> = state
        .store
        .attachments(&ids)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    for message in messages {
        if let Some(row) = message.attachment_id.as_ref().and_then(|id| rows.get(id)) {
            message.attachment = Some(Box::new(describe(&state.attachments, row)));
        }
    }
    Ok(())
}

/// Delete uploads created before `before` that no message references: each is claimed in the
/// database first (deleted there, so one replica only handles it), then its objects are
/// deleted (a missing object is fine). Returns how many were collected.
pub async fn collect_garbage(
    store: &dyn Store,
    attachments: &Attachments,
    before: DateTime<Utc>,
) -> StoreResult<usize> {
    let mut collected = 0;
    loop {
        let claimed = store.claim_unattached(before, GC_BATCH).await?;
        for row in &claimed {
            for key in [object_key(&row.id), thumbnail_key(&row.id)] {
                if let Err(e) = attachments.storage.delete(&key).await {
                    // The row is gone: the object is an orphan now; say so, go on.
                    tracing::warn!(error = ?e, key, "deleting a collected upload failed");
                }
            }
        }
        collected += claimed.len();
        if (claimed.len() as i64) < GC_BATCH {
            return Ok(collected);
        }
    }
}

/// Collect garbage every `gc_interval_secs`, for as long as the store is in use (the task
/// ends once the application dropped it).
pub fn spawn_gc(store: &Arc<dyn Store>, attachments: &Attachments) {
    let attachments = attachments.clone();
    let every = Duration::from_secs(attachments.settings.gc_interval_secs);
    let ttl = chrono::Duration::seconds(
        i64::try_from(attachments.settings.unattached_ttl_secs).unwrap_or(i64::MAX / 1000),
    );
    super::every(every, store, move |store| {
        let attachments = attachments.clone();
        async move {
            match collect_garbage(&*store, &attachments, Utc::now() - ttl).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(collected = n, "unattached uploads deleted"),
                Err(e) => tracing::warn!(error = ?e, "collecting unattached uploads failed"),
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::AttachmentSettings;
    use futures::FutureExt;
    use secrecy::SecretString;

    /// Uploads with `decodes_at_once` places, waited for `decode_wait_secs`.
    fn attachments(decodes_at_once: usize, decode_wait_secs: u64) -> Attachments {
        let settings = AttachmentSettings {
            decodes_at_once,
            decode_wait_secs,
            ..AttachmentSettings::default()
        };
        let secret = SecretString::from("0123456789abcdef0123456789abcdef".to_owned());
        Attachments::open(&settings, &secret).expect("a temporary directory can be made")
    }

    fn png() -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        ::image::RgbImage::new(64, 48)
            .save_with_format(file.path(), ::image::ImageFormat::Png)
            .expect("a PNG is written");
        file
    }

    #[tokio::test]
    async fn a_probe_beyond_the_decodes_at_once_is_refused_as_retryable_after_its_wait() {
        // Arrange: one place, taken by a probe in progress; no wait
        let a = attachments(1, 0);
        let file = png();
        let busy = a.decodes.clone().acquire_owned().await.expect("open");

        // Act
        let refused = probe(&a, UserId(1), file.path().to_owned(), Format::Png).await;
        drop(busy);
        let probed = probe(&a, UserId(1), file.path().to_owned(), Format::Png).await;

        // Assert: 503 `service_unavailable` while the place is taken; decoded once it is free,
        // and the place given back after
        let refused = refused
            .err()
            .expect("refused while the only place is taken");
        assert!(
            matches!(
                refused,
                ApiError::Known {
                    code: ErrorCode::ServiceUnavailable,
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(ErrorCode::ServiceUnavailable.retryable());
        assert_eq!(probed.map(|p| p.width).ok(), Some(Some(64)));
        assert_eq!(a.decodes.available_permits(), 1);
    }

    #[tokio::test]
    async fn a_users_probes_take_turns_and_leave_the_other_places_to_others() {
        // Arrange: two places; alice's first probe holds her turn
        let a = attachments(2, 60);
        let file = png();
        let (alice, bob) = (UserId(1), UserId(2));
        let turn = a.turns.of(alice).acquire_owned().await.expect("open");

        // Act
        let mut second = Box::pin(probe(&a, alice, file.path().to_owned(), Format::Png));
        let waits = (&mut second).now_or_never().is_none();
        let bobs = probe(&a, bob, file.path().to_owned(), Format::Png).await;
        drop(turn);
        let alices = second.await;

        // Assert: alice's second waited for her turn while bob's went through
        assert!(waits, "alice's second probe waits for her first");
        assert_eq!(bobs.map(|p| p.width).ok(), Some(Some(64)));
        assert_eq!(alices.map(|p| p.width).ok(), Some(Some(64)));
        assert_eq!(a.decodes.available_permits(), 2);
    }

    #[tokio::test]
    async fn a_probe_waiting_for_a_place_starts_when_one_is_freed() {
        // Arrange: one place, taken; a minute's wait
        let a = attachments(1, 60);
        let file = png();
        let busy = a.decodes.clone().acquire_owned().await.expect("open");
        let mut waiting = Box::pin(probe(&a, UserId(1), file.path().to_owned(), Format::Png));
        assert!((&mut waiting).now_or_never().is_none(), "it waits");

        // Act
        drop(busy);
        let probed = waiting.await;

        // Assert
        assert_eq!(probed.map(|p| p.height).ok(), Some(Some(48)));
    }
}
