//! The HTTP layer without a database: error shapes of the extractors, fallbacks, the bearer
//! extractor, probes, metrics labels and CORS.

use super::test_support::{limits, state, TestStore};
use super::*;
use actix_web::http::StatusCode;
use actix_web::test::{self, TestRequest};
use actix_web::{middleware::from_fn, App};
use serde_json::Value;
use shared::ids::UserId;

const ALL_UP: TestStore = TestStore {
    sessions_active: true,
    database_up: true,
};

/// The app as `startup` wires it, on `store`; also returns the state to inspect metrics.
macro_rules! app {
    ($store:expr) => {{
        let data = web::Data::new(state($store));
        let app = test::init_service(
            App::new()
                .app_data(data.clone())
                .configure(|cfg| configure(cfg, &limits()))
                .default_service(web::to(not_found))
                .app_data(cors::Origins::data(
                    shared::net::AllowedOrigins::parse(&["https://app.example"]).unwrap(),
                ))
                .wrap(from_fn(cors::cors))
                .wrap(from_fn(observe)),
        )
        .await;
        (app, data)
    }};
}

/// Status and JSON body of a call.
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let response = test::call_service(&$app, $req.to_request()).await;
        let status = response.status();
        let body: Value =
            serde_json::from_slice(&test::read_body(response).await).unwrap_or(Value::Null);
        (status, body)
    }};
}

fn bearer(data: &web::Data<AppState>) -> (header::HeaderName, String) {
    let (token, _) = data.keys.issue(UserId(1)).unwrap();
    (header::AUTHORIZATION, format!("Bearer {token}"))
}

#[actix_web::test]
async fn malformed_json_is_a_400_invalid_json_with_the_reason() {
    let (app, _) = app!(ALL_UP);
    let req = TestRequest::post()
        .uri("/api/auth/register")
        .insert_header((header::CONTENT_TYPE, "application/json"))
        .set_payload("{\"username\": ");
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 1"));
}

#[actix_web::test]
async fn a_missing_field_is_named_in_the_invalid_json_message() {
    let (app, _) = app!(ALL_UP);
    let req = TestRequest::post()
        .uri("/api/auth/register")
        .set_json(serde_json::json!({"username": "alice"}));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`password`"));
}

#[actix_web::test]
async fn a_body_over_the_limit_is_a_413_payload_too_large() {
    let (app, _) = app!(ALL_UP);
    let big = "x".repeat(limits().body_bytes + 1);
    let req = TestRequest::post()
        .uri("/api/auth/register")
        .set_json(serde_json::json!({"username": "alice", "password": big}));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "payload_too_large");
}

#[actix_web::test]
async fn a_non_json_content_type_is_a_400_invalid_json() {
    let (app, _) = app!(ALL_UP);
    let req = TestRequest::post()
        .uri("/api/auth/login")
        .insert_header((header::CONTENT_TYPE, "text/plain"))
        .set_payload("{}");
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "invalid_json");
}

#[actix_web::test]
async fn a_domain_check_names_the_failing_field() {
    let (app, _) = app!(ALL_UP);
    let req = TestRequest::post()
        .uri("/api/auth/register")
        .set_json(serde_json::json!({"username": "alice", "password": "short"}));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_eq!(body["error"]["field"], "password");
}

#[actix_web::test]
async fn bad_query_and_path_parameters_are_400_validation_failed() {
    let (app, data) = app!(ALL_UP);
    let auth = bearer(&data);
    for uri in [
        "/api/conversations/1/messages?limit=ten",
        "/api/conversations/1/messages?limit=0",
        "/api/conversations/1/messages?afterSeq=-1",
        "/api/conversations/abc",
        "/api/sync?limit=-5",
    ] {
        let (status, body) = call!(app, TestRequest::get().uri(uri).insert_header(auth.clone()));
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(body["error"]["code"], "validation_failed", "{uri}");
    }
    let uri = "/api/conversations/1/messages?afterSeq=3&limit=1000";
    let (status, body) = call!(app, TestRequest::get().uri(uri).insert_header(auth));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["hasMore"], false);
}

