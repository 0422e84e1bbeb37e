//! The RFC 6455 frame codec of the WebSocket transport, written for many mostly idle connections.
//!
//! tungstenite keeps a read buffer per connection (allocated up front, 4 KiB here) and a write
//! buffer that keeps its largest size: ~5 KiB held by every idle connection. Here the bytes of a
//! read go through a buffer on the caller's stack ([`READ_CHUNK`]); only the bytes of a frame
//! not complete yet are copied to the heap ([`FrameReader`] keeps nothing between frames), and
//! the transport gives its write buffer back once written. Server side only: client frames must
//! be masked, ours are not; no extensions (we never accept one, so RSV bits are errors).

use std::collections::VecDeque;

use bytes::Bytes;

/// Bytes read from the socket per read, into a buffer on the stack.
pub(crate) const READ_CHUNK: usize = 8 * 1024;

const FIN: u8 = 0x80;
const RSV: u8 = 0x70;
const MASKED: u8 = 0x80;

pub(crate) const OP_CONTINUATION: u8 = 0x0;
pub(crate) const OP_TEXT: u8 = 0x1;
pub(crate) const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PING: u8 = 0x9;
pub(crate) const OP_PONG: u8 = 0xA;

/// What the client sent: a whole (reassembled) message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Incoming {
    Text(String),
    Binary(Bytes),
    /// A WebSocket ping, to be answered with a pong carrying the same data.
    Ping(Bytes),
    /// The client closes, with its status code if it gave one.
    Close(Option<u16>),
}

/// Why the client's bytes cannot be read as WebSocket frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// Unmasked, reserved bits or opcode, a fragmented or long control frame, a continuation
    /// without a message, a bad close payload.
    #[error("websocket protocol error")]
    Protocol,
    /// A frame or message larger than the limit.
    #[error("websocket message too large")]
    TooLarge,
    /// A text message (or close reason) that is not UTF-8.
    #[error("websocket text is not UTF-8")]
    Utf8,
}

/// The reading half of the codec: feed it what was read, it hands out what is complete.
#[derive(Debug)]
pub(crate) struct FrameReader {
    max_message: usize,
    /// The start of a frame not complete yet; empty (no allocation) between frames.
    partial: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and its payload so far.
    message: Option<(u8, Vec<u8>)>,
}

/// A parsed frame header.
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Header length, then payload length.
    header_len: usize,
    payload_len: usize,
}

