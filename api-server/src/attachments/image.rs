//! Images: dimensions read from the header, then a thumbnail decoded under limits. A
//! decompression bomb (a small file announcing huge dimensions) is refused from its header,
//! before any pixel is decoded; the decoder's own limits back this up. A PNG's thumbnail is made
//! from its rows one at a time, so its pixels are never all in memory. A photo's EXIF
//! orientation is applied: its size and thumbnail are as viewers show it, upright.

use super::sniff::Format;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, RgbImage};
use std::io::{BufReader, Cursor};
use std::path::Path;

/// What probing an image found.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// As shown: a photo whose orientation turns it a quarter has its sides swapped.
    pub width: u32,
    pub height: u32,
    /// The EXIF orientation, 1 (as stored) to 8, to keep when the metadata is removed.
    pub orientation: u8,
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
    let mut decoder = open()?.into_decoder().map_err(|e| unreadable(&e))?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(ImageRefusal::TooManyPixels {
            width,
            height,
            max_pixels,
        });
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let streamed = match fmt {
        ImageFormat::Png => png_thumbnail(path, thumbnail_px).map_err(|e| unreadable(&e))?,
        _ => None,
    };
    let thumb = match streamed {
        Some(thumb) => thumb,
        None => {
            decoder
                .set_limits(limits(max_pixels))
                .map_err(|e| unreadable(&e))?;
            let decoded = DynamicImage::from_decoder(decoder).map_err(|e| unreadable(&e))?;
            decoded.thumbnail(thumbnail_px, thumbnail_px).into_rgb8()
        }
    };
    let mut thumb = DynamicImage::ImageRgb8(thumb);
    thumb.apply_orientation(orientation);
    let mut thumbnail = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(Cursor::new(&mut thumbnail), 80)
        .encode_image(&thumb.into_rgb8())
        .map_err(|e| unreadable(&e))?;
    let quarter_turn = matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    );
    let (width, height) = if quarter_turn {
        (height, width)
    } else {
        (width, height)
    };
    Ok(ImageInfo {
        width,
        height,
        orientation: orientation.to_exif(),
        thumbnail,
    })
}

/// The thumbnail of a PNG larger than it, made from the image's rows one at a time: each source
/// pixel is added to the thumbnail pixel it falls in (a box filter), so memory holds a row and
/// the thumbnail's sums, never the image (6300×6300 took 160 MB decoded whole). `None` for an
/// interlaced PNG or one no larger than the thumbnail: decoded whole, as other formats are.
fn png_thumbnail(path: &Path, thumbnail_px: u32) -> Result<Option<RgbImage>, png::DecodingError> {
    let file = std::fs::File::open(path)?;
    let mut decoder = png::Decoder::new(BufReader::new(file));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let (width, height) = (reader.info().width, reader.info().height);
    let (tw, th) = fit(width, height, thumbnail_px);
    if reader.info().interlaced || tw >= width || th >= height {
        return Ok(None);
    }
    let channels = reader.output_color_type().0.samples();
    // Which thumbnail column each source column falls in, and how many fall in each.
    let column: Vec<usize> = (0..width).map(|x| scaled(x, width, tw)).collect();
    let mut sums = vec![0u64; tw as usize * th as usize * 3];
    let mut counts = vec![0u64; tw as usize * th as usize];
    let mut y = 0;
    while let Some(row) = reader.next_row()? {
        let band = scaled(y, height, th) * tw as usize;
        for (pixel, &tx) in row.data().chunks_exact(channels).zip(&column) {
            // Grey (with or without alpha) to three equal channels; alpha dropped, as
            // `into_rgb8` does for a whole image.
            let rgb = if channels < 3 {
                [pixel[0]; 3]
            } else {
                [pixel[0], pixel[1], pixel[2]]
            };
            let at = band + tx;
            for (sum, value) in sums[at * 3..at * 3 + 3].iter_mut().zip(rgb) {
                *sum += u64::from(value);
            }
            counts[at] += 1;
        }
        y += 1;
    }
    let pixels = sums
        .chunks_exact(3)
        .zip(&counts)
        .flat_map(|(sum, &n)| sum.iter().map(move |s| (s / n.max(1)) as u8))
        .collect();
    Ok(RgbImage::from_raw(tw, th, pixels))
}

/// `width` × `height` scaled to fit a `box_px` square, as `DynamicImage::thumbnail` does.
fn fit(width: u32, height: u32, box_px: u32) -> (u32, u32) {
    let ratio = f64::min(
        f64::from(box_px) / f64::from(width),
        f64::from(box_px) / f64::from(height),
    );
    let side = |n: u32| ((f64::from(n) * ratio).round() as u32).max(1);
    (side(width), side(height))
}

/// Source coordinate `i` of `from` mapped to one of `to` (`to` ≤ `from`).
fn scaled(i: u32, from: u32, to: u32) -> usize {
    (u64::from(i) * u64::from(to) / u64::from(from)) as usize
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
    fn a_png_thumbnail_made_from_its_rows_matches_one_made_from_the_whole_image() {
        // Arrange: smooth gradients, where both filters should agree closely
        let (width, height) = (960, 600);
        let img = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 255 / width) as u8, (y * 255 / height) as u8, 7])
        });
        let file = tempfile::NamedTempFile::new().unwrap();
        img.save_with_format(file.path(), ImageFormat::Png).unwrap();

        // Act
        let streamed = png_thumbnail(file.path(), 320)
            .unwrap()
            .expect("larger than 320");

        // Assert: the same size, pixels within a few levels
        let whole = image::DynamicImage::ImageRgb8(img)
            .thumbnail(320, 320)
            .into_rgb8();
        assert_eq!(streamed.dimensions(), (320, 200));
        assert_eq!(streamed.dimensions(), whole.dimensions());
        let worst = streamed
            .as_raw()
            .iter()
            .zip(whole.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max();
        assert!(worst <= Some(3), "{worst:?}");
    }

    #[test]
    fn a_png_no_larger_than_the_thumbnail_is_decoded_whole() {
        let file = png(200, 100);
        assert!(png_thumbnail(file.path(), 320).unwrap().is_none());
        let info = probe(file.path(), Format::Png, 40_000_000, 320).unwrap();
        assert_eq!((info.width, info.height), (200, 100));
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
