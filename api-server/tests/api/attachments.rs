//! Image and voice uploads, end to end, on both storages (a directory and a real S3-protocol
//! server): upload, send, download (signed URL and bearer), the refusals (type, size, bombs,
//! signatures, non-members) and garbage collection.

use crate::attachments_media as media;
use crate::attachments_s3::{Storage, TestStorage};
use crate::helpers::{id_of, spawn_app_with, Reply, TestApp};
use reqwest::header;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Run `$body(storage)` as one test per storage.
macro_rules! on_both_storages {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn on_the_filesystem() {
                super::$name(super::Storage::Filesystem).await;
            }
            #[tokio::test]
            async fn on_s3() {
                super::$name(super::Storage::S3).await;
            }
        }
    };
}

/// The API on `storage`, with `customize` applied to its settings.
pub async fn app_on(
    storage: Storage,
    customize: impl FnOnce(&mut api_server::settings::Settings),
) -> (TestApp, TestStorage) {
    let storage = storage.start().await;
    let attachments = storage.settings.clone();
    let app = spawn_app_with(|s| {
        s.attachments = attachments;
        customize(s);
    })
    .await;
    (app, storage)
}

pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TestApp {
    /// `POST /api/attachments` with a raw body.
    pub async fn upload_raw(&self, token: &str, content_type: &str, body: Vec<u8>) -> Reply {
        self.request_raw(
            reqwest::Method::POST,
            "/api/attachments",
            Some(token),
            content_type,
            body,
        )
        .await
    }

    /// `POST /api/attachments` as a form with one file.
    pub async fn upload_form(&self, token: &str, name: &str, mime: &str, body: Vec<u8>) -> Reply {
        let boundary = "parleyboundary7MA4YWxk";
        let mut form = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\nhello\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
             Content-Type: {mime}\r\n\r\n"
        )
        .into_bytes();
        form.extend_from_slice(&body);
        form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        self.upload_raw(
            token,
            &format!("multipart/form-data; boundary={boundary}"),
            form,
        )
        .await
    }

    /// Upload that must be stored; returns the answer.
    pub async fn upload(&self, token: &str, body: Vec<u8>) -> Value {
        self.upload_raw(token, "application/octet-stream", body)
            .await
            .expect(201)
            .clone()
    }

    /// Send a `kind` message with `upload` to a conversation; the raw reply.
    pub async fn send_attachment(
        &self,
        token: &str,
        conversation: &str,
        kind: &str,
        upload: &str,
        caption: Option<&str>,
    ) -> Reply {
        let mut body = json!({
            "clientMsgId": format!("c-{}", uuid::Uuid::new_v4().simple()),
            "conversationId": conversation,
            "kind": kind,
            "attachmentId": upload,
        });
        if let Some(caption) = caption {
            body["content"] = json!(caption);
        }
        self.send_raw(token, &body).await
    }

    /// GET `path_and_query` with an optional token and extra headers; the raw response.
    pub async fn fetch(
        &self,
        path_and_query: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut req = self.client.get(self.url(path_and_query));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send().await.expect("sending the request")
    }
}

async fn bytes_of(response: reqwest::Response) -> Vec<u8> {
    response.bytes().await.expect("the body").to_vec()
}