impl FrameReader {
    /// Frames and messages longer than `max_message` bytes are refused.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            partial: Vec::new(),
            message: None,
        }
    }

    /// Bytes held for an incomplete frame or message (0 between messages).
    #[cfg(test)]
    pub fn buffered(&self) -> usize {
        self.partial.capacity() + self.message.as_ref().map_or(0, |(_, m)| m.capacity())
    }

    /// Reads the frames in `input` (what came after the bytes fed before), appending what they
    /// complete to `out`. The start of an incomplete frame is kept for the next call.
    pub fn feed(&mut self, input: &[u8], out: &mut VecDeque<Incoming>) -> Result<(), FrameError> {
        if self.partial.is_empty() {
            let used = self.parse(input, out)?;
            if used < input.len() {
                self.partial = input[used..].to_vec();
            }
        } else {
            let mut buf = std::mem::take(&mut self.partial);
            buf.extend_from_slice(input);
            let used = self.parse(&buf, out)?;
            if used < buf.len() {
                buf.drain(..used);
                self.partial = buf;
            }
        }
        Ok(())
    }

    /// Reads whole frames from the start of `buf`; returns how many bytes they took.
    fn parse(&mut self, buf: &[u8], out: &mut VecDeque<Incoming>) -> Result<usize, FrameError> {
        let mut used = 0;
        while let Some(header) = self.header(&buf[used..])? {
            let start = used + header.header_len;
            let end = start + header.payload_len;
            if end > buf.len() {
                break;
            }
            let mut payload = buf[start..end].to_vec();
            unmask(&mut payload, header.mask);
            used = end;
            if let Some(item) = self.frame(header.fin, header.opcode, payload)? {
                out.push_back(item);
            }
        }
        Ok(used)
    }

    /// The header at the start of `buf`, if it is all there; errors as soon as it is known bad.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, FrameError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        let fin = b0 & FIN != 0;
        let opcode = b0 & 0x0F;
        if b0 & RSV != 0 || b1 & MASKED == 0 {
            return Err(FrameError::Protocol);
        }
        let control = opcode & 0x8 != 0;
        match opcode {
            OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
            _ => return Err(FrameError::Protocol),
        }
        let (len, at) = match b1 & 0x7F {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0; 8];
                    be.copy_from_slice(b);
                    let len = u64::from_be_bytes(be);
                    if len >> 63 != 0 {
                        return Err(FrameError::Protocol);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            short => (u64::from(short), 2),
        };
        if control && (!fin || len > 125) {
            return Err(FrameError::Protocol);
        }
        let so_far = self.message.as_ref().map_or(0, |(_, m)| m.len());
        let payload_len = usize::try_from(len).map_err(|_| FrameError::TooLarge)?;
        if !control && payload_len.saturating_add(so_far) > self.max_message {
            return Err(FrameError::TooLarge);
        }
        let Some(mask) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            header_len: at + 4,
            payload_len,
        }))
    }

    /// One whole frame (unmasked): what it completes, if anything.
    fn frame(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
    ) -> Result<Option<Incoming>, FrameError> {
        match opcode {
            OP_PING => Ok(Some(Incoming::Ping(payload.into()))),
            OP_PONG => Ok(None),
            OP_CLOSE => close_frame(&payload).map(Some),
            OP_CONTINUATION => {
                let Some((_, message)) = self.message.as_mut() else {
                    return Err(FrameError::Protocol);
                };
                message.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let Some((opcode, message)) = self.message.take() else {
                    return Err(FrameError::Protocol);
                };
                data_message(opcode, message).map(Some)
            }
            _ if self.message.is_some() => Err(FrameError::Protocol),
            _ if !fin => {
                self.message = Some((opcode, payload));
                Ok(None)
            }
            _ => data_message(opcode, payload).map(Some),
        }
    }
}

fn data_message(opcode: u8, payload: Vec<u8>) -> Result<Incoming, FrameError> {
    if opcode == OP_TEXT {
        String::from_utf8(payload)
            .map(Incoming::Text)
            .map_err(|_| FrameError::Utf8)
    } else {
        Ok(Incoming::Binary(payload.into()))
    }
}

