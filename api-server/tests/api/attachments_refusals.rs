//! What uploads, downloads and sends with attachments refuse: types decided from the bytes,
//! sizes refused before the rest is read, decompression bombs, signed URLs expired or
//! tampered, and messages naming uploads they may not take.

use crate::attachments::app_on;
use crate::attachments_media as media;
use crate::attachments_s3::Storage;
use crate::helpers::id_of;
use api_server::attachments::signing::UrlSigner;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The refusals do not depend on the storage: the filesystem.
async fn fs_app(
    customize: impl FnOnce(&mut api_server::settings::Settings),
) -> (crate::helpers::TestApp, crate::attachments_s3::TestStorage) {
    app_on(Storage::Filesystem, customize).await
}

#[tokio::test]
async fn the_type_comes_from_the_bytes_not_the_content_type() {
    let (app, _storage) = fs_app(|_| {}).await;
    let (alice, _) = app.register("alice").await;
    let spoofed = app
        .upload_raw(&alice, "audio/ogg", media::png(20, 10))
        .await;
    let body = spoofed.expect(201);
    assert_eq!(
        (body["kind"].as_str(), body["mime"].as_str()),
        (Some("image"), Some("image/png"))
    );

    let renamed = app
        .upload_form(&alice, "holiday.jpg", "image/jpeg", media::executable())
        .await;
    renamed.expect_error(415, "unsupported_media_type");
    let raw = app
        .upload_raw(&alice, "image/jpeg", media::executable())
        .await;
    raw.expect_error(415, "unsupported_media_type");
    let text = app
        .upload_raw(&alice, "image/png", b"<svg onload=alert(1)>".to_vec())
        .await;
    text.expect_error(415, "unsupported_media_type");
}

#[tokio::test]
async fn voice_notes_in_webm_and_ogg_report_their_duration_and_long_ones_are_refused() {
    let (app, _storage) = fs_app(|s| s.attachments.voice_max_ms = 10_000).await;
    let (alice, _) = app.register("alice").await;
    let webm = app.upload(&alice, media::webm_opus(2_500)).await;
    assert_eq!(
        (webm["mime"].as_str(), webm["durationMs"].as_i64()),
        (Some("audio/webm"), Some(2_500))
    );
    let ogg = app.upload(&alice, media::ogg_opus(1_234)).await;
    assert_eq!(ogg["durationMs"], 1_234);
    let long = app
        .upload_raw(&alice, "audio/ogg", media::ogg_opus(11_000))
        .await;
    long.expect_error(413, "payload_too_large");
}

#[tokio::test]
async fn an_ogg_without_audio_is_a_415_like_any_voice_note_whose_duration_cannot_be_read() {
    // Arrange
    let (app, _storage) = fs_app(|_| {}).await;
    let (alice, _) = app.register("alice").await;
    let head = media::ogg_opus_head();
    assert_eq!(head.len(), 47);

    // Act
    let alone = app.upload_raw(&alice, "audio/ogg", head.clone()).await;
    let junk = app
        .upload_raw(&alice, "audio/ogg", [head, vec![0xAB; 1000]].concat())
        .await;

    // Assert
    for refused in [alone, junk] {
        let body = refused.expect_error(415, "unsupported_media_type");
        assert_eq!(
            body["message"], "the audio/ogg file's duration cannot be read",
            "{body}"
        );
    }
}

/// Offer a body of `total` bytes (chunked, no length announced) over a raw connection, as a
/// client that watches for an early answer does: it writes until the server answers, then
/// stops. Returns the status line, how many bytes were written before the answer (what the
/// server read plus what the kernels buffer), and whether the server then closed the
/// connection (instead of waiting to read — and discard — the rest of the body).
async fn upload_counting(address: &str, token: &str, total: usize) -> (String, usize, bool) {
    let mut first = media::png(8, 8);
    first.resize(64 * 1024, 0);
    offer_chunked(address, token, "image/png", first, total).await
}

