//! Data written before a restart of the all-in-one binary is there after it.

use crate::helpers::{start, temp_dir};
use serde_json::{json, Value};

#[tokio::test]
async fn data_and_tokens_written_before_a_restart_are_there_after_it() {
    // Arrange: a data folder of our own, free ports
    let data = temp_dir("restart");
    let envs = [
        ("PARLEY_DATA_DIR", data.display().to_string()),
        ("API_PORT", "0".to_owned()),
        ("SOCKET_PORT", "0".to_owned()),
    ];
    let parley = start(&[], &envs).await;
    let http = reqwest::Client::new();
    let register = |name: &'static str| {
        let http = http.clone();
        let api = parley.api.clone();
        async move {
            let r: Value = http
                .post(format!("{api}/api/auth/register"))
                .json(&json!({"username": name, "password": "correct horse battery"}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r
        }
    };
    let alice = register("alice").await;
    let bob = register("bob").await;
    let token = alice["token"].as_str().unwrap().to_owned();
    let sent: Value = http
        .post(format!("{}/api/messages", parley.api))
        .bearer_auth(&token)
        .json(&json!({"clientMsgId": "before-restart", "recipientId": bob["user"]["id"], "content": "still here?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    // Act
    parley.terminate().await;
    let parley = start(&[], &envs).await;

    // Assert: the old token still works (the secret is kept) and the message is there
    let page: Value = http
        .get(format!(
            "{}/api/conversations/{}/messages",
            parley.api,
            sent["conversationId"].as_str().unwrap()
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["messages"][0]["id"], sent["id"], "{page}");
    assert_eq!(page["messages"][0]["content"], "still here?");
    assert!(data.join("parley.db").exists());
    parley.terminate().await;
    std::fs::remove_dir_all(data).unwrap();
}