/// A close frame's payload: nothing, or a status code and a UTF-8 reason.
fn close_frame(payload: &[u8]) -> Result<Incoming, FrameError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(FrameError::Protocol),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            // Codes a peer may send (RFC 6455 section 7.4): 1000-1003, 1007-1011, 3000-4999.
            let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !valid {
                return Err(FrameError::Protocol);
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::Utf8)?;
            Ok(Incoming::Close(Some(code)))
        }
    }
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    // Eight bytes at a time (the mask twice over), then the rest byte by byte: the rest starts
    // at a multiple of eight, so its mask index starts at 0 again.
    let [a, b, c, d] = mask;
    let wide = u64::from_ne_bytes([a, b, c, d, a, b, c, d]);
    let mut words = payload.chunks_exact_mut(8);
    for chunk in &mut words {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in words.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Appends one unmasked (server) frame, final, to `out`.
pub(crate) fn encode(opcode: u8, payload: &[u8], out: &mut Vec<u8>) {
    out.reserve(payload.len() + 10);
    out.push(FIN | opcode);
    let len = payload.len();
    if len < 126 {
        // Fits in the seven bits.
        out.push(len as u8);
    } else if let Ok(len) = u16::try_from(len) {
        out.push(126);
        out.extend_from_slice(&len.to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
}

/// Appends a close frame with `code` and `reason` (at most 123 bytes, ours are short).
pub(crate) fn encode_close(code: u16, reason: &str, out: &mut Vec<u8>) {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason);
    encode(OP_CLOSE, &payload, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: masked with `MASK`.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode(opcode, payload, &mut out);
        if !fin {
            out[0] &= !FIN;
        }
        out[1] |= MASKED;
        let header_len = out.len() - payload.len();
        let mut masked = out[header_len..].to_vec();
        unmask(&mut masked, MASK);
        out.truncate(header_len);
        out.extend_from_slice(&MASK);
        out.extend_from_slice(&masked);
        out
    }

    fn read_all(reader: &mut FrameReader, bytes: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut out = VecDeque::new();
        reader.feed(bytes, &mut out)?;
        Ok(out.into())
    }

    #[test]
    fn a_masked_text_frame_is_unmasked() {
        // The example of RFC 6455 section 5.7: "Hello", masked.
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let mut reader = FrameReader::new(1000);
        assert_eq!(
            read_all(&mut reader, &bytes),
            Ok(vec![Incoming::Text("Hello".into())])
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn lengths_of_seven_sixteen_and_sixty_four_bits_are_read() {
        for len in [0, 125, 126, 65_535, 65_536, 70_000] {
            let payload = vec![b'x'; len];
            let bytes = client_frame(true, OP_BINARY, &payload);
            let header_len = bytes.len() - len;
            let expected = match len {
                0..=125 => 6,
                126..=65_535 => 8,
                _ => 14,
            };
            assert_eq!(header_len, expected, "header for {len}");
            let mut reader = FrameReader::new(100_000);
            assert_eq!(
                read_all(&mut reader, &bytes),
                Ok(vec![Incoming::Binary(payload.into())]),
                "{len}"
            );
        }
    }

    #[test]
    fn server_frames_use_the_shortest_length_and_no_mask() {
        let mut out = Vec::new();
        encode(OP_TEXT, b"hi", &mut out);
        assert_eq!(out, [0x81, 2, b'h', b'i']);
        out.clear();
        encode(OP_BINARY, &[0; 300], &mut out);
        assert_eq!(out[..4], [0x82, 126, 1, 44]);
        out.clear();
        encode(OP_BINARY, &[0; 70_000], &mut out);
        assert_eq!(out[..2], [0x82, 127]);
        assert_eq!(out[2..10], 70_000u64.to_be_bytes());
    }

    #[test]
    fn a_frame_split_across_reads_is_kept_until_complete_then_released() {
        let bytes = client_frame(true, OP_TEXT, "4hello world".as_bytes());
        let mut reader = FrameReader::new(1000);
        for (i, byte) in bytes.iter().enumerate() {
            let got = read_all(&mut reader, std::slice::from_ref(byte)).unwrap();
            if i + 1 < bytes.len() {
                assert!(got.is_empty());
                assert!(reader.buffered() > 0);
            } else {
                assert_eq!(got, vec![Incoming::Text("4hello world".into())]);
            }
        }
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn several_frames_in_one_read_all_come_out_in_order() {
        let mut bytes = client_frame(true, OP_TEXT, b"2");
        bytes.extend(client_frame(true, OP_BINARY, &[1, 2]));
        bytes.extend(client_frame(true, OP_TEXT, b"3"));
        let mut reader = FrameReader::new(1000);
        assert_eq!(
            read_all(&mut reader, &bytes),
            Ok(vec![
                Incoming::Text("2".into()),
                Incoming::Binary(Bytes::from_static(&[1, 2])),
                Incoming::Text("3".into()),
            ])
        );
    }

    #[test]
    fn fragments_are_reassembled_with_control_frames_between_them() {
        let mut bytes = client_frame(false, OP_TEXT, b"4hel");
        bytes.extend(client_frame(true, OP_PING, b"p"));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"lo "));
        bytes.extend(client_frame(true, OP_PONG, b""));
        bytes.extend(client_frame(true, OP_CONTINUATION, b"there"));
        let mut reader = FrameReader::new(1000);
        assert_eq!(
            read_all(&mut reader, &bytes),
            Ok(vec![
                Incoming::Ping(Bytes::from_static(b"p")),
                Incoming::Text("4hello there".into()),
            ])
        );
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn a_continuation_without_a_message_or_a_new_message_inside_one_is_an_error() {
        let mut reader = FrameReader::new(1000);
        let stray = client_frame(true, OP_CONTINUATION, b"x");
        assert_eq!(read_all(&mut reader, &stray), Err(FrameError::Protocol));

        let mut reader = FrameReader::new(1000);
        let mut bytes = client_frame(false, OP_TEXT, b"a");
        bytes.extend(client_frame(true, OP_TEXT, b"b"));
        assert_eq!(read_all(&mut reader, &bytes), Err(FrameError::Protocol));
    }

    #[test]
    fn unmasking_by_words_is_unmasking_byte_by_byte() {
        let mask = [0x12, 0x9a, 0xff, 0x01];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut masked = plain.clone();
            unmask(&mut masked, mask);
            let expected: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ mask[i % 4])
                .collect();
            assert_eq!(masked, expected, "length {len}");
            unmask(&mut masked, mask);
            assert_eq!(masked, plain, "length {len}, twice");
        }
    }

    #[test]
    fn unmasked_reserved_and_oversized_control_frames_are_errors() {
        let mut unmasked = Vec::new();
        encode(OP_TEXT, b"x", &mut unmasked);
        let mut rsv = client_frame(true, OP_TEXT, b"x");
        rsv[0] |= 0x40;
        let mut opcode = client_frame(true, OP_TEXT, b"x");
        opcode[0] = FIN | 0x3;
        let long_ping = client_frame(true, OP_PING, &[0; 126]);
        let fragmented_ping = client_frame(false, OP_PING, b"");
        for bytes in [unmasked, rsv, opcode, long_ping, fragmented_ping] {
            let mut reader = FrameReader::new(1000);
            assert_eq!(read_all(&mut reader, &bytes), Err(FrameError::Protocol));
        }
    }

    #[test]
    fn a_frame_or_message_past_the_limit_is_refused_from_its_header() {
        let mut reader = FrameReader::new(10);
        let header_only = &client_frame(true, OP_TEXT, &[b'x'; 11])[..6];
        assert_eq!(
            read_all(&mut reader, header_only),
            Err(FrameError::TooLarge)
        );

        let mut reader = FrameReader::new(10);
        let mut bytes = client_frame(false, OP_TEXT, &[b'x'; 6]);
        bytes.extend(client_frame(true, OP_CONTINUATION, &[b'x'; 6]));
        assert_eq!(read_all(&mut reader, &bytes), Err(FrameError::TooLarge));

        let mut reader = FrameReader::new(10);
        let exact = client_frame(true, OP_TEXT, &[b'x'; 10]);
        assert!(read_all(&mut reader, &exact).is_ok());
    }

    #[test]
    fn text_that_is_not_utf8_is_refused_even_across_fragments() {
        let mut reader = FrameReader::new(100);
        let bad = client_frame(true, OP_TEXT, &[0xff, 0xfe]);
        assert_eq!(read_all(&mut reader, &bad), Err(FrameError::Utf8));

        // é split between two fragments is valid once reassembled
        let mut reader = FrameReader::new(100);
        let mut bytes = client_frame(false, OP_TEXT, &[0xc3]);
        bytes.extend(client_frame(true, OP_CONTINUATION, &[0xa9]));
        assert_eq!(
            read_all(&mut reader, &bytes),
            Ok(vec![Incoming::Text("é".into())])
        );
    }

    #[test]
    fn close_frames_carry_a_valid_code_or_none() {
        let close = |payload: &[u8]| {
            let mut reader = FrameReader::new(100);
            read_all(&mut reader, &client_frame(true, OP_CLOSE, payload))
        };
        assert_eq!(close(b""), Ok(vec![Incoming::Close(None)]));
        assert_eq!(
            close(&[0x03, 0xe8, b'b', b'y', b'e']),
            Ok(vec![Incoming::Close(Some(1000))])
        );
        assert_eq!(close(&[0x03]), Err(FrameError::Protocol));
        // 1005 and 1006 must never be sent; 999 is out of range
        assert_eq!(close(&1005u16.to_be_bytes()), Err(FrameError::Protocol));
        assert_eq!(close(&999u16.to_be_bytes()), Err(FrameError::Protocol));
        assert_eq!(close(&[0x03, 0xe8, 0xff]), Err(FrameError::Utf8));
    }

    #[test]
    fn a_close_frame_we_send_has_the_code_then_the_reason() {
        let mut out = Vec::new();
        encode_close(1001, "server shutting down", &mut out);
        assert_eq!(out[0], FIN | OP_CLOSE);
        assert_eq!(usize::from(out[1]), 2 + "server shutting down".len());
        assert_eq!(out[2..4], 1001u16.to_be_bytes());
        assert_eq!(&out[4..], b"server shutting down");
    }
}
