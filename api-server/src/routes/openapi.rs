//! `GET /api/openapi.json`: the OpenAPI 3 document of every route, generated from the handlers'
//! `#[utoipa::path]` annotations and the shared wire types.

use super::{attachments, auth, conversations, health, messages, metrics, receipts, sync, users};
use actix_web::web;
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, Response, ResponseBuilder};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Parley API",
        description = "Users, conversations and messages, stored exactly once. Every error is \
                       `{\"error\":{\"code\",\"message\"}}`; ids are strings."
    ),
    paths(
        auth::register, auth::login, auth::logout, auth::me,
        users::search,
        conversations::create, conversations::list, conversations::get,
        messages::send, messages::history,
        receipts::delivered, receipts::read,
        sync::sync,
        attachments::upload, attachments::download, attachments::download_thumbnail,
        health::health, health::ready, metrics::metrics, openapi_json,
    ),
    components(schemas(
        shared::errors::ErrorEnvelope, shared::errors::ErrorBody, shared::errors::ErrorCode,
        shared::wire::AuthResponse, shared::wire::User, shared::wire::UserWithPresence,
        shared::wire::Conversation, shared::wire::ConversationSummary,
        shared::wire::ConversationMember, shared::wire::ConversationKind,
        shared::wire::Message, shared::wire::MessageStatus, shared::wire::MessagePage,
        shared::wire::MemberState, shared::wire::SendMessageRequest,
        shared::wire::CreateConversationRequest, shared::wire::WatermarkRequest,
        shared::wire::SyncResponse,
        shared::wire::Attachment, shared::wire::AttachmentKind, shared::wire::UploadedAttachment,
        auth::RegisterRequest, auth::LoginRequest,
        health::HealthResponse, health::ReadyResponse, health::ReadyChecks,
    )),
    modifiers(&BearerAuth, &ExtractorErrors, &ApiRouteErrors, &HeadRoutes),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "users", description = "Finding people"),
        (name = "conversations", description = "Direct and group conversations"),
        (name = "messages", description = "Sending and reading messages"),
        (name = "receipts", description = "Delivered and read watermarks"),
        (name = "sync", description = "Catching up after being offline"),
        (name = "attachments", description = "Image and voice uploads and their downloads"),
        (name = "operations", description = "Probes and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the protected paths name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Documents what the extractors answer on every route (their error handlers in
/// [`super::configure`]), which no handler's annotation lists: a path or query parameter that
/// does not parse is `400 validation_failed`; a JSON body that does not parse is
/// `400 invalid_json`, one past the limit `413 payload_too_large`, one that does not arrive in
/// time `408 request_timeout`. Added to each operation that takes parameters or a body, where
/// its annotation does not already describe the status more precisely.
struct ExtractorErrors;

impl utoipa::Modify for ExtractorErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (_, operation) in operations(openapi) {
            let body = operation.request_body.is_some();
            let parameters = operation.parameters.as_ref().is_some_and(|p| !p.is_empty());
            if parameters || body {
                document(
                    operation,
                    "400",
                    "`validation_failed` (a parameter) or `invalid_json` (the body)",
                );
            }
            if body {
                document(
                    operation,
                    "408",
                    "`request_timeout`: the body did not arrive in time",
                );
                document(operation, "413", "`payload_too_large`");
            }
        }
    }
}

/// Documents what every `/api/` route may answer besides its own statuses: `403
/// origin_not_allowed` to a browser page whose origin is off `CORS_ALLOWED_ORIGINS`, and `503
/// service_unavailable` (retryable) when the database does not answer in time or is down. The
/// document itself (`/api/openapi.json`) needs neither.
struct ApiRouteErrors;

impl utoipa::Modify for ApiRouteErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for (path, operation) in operations(openapi) {
            if !path.starts_with("/api/") {
                continue;
            }
            document(
                operation,
                "403",
                "`origin_not_allowed`: a browser page whose origin is not allowed \
                 (`CORS_ALLOWED_ORIGINS`)",
            );
            if path != "/api/openapi.json" {
                document(
                    operation,
                    "503",
                    "`service_unavailable` (retryable): the database did not answer in time",
                );
            }
        }
    }
}

/// The downloads answer `HEAD` as `GET`, without the body (players and browsers probe a
/// voice note's length that way).
struct HeadRoutes;

