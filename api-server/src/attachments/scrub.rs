//! Metadata removed from uploaded JPEGs and PNGs before anyone else can fetch them: a phone's photo
//! carries where it was taken (EXIF GPS), the device, its owner's name and edit history (EXIF,
//! XMP, IPTC, comments), and sometimes more images after its end (previews, depth maps, each with
//! its own EXIF). Kept: the pixels (every segment the decoder needs, unchanged), the colour
//! profile (`ICC_PROFILE`), JFIF and Adobe's colour-transform marker, and the orientation, as a
//! minimal EXIF block of that one tag, so that viewers still show the photo upright. A PNG loses
//! its text chunks (`tEXt`, `zTXt`, `iTXt`: author, software, XMP), its time and its EXIF, and
//! keeps every other chunk as it was. A WebP loses its `EXIF` and `XMP ` chunks (and their flags
//! in `VP8X`) and anything after its RIFF end.

/// The JPEG `data` without its metadata; `orientation` is the EXIF orientation (1–8) to keep.
/// `None` when the file's segments cannot be followed (it is not a JPEG this can rewrite).
pub fn jpeg(data: &[u8], orientation: u8) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(data.len());
    let rest = data.strip_prefix(&[0xFF, 0xD8])?;
    out.extend_from_slice(&[0xFF, 0xD8]);
    if (2..=8).contains(&orientation) {
        out.extend_from_slice(&orientation_segment(orientation));
    }
    let mut at = 0;
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while rest.get(at) == Some(&0xFF) && rest.get(at + 1) == Some(&0xFF) {
            at += 1;
        }
        if rest.get(at) != Some(&0xFF) {
            return None;
        }
        let marker = *rest.get(at + 1)?;
        match marker {
            // End of image: whatever follows (other images, trailers) is dropped.
            0xD9 => {
                out.extend_from_slice(&[0xFF, 0xD9]);
                return Some(out);
            }
            // Markers without a length.
            0x01 | 0xD0..=0xD7 => {
                out.extend_from_slice(&rest[at..at + 2]);
                at += 2;
                continue;
            }
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*rest.get(at + 2)?, *rest.get(at + 3)?]));
        if length < 2 {
            return None;
        }
        let segment = rest.get(at..at + 2 + length)?;
        if keep(marker, &segment[4..]) {
            out.extend_from_slice(segment);
        }
        at += 2 + length;
        if marker == 0xDA {
            // Start of scan: the entropy-coded data runs to the next marker that is neither a
            // stuffed 0xFF00 nor a restart marker.
            let start = at;
            while at + 1 < rest.len() {
                if rest[at] == 0xFF && !matches!(rest[at + 1], 0x00 | 0xD0..=0xD7 | 0xFF) {
                    break;
                }
                at += 1;
            }
            if at + 1 >= rest.len() {
                return None;
            }
            out.extend_from_slice(&rest[start..at]);
        }
    }
}

/// Whether a segment with `marker` and `payload` (after its length) stays: everything but the
/// application segments and comments, and of those JFIF (APP0), a colour profile (APP2
/// `ICC_PROFILE`) and Adobe's (APP14, which says how to read CMYK and YCCK).
fn keep(marker: u8, payload: &[u8]) -> bool {
    match marker {
        0xE0 => payload.starts_with(b"JFIF\0") || payload.starts_with(b"JFXX\0"),
        0xE2 => payload.starts_with(b"ICC_PROFILE\0"),
        0xEE => payload.starts_with(b"Adobe"),
        0xE1 | 0xE3..=0xED | 0xEF | 0xFE => false,
        _ => true,
    }
}