async fn upload_send_and_download_by_a_recipient(storage: Storage) {
    let (app, _storage) = app_on(storage, |_| {}).await;
    let users = app.register_many(&["alice", "bob", "carol"]).await;
    let [(alice, _), (bob, bob_user), (carol, _)] = <[_; 3]>::try_from(users).expect("three");
    let conversation = app.direct(&alice, &bob_user).await;
    let photo = media::image(640, 480, image::ImageFormat::Jpeg);
    let voice = media::ogg_opus(3_000);

    let image = app.upload(&alice, photo.clone()).await;
    assert_eq!(image["kind"], "image");
    assert_eq!(image["mime"], "image/jpeg");
    assert_eq!(image["bytes"], photo.len());
    assert_eq!(image["sha256"], sha256_hex(&photo));
    assert_eq!(
        (image["width"].clone(), image["height"].clone()),
        (json!(640), json!(480))
    );
    let note = app
        .upload_form(&alice, "note.ogg", "audio/ogg", voice.clone())
        .await;
    let note = note.expect(201);
    assert_eq!(
        (note["kind"].as_str(), note["durationMs"].as_i64()),
        (Some("voice"), Some(3_000))
    );

    let sent = app
        .send_attachment(&alice, &conversation, "image", &id_of(&image), Some("look"))
        .await;
    let sent = sent.expect(201);
    assert_eq!(sent["content"], "look");
    assert_eq!(sent["attachment"]["width"], 640);
    app.send_attachment(&alice, &conversation, "voice", &id_of(note), None)
        .await
        .expect(201);

    // Bob reads the history: each message describes its attachment, with signed URLs.
    let history = app
        .get(&format!("/api/conversations/{conversation}/messages"), &bob)
        .await;
    let messages = history.expect(200)["messages"]
        .as_array()
        .expect("messages")
        .clone();
    let (picture, recording) = (&messages[0]["attachment"], &messages[1]["attachment"]);
    assert_eq!(picture["id"], image["id"]);
    assert_eq!(picture["bytes"], photo.len());
    assert_eq!(recording["durationMs"], 3_000);
    assert!(recording["thumbnailUrl"].is_null(), "{recording}");

    // Byte-identical, through the signed URL (no token) and the bearer route.
    let url = picture["url"].as_str().expect("a signed url");
    let signed = app.fetch(url, None, &[]).await;
    assert_eq!(signed.status(), 200);
    assert_eq!(signed.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(sha256_hex(&bytes_of(signed).await), sha256_hex(&photo));
    let path = format!("/api/attachments/{}", id_of(&image));
    let bearer = app.fetch(&path, Some(&bob), &[]).await;
    assert_eq!(bearer.status(), 200);
    assert_eq!(bytes_of(bearer).await, photo);
    let heard = app
        .fetch(recording["url"].as_str().expect("url"), None, &[])
        .await;
    assert_eq!(heard.headers()[header::CONTENT_TYPE], "audio/ogg");
    assert_eq!(bytes_of(heard).await, voice);

    // The thumbnail: a JPEG of at most 320 px.
    let thumb = app
        .fetch(
            picture["thumbnailUrl"].as_str().expect("thumbnail"),
            None,
            &[],
        )
        .await;
    assert_eq!(thumb.status(), 200);
    let thumb = image::load_from_memory(&bytes_of(thumb).await).expect("a thumbnail image");
    assert_eq!((thumb.width(), thumb.height()), (320, 240));

    // A non-member: 404 like any resource they cannot see; no token at all: 401.
    let refused = app.fetch(&path, Some(&carol), &[]).await;
    assert_eq!(refused.status(), 404);
    let refused = app
        .fetch(&format!("{path}/thumbnail"), Some(&carol), &[])
        .await;
    assert_eq!(refused.status(), 404);
    assert_eq!(app.fetch(&path, None, &[]).await.status(), 401);
}
on_both_storages!(upload_send_and_download_by_a_recipient);

#[tokio::test]
async fn a_photos_metadata_is_not_passed_on_and_its_orientation_gives_its_shape() {
    // Arrange: a landscape-stored photo whose EXIF turns it a quarter (portrait), and says
    // where it was taken
    let (app, _storage) = app_on(Storage::Filesystem, |_| {}).await;
    let (alice, _) = app.register("alice").await;
    let photo = media::photo(640, 480, 6, b"GPS 48.8582N 2.2945E iPhone 15 Pro");

    // Act
    let upload = app.upload(&alice, photo).await;
    let path = format!("/api/attachments/{}", id_of(&upload));
    let served = bytes_of(app.fetch(&path, Some(&alice), &[]).await).await;
    let thumbnail = app
        .fetch(&format!("{path}/thumbnail"), Some(&alice), &[])
        .await;
    let thumbnail = image::load_from_memory(&bytes_of(thumbnail).await).expect("a thumbnail");

    // Assert: upright as viewers show it; the file served is what the answer describes, with
    // the orientation and nothing else of the EXIF
    assert_eq!(
        (&upload["width"], &upload["height"]),
        (&json!(480), &json!(640))
    );
    assert_eq!((thumbnail.width(), thumbnail.height()), (240, 320));
    let text = String::from_utf8_lossy(&served);
    assert!(
        !text.contains("GPS") && !text.contains("iPhone"),
        "the metadata was served"
    );
    assert_eq!(upload["sha256"], sha256_hex(&served));
    assert_eq!(upload["bytes"], served.len());
    let mut decoder =
        image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&served)).expect("a JPEG");
    use image::ImageDecoder;
    assert_eq!(
        decoder.orientation().expect("its orientation"),
        image::metadata::Orientation::Rotate90
    );
}

#[tokio::test]
async fn a_webps_metadata_is_not_passed_on() {
    let (app, _storage) = app_on(Storage::Filesystem, |_| {}).await;
    let (alice, _) = app.register("alice").await;
    let photo = media::webp_photo(64, 48, b"GPS 48.8582N 2.2945E Pixel 9");

    let upload = app.upload(&alice, photo).await;
    let path = format!("/api/attachments/{}", id_of(&upload));
    let served = bytes_of(app.fetch(&path, Some(&alice), &[]).await).await;

    let text = String::from_utf8_lossy(&served);
    assert!(
        !text.contains("GPS") && !text.contains("Pixel"),
        "the metadata was served"
    );
    assert_eq!(upload["mime"], "image/webp");
    assert_eq!(upload["sha256"], sha256_hex(&served));
    let decoded = image::load_from_memory(&served).expect("a WebP");
    assert_eq!((decoded.width(), decoded.height()), (64, 48));
}

