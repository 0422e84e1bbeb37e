//! A deadline on reading request bodies: a client that announces a `Content-Length` and sends
//! less (or trickles it) would otherwise hold a connection and a worker's attention for as long
//! as the socket stays open. The body stream fails once `api.body_timeout_ms` has passed since
//! the request arrived (`attachments.upload_timeout_secs` for an upload); the JSON extractor
//! then answers 408 `request_timeout`, as an upload does.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use actix_web::HttpMessage;
use futures::Stream;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The deadline's length, registered as app data.
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Middleware: give the request's body stream its deadline.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // An upload may take longer than a JSON body: its own deadline (`attachments.upload_timeout_secs`).
    let upload = (req.path() == "/api/attachments")
        .then(|| req.app_data::<actix_web::web::Data<crate::state::AppState>>())
        .flatten()
        .map(|state| {
            BodyTimeout(Duration::from_secs(
                state.attachments.settings.upload_timeout_secs,
            ))
        });
    if let Some(BodyTimeout(timeout)) = upload.or_else(|| req.app_data::<BodyTimeout>().copied()) {
        let body = req.take_payload();
        let timed = TimedBody {
            body,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        };
        req.set_payload(Payload::Stream {
            payload: Box::pin(timed),
        });
    }
    next.call(req).await
}

/// Whether a body read failed because its deadline passed.
pub fn timed_out(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

struct TimedBody {
    body: Payload,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Stream for TimedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = Pin::new(&mut self.body).poll_next(cx) {
            return Poll::Ready(item);
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(PayloadError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the request body did not arrive in time",
            ))))),
            Poll::Pending => Poll::Pending,
        }
    }
}