/// The PNG `data` without its metadata chunks; `orientation` is the EXIF orientation (1–8) to
/// keep (as an `eXIf` chunk of that one tag, after `IHDR`). `None` when its chunks cannot be
/// followed to `IEND`.
pub fn png(data: &[u8], orientation: u8) -> Option<Vec<u8>> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    data.strip_prefix(SIGNATURE)?;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(SIGNATURE);
    let mut at = SIGNATURE.len();
    loop {
        let length = u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?);
        let length = usize::try_from(length).ok()?;
        let kind = data.get(at + 4..at + 8)?;
        let chunk = data.get(at..at.checked_add(12)?.checked_add(length)?)?;
        if !matches!(kind, b"tEXt" | b"zTXt" | b"iTXt" | b"tIME" | b"eXIf") {
            out.extend_from_slice(chunk);
        }
        if kind == b"IHDR" && (2..=8).contains(&orientation) {
            let tiff = orientation_tiff(orientation);
            let mut crc = crc32fast::Hasher::new();
            crc.update(b"eXIf");
            crc.update(&tiff);
            out.extend_from_slice(&u32::try_from(tiff.len()).ok()?.to_be_bytes());
            out.extend_from_slice(b"eXIf");
            out.extend_from_slice(&tiff);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        at += chunk.len();
        if kind == b"IEND" {
            return Some(out);
        }
    }
}

/// The WebP `data` without its `EXIF` and `XMP ` chunks; `orientation` is the EXIF orientation
/// (1–8) to keep, as an `EXIF` chunk of that one tag right after the image data (only an
/// extended file, with `VP8X`, can carry one). `None` when its chunks cannot be followed to the
/// RIFF end.
pub fn webp(data: &[u8], orientation: u8) -> Option<Vec<u8>> {
    const EXIF: u8 = 0x08;
    const XMP: u8 = 0x04;
    if data.get(..4)? != b"RIFF" || data.get(8..12)? != b"WEBP" {
        return None;
    }
    let size = usize::try_from(u32::from_le_bytes(data.get(4..8)?.try_into().ok()?)).ok()?;
    let end = size.checked_add(8)?;
    let mut out = Vec::with_capacity(data.len());
    out.extend_from_slice(b"RIFF\0\0\0\0WEBP");
    let mut flags_at = None;
    let mut image_end = out.len();
    let mut at = 12;
    while at < end {
        let kind = data.get(at..at + 4)?;
        let length = usize::try_from(u32::from_le_bytes(
            data.get(at + 4..at + 8)?.try_into().ok()?,
        ))
        .ok()?;
        // A chunk of odd length is followed by a padding byte.
        let next = at
            .checked_add(8)?
            .checked_add(length)?
            .checked_add(length & 1)?;
        if next > end {
            return None;
        }
        let chunk = data.get(at..next)?;
        match kind {
            b"EXIF" | b"XMP " => {}
            _ => {
                if kind == b"VP8X" {
                    flags_at = Some(out.len() + 8);
                }
                out.extend_from_slice(chunk);
                if matches!(
                    kind,
                    b"VP8X" | b"ICCP" | b"ANIM" | b"ANMF" | b"ALPH" | b"VP8 " | b"VP8L"
                ) {
                    image_end = out.len();
                }
            }
        }
        at = next;
    }
    if let Some(flags_at) = flags_at {
        let flags = out.get_mut(flags_at)?;
        *flags &= !(EXIF | XMP);
        if (2..=8).contains(&orientation) {
            *flags |= EXIF;
            let tiff = orientation_tiff(orientation);
            let mut chunk = b"EXIF".to_vec();
            chunk.extend_from_slice(&u32::try_from(tiff.len()).ok()?.to_le_bytes());
            chunk.extend_from_slice(&tiff); // 26 bytes: no padding
            out.splice(image_end..image_end, chunk);
        }
    }
    let riff_size = u32::try_from(out.len() - 8).ok()?;
    out[4..8].copy_from_slice(&riff_size.to_le_bytes());
    Some(out)
}

/// An APP1 EXIF segment holding only the orientation tag.
fn orientation_segment(orientation: u8) -> Vec<u8> {
    let tiff = orientation_tiff(orientation);
    let payload_len = b"Exif\0\0".len() + tiff.len();
    let mut segment = vec![0xFF, 0xE1];
    segment.extend_from_slice(
        &u16::try_from(payload_len + 2)
            .unwrap_or(u16::MAX)
            .to_be_bytes(),
    );
    segment.extend_from_slice(b"Exif\0\0");
    segment.extend_from_slice(&tiff);
    segment
}