/// [`upload_counting`] of a body of `content_type` that begins with `first` (its own chunk)
/// and goes on with zeros in chunks of 64 KiB.
async fn offer_chunked(
    address: &str,
    token: &str,
    content_type: &str,
    first: Vec<u8>,
    total: usize,
) -> (String, usize, bool) {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let host = address.trim_start_matches("http://");
    let stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connecting");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/attachments HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    write
        .write_all(head.as_bytes())
        .await
        .expect("writing the head");
    let written = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicBool::new(false));
    let (counter, stop) = (written.clone(), answered.clone());
    let writer = tokio::spawn(async move {
        let mut chunk = first;
        let mut sent = 0usize;
        while sent < total && !stop.load(Ordering::SeqCst) {
            let size = format!("{:x}\r\n", chunk.len()).into_bytes();
            let frame = [size, chunk.clone(), b"\r\n".to_vec()].concat();
            if write.write_all(&frame).await.is_err() {
                break;
            }
            sent += chunk.len();
            counter.store(sent, Ordering::SeqCst);
            chunk = vec![0; 64 * 1024];
        }
        // The write half stays open: only the server may end the connection.
        std::future::pending::<()>().await;
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    answered.store(true, Ordering::SeqCst);
    let sent = written.load(Ordering::SeqCst);
    // Patience, not a deadline: a server that waits for the rest never closes.
    let closed = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok();
    writer.abort();
    let status = String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    (status, sent, closed)
}

/// The image and voice upload limit of [`app_with_small_upload_limit`].
const SMALL_UPLOAD_LIMIT: u64 = 256 * 1024;

/// An app whose uploads may be at most [`SMALL_UPLOAD_LIMIT`] bytes, its storage (kept while
/// the test runs) and alice's token.
async fn app_with_small_upload_limit() -> (
    crate::helpers::TestApp,
    crate::attachments_s3::TestStorage,
    String,
) {
    let (app, storage) = fs_app(|s| {
        s.attachments.image_max_bytes = SMALL_UPLOAD_LIMIT;
        s.attachments.voice_max_bytes = SMALL_UPLOAD_LIMIT;
    })
    .await;
    let (alice, _) = app.register("alice").await;
    (app, storage, alice)
}

#[tokio::test]
async fn an_oversized_upload_is_refused_without_reading_the_rest() {
    let limit = SMALL_UPLOAD_LIMIT;
    let (app, _storage, alice) = app_with_small_upload_limit().await;
    // Announced too large: refused before a byte is read.
    let announced = app
        .client
        .post(app.url("/api/attachments"))
        .bearer_auth(&alice)
        .header("content-type", "image/png")
        .body(vec![0u8; 2 * limit as usize])
        .send()
        .await
        .expect("sending");
    assert_eq!(announced.status(), 413);
    // Not announced (chunked): the server answers at the limit and closes the connection
    // rather than reading the rest. 512 MiB offered.
    let offered = 512 << 20;
    let offer = upload_counting(&app.address, &alice, offered).await;
    assert_answered_unread(offer, " 413 ");
}

/// What [`offer_chunked`] saw: a status line with `expected` (e.g. `" 413 "`), after the client wrote
/// less than 64 MiB, and the connection closed rather than read to the end.
fn assert_answered_unread((status, sent, closed): (String, usize, bool), expected: &str) {
    assert!(status.contains(expected), "{status}");
    assert!(
        sent < 64 << 20,
        "the client wrote {sent} bytes before the answer"
    );
    assert!(
        closed,
        "the server kept the connection to read the rest of the body"
    );
}

const BOUNDARY: &str = "parleyboundary7MA4YWxk";

/// The head of a form part: `name`, with a file name when `file`.
fn part(name: &str, file: bool) -> Vec<u8> {
    let filename = if file { "; filename=\"f.png\"" } else { "" };
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n")
        .into_bytes()
}

/// A form with `before` bytes of a field `x`, then a small PNG file, then the form's end.
fn form_with_field_before(before: usize) -> Vec<u8> {
    [
        part("x", false),
        vec![b'a'; before],
        b"\r\n".to_vec(),
        part("file", true),
        media::png(8, 8),
        format!("\r\n--{BOUNDARY}--\r\n").into_bytes(),
    ]
    .concat()
}

#[tokio::test]
async fn a_form_past_the_upload_limit_is_a_413_whichever_part_holds_the_bytes() {
    // Arrange
    let limit = SMALL_UPLOAD_LIMIT;
    let (app, _storage, alice) = app_with_small_upload_limit().await;
    let form_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let file_then_field = [
        part("file", true),
        media::png(8, 8),
        b"\r\n".to_vec(),
        part("x", false),
    ]
    .concat();

    // Act
    let small = app
        .upload_raw(&alice, &form_type, form_with_field_before(16 * 1024))
        .await;
    let announced = app
        .upload_raw(
            &alice,
            &form_type,
            form_with_field_before(4 * limit as usize),
        )
        .await;
    // Streamed (chunked): a field before the file, or after it, that never ends. 512 MiB offered.
    let offered = 512 << 20;
    let before = offer_chunked(&app.address, &alice, &form_type, part("x", false), offered).await;
    let after = offer_chunked(&app.address, &alice, &form_type, file_then_field, offered).await;

    // Assert
    small.expect(201);
    announced.expect_error(413, "payload_too_large");
    for offer in [before, after] {
        assert_answered_unread(offer, " 413 ");
    }
}

#[tokio::test]
async fn a_body_going_on_past_its_forms_end_is_not_read() {
    // Arrange
    let (app, _storage) = fs_app(|_| {}).await;
    let (alice, _) = app.register("alice").await;
    let form_type = format!("multipart/form-data; boundary={BOUNDARY}");

    // Act: a whole form, then 512 MiB of zeros after its closing boundary.
    let offer = offer_chunked(
        &app.address,
        &alice,
        &form_type,
        form_with_field_before(10),
        512 << 20,
    )
    .await;

    // Assert
    assert_answered_unread(offer, " 201 ");
}

#[tokio::test]
async fn concurrent_uploads_cannot_pass_the_quota_together() {
    // Arrange: room for three uploads of this size
    let photo = media::png(40, 30);
    let size = photo.len() as u64;
    let (app, _storage) = fs_app(|s| s.attachments.user_quota_bytes = 3 * size).await;
    let (alice, _) = app.register("alice").await;

    // Act: eight at once
    let uploads = (0..8).map(|_| app.upload_raw(&alice, "image/png", photo.clone()));
    let replies = futures::future::join_all(uploads).await;

    // Assert: three stored, the others refused as over the quota
    let statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(
        statuses.iter().filter(|&&s| s == 201).count(),
        3,
        "{statuses:?}"
    );
    for reply in replies.iter().filter(|r| r.status.as_u16() != 201) {
        reply.expect_error(413, "quota_exceeded");
    }
}

#[tokio::test]
async fn uploads_older_than_the_quotas_window_no_longer_count() {
    const WINDOW: std::time::Duration = std::time::Duration::from_secs(5);
    // Arrange: room for one upload per 5 s (long enough for the second upload to come within
    // it on a loaded machine)
    let photo = media::png(40, 30);
    let size = photo.len() as u64;
    let (app, _storage) = fs_app(|s| {
        s.attachments.user_quota_bytes = size;
        s.attachments.user_quota_window_secs = WINDOW.as_secs();
    })
    .await;
    let (alice, _) = app.register("alice").await;
    app.upload_raw(&alice, "image/png", photo.clone())
        .await
        .expect(201);
    app.upload_raw(&alice, "image/png", photo.clone())
        .await
        .expect_error(413, "quota_exceeded");

    // Act: the first upload leaves the window (waiting on the clock is what is tested)
    tokio::time::sleep(WINDOW + std::time::Duration::from_millis(100)).await;

    // Assert
    app.upload_raw(&alice, "image/png", photo).await.expect(201);
}

#[tokio::test]
async fn a_decompression_bomb_is_refused_without_decoding_it() {
    let (app, _storage) = fs_app(|_| {}).await;
    let (alice, _) = app.register("alice").await;
    let before = shared::process_metrics::ProcessMetrics::read();
    // 100 000 × 100 000 RGB: 30 GB decoded, a few hundred bytes on the wire.
    let bomb = media::png_bomb(100_000);
    assert!(bomb.len() < 1024);
    let refused = app.upload_raw(&alice, "image/png", bomb).await;
    refused.expect_error(413, "payload_too_large");
    let after = shared::process_metrics::ProcessMetrics::read();
    let resident = |m: &shared::process_metrics::ProcessMetrics| {
        m.resident_memory_bytes
            .expect("resident memory is readable on Linux")
    };
    let grown = resident(&after).saturating_sub(resident(&before));
    assert!(grown < 64 << 20, "resident memory grew by {grown} bytes");
}

#[tokio::test]
async fn an_expired_or_tampered_signed_url_is_forbidden() {
    let (app, _storage) = fs_app(|_| {}).await;
    let (alice, _) = app.register("alice").await;
    let upload = app.upload(&alice, media::png(30, 30)).await;
    let signed = upload["url"]
        .as_str()
        .expect("the upload's signed url")
        .to_owned();
    assert_eq!(app.fetch(&signed, None, &[]).await.status(), 200);

    let path = format!("/api/attachments/{}", id_of(&upload));
    let now = u64::try_from(chrono::Utc::now().timestamp()).expect("after 1970");
    let expired = UrlSigner::new(&app.settings.jwt.secret, 60).sign(&path, now - 3600);
    let answer = app.fetch(&expired, None, &[]).await;
    assert_eq!(answer.status(), 403);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["error"]["code"], "invalid_signature");

    let later = signed.replace("exp=", "exp=9");
    assert_eq!(app.fetch(&later, None, &[]).await.status(), 403);
    let other = signed.replace(&id_of(&upload), "0123456789abcdef0123456789abcdef");
    assert_eq!(app.fetch(&other, None, &[]).await.status(), 403);
    let thumbnail = signed.replace('?', "/thumbnail?");
    assert_eq!(app.fetch(&thumbnail, None, &[]).await.status(), 403);
}