#[actix_web::test]
async fn unknown_paths_are_404_and_wrong_methods_405_in_json() {
    let (app, _) = app!(ALL_UP);
    let (status, body) = call!(app, TestRequest::get().uri("/nope"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = call!(app, TestRequest::get().uri("/api/auth/login"));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[actix_web::test]
async fn downloads_are_routed_for_head_as_for_get() {
    let (app, data) = app!(ALL_UP);
    for uri in ["/api/attachments/abc", "/api/attachments/abc/thumbnail"] {
        let head = TestRequest::default()
            .method(Method::HEAD)
            .uri(uri)
            .insert_header(bearer(&data));
        let response = test::call_service(&app, head.to_request()).await;
        // No such upload in this store: the GET's 404, not a 405.
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{uri}");
    }
}

#[actix_web::test]
async fn protected_routes_answer_401_json_for_missing_invalid_and_revoked_tokens() {
    let (app, _) = app!(ALL_UP);
    let (status, body) = call!(app, TestRequest::get().uri("/api/auth/me"));
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "missing_token");
    let req = TestRequest::get()
        .uri("/api/conversations")
        .insert_header((header::AUTHORIZATION, "Bearer not.a.jwt"));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "invalid_token");

    let (app, data) = app!(TestStore {
        sessions_active: false,
        database_up: true,
    });
    let req = TestRequest::post()
        .uri("/api/auth/logout")
        .insert_header(bearer(&data));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "token_revoked");
}

#[actix_web::test]
async fn a_non_member_gets_conversation_not_found() {
    let (app, data) = app!(ALL_UP);
    let req = TestRequest::get()
        .uri("/api/conversations/42")
        .insert_header(bearer(&data));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "conversation_not_found");
    let req = TestRequest::post()
        .uri("/api/conversations/42/read")
        .insert_header(bearer(&data))
        .set_json(serde_json::json!({"upToSeq": 1}));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "conversation_not_found");
}

#[actix_web::test]
async fn repeated_failed_logins_are_throttled_with_retry_after() {
    let (app, _) = app!(ALL_UP);
    let login = || {
        TestRequest::post()
            .uri("/api/auth/login")
            .set_json(serde_json::json!({"username": "ghost", "password": "wrong password"}))
    };
    for _ in 0..limits().login_failures_per_window {
        let (status, body) = call!(app, login());
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }
    let response = test::call_service(&app, login().to_request()).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response
        .headers()
        .get(header::RETRY_AFTER)
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=300).contains(&retry_after));
}