#[tokio::test]
async fn a_jpeg_cut_short_is_refused_415() {
    let (app, _storage) = app_on(Storage::Filesystem, |_| {}).await;
    let (alice, _) = app.register("alice").await;
    let photo = media::image(640, 480, image::ImageFormat::Jpeg);

    let reply = app
        .upload_raw(&alice, "image/jpeg", photo[..photo.len() / 2].to_vec())
        .await;

    assert_eq!(reply.expect(415)["error"]["code"], "unsupported_media_type");
}

async fn downloads_answer_ranges_etags_and_safe_headers(storage: Storage) {
    let (app, _storage) = app_on(storage, |_| {}).await;
    let (alice, _) = app.register("alice").await;
    let photo = media::png(300, 200);
    let upload = app.upload(&alice, photo.clone()).await;
    let path = format!("/api/attachments/{}", id_of(&upload));

    let part = app
        .fetch(&path, Some(&alice), &[("range", "bytes=0-99")])
        .await;
    assert_eq!(part.status(), 206);
    let range = format!("bytes 0-99/{}", photo.len());
    assert_eq!(part.headers()[header::CONTENT_RANGE], range.as_str());
    assert_eq!(part.headers()[header::CONTENT_LENGTH], "100");
    assert_eq!(bytes_of(part).await, photo[..100]);
    let tail = app
        .fetch(&path, Some(&alice), &[("range", "bytes=-10")])
        .await;
    assert_eq!(bytes_of(tail).await, photo[photo.len() - 10..]);
    let outside = app
        .fetch(&path, Some(&alice), &[("range", "bytes=999999-")])
        .await;
    assert_eq!(outside.status(), 416);

    let whole = app.fetch(&path, Some(&alice), &[]).await;
    let h = whole.headers().clone();
    assert_eq!(h[header::CONTENT_LENGTH], photo.len().to_string().as_str());
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(h[header::CACHE_CONTROL]
        .to_str()
        .expect("a text header")
        .starts_with("private"));
    let disposition = h[header::CONTENT_DISPOSITION]
        .to_str()
        .expect("a text header");
    assert_eq!(
        disposition,
        format!("inline; filename=\"{}.png\"", id_of(&upload))
    );
    let etag = h[header::ETAG].to_str().expect("a text header").to_owned();
    let again = app
        .fetch(&path, Some(&alice), &[("if-none-match", &etag)])
        .await;
    assert_eq!(again.status(), 304);
}
on_both_storages!(downloads_answer_ranges_etags_and_safe_headers);

async fn a_range_past_the_end_is_clamped_and_one_that_does_not_parse_ignored(storage: Storage) {
    // Arrange
    let (app, _storage) = app_on(storage, |_| {}).await;
    let (alice, _) = app.register("alice").await;
    let photo = media::png(300, 200);
    let upload = app.upload(&alice, photo.clone()).await;
    let signed = upload["url"].as_str().expect("url").to_owned();
    let thumbnail = upload["thumbnailUrl"]
        .as_str()
        .expect("thumbnailUrl")
        .to_owned();
    let last = photo.len() - 1;

    for url in [signed.as_str(), thumbnail.as_str()] {
        // Act
        let clamped = app
            .fetch(url, None, &[("range", "bytes=0-99999999999999999999")])
            .await;
        let beyond_u64 = app
            .fetch(url, None, &[("range", "bytes=10-18446744073709551616")])
            .await;
        let garbled = app.fetch(url, None, &[("range", "bytes=abc")]).await;
        let other_unit = app.fetch(url, None, &[("range", "items=0-1")]).await;
        let past = app
            .fetch(url, None, &[("range", "bytes=99999999999999999999-")])
            .await;

        // Assert
        assert_eq!(clamped.status(), 206, "{url}");
        let size = clamped.content_length().expect("a length") as usize;
        let whole = format!("bytes 0-{}/{}", size - 1, size);
        assert_eq!(clamped.headers()[header::CONTENT_RANGE], whole.as_str());
        assert_eq!(beyond_u64.status(), 206, "{url}");
        assert_eq!(garbled.status(), 200, "{url}");
        assert_eq!(other_unit.status(), 200, "{url}");
        assert_eq!(past.status(), 416, "{url}");
        let unsatisfied = format!("bytes */{size}");
        assert_eq!(past.headers()[header::CONTENT_RANGE], unsatisfied.as_str());
    }
    let clamped = app
        .fetch(&signed, None, &[("range", "bytes=0-99999999999999999999")])
        .await;
    assert_eq!(
        clamped.headers()[header::CONTENT_RANGE],
        format!("bytes 0-{last}/{}", photo.len()).as_str()
    );
    assert_eq!(bytes_of(clamped).await, photo);
}
on_both_storages!(a_range_past_the_end_is_clamped_and_one_that_does_not_parse_ignored);