#[tokio::test]
async fn a_message_takes_only_its_senders_unattached_upload_of_its_kind() {
    let (app, _storage) = fs_app(|_| {}).await;
    let users = app.register_many(&["alice", "bob"]).await;
    let [(alice, _), (bob, bob_user)] = <[_; 2]>::try_from(users).expect("two");
    let conversation = app.direct(&alice, &bob_user).await;
    let photo = id_of(&app.upload(&alice, media::png(20, 20)).await);
    let voice = id_of(&app.upload(&alice, media::ogg_opus(500)).await);

    let missing = json!({"clientMsgId": "m0", "conversationId": conversation, "kind": "image"});
    app.send_raw(&alice, &missing)
        .await
        .expect_error(400, "validation_failed");
    let wrong_kind = app
        .send_attachment(&alice, &conversation, "image", &voice, None)
        .await;
    assert_eq!(
        wrong_kind.expect_error(400, "validation_failed")["field"],
        "attachmentId"
    );
    let not_bobs = app
        .send_attachment(&bob, &conversation, "image", &photo, None)
        .await;
    not_bobs.expect_error(400, "validation_failed");
    let text = json!({"clientMsgId": "m1", "conversationId": conversation, "content": "hi", "attachmentId": photo});
    app.send_raw(&alice, &text)
        .await
        .expect_error(400, "validation_failed");

    let first = json!({"clientMsgId": "m2", "conversationId": conversation, "kind": "image", "attachmentId": photo});
    let stored = app.send_raw(&alice, &first).await.expect(201).clone();
    // A retry answers the original; another message cannot take the same upload.
    let retry = app.send_raw(&alice, &first).await;
    assert_eq!(retry.expect(200)["id"], stored["id"]);
    let twice = app
        .send_attachment(&alice, &conversation, "image", &photo, None)
        .await;
    twice.expect_error(400, "validation_failed");
    // The same clientMsgId with another upload is another message: a mismatch.
    let other = id_of(&app.upload(&alice, media::png(21, 20)).await);
    let changed = json!({"clientMsgId": "m2", "conversationId": conversation, "kind": "image", "attachmentId": other});
    app.send_raw(&alice, &changed)
        .await
        .expect_error(422, "idempotency_mismatch");
}