#[actix_web::test]
async fn health_is_always_ok_and_ready_reports_the_failing_check() {
    let (app, _) = app!(TestStore {
        sessions_active: true,
        database_up: false,
    });
    let (status, body) = call!(app, TestRequest::get().uri("/health"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    let (status, body) = call!(app, TestRequest::get().uri("/ready"));
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body["checks"],
        serde_json::json!({"database": "error", "bus": "ok"})
    );

    let (app, _) = app!(ALL_UP);
    let (status, body) = call!(app, TestRequest::get().uri("/ready"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        serde_json::json!({"status": "ready", "checks": {"database": "ok", "bus": "ok"}})
    );
}

#[actix_web::test]
async fn metrics_name_routes_by_pattern_never_by_raw_path() {
    let (app, data) = app!(ALL_UP);
    let auth = bearer(&data);
    call!(
        app,
        TestRequest::get()
            .uri("/api/conversations/12345")
            .insert_header(auth)
    );
    call!(
        app,
        TestRequest::get().uri("/api/conversations/777/messages")
    );
    call!(app, TestRequest::get().uri("/no/such/path/999"));

    let response = test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "text/plain; version=0.0.4"
    );
    let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
    assert!(
        text.contains(
            r#"http_requests_total{method="GET",route="/api/conversations/{id}",status="404"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="/api/conversations/{id}/messages",status="401""#));
    assert!(text.contains(r#"route="unmatched",status="404""#));
    // The raw ids appear in no label (values such as byte counts may contain any digits).
    let labels: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('{').and_then(|(_, rest)| rest.split_once('}')))
        .map(|(labels, _)| labels)
        .collect();
    assert!(
        labels
            .iter()
            .all(|l| !l.contains("12345") && !l.contains("777") && !l.contains("999")),
        "{labels:?}"
    );
    assert!(text.contains(r#"parley_api_db_pool_connections{state="max"} 3"#));
}

#[actix_web::test]
async fn cors_answers_listed_origins_and_refuses_others_in_the_error_shape() {
    let (app, _) = app!(ALL_UP);
    let preflight = |origin: &str| {
        TestRequest::default()
            .method(Method::OPTIONS)
            .uri("/api/messages")
            .insert_header((header::ORIGIN, origin.to_owned()))
            .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "POST"))
            .insert_header((
                header::ACCESS_CONTROL_REQUEST_HEADERS,
                "authorization, content-type",
            ))
    };

    let allowed = test::call_service(&app, preflight("https://app.example").to_request()).await;
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let h = allowed.headers();
    assert_eq!(
        h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "https://app.example"
    );
    let allowed_headers = h
        .get(header::ACCESS_CONTROL_ALLOW_HEADERS)
        .unwrap()
        .to_str()
        .unwrap();
    assert!(allowed_headers.contains("authorization") && allowed_headers.contains("content-type"));

    let (status, body) = call!(app, preflight("https://evil.example"));
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "origin_not_allowed");

    // An actual request: CORS headers on the answer (whatever its status), refusals in shape.
    let get = |origin: &str| {
        TestRequest::get()
            .uri("/api/auth/me")
            .insert_header((header::ORIGIN, origin.to_owned()))
    };
    let answered = test::call_service(&app, get("https://app.example").to_request()).await;
    assert_eq!(answered.status(), StatusCode::UNAUTHORIZED);
    let h = answered.headers();
    assert_eq!(
        h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).unwrap(),
        "https://app.example"
    );
    assert!(h
        .get(header::ACCESS_CONTROL_EXPOSE_HEADERS)
        .unwrap()
        .to_str()
        .unwrap()
        .contains("retry-after"));
    let (status, body) = call!(app, get("https://evil.example"));
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"]["code"], "origin_not_allowed");
}

#[actix_web::test]
async fn cors_lets_pages_send_download_headers_and_read_the_answers() {
    let (app, _) = app!(ALL_UP);
    let preflight = TestRequest::default()
        .method(Method::OPTIONS)
        .uri("/api/attachments/abc")
        .insert_header((header::ORIGIN, "https://app.example"))
        .insert_header((header::ACCESS_CONTROL_REQUEST_METHOD, "GET"))
        .insert_header((
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "range, if-none-match",
        ));
    let get = TestRequest::get()
        .uri("/api/attachments/abc")
        .insert_header((header::ORIGIN, "https://app.example"));

    let preflight = test::call_service(&app, preflight.to_request()).await;
    let answer = test::call_service(&app, get.to_request()).await;

    let list = |response: &ServiceResponse<_>, name| -> Vec<String> {
        let value = response.headers().get(name).unwrap().to_str().unwrap();
        value.split(',').map(|h| h.trim().to_owned()).collect()
    };
    let allowed = list(&preflight, header::ACCESS_CONTROL_ALLOW_HEADERS);
    for name in ["range", "if-none-match"] {
        assert!(allowed.iter().any(|h| h == name), "{name}: {allowed:?}");
    }
    let exposed = list(&answer, header::ACCESS_CONTROL_EXPOSE_HEADERS);
    for name in [
        "etag",
        "content-range",
        "accept-ranges",
        "content-length",
        "content-disposition",
        "retry-after",
    ] {
        assert!(exposed.iter().any(|h| h == name), "{name}: {exposed:?}");
    }
}

#[actix_web::test]
async fn requests_without_an_origin_or_from_the_same_origin_are_never_refused_for_it() {
    let (app, _) = app!(ALL_UP);

    let (no_origin, _) = call!(app, TestRequest::get().uri("/health"));
    let (same_origin, _) = call!(
        app,
        TestRequest::get()
            .uri("/health")
            .insert_header((header::HOST, "127.0.0.1:3000"))
            .insert_header((header::ORIGIN, "http://127.0.0.1:3000"))
    );

    assert_eq!((no_origin, same_origin), (StatusCode::OK, StatusCode::OK));
}

#[test]
fn percent_decoding_keeps_what_is_not_an_escape() {
    assert_eq!(percent_decoded("a%20b%E2%80%A8"), "a b\u{2028}".as_bytes());
    assert_eq!(percent_decoded("%FF%fe"), [0xFF, 0xFE]);
    assert_eq!(percent_decoded("100%+%4"), b"100%+%4");
    assert_eq!(percent_decoded("%%41"), b"%A");
}

#[actix_web::test]
async fn a_query_string_that_does_not_decode_to_utf8_is_refused_naming_query() {
    let (app, data) = app!(ALL_UP);
    let req = TestRequest::get()
        .uri("/api/users?search=%FF")
        .insert_header(bearer(&data));
    let (status, body) = call!(app, req);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "validation_failed");
    assert_eq!(body["error"]["field"], "query");
}

#[test]
fn page_limits_default_cap_and_refuse_zero() {
    assert_eq!(page_limit(None, 50, 200).ok(), Some(50));
    assert_eq!(page_limit(Some(1000), 50, 200).ok(), Some(200));
    assert!(page_limit(Some(0), 50, 200).is_err());
}

#[test]
fn rate_limited_answers_429_with_retry_after_rounded_up() {
    use actix_web::http::{header, StatusCode};
    let response = super::rate_limited(std::time::Duration::from_millis(1500), "too many");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        response.headers().get(header::RETRY_AFTER),
        Some(&header::HeaderValue::from(2u64))
    );
    let response = super::rate_limited(std::time::Duration::ZERO, "too many");
    assert_eq!(
        response.headers().get(header::RETRY_AFTER),
        Some(&header::HeaderValue::from(1u64))
    );
}