async fn head_answers_the_headers_of_a_get_without_the_body(storage: Storage) {
    // Arrange
    let (app, _storage) = app_on(storage, |_| {}).await;
    let users = app.register_many(&["alice", "bob"]).await;
    let [(alice, _), (bob, _)] = <[_; 2]>::try_from(users).expect("two");
    let photo = media::png(300, 200);
    let upload = app.upload(&alice, photo.clone()).await;
    let path = format!("/api/attachments/{}", id_of(&upload));
    let head = |url: String, token: Option<&str>, headers: &[(&str, &str)]| {
        let mut req = app.client.head(app.url(&url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        req.send()
    };

    for (url, token) in [
        (path.clone(), Some(alice.as_str())),
        (format!("{path}/thumbnail"), Some(alice.as_str())),
        (upload["url"].as_str().expect("url").to_owned(), None),
    ] {
        // Act
        let got = app.fetch(&url, token, &[]).await;
        let headed = head(url.clone(), token, &[("range", "bytes=0-9")])
            .await
            .expect("HEAD");

        // Assert: the range is ignored (RFC 9110 §14.2), the headers are a GET's.
        assert_eq!(headed.status(), 200, "{url}");
        for name in [
            header::CONTENT_LENGTH,
            header::CONTENT_TYPE,
            header::ETAG,
            header::ACCEPT_RANGES,
            header::CONTENT_DISPOSITION,
        ] {
            assert_eq!(
                headed.headers().get(&name),
                got.headers().get(&name),
                "{url} {name}"
            );
        }
        let etag = got.headers()[header::ETAG]
            .to_str()
            .expect("text")
            .to_owned();
        assert!(bytes_of(headed).await.is_empty());
        let cached = head(url.clone(), token, &[("if-none-match", &etag)])
            .await
            .expect("HEAD");
        assert_eq!(cached.status(), 304, "{url}");
    }
    let length = head(path.clone(), Some(&alice), &[]).await.expect("HEAD");
    assert_eq!(
        length.headers()[header::CONTENT_LENGTH],
        photo.len().to_string().as_str()
    );
    let refused = head(path, Some(&bob), &[]).await.expect("HEAD");
    assert_eq!(refused.status(), 404);
}
on_both_storages!(head_answers_the_headers_of_a_get_without_the_body);

async fn garbage_collection_removes_unattached_uploads_and_keeps_attached_ones(storage: Storage) {
    let (app, storage) = app_on(storage, |_| {}).await;
    let users = app.register_many(&["alice", "bob"]).await;
    let [(alice, _), (_, bob_user)] = <[_; 2]>::try_from(users).expect("two");
    let conversation = app.direct(&alice, &bob_user).await;
    let kept = app.upload(&alice, media::png(40, 30)).await;
    let dropped = app.upload(&alice, media::png(50, 30)).await;
    app.send_attachment(&alice, &conversation, "image", &id_of(&kept), None)
        .await
        .expect(201);

    // Another replica collects, with everything unattached old enough.
    let store = api_server::store::open(&app.settings.database)
        .await
        .expect("opening the store as another replica would");
    let attachments =
        api_server::attachments::Attachments::open(&storage.settings, &app.settings.jwt.secret)
            .expect("the same storage");
    let later = chrono::Utc::now() + chrono::Duration::days(2);
    let collect = api_server::service::attachments::collect_garbage;
    assert_eq!(
        collect(&*store, &attachments, later)
            .await
            .expect("collecting"),
        1
    );
    // Idempotent: nothing left to collect.
    assert_eq!(
        collect(&*store, &attachments, later).await.expect("again"),
        0
    );

    let gone = format!("/api/attachments/{}", id_of(&dropped));
    assert_eq!(app.fetch(&gone, Some(&alice), &[]).await.status(), 404);
    let object = api_server::attachments::object_key(&id_of(&dropped));
    assert!(!attachments.storage.exists(&object).await.expect("looking"));
    let here = format!("/api/attachments/{}", id_of(&kept));
    assert_eq!(app.fetch(&here, Some(&alice), &[]).await.status(), 200);
    // A message cannot take the collected upload any more.
    let late = app
        .send_attachment(&alice, &conversation, "image", &id_of(&dropped), None)
        .await;
    late.expect_error(400, "validation_failed");
}
on_both_storages!(garbage_collection_removes_unattached_uploads_and_keeps_attached_ones);
