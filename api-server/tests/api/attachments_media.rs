//! Test media made in the test, never committed: images encoded with the `image` crate, a PNG
//! decompression bomb, and voice notes in Ogg/Opus and WebM/Opus containers built by hand
//! (the frames are not real Opus: the server reads containers, it never decodes audio).

use image::{ImageFormat, RgbImage};
use std::io::Cursor;

/// A `width`×`height` image in `format`, with a gradient so that it compresses like a photo.
pub fn image(width: u32, height: u32, format: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([
            (x * 7 % 256) as u8,
            (y * 3 % 256) as u8,
            ((x ^ y) % 256) as u8,
        ])
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding a test image");
    out.into_inner()
}

/// A `width`×`height` JPEG as a phone writes it: EXIF with `orientation` (1–8) and, after the
/// tags, `private` (what stands for GPS coordinates and the device here).
pub fn photo(width: u32, height: u32, orientation: u8, private: &[u8]) -> Vec<u8> {
    let plain = image(width, height, ImageFormat::Jpeg);
    let mut exif = b"Exif\0\0MM\0\x2A\0\0\0\x08\0\x01".to_vec();
    exif.extend_from_slice(&[0x01, 0x12, 0x00, 0x03, 0, 0, 0, 1, 0, orientation, 0, 0]);
    exif.extend_from_slice(&[0, 0, 0, 0]);
    exif.extend_from_slice(private);
    let mut photo = plain[..2].to_vec();
    photo.extend_from_slice(&[0xFF, 0xE1]);
    photo.extend_from_slice(&(exif.len() as u16 + 2).to_be_bytes());
    photo.extend_from_slice(&exif);
    photo.extend_from_slice(&plain[2..]);
    photo
}

/// A `width`×`height` extended WebP (`VP8X`) with an `EXIF` chunk of no tags followed by
/// `private`, as an app that keeps a photo's metadata writes it.
pub fn webp_photo(width: u32, height: u32, private: &[u8]) -> Vec<u8> {
    let plain = image(width, height, ImageFormat::WebP);
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut c = kind.to_vec();
        c.extend_from_slice(&(data.len() as u32).to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    };
    let mut vp8x = vec![0x08, 0, 0, 0]; // EXIF
    vp8x.extend_from_slice(&(width - 1).to_le_bytes()[..3]);
    vp8x.extend_from_slice(&(height - 1).to_le_bytes()[..3]);
    let mut exif = b"MM\0\x2A\0\0\0\x08\0\0\0\0\0\0".to_vec();
    exif.extend_from_slice(private);
    let chunks = [
        chunk(b"VP8X", &vp8x),
        plain[12..].to_vec(),
        chunk(b"EXIF", &exif),
    ]
    .concat();
    let mut webp = b"RIFF".to_vec();
    webp.extend_from_slice(&(chunks.len() as u32 + 4).to_le_bytes());
    webp.extend_from_slice(b"WEBP");
    webp.extend_from_slice(&chunks);
    webp
}

pub fn png(width: u32, height: u32) -> Vec<u8> {
    image(width, height, ImageFormat::Png)
}

/// A few hundred bytes announcing a `side`×`side` RGB image: decoded, it would take
/// 3 × side² bytes.
pub fn png_bomb(side: u32) -> Vec<u8> {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
                                              // One row of zeros (filter byte + pixels would be far more; a stored zlib block of 64).
    let raw = vec![0u8; 64];
    let mut idat = vec![0x78, 0x01, 0x01];
    idat.extend_from_slice(&(raw.len() as u16).to_le_bytes());
    idat.extend_from_slice(&(!(raw.len() as u16)).to_le_bytes());
    idat.extend_from_slice(&raw);
    idat.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", Vec::new())] {
        png.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(&data);
        png.extend_from_slice(&chunk);
        png.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    png
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Ogg's CRC (polynomial 0x04C11DB7, not reflected, initial 0).
fn ogg_crc(data: &[u8]) -> u32 {
    let mut crc = 0u32;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn ogg_page(flags: u8, granule: u64, sequence: u32, packet: &[u8]) -> Vec<u8> {
    let mut page = b"OggS\0".to_vec();
    page.push(flags);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&0x5041_524Cu32.to_le_bytes()); // serial
    page.extend_from_slice(&sequence.to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes()); // CRC, filled below
    let mut lacing = vec![255u8; packet.len() / 255];
    lacing.push((packet.len() % 255) as u8);
    page.push(lacing.len() as u8);
    page.extend_from_slice(&lacing);
    page.extend_from_slice(packet);
    let crc = ogg_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}

/// The first page of an Ogg/Opus file, its identification header (pre-skip 312 samples, as
/// libopus writes): 47 bytes, and no audio.
pub fn ogg_opus_head() -> Vec<u8> {
    let mut head = b"OpusHead\x01\x01".to_vec();
    head.extend_from_slice(&312u16.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes());
    head.extend_from_slice(&[0, 0, 0]);
    ogg_page(0x02, 0, 0, &head)
}

/// An Ogg/Opus voice note of `ms` milliseconds (pre-skip 312 samples, as libopus writes).
pub fn ogg_opus(ms: u64) -> Vec<u8> {
    let pre_skip: u16 = 312;
    let mut tags = b"OpusTags".to_vec();
    tags.extend_from_slice(&6u32.to_le_bytes());
    tags.extend_from_slice(b"parley");
    tags.extend_from_slice(&0u32.to_le_bytes());
    let mut file = ogg_opus_head();
    file.extend(ogg_page(0, 0, 1, &tags));
    let end = ms * 48 + u64::from(pre_skip);
    file.extend(ogg_page(0x04, end, 2, &[0xFC; 40]));
    file
}

fn ebml(id: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.push(0x01); // an 8-byte size: the marker byte, then 7 bytes
    out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

/// A WebM/Opus voice note as MediaRecorder writes it: Segment and Clusters of unknown size and
/// no Duration; the last block is at `ms` milliseconds.
pub fn webm_opus(ms: u64) -> Vec<u8> {
    let mut file = ebml(
        &[0x1A, 0x45, 0xDF, 0xA3],
        &[ebml(&[0x42, 0x82], b"webm"), ebml(&[0x42, 0x87], &[4])].concat(),
    );
    file.extend_from_slice(&[
        0x18, 0x53, 0x80, 0x67, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    ]);
    file.extend(ebml(
        &[0x15, 0x49, 0xA9, 0x66],
        &ebml(&[0x2A, 0xD7, 0xB1], &[0x0F, 0x42, 0x40]),
    ));
    let track = [ebml(&[0xD7], &[1]), ebml(&[0x86], b"A_OPUS")].concat();
    file.extend(ebml(&[0x16, 0x54, 0xAE, 0x6B], &ebml(&[0xAE], &track)));
    let mut at = 0;
    while at <= ms {
        let cluster = at - at % 1000;
        if at % 1000 == 0 || at == 0 {
            file.extend_from_slice(&[
                0x1F, 0x43, 0xB6, 0x75, 0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            file.extend(ebml(&[0xE7], &(cluster as u32).to_be_bytes()));
        }
        let mut block = vec![0x81];
        block.extend_from_slice(&((at - cluster) as i16).to_be_bytes());
        block.push(0x80);
        block.extend_from_slice(&[0xFC; 20]);
        file.extend(ebml(&[0xA3], &block));
        at += 20;
    }
    file
}

/// The start of a Windows executable.
pub fn executable() -> Vec<u8> {
    let mut exe = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00".to_vec();
    exe.resize(4096, 0x90);
    exe
}
