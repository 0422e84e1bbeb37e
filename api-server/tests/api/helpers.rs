//! `spawn_app()`: the real API on port 0 against a fresh database and a private bus prefix, so
//! that every test runs alone whatever runs beside it, plus small request helpers. Which
//! backend that is lives in [`crate::backend`].

use crate::backend::{settings_db_name, test_settings, EventStream, UnrelatedTransaction, BACKEND};
use api_server::settings::Settings;
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{json, Value};
use shared::wire::User;
use std::time::Duration;
use tokio::sync::oneshot;

/// The password every test user gets.
pub const PASSWORD: &str = "correct horse battery staple";

/// A running API and what a test needs to talk to it.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub address: String,
    pub client: reqwest::Client,
    pub db_name: String,
    pub redis_prefix: String,
    pub settings: Settings,
    shutdown: Option<oneshot::Sender<()>>,
}

/// Start the API with the default test settings.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Start the API after `customize` adjusted the test settings (limits, JWT lifetime, …).
pub async fn spawn_app_with(customize: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    customize(&mut settings);
    BACKEND.provision(&mut settings).await;
    let db_name = settings_db_name(&settings);
    let redis_prefix = settings.redis.prefix.clone();
    let app = BACKEND.build(settings.clone()).await;
    let port = app.port();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        // Only a hung server hits this: a loaded machine must not (Argon2id, busy database).
        .timeout(Duration::from_secs(120))
        // Never a connection the API may be closing (a 408 unasked, or cut).
        .pool_idle_timeout(shared::port::API_CLIENT_IDLE)
        .build()
        .expect("reqwest client");
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client,
        db_name,
        redis_prefix,
        settings,
        shutdown: Some(tx),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        BACKEND.cleanup(self.db_name.clone(), self.redis_prefix.clone());
    }
}

/// An answer: the status and the body, parsed as JSON when it is JSON (`Null` when empty).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    /// The `Link` header, if any.
    pub link: Option<String>,
    pub text: String,
    pub body: Value,
}

impl Reply {
    async fn from(resp: reqwest::Response) -> Self {
        let status = resp.status();
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let link = resp
            .headers()
            .get(reqwest::header::LINK)
            .map(|v| v.to_str().expect("a Link header in ASCII").to_owned());
        let text = resp.text().await.expect("reading the body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::Null)
        };
        Self {
            status,
            content_type,
            link,
            text,
            body,
        }
    }

    /// Assert the status, printing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "expected {status}, got {} with body {}",
            self.status,
            self.text
        );
        &self.body
    }

    /// Assert an error answer: the status and `{"error":{"code": code, "message": <string>}}`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Value {
        self.expect(status);
        assert!(
            self.content_type.starts_with("application/json"),
            "error answers are JSON, got content-type {:?} and body {:?}",
            self.content_type,
            self.text
        );
        assert_eq!(
            self.body["error"]["code"], code,
            "unexpected error body {}",
            self.text
        );
        assert!(
            self.body["error"]["message"].is_string(),
            "error.message must be a string: {}",
            self.text
        );
        &self.body["error"]
    }
}

