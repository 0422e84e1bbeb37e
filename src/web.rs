//! The reference web app (`clients/web/`) on the API's port: `build.rs` bundles it with npm and
//! embeds the files in the binary, this module serves them.
//!
//! - The API's routes keep priority: the app is mounted after them (`ExtraServices`), for `GET`
//!   and `HEAD` only, and never under `/api/` or `/internal/` (an unknown API path stays the
//!   JSON 404).
//! - `/app-config.json` tells the page where the relay listens (its port; the page keeps its
//!   own host name, so `localhost` and `127.0.0.1` both work).
//! - Any other path without a file extension is the app's own route: `index.html` (a
//!   single-page app); a missing file (`/x.js`) is a 404.
//!
//! When npm was missing at build time the "app" is one page saying what to install.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{guard, web, HttpRequest, HttpResponse};
use api_server::startup::ExtraServices;
use std::sync::{Arc, OnceLock};

mod assets {
    include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
}

/// One embedded file of the built app.
struct Asset {
    /// The URL path, e.g. `/app.js`.
    path: &'static str,
    bytes: &'static [u8],
}

/// The relay's port, learnt once the relay is bound (after the API).
#[derive(Clone, Default)]
pub struct RelayPort(Arc<OnceLock<u16>>);

impl RelayPort {
    pub fn set(&self, port: u16) {
        let _ = self.0.set(port);
    }
}

/// Whether the embedded app is the real one (npm was there at build time).
pub fn built() -> bool {
    assets::BUILT
}

/// The services that serve the app, for `Application::build_with_extra`.
pub fn services(relay: RelayPort) -> ExtraServices {
    Arc::new(move |cfg: &mut web::ServiceConfig| {
        let relay = relay.clone();
        cfg.service(
            web::resource("/app-config.json")
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(move || app_config(relay.clone())),
        )
        .service(
            web::resource("/{tail:.*}")
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .guard(guard::fn_guard(|ctx| is_app_path(ctx.head().uri.path())))
                .to(serve),
        );
    })
}

/// Paths the app may answer: everything but the API's and the relays' prefixes.
fn is_app_path(path: &str) -> bool {
    !["/api", "/internal"]
        .iter()
        .any(|prefix| path == *prefix || path.starts_with(&format!("{prefix}/")))
}

async fn app_config(relay: RelayPort) -> HttpResponse {
    match relay.0.get() {
        Some(port) => no_cache(HttpResponse::Ok())
            .json(serde_json::json!({ "socketPort": port, "apiUrl": null, "socketUrl": null })),
        None => HttpResponse::ServiceUnavailable()
            .insert_header((header::RETRY_AFTER, "1"))
            .json(serde_json::json!({
                "error": {"code": "service_unavailable", "message": "the relay is still starting"}
            })),
    }
}

async fn serve(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    if let Some(asset) = find(path) {
        return file(asset);
    }
    let last = path.rsplit('/').next().unwrap_or_default();
    if last.contains('.') {
        return HttpResponse::NotFound().json(serde_json::json!({
            "error": {"code": "not_found", "message": format!("no file {path} in the web app")}
        }));
    }
    match find("/index.html") {
        Some(index) => file(index),
        None => HttpResponse::NotFound().finish(),
    }
}

fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/" { "/index.html" } else { path };
    assets::ASSETS.iter().find(|asset| asset.path == path)
}

fn file(asset: &'static Asset) -> HttpResponse {
    no_cache(HttpResponse::Ok())
        .insert_header((header::CONTENT_TYPE, content_type(asset.path)))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .body(asset.bytes)
}

/// The files are small and change with every build: browsers revalidate each time.
fn no_cache(mut response: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    response.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")));
    response
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_and_relay_prefixes_are_never_the_apps() {
        assert!(!is_app_path("/api"));
        assert!(!is_app_path("/api/nope"));
        assert!(!is_app_path("/internal/relay/messages"));
        assert!(is_app_path("/"));
        assert!(is_app_path("/apiary"));
        assert!(is_app_path("/c/42"));
    }

    #[test]
    fn the_index_is_always_embedded() {
        assert!(find("/").is_some());
        assert!(find("/index.html").is_some());
    }
}
