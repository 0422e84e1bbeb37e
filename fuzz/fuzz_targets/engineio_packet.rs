//! One Engine.IO text packet (a WebSocket text frame): decoding never panics, and a decoded
//! packet written back in its text form decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use socket_server::fuzzing::{decode_text, Message, Packet};

fuzz_target!(|data: &[u8]| {
    // WebSocket text frames are UTF-8 by the time they reach the decoder.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(packet) = decode_text(text) else {
        return;
    };
    let again = decode_text(&encode(&packet));
    assert_eq!(again.as_ref(), Ok(&packet), "{text:?} does not round-trip");
});

/// The packet's text form: its type digit, then its data.
fn encode(packet: &Packet) -> String {
    match packet {
        Packet::Open => "0".into(),
        Packet::Close => "1".into(),
        Packet::Ping(data) => format!("2{data}"),
        Packet::Pong(data) => format!("3{data}"),
        Packet::Message(Message::Text(text)) => format!("4{text}"),
        Packet::Message(Message::Binary(_)) => unreachable!("a text packet decoded as binary"),
        Packet::Upgrade => "5".into(),
        Packet::Noop => "6".into(),
    }
}
