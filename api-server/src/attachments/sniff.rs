//! The type of an upload, decided from its first bytes (magic numbers), never from what the
//! client says. Images: JPEG, PNG, WebP, GIF. Voice: Ogg/Opus, WebM/Opus, MP4/AAC (m4a), MP3.

/// What an upload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Image,
    Voice,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Voice => "voice",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "image" => Some(Kind::Image),
            "voice" => Some(Kind::Voice),
            _ => None,
        }
    }
}

/// A recognised format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
    Gif,
    OggOpus,
    WebmOpus,
    M4a,
    Mp3,
}

impl Format {
    pub fn kind(self) -> Kind {
        match self {
            Format::Jpeg | Format::Png | Format::WebP | Format::Gif => Kind::Image,
            _ => Kind::Voice,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::WebP => "image/webp",
            Format::Gif => "image/gif",
            Format::OggOpus => "audio/ogg",
            Format::WebmOpus => "audio/webm",
            Format::M4a => "audio/mp4",
            Format::Mp3 => "audio/mpeg",
        }
    }

    /// The file name extension of a download.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::OggOpus => "ogg",
            Format::WebmOpus => "webm",
            Format::M4a => "m4a",
            Format::Mp3 => "mp3",
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        ALL.into_iter().find(|f| f.mime() == mime)
    }
}

const ALL: [Format; 8] = [
    Format::Jpeg,
    Format::Png,
    Format::WebP,
    Format::Gif,
    Format::OggOpus,
    Format::WebmOpus,
    Format::M4a,
    Format::Mp3,
];

/// How many leading bytes [`sniff`] needs to decide (fewer when the whole upload is shorter).
pub const SNIFF_BYTES: usize = 64;

/// The format of a file starting with `head`, or `None` (then 415 `unsupported_media_type`).
/// Ogg and WebM must carry Opus (their first page / track names the codec within the head).
pub fn sniff(head: &[u8]) -> Option<Format> {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"\xFF\xD8\xFF") {
        return Some(Format::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Some(Format::Png);
    }
    if starts(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Some(Format::WebP);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Some(Format::Gif);
    }
    if starts(b"OggS") {
        // The first page's packet is the Opus identification header.
        return contains(head, b"OpusHead").then_some(Format::OggOpus);
    }
    if starts(b"\x1A\x45\xDF\xA3") {
        // EBML: the DocType is within the header; the codec is checked at probing.
        return contains(&head[..head.len().min(48)], b"webm").then_some(Format::WebmOpus);
    }
    if head.get(4..8) == Some(b"ftyp") {
        let brand = head.get(8..12)?;
        return matches!(
            brand,
            b"M4A " | b"M4B " | b"mp42" | b"isom" | b"mp41" | b"iso2" | b"iso4" | b"iso5" | b"iso6"
        )
        .then_some(Format::M4a);
    }
    if starts(b"ID3") || is_mpeg_audio_frame(head) {
        return Some(Format::Mp3);
    }
    None
}

/// An MPEG-1/2 Layer III frame header: sync, a valid bitrate and sample rate.
fn is_mpeg_audio_frame(head: &[u8]) -> bool {
    let [a, b, c, ..] = head else {
        return false;
    };
    let sync = *a == 0xFF && b & 0xE0 == 0xE0;
    let layer3 = (b >> 1) & 0b11 == 0b01;
    let version_ok = (b >> 3) & 0b11 != 0b01;
    let bitrate_ok = c >> 4 != 0 && c >> 4 != 0xF;
    let rate_ok = (c >> 2) & 0b11 != 0b11;
    sync && layer3 && version_ok && bitrate_ok && rate_ok
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"), Some(Format::Png));
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0\0\x10JFIF"), Some(Format::Jpeg));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some(Format::WebP));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some(Format::Gif));
        assert_eq!(sniff(b"\0\0\0\x20ftypM4A \0\0\0\0"), Some(Format::M4a));
        assert_eq!(sniff(b"ID3\x04\0\0\0\0\0\0"), Some(Format::Mp3));
        assert_eq!(sniff(b"\xFF\xFB\x90\x64"), Some(Format::Mp3));
        let mut ogg = b"OggS\0\x02".to_vec();
        ogg.resize(28, 0);
        ogg.extend_from_slice(b"OpusHead\x01\x01");
        assert_eq!(sniff(&ogg), Some(Format::OggOpus));
    }

    #[test]
    fn executables_text_and_ogg_vorbis_are_refused() {
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0"), None);
        assert_eq!(sniff(b"\x7FELF\x02\x01\x01\0"), None);
        assert_eq!(sniff(b"<svg xmlns="), None);
        assert_eq!(sniff(b"OggS\0\x02\0\0\0\0\x01vorbis"), None);
        assert_eq!(sniff(b""), None);
    }
}
