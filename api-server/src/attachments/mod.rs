//! Image and voice uploads: where they are kept ([`storage`]), what they are ([`sniff`], from
//! their bytes), what they hold ([`image`]: dimensions and a thumbnail; [`voice`]: duration),
//! what of a photo's is not passed on ([`scrub`]: its metadata, where it was taken among it),
//! how a body reaches disk ([`spool`]) and how browsers fetch them without a bearer token
//! ([`signing`]). The routes are in `routes::attachments`, the flow in `service::attachments`.

pub mod image;
pub mod scrub;
pub mod signing;
pub mod sniff;
pub mod spool;
pub mod storage;
pub mod voice;

use crate::settings::AttachmentSettings;
use shared::ids::UserId;
use signing::UrlSigner;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use storage::Storage;

/// What the attachment routes share (cheap to clone).
#[derive(Clone)]
pub struct Attachments {
    pub storage: Storage,
    pub signer: UrlSigner,
    pub settings: Arc<AttachmentSettings>,
    /// Uploads per user on this replica (`attachments.uploads_per_minute`).
    pub uploads: Arc<UploadRate>,
    /// Places for the uploads probed at once on this replica (`attachments.decodes_at_once`).
    pub decodes: Arc<tokio::sync::Semaphore>,
    /// One probe at a time per user, so one user's uploads cannot hold every place.
    pub turns: Arc<DecodeTurns>,
}

impl Attachments {
    /// Open the storage `settings.url` names; URLs are signed with a key derived from `secret`.
    pub fn open(
        settings: &AttachmentSettings,
        secret: &secrecy::SecretString,
    ) -> anyhow::Result<Self> {
        let storage = Storage::open(settings)?;
        tracing::info!(storage = %storage.label, "attachments storage");
        Ok(Self {
            storage,
            signer: UrlSigner::new(secret, settings.signed_url_ttl_secs),
            settings: Arc::new(settings.clone()),
            uploads: Arc::new(UploadRate::new(settings.uploads_per_minute)),
            decodes: Arc::new(tokio::sync::Semaphore::new(decodes_at_once(settings))),
            turns: Arc::new(DecodeTurns::default()),
        })
    }
}

/// `attachments.decodes_at_once`, its `0` read as the replica's CPUs.
fn decodes_at_once(settings: &AttachmentSettings) -> usize {
    match settings.decodes_at_once {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
        n => n,
    }
}

/// The storage key of an upload's bytes.
pub fn object_key(id: &str) -> String {
    format!("objects/{id}")
}

/// The storage key of an image's thumbnail.
pub fn thumbnail_key(id: &str) -> String {
    format!("thumbnails/{id}")
}

/// Each user's turn to have an upload probed on this replica: one at a time, so that a user
/// sending many images (or many small files of huge pixel counts, slow to decode) waits for their
/// own, and the other places stay free for other users.
#[derive(Default)]
pub struct DecodeTurns {
    turns: Mutex<HashMap<UserId, Arc<tokio::sync::Semaphore>>>,
}

impl DecodeTurns {
    /// `user`'s turn (one permit): held, or waited for, through the returned semaphore.
    pub fn of(&self, user: UserId) -> Arc<tokio::sync::Semaphore> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.len() >= SWEEP_AT {
            // Nobody holds or waits for these: only the map refers to them.
            turns.retain(|_, turn| Arc::strong_count(turn) > 1);
        }
        turns
            .entry(user)
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(1)))
            .clone()
    }
}

/// Uploads per user per minute on this replica: a fixed one-minute window per user.
pub struct UploadRate {
    per_minute: u32,
    windows: Mutex<HashMap<UserId, (Instant, u32)>>,
}

/// Users tracked before ended windows are swept.
const SWEEP_AT: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

impl UploadRate {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: per_minute.max(1),
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Count one upload of `user`, or say how long until the next is allowed.
    pub fn check(&self, user: UserId) -> Result<(), Duration> {
        let now = Instant::now();
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            windows.retain(|_, (start, _)| now.duration_since(*start) < WINDOW);
        }
        let (start, count) = windows.entry(user).or_insert((now, 0));
        if now.duration_since(*start) >= WINDOW {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_minute {
            return Err(WINDOW.saturating_sub(now.duration_since(*start)));
        }
        *count += 1;
        Ok(())
    }
}
