//! Metadata removed from uploaded JPEGs and PNGs before anyone else can fetch them: a phone's photo
//! carries where it was taken (EXIF GPS), the device, its owner's name and edit history (EXIF,
//! XMP, IPTC, comments), and sometimes more images after its end (previews, depth maps, each with
//! its own EXIF). Kept: the pixels (every segment the decoder needs, unchanged), the colour
//! profile (`ICC_PROFILE`), JFIF and Adobe's colour-transform marker, and the orientation, as a
//! minimal EXIF block of that one tag, so that viewers still show the photo upright. A PNG loses
//! its text chunks (`tEXt`, `zTXt`, `iTXt`: author, software, XMP), its time and its EXIF, and
//! keeps every other chunk as it was.

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

    #[test]
    fn a_file_that_is_not_a_jpeg_or_is_cut_short_is_not_rewritten() {
        let data = jpeg_with(&[], b"");
        assert!(jpeg(b"\x89PNG\r\n", 1).is_none());
        assert!(jpeg(&data[..data.len() / 2], 1).is_none());
    }
}