/// EXIF data holding only the orientation tag (big-endian TIFF, one IFD entry).
fn orientation_tiff(orientation: u8) -> Vec<u8> {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2A");
    tiff.extend_from_slice(&8u32.to_be_bytes()); // the IFD right after the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value
    tiff.extend_from_slice(&[0, orientation, 0, 0]); // the value, left-justified
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    tiff
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small JPEG from the encoder, with `extra` segments inserted after SOI and `trailer`
    /// after its end.
    fn jpeg_with(extra: &[&[u8]], trailer: &[u8]) -> Vec<u8> {
        let img =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut plain = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut plain, 90)
            .encode_image(&img)
            .unwrap();
        let mut data = plain[..2].to_vec();
        for segment in extra {
            data.extend_from_slice(segment);
        }
        data.extend_from_slice(&plain[2..]);
        data.extend_from_slice(trailer);
        data
    }

    fn segment(marker: u8, payload: &[u8]) -> Vec<u8> {
        let mut s = vec![0xFF, marker];
        s.extend_from_slice(&u16::try_from(payload.len() + 2).unwrap().to_be_bytes());
        s.extend_from_slice(payload);
        s
    }

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack.windows(needle.len()).any(|w| w == needle)
    }

    #[test]
    fn exif_xmp_iptc_comments_and_trailing_images_go_and_the_pixels_stay() {
        // Arrange: GPS in EXIF, a name in XMP, IPTC, a comment, a colour profile, and a second
        // image after the end
        let exif = segment(0xE1, b"Exif\0\0MM\0*GPS 48N 2E iPhone 15 Pro");
        let xmp = segment(
            0xE1,
            b"http://ns.adobe.com/xap/1.0/\0<x:creator>Alice</x:creator>",
        );
        let iptc = segment(0xED, b"Photoshop 3.0\0city=Paris");
        let comment = segment(0xFE, b"taken at home");
        let icc = segment(0xE2, b"ICC_PROFILE\0\x01\x01profile-bytes");
        let data = jpeg_with(
            &[&exif, &xmp, &iptc, &comment, &icc],
            b"\xFF\xD8\xFF\xE1\x00\x10Exif\0\0secondGPS\xFF\xD9",
        );

        // Act
        let clean = jpeg(&data, 1).expect("a JPEG");

        // Assert
        for gone in [
            &b"GPS"[..],
            b"Alice",
            b"Paris",
            b"taken at home",
            b"secondGPS",
            b"Exif",
        ] {
            assert!(
                !contains(&clean, gone),
                "{:?} is still there",
                String::from_utf8_lossy(gone)
            );
        }
        assert!(contains(&clean, b"ICC_PROFILE\0"));
        assert!(clean.ends_with(&[0xFF, 0xD9]));
        let before = image::load_from_memory(&data).unwrap().into_rgb8();
        let after = image::load_from_memory(&clean).unwrap().into_rgb8();
        assert_eq!(before, after, "the pixels changed");
    }

    #[test]
    fn a_rotated_photo_keeps_its_orientation_and_nothing_else_of_its_exif() {
        let exif = segment(0xE1, b"Exif\0\0MM\0*GPS 48N");
        let data = jpeg_with(&[&exif], b"");

        let clean = jpeg(&data, 6).expect("a JPEG");

        assert!(!contains(&clean, b"GPS"));
        let mut decoder =
            image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&clean)).unwrap();
        use image::ImageDecoder;
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
    }

    /// A PNG chunk of `kind` around `data`, with its CRC.
    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        let mut c = u32::try_from(data.len()).unwrap().to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&crc.finalize().to_be_bytes());
        c
    }

    #[test]
    fn a_pngs_text_time_and_exif_go_its_orientation_and_pixels_stay() {
        // Arrange: a PNG from the encoder, with an author, XMP, a time and EXIF after IHDR
        let img =
            image::RgbImage::from_fn(20, 10, |x, y| image::Rgb([x as u8 * 9, y as u8 * 20, 1]));
        let mut plain = Vec::new();
        img.write_to(
            &mut std::io::Cursor::new(&mut plain),
            image::ImageFormat::Png,
        )
        .unwrap();
        let ihdr_end = 8 + 25;
        let mut exif = orientation_tiff(6);
        exif.extend_from_slice(b"GPS 48N");
        let data = [
            &plain[..ihdr_end],
            &png_chunk(b"tEXt", b"Author\0Alice"),
            &png_chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0<city>Paris</city>"),
            &png_chunk(b"tIME", &[7, 234, 12, 7, 10, 0, 0]),
            &png_chunk(b"eXIf", &exif),
            &plain[ihdr_end..],
        ]
        .concat();

        // Act
        let clean = png(&data, 6).expect("a PNG");

        // Assert
        for gone in [&b"Alice"[..], b"Paris", b"tIME", b"GPS"] {
            assert!(
                !contains(&clean, gone),
                "{:?} is still there",
                String::from_utf8_lossy(gone)
            );
        }
        let mut decoder =
            image::codecs::png::PngDecoder::new(std::io::Cursor::new(&clean)).unwrap();
        use image::ImageDecoder;
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
        let after = image::load_from_memory(&clean).unwrap().into_rgb8();
        assert_eq!(after, img, "the pixels changed");
        assert!(png(&data[..data.len() - 6], 1).is_none(), "cut short");
    }

    /// A WebP chunk of `kind` around `data`, padded to an even length.
    fn webp_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = kind.to_vec();
        c.extend_from_slice(&u32::try_from(data.len()).unwrap().to_le_bytes());
        c.extend_from_slice(data);
        if data.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    #[test]
    fn a_webps_exif_and_xmp_go_its_orientation_and_pixels_stay() {
        // Arrange: an extended WebP (VP8X) from the encoder's image, with GPS in EXIF, a name in
        // XMP, and bytes after its RIFF end
        let img = image::RgbaImage::from_fn(20, 10, |x, y| {
            image::Rgba([x as u8 * 9, y as u8 * 20, 1, 255])
        });
        let mut plain = Vec::new();
        image::codecs::webp::WebPEncoder::new_lossless(&mut plain)
            .encode(img.as_raw(), 20, 10, image::ExtendedColorType::Rgba8)
            .unwrap();
        assert_eq!(
            &plain[12..16],
            b"VP8L",
            "the encoder writes a simple lossless file"
        );
        let mut vp8x = vec![0x08 | 0x04, 0, 0, 0];
        vp8x.extend_from_slice(&19u32.to_le_bytes()[..3]);
        vp8x.extend_from_slice(&9u32.to_le_bytes()[..3]);
        let mut exif = orientation_tiff(6);
        exif.extend_from_slice(b"GPS 48N");
        let chunks = [
            webp_chunk(b"VP8X", &vp8x),
            plain[12..].to_vec(),
            webp_chunk(b"EXIF", &exif),
            webp_chunk(b"XMP ", b"<x:creator>Alice</x:creator>"),
        ]
        .concat();
        let mut data = b"RIFF".to_vec();
        data.extend_from_slice(&u32::try_from(chunks.len() + 4).unwrap().to_le_bytes());
        data.extend_from_slice(b"WEBP");
        data.extend_from_slice(&chunks);
        data.extend_from_slice(b"trailing GPS");

        // Act
        let clean = webp(&data, 6).expect("a WebP");

        // Assert
        for gone in [&b"Alice"[..], b"GPS", b"XMP "] {
            assert!(
                !contains(&clean, gone),
                "{:?} is still there",
                String::from_utf8_lossy(gone)
            );
        }
        use image::ImageDecoder;
        let mut decoder =
            image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&clean)).unwrap();
        assert_eq!(
            decoder.orientation().unwrap(),
            image::metadata::Orientation::Rotate90
        );
        let after = image::load_from_memory(&clean).unwrap().into_rgba8();
        assert_eq!(after, img, "the pixels changed");
        let upright = webp(&data, 1).expect("a WebP");
        assert!(!contains(&upright, b"EXIF"));
        assert_eq!(
            upright[20] & (0x08 | 0x04),
            0,
            "VP8X still announces metadata"
        );
        assert!(webp(&data[..data.len() - 20], 1).is_none(), "cut short");
    }

    #[test]
    fn a_file_that_is_not_a_jpeg_or_is_cut_short_is_not_rewritten() {
        let data = jpeg_with(&[], b"");
        assert!(jpeg(b"\x89PNG\r\n", 1).is_none());
        assert!(jpeg(&data[..data.len() / 2], 1).is_none());
    }
}
