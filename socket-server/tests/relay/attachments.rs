//! Image and voice messages through the relay: the live copy carries the upload's metadata as
//! the sender gave it (shape-checked, never waiting on storage), the stored one the API's own.

use serde_json::{json, Value};

use crate::device::Device;
use crate::helpers::{spawn_stack, Stack};

/// A 3×2 PNG (made with zlib; small enough to keep inline).
const PNG: [u8; 73] = [
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x08, 0x02, 0x00, 0x00, 0x00, 0x12, 0x16, 0xf1,
    0x4d, 0x00, 0x00, 0x00, 0x10, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x38, 0xc1, 0xc5, 0x05,
    0x41, 0x0c, 0x70, 0x16, 0x00, 0x38, 0x18, 0x05, 0x29, 0x06, 0x8a, 0xf6, 0x94, 0x00, 0x00, 0x00,
    0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

async fn upload(stack: &Stack, token: &str) -> Value {
    let response = stack
        .http
        .post(format!("{}/api/attachments", stack.api_url))
        .bearer_auth(token)
        .header("content-type", "application/octet-stream")
        .body(PNG.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json().await.unwrap()
}

/// Alice (who uploaded a PNG) and Bob in a direct conversation, a device each.
struct Pair {
    _stack: Stack,
    bob_id: String,
    conversation: String,
    uploaded: Value,
    sender: Device,
    recipient: Device,
}

async fn pair() -> Pair {
    let stack = spawn_stack(1).await;
    let (alice, _) = stack.register("alice").await;
    let (bob, bob_id) = stack.register("bob").await;
    let conversation = stack.conversation(&alice, &[&bob_id]).await;
    let uploaded = upload(&stack, &alice).await;
    let sender = Device::connect(&stack, 0, &alice).await;
    let recipient = Device::connect(&stack, 0, &bob).await;
    Pair {
        _stack: stack,
        bob_id,
        conversation,
        uploaded,
        sender,
        recipient,
    }
}

/// The next `receive_message` of `device` (other events skipped).
async fn received(device: &mut Device) -> Value {
    loop {
        let (event, body) = device.next().await;
        if event == "receive_message" {
            return body;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_is_relayed_with_its_metadata_and_stored_with_the_apis() {
    // Arrange
    let Pair {
        _stack,
        bob_id: _,
        conversation,
        uploaded,
        mut sender,
        mut recipient,
    } = pair().await;

    // Act
    let ack = sender
        .request(
            "send_message",
            json!({
                "clientMsgId": "img-1", "conversationId": conversation, "kind": "image",
                "attachmentId": uploaded["id"], "attachment": uploaded, "content": "look",
            }),
        )
        .await;

    // Assert: the live copy shows the size at once; the stored message has the API's metadata.
    let live = received(&mut recipient).await;
    assert_eq!(live["kind"], "image");
    assert_eq!(live["attachment"]["id"], uploaded["id"]);
    assert_eq!(
        (&live["attachment"]["width"], &live["attachment"]["height"]),
        (&json!(3), &json!(2))
    );
    assert_eq!(live["attachment"]["url"], uploaded["url"]);
    assert_eq!(ack["success"], true, "{ack}");
    assert_eq!(ack["attachment"]["mime"], "image/png");
    assert!(ack["attachment"]["thumbnailUrl"].is_string(), "{ack}");
    let saved = loop {
        let (event, body) = recipient.next().await;
        if event == "message_saved" {
            break body;
        }
    };
    assert_eq!(saved["attachment"]["width"], 3, "{saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_description_is_not_relayed_and_a_data_url_image_is_refused() {
    // Arrange
    let Pair {
        _stack,
        bob_id,
        conversation,
        uploaded,
        mut sender,
        mut recipient,
    } = pair().await;
    let mut forged = uploaded.clone();
    forged["url"] = json!("https://tracker.example/pixel.png");

    // Act
    let ack = sender
        .request(
            "send_message",
            json!({
                "clientMsgId": "img-2", "conversationId": conversation, "kind": "image",
                "attachmentId": uploaded["id"], "attachment": forged,
            }),
        )
        .await;
    let inline = sender
        .request(
            "sendMessage",
            json!({"tempId": "t-3", "receiverId": bob_id, "image": "data:image/png;base64,iVBO"}),
        )
        .await;

    // Assert: relayed without the description (the stored message then has the real one).
    let live = received(&mut recipient).await;
    assert_eq!(live["attachmentId"], uploaded["id"]);
    assert!(live["attachment"].is_null(), "{live}");
    assert_eq!(ack["attachment"]["width"], 3, "{ack}");
    assert_eq!(inline["success"], false, "{inline}");
    let message = inline["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("POST /api/attachments"), "{inline}");
}
