//! The WebSocket transport's own frame codec against a real client (tungstenite): fragmented
//! messages with control frames between the fragments, WebSocket pings, many small messages in
//! one write, and the size limit.

use bytes::Bytes;
use futures::SinkExt;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::{next_message, open_websocket, spawn_engine_echo};

const MAX_PAYLOAD: usize = 100_000;

fn fragment(opcode: OpCode, data: &'static [u8], last: bool) -> WsMessage {
    WsMessage::Frame(Frame::message(Bytes::from_static(data), opcode, last))
}

#[tokio::test]
async fn a_fragmented_message_with_a_ping_between_its_fragments_is_echoed_whole_after_the_pong() {
    // Arrange
    let server = spawn_engine_echo(Some(MAX_PAYLOAD)).await;
    let mut ws = open_websocket(server.port).await;

    // Act: "4hello world" in three fragments, a WebSocket ping after the first
    ws.send(fragment(OpCode::Data(Data::Text), b"4hel", false))
        .await
        .unwrap();
    ws.send(WsMessage::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    ws.send(fragment(OpCode::Data(Data::Continue), b"lo wo", false))
        .await
        .unwrap();
    ws.send(fragment(OpCode::Data(Data::Continue), b"rld", true))
        .await
        .unwrap();

    // Assert: the pong carries the ping's data, then the message comes back whole
    assert_eq!(
        next_message(&mut ws).await,
        WsMessage::Pong(Bytes::from_static(b"are you there"))
    );
    assert_eq!(next_message(&mut ws).await, WsMessage::text("4hello world"));
    server.stop().await;
}

#[tokio::test]
async fn many_messages_of_every_length_class_come_back_in_order() {
    // Arrange: lengths with 7-, 16- and 64-bit headers, text and binary
    let server = spawn_engine_echo(Some(MAX_PAYLOAD)).await;
    let mut ws = open_websocket(server.port).await;
    let lengths = [0, 1, 124, 125, 65_534, 65_535, 70_000];
    let mut sent = Vec::new();
    for (i, len) in lengths.iter().enumerate() {
        let text = format!("4{}", "x".repeat(*len));
        sent.push(WsMessage::text(text));
        sent.push(WsMessage::binary(vec![i as u8; *len + 1]));
    }

    // Act: fed without flushing, so several share one TCP segment
    for message in &sent {
        ws.feed(message.clone()).await.unwrap();
    }
    ws.flush().await.unwrap();

    // Assert
    for message in sent {
        assert_eq!(next_message(&mut ws).await, message);
    }
    server.stop().await;
}

#[tokio::test]
async fn a_message_over_the_limit_closes_the_connection_with_1009() {
    // Arrange
    let server = spawn_engine_echo(Some(MAX_PAYLOAD)).await;
    let mut ws = open_websocket(server.port).await;

    // Act: one byte over, in two fragments that are each under it
    let half = vec![b'x'; MAX_PAYLOAD / 2 + 1];
    let first = Frame::message(Bytes::from(half.clone()), OpCode::Data(Data::Text), false);
    let second = Frame::message(Bytes::from(half), OpCode::Data(Data::Continue), true);
    ws.send(WsMessage::Frame(first)).await.unwrap();
    // The server may close before reading the second fragment.
    let _ = ws.send(WsMessage::Frame(second)).await;

    // Assert
    let close = match next_message(&mut ws).await {
        WsMessage::Close(frame) => frame,
        other => panic!("expected the close frame, got {other:?}"),
    };
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Size));
    server.stop().await;
}
