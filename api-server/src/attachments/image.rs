//! Images: dimensions read from the header, then a thumbnail decoded under limits. A
//! decompression bomb (a small file announcing huge dimensions) is refused from its header,
//! before any pixel is decoded; the decoder's own limits back this up.

use super::sniff::Format;
use image::{ImageFormat, ImageReader, Limits};
use std::io::{BufReader, Cursor};
use std::path::Path;

/// What probing an image found.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    /// The thumbnail, JPEG, at most `thumbnail_px` on its longer side.
    pub thumbnail: Vec<u8>,
}

/// Why an image is refused.
#[derive(Debug, thiserror::Error)]
pub enum ImageRefusal {
    #[error("the image is {width}x{height}, more than {max_pixels} pixels")]
    TooManyPixels {
        width: u32,
        height: u32,
        max_pixels: u64,
    },
    #[error("the file is not a readable image: {0}")]
    Unreadable(String),
}

fn image_format(format: Format) -> Option<ImageFormat> {
    match format {
        Format::Jpeg => Some(ImageFormat::Jpeg),
        Format::Png => Some(ImageFormat::Png),
        Format::WebP => Some(ImageFormat::WebP),
        Format::Gif => Some(ImageFormat::Gif),
        _ => None,
    }
}

/// Probe the spooled image at `path` (blocking: call it on a blocking thread).
pub fn probe(
    path: &Path,
    format: Format,
    max_pixels: u64,
    thumbnail_px: u32,
) -> Result<ImageInfo, ImageRefusal> {
    let unreadable = |e: &dyn std::fmt::Display| ImageRefusal::Unreadable(e.to_string());
    let fmt = image_format(format).ok_or_else(|| unreadable(&"not an image format"))?;
    let open = || -> Result<ImageReader<BufReader<std::fs::File>>, ImageRefusal> {
        let file = std::fs::File::open(path).map_err(|e| unreadable(&e))?;
        Ok(ImageReader::with_format(BufReader::new(file), fmt))
    };
    // The header alone: no pixel is decoded here.
    let (width, height) = open()?.into_dimensions().map_err(|e| unreadable(&e))?;
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageRefusal::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let mut reader = open()?;
    reader.limits(limits(max_pixels));
    let decoded = reader.decode().map_err(|e| unreadable(&e))?;
    let thumb = decoded.thumbnail(thumbnail_px, thumbnail_px).into_rgb8();
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut thumbnail), 80)
        .encode_image(&thumb)
        .map_err(|e| unreadable(&e))?;
    Ok(ImageInfo {
        width,
        height,
        thumbnail,
    })
}

/// The decoder's limits: no side past what `max_pixels` allows, and no allocation above what
/// an RGBA image of that size takes (plus a margin for the decoder's own buffers).
fn limits(max_pixels: u64) -> Limits {
    let side = u32::try_from(max_pixels).unwrap_or(u32::MAX);
    let mut limits = Limits::default();
    limits.max_image_width = Some(side);
    limits.max_image_height = Some(side);
    limits.max_alloc = Some(max_pixels.saturating_mul(4).saturating_add(64 << 20));
    limits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> tempfile::NamedTempFile {
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        img.save_with_format(file.path(), ImageFormat::Png).unwrap();
        file
    }

    #[test]
    fn an_image_gives_its_size_and_a_small_jpeg_thumbnail() {
        let file = png(640, 480);
        let info = probe(file.path(), Format::Png, 40_000_000, 320).unwrap();
        assert_eq!((info.width, info.height), (640, 480));
        let thumb = image::load_from_memory(&info.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 240));
    }

    #[test]
    fn too_many_pixels_are_refused_from_the_header() {
        let file = png(100, 100);
        let refused = probe(file.path(), Format::Png, 5_000, 320);
        assert!(matches!(
            refused,
            Err(ImageRefusal::TooManyPixels {
                width: 100,
                height: 100,
                ..
            })
        ));
    }
}