/// The id (a decimal string on the wire) of a JSON object.
#[track_caller]
pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("ids are strings on the wire: {value}"))
        .to_owned()
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Any request; `token` goes in `Authorization: Bearer`.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        Reply::from(req.send().await.expect("sending the request")).await
    }

    /// A request with a raw body and content type.
    pub async fn request_raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        Reply::from(req.send().await.expect("sending the request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Reply {
        self.request(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(token), Some(body))
            .await
    }

    // --- auth

    pub async fn register_raw(&self, body: &Value) -> Reply {
        self.request(Method::POST, "/api/auth/register", None, Some(body))
            .await
    }

    /// Register `username` with [`PASSWORD`]; returns its token and user.
    pub async fn register(&self, username: &str) -> (String, User) {
        let reply = self
            .register_raw(&json!({ "username": username, "password": PASSWORD }))
            .await;
        let body = reply.expect(201);
        let token = body["token"].as_str().expect("token").to_owned();
        let user: User = serde_json::from_value(body["user"].clone()).expect("a User");
        (token, user)
    }

    /// Register several users at once.
    pub async fn register_many(&self, usernames: &[&str]) -> Vec<(String, User)> {
        futures::future::join_all(usernames.iter().map(|u| self.register(u))).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Reply {
        self.request(
            Method::POST,
            "/api/auth/login",
            None,
            Some(&json!({ "username": username, "password": password })),
        )
        .await
    }

    /// `POST /api/auth/login` as relayed by a proxy that says the client is `forwarded_for`.
    pub async fn login_forwarded(
        &self,
        username: &str,
        password: &str,
        forwarded_for: &str,
    ) -> Reply {
        let request = self
            .client
            .post(self.url("/api/auth/login"))
            .header("X-Forwarded-For", forwarded_for)
            .json(&json!({ "username": username, "password": password }));
        Reply::from(request.send().await.expect("sending the request")).await
    }

    // --- conversations

    /// `POST /api/conversations` with `member_ids` (and a title for a group).
    pub async fn create_conversation_raw(
        &self,
        token: &str,
        member_ids: &[&str],
        title: Option<&str>,
    ) -> Reply {
        let mut body = json!({ "memberIds": member_ids });
        if let Some(title) = title {
            body["title"] = json!(title);
        }
        self.post("/api/conversations", token, &body).await
    }

    /// Create (or find) a conversation and return its id.
    pub async fn create_conversation(
        &self,
        token: &str,
        member_ids: &[&str],
        title: Option<&str>,
    ) -> String {
        let reply = self.create_conversation_raw(token, member_ids, title).await;
        assert!(
            matches!(reply.status.as_u16(), 200 | 201),
            "creating a conversation: {} {}",
            reply.status,
            reply.text
        );
        id_of(&reply.body)
    }

    /// The direct conversation of the caller and `other`.
    pub async fn direct(&self, token: &str, other: &User) -> String {
        self.create_conversation(token, &[&other.id.to_string()], None)
            .await
    }

    pub async fn conversations(&self, token: &str) -> Vec<Value> {
        let reply = self.get("/api/conversations", token).await;
        reply
            .expect(200)
            .as_array()
            .unwrap_or_else(|| panic!("an array: {}", reply.text))
            .clone()
    }

    // --- messages

    pub async fn send_raw(&self, token: &str, body: &Value) -> Reply {
        self.post("/api/messages", token, body).await
    }

    /// Post a text message to a conversation; returns the raw reply.
    pub async fn post_message(
        &self,
        token: &str,
        conversation_id: &str,
        client_msg_id: &str,
        content: &str,
    ) -> Reply {
        self.send_raw(
            token,
            &json!({
                "clientMsgId": client_msg_id,
                "conversationId": conversation_id,
                "kind": "text",
                "content": content,
            }),
        )
        .await
    }

    /// Post a text message that must be stored (201); returns the message.
    pub async fn send(&self, token: &str, conversation_id: &str, content: &str) -> Value {
        let client_msg_id = format!("c-{}", uuid::Uuid::new_v4().simple());
        let reply = self
            .post_message(token, conversation_id, &client_msg_id, content)
            .await;
        reply.expect(201).clone()
    }

    /// `GET /api/conversations/{id}/messages?{query}`.
    pub async fn messages_page(&self, token: &str, conversation_id: &str, query: &str) -> Reply {
        self.get(
            &format!("/api/conversations/{conversation_id}/messages?{query}"),
            token,
        )
        .await
    }

    /// Every message of a conversation, following `afterSeq` until `hasMore` is false.
    pub async fn all_messages(&self, token: &str, conversation_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let reply = self
                .messages_page(
                    token,
                    conversation_id,
                    &format!("afterSeq={after}&limit=100"),
                )
                .await;
            let body = reply.expect(200);
            let page = body["messages"].as_array().expect("messages").clone();
            if let Some(last) = page.last() {
                after = last["seq"].as_i64().expect("seq");
            }
            all.extend(page);
            if !body["hasMore"].as_bool().expect("hasMore") {
                return all;
            }
        }
    }

    // --- receipts

    pub async fn mark(&self, token: &str, conversation_id: &str, which: &str, up_to: i64) -> Reply {
        self.post(
            &format!("/api/conversations/{conversation_id}/{which}"),
            token,
            &json!({ "upToSeq": up_to }),
        )
        .await
    }

    // --- sync

    pub async fn sync(&self, token: &str, since: Option<&str>, limit: Option<i64>) -> Reply {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(since) = since {
            query.push(("since", since.to_owned()));
        }
        if let Some(limit) = limit {
            query.push(("limit", limit.to_string()));
        }
        let req = self
            .client
            .get(self.url("/api/sync"))
            .bearer_auth(token)
            .query(&query);
        Reply::from(req.send().await.expect("sending the request")).await
    }

    // --- JWT

    /// The secret the app signs tokens with (tests forge tokens with it and with others).
    pub fn jwt_secret(&self) -> String {
        self.settings.jwt.secret.expose_secret().to_owned()
    }

    // --- bus

    /// Listen to events published for these users. Subscribed when this returns.
    pub async fn subscribe(&self, users: &[&User]) -> EventStream {
        let ids: Vec<String> = users.iter().map(|u| u.id.to_string()).collect();
        let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
        BACKEND.subscribe(&self.redis_prefix, &ids).await
    }

    /// A write transaction left open elsewhere while the guard lives.
    pub async fn unrelated_open_transaction(&self) -> UnrelatedTransaction {
        BACKEND.unrelated_open_transaction(&self.db_name).await
    }

    /// Run `sql` on the app's database by hand, as an operator would (`Err`: the refusal).
    pub async fn operator_sql(&self, sql: &str) -> Result<(), String> {
        BACKEND.operator_sql(&self.db_name, sql).await
    }

    /// The integer `query` answers on the app's database, asked by hand.
    pub async fn operator_count(&self, query: &str) -> i64 {
        BACKEND.operator_count(&self.db_name, query).await
    }

    /// Record `user` as connected, the way a relay would.
    pub async fn mark_online(&self, user: &User) {
        BACKEND
            .mark_online(&self.redis_prefix, &user.id.to_string())
            .await
    }
}
