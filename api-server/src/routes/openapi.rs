//! `GET /api/openapi.json`: the OpenAPI 3 document of every route, generated from the handlers'
//! `#[utoipa::path]` annotations and the shared wire types.

use super::{auth, conversations, health, messages, metrics, receipts, sync, users};
use actix_web::web;
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
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
        auth::RegisterRequest, auth::LoginRequest,
        health::HealthResponse, health::ReadyResponse, health::ReadyChecks,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and sessions"),
        (name = "users", description = "Finding people"),
        (name = "conversations", description = "Direct and group conversations"),
        (name = "messages", description = "Sending and reading messages"),
        (name = "receipts", description = "Delivered and read watermarks"),
        (name = "sync", description = "Catching up after being offline"),
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
}
