//! `POST /api/attachments` (an upload: raw bytes or one multipart file, streamed to storage) and
//! `GET /api/attachments/{id}` / `{id}/thumbnail` (downloads for the uploader and members of a
//! conversation whose message references the upload, by bearer token or signed URL).

use crate::attachments::signing::SignatureError;
use crate::attachments::sniff::Format;
use crate::attachments::spool::SizeLimits;
use crate::attachments::{object_key, thumbnail_key};
use crate::auth::extractor::{AuthError, AuthUser};
use crate::error::{ApiError, ApiResult};
use crate::service::attachments as service;
use crate::state::AppState;
use crate::store::AttachmentRow;
use actix_multipart::MultipartError;
use actix_web::body::SizedStream;
use actix_web::error::PayloadError;
use actix_web::http::header;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use shared::errors::ErrorCode;
use shared::wire::UploadedAttachment;
use std::any::Any;
use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

mod range;

use range::Wanted;

/// Register the three routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(super::resource("/api/attachments").route(web::post().to(upload)))
        .service(
            super::resource("/api/attachments/{id}")
                .route(web::get().to(download))
                .route(web::head().to(download)),
        )
        .service(
            super::resource("/api/attachments/{id}/thumbnail")
                .route(web::get().to(download_thumbnail))
                .route(web::head().to(download_thumbnail)),
        );
}

/// Upload an image or a voice note.
#[utoipa::path(
    post,
    path = "/api/attachments",
    tag = "attachments",
    request_body(
        description = "The file's bytes (any Content-Type: the type is read from the bytes), or multipart/form-data with one file field",
        content_type = "application/octet-stream",
        content = Vec<u8>
    ),
    responses(
        (status = 201, body = UploadedAttachment, description = "Stored"),
        (status = 400, body = shared::errors::ErrorEnvelope, description = "Empty or unreadable body"),
        (status = 401, body = shared::errors::ErrorEnvelope),
        (status = 408, body = shared::errors::ErrorEnvelope),
        (status = 413, body = shared::errors::ErrorEnvelope, description = "payload_too_large (bytes, pixels, duration) or quota_exceeded"),
        (status = 415, body = shared::errors::ErrorEnvelope, description = "Not a supported image or voice format"),
        (status = 429, body = shared::errors::ErrorEnvelope, description = "Too many uploads this minute"),
        (status = 503, body = shared::errors::ErrorEnvelope, description = "service_unavailable: no place to probe the upload within attachments.decode_wait_secs (retryable)"),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    state: web::Data<AppState>,
    user: AuthUser,
    req: HttpRequest,
    payload: web::Payload,
) -> ApiResult<HttpResponse> {
    if let Err(wait) = state.attachments.uploads.check(user.user_id) {
        return Ok(super::rate_limited(wait, "too many uploads"));
    }
    let multipart = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("multipart/form-data")
        });
    let declared: Option<u64> = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    if !multipart {
        let mut payload = payload;
        return Ok(
            match service::upload(&state, user.user_id, declared, &mut payload).await {
                Ok(uploaded) => created(&uploaded),
                Err(e) => refuse_unread(e, Box::new(payload)),
            },
        );
    }
    let largest = SizeLimits::from(&*state.attachments.settings).largest();
    let bound = largest.saturating_add(MULTIPART_ALLOWANCE);
    let too_large = |what: String| {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "{what}; uploads are limited to {largest} bytes, and a form to {MULTIPART_ALLOWANCE} more"
            ),
        )
    };
    if let Some(len) = declared.filter(|&len| len > bound) {
        let refusal = too_large(format!("the form is {len} bytes"));
        return Ok(refuse_unread(refusal, Box::new(payload)));
    }
    let ended = Rc::new(Cell::new(None));
    let body = Bounded {
        body: payload,
        read: 0,
        bound,
        ended: ended.clone(),
    };
    let mut form = actix_multipart::Multipart::new(req.headers(), body);
    Ok(match upload_form(&state, &user, &mut form, &ended).await {
        // Held: a body still arriving after the form's end is not read either (the connection
        // closes after the answer instead).
        Ok(uploaded) => holding(created(&uploaded), Box::new(form)),
        Err(e) => {
            let e = match ended.get() {
                Some(BodyEnd::TooLarge) => {
                    too_large(format!("the form is larger than {bound} bytes"))
                }
                Some(BodyEnd::TimedOut) => ApiError::code(ErrorCode::RequestTimeout),
                None => e,
            };
            refuse_unread(e, Box::new(form))
        }
    })
}