#[actix_web::test]
async fn every_response_carries_a_request_id_the_incoming_one_when_it_is_valid() {
    let (app, _) = app!(ALL_UP);
    let id_of = |response: &ServiceResponse<_>| {
        response
            .headers()
            .get(request_id::HEADER)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    };
    let kept = TestRequest::get()
        .uri("/health")
        .insert_header((request_id::HEADER, "lb-42/abc"))
        .to_request();
    assert_eq!(id_of(&test::call_service(&app, kept).await), "lb-42/abc");
    for request in [
        TestRequest::get()
            .uri("/health")
            .insert_header((request_id::HEADER, "two words")),
        TestRequest::get().uri("/no-such-path"),
        TestRequest::post().uri("/api/messages"),
    ] {
        let generated = id_of(&test::call_service(&app, request.to_request()).await);
        assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    }
}

/// Log lines written while `f` runs (JSON, everything at debug and above).
async fn logged<F: std::future::Future<Output = ()>>(f: F) -> Vec<Value> {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let lines = Lines::default();
    let writer = lines.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    // actix's test runtime runs on this thread: a thread-local subscriber sees the request.
    let guard = tracing::subscriber::set_default(subscriber);
    f.await;
    drop(guard);
    let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
    text.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[actix_web::test]
async fn each_request_logs_one_access_line_and_its_other_lines_carry_its_id() {
    let (app, data) = app!(TestStore {
        sessions_active: true,
        database_up: false,
    });
    let lines = logged(async {
        let request = TestRequest::get()
            .uri("/ready")
            .insert_header((request_id::HEADER, "req-7"))
            .to_request();
        test::call_service(&app, request).await;
        let request = TestRequest::get()
            .uri("/api/conversations/12345")
            .to_request();
        test::call_service(&app, request).await;
        let service = data.keys.issue_service().unwrap().0;
        let request = TestRequest::get()
            .uri("/internal/relay/users/1/sessions/j1")
            .insert_header((header::AUTHORIZATION, format!("Bearer {service}")))
            .to_request();
        test::call_service(&app, request).await;
    })
    .await;

    let access: Vec<&Value> = lines
        .iter()
        .filter(|l| l["target"] == request_id::ACCESS_TARGET)
        .collect();
    assert_eq!(access.len(), 3, "{lines:#?}");
    let ready = &access[0]["fields"];
    assert_eq!(ready["method"], "GET");
    assert_eq!(ready["route"], "/ready");
    assert_eq!(ready["status"], 503);
    assert_eq!(ready["request_id"], "req-7");
    assert!(ready["latency_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(access[0]["level"], "INFO");
    let conversation = &access[1]["fields"];
    assert_eq!(conversation["route"], "/api/conversations/{id}");
    assert_eq!(conversation["status"], 401);
    assert_eq!(access[1]["level"], "INFO");
    // A relay's call that succeeded: at debug (several per message under load).
    let internal = &access[2]["fields"];
    assert_eq!(
        internal["route"],
        "/internal/relay/users/{id}/sessions/{jti}"
    );
    assert_eq!(internal["status"], 200);
    assert_eq!(access[2]["level"], "DEBUG");
    // The readiness check's warning was written inside the request's span.
    let warning = lines
        .iter()
        .find(|l| l["fields"]["message"] == "readiness check failed")
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(warning["span"]["request_id"], "req-7");
}