impl utoipa::Modify for HeadRoutes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for path in ["/api/attachments/{id}", "/api/attachments/{id}/thumbnail"] {
            if let Some(item) = openapi.paths.paths.get_mut(path) {
                item.head = item.get.clone().map(|mut head| {
                    head.operation_id = head.operation_id.map(|id| format!("{id}_head"));
                    head.summary = Some("The download's headers, without its body".to_owned());
                    head
                });
            }
        }
    }
}

/// Every operation of the document (the routes are `GET` and `POST`), with its path.
fn operations(
    openapi: &mut utoipa::openapi::OpenApi,
) -> impl Iterator<Item = (&str, &mut utoipa::openapi::path::Operation)> {
    openapi.paths.paths.iter_mut().flat_map(|(path, item)| {
        [&mut item.get, &mut item.post]
            .into_iter()
            .flatten()
            .map(move |operation| (path.as_str(), operation))
    })
}

/// Add `status` with an error envelope to `operation`, unless its annotation describes it.
fn document(operation: &mut utoipa::openapi::path::Operation, status: &str, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_owned())
        .or_insert_with(|| error_response(description).into());
}

/// A response carrying the error envelope.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorEnvelope")))
                .build(),
        )
        .build()
}

/// Built once: the document does not change while the process runs.
static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document.
#[utoipa::path(
    get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3 document of this API", content_type = "application/json"))
)]
pub async fn openapi_json() -> web::Json<&'static utoipa::openapi::OpenApi> {
    web::Json(&DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_route_and_the_bearer_scheme() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for path in [
            "/api/auth/register",
            "/api/auth/login",
            "/api/auth/logout",
            "/api/auth/me",
            "/api/users",
            "/api/conversations",
            "/api/conversations/{id}",
            "/api/conversations/{id}/messages",
            "/api/conversations/{id}/delivered",
            "/api/conversations/{id}/read",
            "/api/messages",
            "/api/sync",
            "/health",
            "/ready",
            "/metrics",
            "/api/openapi.json",
        ] {
            assert!(paths.contains_key(path), "{path} is missing");
        }
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(doc["paths"]["/api/conversations"]["post"]["security"].is_array());
        let history = &doc["paths"]["/api/conversations/{id}/messages"]["get"]["parameters"];
        let names: Vec<&str> = history
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p["name"].as_str())
            .collect();
        assert_eq!(names, ["id", "afterSeq", "beforeSeq", "limit"]);
    }

    #[test]
    fn every_operation_reading_parameters_or_a_body_documents_its_extractor_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let responses = |path: &str, method: &str| {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            responses.keys().cloned().collect::<Vec<_>>()
        };
        // A path parameter that does not parse answers 400 validation_failed.
        assert!(responses("/api/conversations/{id}", "get").contains(&"400".to_owned()));
        // A body: no body at all answers 400 invalid_json.
        let login = responses("/api/auth/login", "post");
        for status in ["400", "408", "413"] {
            assert!(
                login.contains(&status.to_owned()),
                "{status} missing: {login:?}"
            );
        }
        // The route's own, more precise description stays.
        assert_eq!(
            doc["paths"]["/api/auth/register"]["post"]["responses"]["400"]["description"],
            "`validation_failed` naming the field, or `invalid_json`"
        );
        // Nothing to parse, nothing added.
        assert!(!responses("/api/auth/me", "get").contains(&"400".to_owned()));
        assert_eq!(
            doc["paths"]["/api/auth/login"]["post"]["responses"]["400"]["content"]
                ["application/json"]["schema"]["$ref"],
            "#/components/schemas/ErrorEnvelope"
        );
    }

    #[test]
    fn every_api_route_documents_a_refused_origin_and_an_unavailable_database() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let responses = |path: &str, method: &str| {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            responses.keys().cloned().collect::<Vec<_>>()
        };
        // Every /api/ route: a refused origin, an unavailable database; not the probes
        for (path, method) in [("/api/sync", "get"), ("/api/auth/register", "post")] {
            let statuses = responses(path, method);
            for status in ["403", "503"] {
                assert!(
                    statuses.contains(&status.to_owned()),
                    "{path}: {statuses:?}"
                );
            }
        }
        assert!(!responses("/health", "get").contains(&"503".to_owned()));
        assert!(!responses("/api/openapi.json", "get").contains(&"503".to_owned()));
        // The downloads answer HEAD too
        assert!(doc["paths"]["/api/attachments/{id}"]["head"]["responses"]["200"].is_object());
    }
}