/// 201 with the upload and its `Location`.
fn created(uploaded: &UploadedAttachment) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((
            header::LOCATION,
            service::path_of(&uploaded.attachment.id, false),
        ))
        .json(uploaded)
}

/// Room a multipart body has beyond the largest upload limit, for its boundaries, part headers
/// and other form fields: every byte of a form counts against the two together, fields before
/// and after the file included, both as announced (`Content-Length`) and as read.
pub const MULTIPART_ALLOWANCE: u64 = 64 * 1024;

/// Why a multipart body stopped (the parser reports any body error as "Payload error").
#[derive(Debug, Clone, Copy)]
enum BodyEnd {
    /// More than the bound arrived.
    TooLarge,
    /// The body's deadline passed (`attachments.upload_timeout_secs`).
    TimedOut,
}

/// A request body that fails once more than `bound` bytes arrived, and says why it failed.
struct Bounded {
    body: web::Payload,
    read: u64,
    bound: u64,
    ended: Rc<Cell<Option<BodyEnd>>>,
}

impl futures::Stream for Bounded {
    type Item = Result<bytes::Bytes, PayloadError>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        if let Some(BodyEnd::TooLarge) = self.ended.get() {
            return Poll::Ready(Some(Err(PayloadError::Overflow)));
        }
        let item = std::task::ready!(self.body.poll_next_unpin(cx));
        Poll::Ready(match item {
            Some(Ok(chunk)) => {
                self.read = self.read.saturating_add(chunk.len() as u64);
                if self.read > self.bound {
                    self.ended.set(Some(BodyEnd::TooLarge));
                    Some(Err(PayloadError::Overflow))
                } else {
                    Some(Ok(chunk))
                }
            }
            Some(Err(e)) => {
                if super::deadline::timed_out(&e) {
                    self.ended.set(Some(BodyEnd::TimedOut));
                }
                Some(Err(e))
            }
            None => None,
        })
    }
}

/// The first file of a multipart body, uploaded. Form fields before it are read past; the
/// parts after it are read too (so that [`Bounded`] counts them) before the file is stored,
/// and otherwise ignored.
async fn upload_form(
    state: &AppState,
    user: &AuthUser,
    form: &mut actix_multipart::Multipart,
    ended: &Cell<Option<BodyEnd>>,
) -> ApiResult<UploadedAttachment> {
    let invalid =
        |e: MultipartError| ApiError::invalid("body", format!("invalid multipart body: {e}"));
    loop {
        let mut field = form
            .try_next()
            .await
            .map_err(invalid)?
            .ok_or_else(|| ApiError::invalid("body", "the multipart body has no file"))?;
        let is_file = field
            .content_disposition()
            .is_some_and(|d| d.get_filename().is_some() || d.get_name() == Some("file"));
        if is_file {
            // The form reads on only once the field is dropped: at its end.
            let mut file = Some(field);
            let file = futures::stream::poll_fn(move |cx| {
                let Some(field) = file.as_mut() else {
                    return std::task::Poll::Ready(None);
                };
                let chunk = std::task::ready!(field.poll_next_unpin(cx));
                if chunk.is_none() {
                    file = None;
                }
                std::task::Poll::Ready(chunk)
            });
            let rest = futures::stream::once(skip_rest(form, ended))
                .filter_map(|done| futures::future::ready(done.err().map(Err)));
            let body = file.chain(Box::pin(rest));
            return service::upload(state, user.user_id, None, body).await;
        }
        // A form field before the file: read past it.
        while let Some(chunk) = field.next().await {
            chunk.map_err(invalid)?;
        }
    }
}

/// Read the parts after the file to the form's end. Their errors are ignored (the file is
/// whole by then) but for the body's bound and deadline.
async fn skip_rest(
    form: &mut actix_multipart::Multipart,
    ended: &Cell<Option<BodyEnd>>,
) -> Result<(), MultipartError> {
    let read = async {
        while let Some(mut field) = form.try_next().await? {
            while let Some(chunk) = field.next().await {
                chunk?;
            }
        }
        Ok(())
    };
    match read.await {
        Err(e) if ended.get().is_some() => Err(e),
        _ => Ok(()),
    }
}

/// An error answered while the request body is still held, unread: actix then closes the
/// connection after the answer instead of reading (and discarding) the rest of the body, so a
/// refused upload costs no more than what was read before the refusal. The body is released
/// once the answer is sent.
fn refuse_unread(error: ApiError, body: Box<dyn Any>) -> HttpResponse {
    use actix_web::ResponseError;
    holding(error.error_response(), body)
}

/// `response` (a JSON answer), holding the request `body` until it is sent (see
/// [`refuse_unread`]).
fn holding(response: HttpResponse, body: Box<dyn Any>) -> HttpResponse {
    use actix_web::body::MessageBody;
    let (response, json) = response.into_parts();
    let json = json.try_into_bytes().unwrap_or_default();
    let len = json.len() as u64;
    let mut body = Some(body);
    let stream = futures::stream::iter([Ok::<_, actix_web::Error>(json)]).chain(
        futures::stream::poll_fn(move |_| {
            // Held until the stream itself is dropped, after the connection's fate is decided.
            let _ = &mut body;
            std::task::Poll::Ready(None)
        }),
    );
    response
        .set_body(SizedStream::new(len, stream))
        .map_into_boxed_body()
}

/// A signed URL's query (`exp`, `sig`), accepted instead of a bearer token.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Signed {
    /// Expiry (Unix seconds).
    pub exp: Option<String>,
    /// HMAC-SHA256 of the path and `exp`, hex.
    pub sig: Option<String>,
}

/// Download an upload.
#[utoipa::path(
    get,
    path = "/api/attachments/{id}",
    tag = "attachments",
    params(("id" = String, Path, description = "The upload's id"), Signed),
    responses(
        (status = 200, description = "The bytes", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 401, body = shared::errors::ErrorEnvelope),
        (status = 403, body = shared::errors::ErrorEnvelope, description = "Expired or invalid signed URL"),
        (status = 404, body = shared::errors::ErrorEnvelope),
        (status = 416, body = shared::errors::ErrorEnvelope, description = "Range not satisfiable"),
    ),
    security(("bearer" = []), ())
)]
pub async fn download(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    signed: super::Query<Signed>,
) -> Result<HttpResponse, AuthError> {
    serve(&state, &req, &id, &signed, false).await
}

/// Download an image's thumbnail (JPEG).
#[utoipa::path(
    get,
    path = "/api/attachments/{id}/thumbnail",
    tag = "attachments",
    params(("id" = String, Path, description = "The upload's id"), Signed),
    responses(
        (status = 200, description = "The thumbnail", content_type = "image/jpeg", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "image/jpeg", body = Vec<u8>),
        (status = 304, description = "Not modified (If-None-Match)"),
        (status = 401, body = shared::errors::ErrorEnvelope),
        (status = 403, body = shared::errors::ErrorEnvelope, description = "Expired or invalid signed URL"),
        (status = 404, body = shared::errors::ErrorEnvelope, description = "No such upload, or a voice note"),
        (status = 416, body = shared::errors::ErrorEnvelope, description = "Range not satisfiable"),
    ),
    security(("bearer" = []), ())
)]
pub async fn download_thumbnail(
    state: web::Data<AppState>,
    req: HttpRequest,
    id: web::Path<String>,
    signed: super::Query<Signed>,
) -> Result<HttpResponse, AuthError> {
    serve(&state, &req, &id, &signed, true).await
}

/// The upload a download names, if the caller may read it: by a valid signed URL for this
/// path, else by a bearer token of its uploader or of a member of its message's conversation.
async fn authorised(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    signed: &Signed,
    thumbnail: bool,
) -> Result<AttachmentRow, AuthError> {
    let not_found = || AuthError(ApiError::code(ErrorCode::NotFound));
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(not_found());
    }
    if let (Some(exp), Some(sig)) = (&signed.exp, &signed.sig) {
        let now = u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0);
        let path = service::path_of(id, thumbnail);
        state
            .attachments
            .signer
            .verify(&path, exp, sig, now)
            .map_err(|e| {
                AuthError(ApiError::new(
                    ErrorCode::InvalidSignature,
                    match e {
                        SignatureError::Expired => "the signed URL has expired",
                        SignatureError::Invalid => "the signed URL is not valid",
                    },
                ))
            })?;
        let rows = state
            .store
            .attachments(&[id.to_owned()])
            .await
            .map_err(ApiError::from)?;
        return rows.into_iter().next().ok_or_else(not_found);
    }
    let user = AuthUser::extract(req).await?;
    state
        .store
        .attachment_for(user.user_id, id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(not_found)
}

async fn serve(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    signed: &Signed,
    thumbnail: bool,
) -> Result<HttpResponse, AuthError> {
    let row = authorised(state, req, id, signed, thumbnail).await?;
    let format = Format::from_mime(&row.mime)
        .ok_or_else(|| ApiError::Unexpected(anyhow::anyhow!("unknown mime {}", row.mime)))?;
    let storage = &state.attachments.storage;
    let (etag, mime, name) = if thumbnail {
        (
            format!("\"{}-t\"", row.sha256),
            "image/jpeg",
            format!("{}-thumbnail.jpg", row.id),
        )
    } else {
        (
            format!("\"{}\"", row.sha256),
            format.mime(),
            format!("{}.{}", row.id, format.extension()),
        )
    };
    let response = |status: StatusCode| {
        let mut r = HttpResponse::build(status);
        r.insert_header((header::ETAG, etag.clone()))
            .insert_header((header::CACHE_CONTROL, "private, max-age=86400, immutable"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ));
        r
    };
    if none_match(req, &etag) {
        return Ok(response(StatusCode::NOT_MODIFIED).finish());
    }
    let missing = || AuthError(ApiError::code(ErrorCode::NotFound));
    if thumbnail {
        if format.kind() != crate::attachments::sniff::Kind::Image {
            return Err(missing());
        }
        let data = storage
            .read_all(&thumbnail_key(&row.id))
            .await
            .map_err(ApiError::from)?
            .ok_or_else(missing)?;
        let len = data.len() as u64;
        return Ok(match range(req, len) {
            Wanted::Part(r) => response(StatusCode::PARTIAL_CONTENT)
                .insert_header((header::CONTENT_RANGE, content_range(&r, len)))
                .content_type(mime)
                .body(data[r.start as usize..r.end as usize].to_vec()),
            Wanted::Whole => response(StatusCode::OK).content_type(mime).body(data),
            Wanted::Unsatisfiable => unsatisfiable(len),
        });
    }
    let len = u64::try_from(row.bytes).unwrap_or(0);
    if req.method() == Method::HEAD {
        // What a GET would answer, but the object itself is not read.
        let key = object_key(&row.id);
        if !storage.exists(&key).await.map_err(ApiError::from)? {
            return Err(missing());
        }
        let nothing = futures::stream::empty::<Result<bytes::Bytes, std::io::Error>>();
        return Ok(response(StatusCode::OK)
            .content_type(mime)
            .body(SizedStream::new(len, nothing)));
    }
    let wanted = match range(req, len) {
        Wanted::Whole => None,
        Wanted::Part(r) => Some(r),
        Wanted::Unsatisfiable => return Ok(unsatisfiable(len)),
    };
    let stream = storage
        .get(&object_key(&row.id), wanted.clone())
        .await
        .map_err(ApiError::from)?
        .ok_or_else(missing)?
        .map_err(|e| std::io::Error::other(e.to_string()));
    Ok(match wanted {
        Some(r) => response(StatusCode::PARTIAL_CONTENT)
            .insert_header((header::CONTENT_RANGE, content_range(&r, len)))
            .content_type(mime)
            .body(SizedStream::new(r.end - r.start, stream)),
        None => response(StatusCode::OK)
            .content_type(mime)
            .body(SizedStream::new(len, stream)),
    })
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn none_match(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn content_range(r: &Range<u64>, len: u64) -> String {
    format!("bytes {}-{}/{len}", r.start, r.end - 1)
}

/// What the request's `Range` header asks of a `len`-byte body. Ranges are defined for GET
/// only (RFC 9110 §14.2): a HEAD answers what a GET without one would.
fn range(req: &HttpRequest, len: u64) -> Wanted {
    if req.method() != Method::GET {
        return Wanted::Whole;
    }
    let header = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    range::wanted(header, len)
}

/// 416 `range_not_satisfiable`, with the body's length.
fn unsatisfiable(len: u64) -> HttpResponse {
    use actix_web::ResponseError;
    let mut response = ApiError::new(
        ErrorCode::RangeNotSatisfiable,
        format!("the range lies outside the {len} bytes"),
    )
    .error_response();
    if let Ok(value) = header::HeaderValue::from_str(&format!("bytes */{len}")) {
        response.headers_mut().insert(header::CONTENT_RANGE, value);
    }
    response
}
