//! Voice notes: the duration read from the container, with a small parser per container (no
//! decoding). Ogg/Opus: the last page's granule position less the pre-skip, at 48 kHz.
//! WebM: the Segment's `Duration`, or (MediaRecorder writes none) the last block's timestamp.
//! MP4: the movie header's duration, or a fragmented file's fragments added up. MP3: the frames counted, each 1152 or 576 samples.

use super::sniff::Format;

/// The duration of a voice note in `data`, in milliseconds; `None` when the container cannot
/// be read (or a WebM track is not Opus), or says it lasts no time at all (it holds no audio:
/// an Ogg of only its header pages, say).
pub fn duration_ms(format: Format, data: &[u8]) -> Option<u64> {
    let ms = match format {
        Format::OggOpus => ogg_opus(data),
        Format::WebmOpus => webm(data),
        Format::M4a => mp4(data),
        Format::Mp3 => mp3(data),
        _ => None,
    };
    ms.filter(|&ms| ms > 0)
}

fn u16_le(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u16::from_le_bytes(
        d.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn u32_be(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from(u32::from_be_bytes(
        d.get(at..at + 4)?.try_into().ok()?,
    )))
}

fn u64_be(d: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(d.get(at..at + 8)?.try_into().ok()?))
}

fn ogg_opus(d: &[u8]) -> Option<u64> {
    let head = d.windows(8).position(|w| w == b"OpusHead")?;
    let pre_skip = u16_le(d, head + 10)?;
    // The last page header: scan back for its capture pattern.
    let last = (0..d.len().saturating_sub(27))
        .rev()
        .find(|&i| &d[i..i + 4] == b"OggS" && d[i + 4] == 0)?;
    let granule = i64::from_le_bytes(d.get(last + 6..last + 14)?.try_into().ok()?);
    let samples = u64::try_from(granule).ok()?.saturating_sub(pre_skip);
    Some(samples.saturating_mul(1000) / 48_000)
}

/// An EBML variable-length integer at `at`: (value, length). `marker` keeps the length bits
/// (element ids) or strips them (sizes); an all-ones size is "unknown" (`u64::MAX`).
fn vint(d: &[u8], at: usize, marker: bool) -> Option<(u64, usize)> {
    let first = *d.get(at)?;
    let len = first.leading_zeros() as usize + 1;
    if len > 8 {
        return None;
    }
    // The value bits of the first byte (none in an 8-byte vint).
    let mask = (0xFFu16 >> len) as u8;
    let mut value = u64::from(if marker { first } else { first & mask });
    let mut all_ones = value == u64::from(mask);
    for i in 1..len {
        let b = *d.get(at + i)?;
        all_ones &= b == 0xFF;
        value = (value << 8) | u64::from(b);
    }
    if !marker && all_ones {
        return Some((u64::MAX, len));
    }
    Some((value, len))
}

fn uint(d: &[u8]) -> u64 {
    d.iter().fold(0, |v, &b| (v << 8) | u64::from(b))
}

fn webm(d: &[u8]) -> Option<u64> {
    // Masters we step into (their children follow); everything else is skipped by its size,
    // so elements of unknown size (live recordings) are no obstacle.
    const SEGMENT: u64 = 0x1853_8067;
    const INFO: u64 = 0x1549_A966;
    const TRACKS: u64 = 0x1654_AE6B;
    const TRACK_ENTRY: u64 = 0xAE;
    const CLUSTER: u64 = 0x1F43_B675;
    const BLOCK_GROUP: u64 = 0xA0;
    let (mut scale, mut duration, mut cluster, mut last_block) = (1_000_000u64, None, 0u64, 0u64);
    let mut opus = false;
    let mut at = 0;
    while at < d.len() {
        let (id, id_len) = vint(d, at, true)?;
        let Some((size, size_len)) = vint(d, at + id_len, false) else {
            break; // truncated at the end: keep what was read
        };
        let start = at + id_len + size_len;
        if matches!(
            id,
            SEGMENT | INFO | TRACKS | TRACK_ENTRY | CLUSTER | BLOCK_GROUP
        ) {
            at = start;
            continue;
        }
        let end = start
            .saturating_add(usize::try_from(size).ok()?)
            .min(d.len());
        let body = &d[start.min(end)..end];
        match id {
            0x2A_D7B1 => scale = uint(body),
            0x4489 => {
                duration = match body.len() {
                    4 => Some(f64::from(f32::from_be_bytes(body.try_into().ok()?))),
                    8 => Some(f64::from_be_bytes(body.try_into().ok()?)),
                    _ => None,
                }
            }
            0x86 => opus |= body == b"A_OPUS",
            0xE7 => cluster = uint(body),
            0xA3 | 0xA1 => {
                // SimpleBlock / Block: track number (vint), then a signed 16-bit timecode.
                let (_, track_len) = vint(body, 0, false)?;
                let rel = i16::from_be_bytes(body.get(track_len..track_len + 2)?.try_into().ok()?);
                last_block = last_block.max(cluster.saturating_add_signed(i64::from(rel)));
            }
            _ => {}
        }
        at = end;
    }
    if !opus {
        return None;
    }
    let ticks = duration.unwrap_or(last_block as f64);
    Some((ticks * scale as f64 / 1_000_000.0).round() as u64)
}

/// The boxes of an MP4 byte range: `(type, body)` each, in order; stops at the first that
/// does not fit.
fn boxes(d: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut at = 0;
    std::iter::from_fn(move || {
        let size = usize::try_from(u32_be(d, at)?).ok()?;
        let kind = d.get(at + 4..at + 8)?;
        let (header, size) = match size {
            1 => (16, usize::try_from(u64_be(d, at + 8)?).ok()?),
            0 => (8, d.len() - at),
            n => (8, n),
        };
        let body = d.get(at + header..at.checked_add(size)?)?;
        at += size.max(header);
        Some((kind, body))
    })
}

/// The body of the first box of `kind` in `d`.
fn child<'a>(d: &'a [u8], kind: &[u8]) -> Option<&'a [u8]> {
    boxes(d).find(|(k, _)| *k == kind).map(|(_, body)| body)
}

/// The movie header's duration; when it says 0 (a fragmented file, as Safari's MediaRecorder
/// writes), the fragments' declared duration (`mehd`), else the fragments' samples added up
/// (`moof`/`traf`/`trun`, with the defaults of `tfhd` and `trex`) in the track's time scale.
fn mp4(d: &[u8]) -> Option<u64> {
    let moov = child(d, b"moov")?;
    let mvhd = child(moov, b"mvhd")?;
    let (timescale, duration) = if *mvhd.first()? == 1 {
        (u32_be(mvhd, 20)?, u64_be(mvhd, 24)?)
    } else {
        (u32_be(mvhd, 12)?, u32_be(mvhd, 16)?)
    };
    if timescale == 0 {
        return None;
    }
    if duration > 0 {
        return Some(duration.saturating_mul(1000) / timescale);
    }
    let mvex = child(moov, b"mvex");
    if let Some(mehd) = mvex.and_then(|mvex| child(mvex, b"mehd")) {
        let declared = if *mehd.first()? == 1 {
            u64_be(mehd, 4)?
        } else {
            u32_be(mehd, 4)?
        };
        if declared > 0 {
            return Some(declared.saturating_mul(1000) / timescale);
        }
    }
    fragments_ms(d, moov, mvex)
}

/// The duration of a fragmented MP4's first track, from its fragments' samples.
fn fragments_ms(d: &[u8], moov: &[u8], mvex: Option<&[u8]>) -> Option<u64> {
    let trak = child(moov, b"trak")?;
    let tkhd = child(trak, b"tkhd")?;
    let track = u32_be(tkhd, if *tkhd.first()? == 1 { 20 } else { 12 })?;
    let mdhd = child(child(trak, b"mdia")?, b"mdhd")?;
    let scale = if *mdhd.first()? == 1 {
        u32_be(mdhd, 20)?
    } else {
        u32_be(mdhd, 12)?
    };
    let trex_default = mvex
        .into_iter()
        .flat_map(boxes)
        .filter(|(kind, trex)| *kind == b"trex" && u32_be(trex, 4) == Some(track))
        .find_map(|(_, trex)| u32_be(trex, 12));
    let mut ticks: u64 = 0;
    for (_, moof) in boxes(d).filter(|(kind, _)| *kind == b"moof") {
        for (_, traf) in boxes(moof).filter(|(kind, _)| *kind == b"traf") {
            let tfhd = child(traf, b"tfhd")?;
            if u32_be(tfhd, 4)? != track {
                continue;
            }
            let flags = u32_be(tfhd, 0)? & 0xFF_FFFF;
            // After the track id: base data offset (8), sample description index (4), then
            // the default sample duration, each when its flag says so.
            let mut at = 8;
            at += if flags & 0x01 != 0 { 8 } else { 0 };
            at += if flags & 0x02 != 0 { 4 } else { 0 };
            let default = if flags & 0x08 != 0 {
                u32_be(tfhd, at)
            } else {
                trex_default
            };
            for (_, trun) in boxes(traf).filter(|(kind, _)| *kind == b"trun") {
                ticks = ticks.saturating_add(run_ticks(trun, default)?);
            }
        }
    }
    (scale > 0).then(|| ticks.saturating_mul(1000) / scale)
}

/// The ticks of one `trun`: its samples' own durations, or their count times `default`.
fn run_ticks(trun: &[u8], default: Option<u64>) -> Option<u64> {
    let flags = u32_be(trun, 0)? & 0xFF_FFFF;
    let count = u32_be(trun, 4)?;
    if flags & 0x100 == 0 {
        return Some(count.saturating_mul(default?));
    }
    let mut at = 8;
    at += if flags & 0x01 != 0 { 4 } else { 0 };
    at += if flags & 0x04 != 0 { 4 } else { 0 };
    // Per sample: duration, then size, flags and composition offset when present.
    let stride = 4
        * (1 + [0x200, 0x400, 0x800]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count());
    let mut ticks: u64 = 0;
    for i in 0..usize::try_from(count).ok()? {
        ticks = ticks.saturating_add(u32_be(trun, at + i * stride)?);
    }
    Some(ticks)
}

fn mp3(d: &[u8]) -> Option<u64> {
    let mut at = 0;
    if d.starts_with(b"ID3") {
        let size = d
            .get(6..10)?
            .iter()
            .fold(0usize, |v, &b| (v << 7) | usize::from(b & 0x7F));
        at = 10 + size;
    }
    let (mut samples, mut rate, mut frames) = (0u64, 0u64, 0u64);
    while let Some(frame) = mp3_frame(d.get(at..at + 4)?) {
        samples += frame.samples;
        rate = frame.rate;
        frames += 1;
        at += frame.len;
        if at + 4 > d.len() {
            break;
        }
    }
    (frames > 0 && rate > 0).then(|| samples * 1000 / rate)
}

struct Mp3Frame {
    len: usize,
    samples: u64,
    rate: u64,
}

fn mp3_frame(h: &[u8]) -> Option<Mp3Frame> {
    const BITRATES_V1: [u64; 15] = [
        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
    ];
    const BITRATES_V2: [u64; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
    if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 || (h[1] >> 1) & 0b11 != 0b01 {
        return None;
    }
    let version = (h[1] >> 3) & 0b11; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    let mpeg1 = version == 3;
    let bitrate_index = usize::from(h[2] >> 4);
    let bitrate = *if mpeg1 { &BITRATES_V1 } else { &BITRATES_V2 }.get(bitrate_index)? * 1000;
    let base_rate = [44_100u64, 48_000, 32_000]
        .get(usize::from((h[2] >> 2) & 0b11))
        .copied()?;
    let rate = match version {
        3 => base_rate,
        2 => base_rate / 2,
        0 => base_rate / 4,
        _ => return None,
    };
    let padding = u64::from((h[2] >> 1) & 1);
    let samples = if mpeg1 { 1152 } else { 576 };
    let len = samples / 8 * bitrate / rate + padding;
    (bitrate > 0 && len > 4).then_some(Mp3Frame {
        len: usize::try_from(len).ok()?,
        samples,
        rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_mp3_lasts_as_long_as_its_frames() {
        // 38 frames of MPEG-1 Layer III, 128 kbit/s, 44.1 kHz: 38 × 1152 / 44100 s = 992 ms.
        let frame_len = 1152 / 8 * 128_000 / 44_100;
        let mut data = Vec::new();
        for _ in 0..38 {
            let mut frame = vec![0u8; frame_len];
            frame[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
            data.extend_from_slice(&frame);
        }
        assert_eq!(duration_ms(Format::Mp3, &data), Some(992));
    }

    #[test]
    fn an_mp4_lasts_what_its_movie_header_says() {
        let mut mvhd = vec![0u8; 8 + 100];
        mvhd[..4].copy_from_slice(&108u32.to_be_bytes());
        mvhd[4..8].copy_from_slice(b"mvhd");
        mvhd[8 + 12..8 + 16].copy_from_slice(&1000u32.to_be_bytes());
        mvhd[8 + 16..8 + 20].copy_from_slice(&4321u32.to_be_bytes());
        let mut data = vec![0, 0, 0, 16];
        data.extend_from_slice(b"ftypM4A \0\0\0\0");
        data.extend_from_slice(&(8 + mvhd.len() as u32).to_be_bytes());
        data.extend_from_slice(b"moov");
        data.extend_from_slice(&mvhd);
        assert_eq!(duration_ms(Format::M4a, &data), Some(4321));
    }

    /// An MP4 box of `kind` around `body`.
    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = (8 + body.len() as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// A full box's body: version 0, `flags`, then `fields` as 32-bit big-endian numbers.
    fn full(flags: u32, fields: &[u32]) -> Vec<u8> {
        let mut b = flags.to_be_bytes().to_vec();
        for f in fields {
            b.extend_from_slice(&f.to_be_bytes());
        }
        b
    }

    #[test]
    fn a_fragmented_mp4_lasts_as_long_as_its_fragments_samples() {
        // Arrange: what a MediaRecorder writes: no duration in the movie header, a 48 kHz
        // track with a default sample duration, and two fragments (own durations; defaults)
        let mvhd = mp4_box(b"mvhd", &full(0, &[0, 0, 1000, 0, 0, 0, 0, 0, 0, 0, 0]));
        let tkhd = mp4_box(b"tkhd", &full(0, &[0, 0, 1, 0, 0]));
        let mdhd = mp4_box(b"mdhd", &full(0, &[0, 0, 48_000, 0]));
        let trak = mp4_box(b"trak", &[tkhd, mp4_box(b"mdia", &mdhd)].concat());
        let trex = mp4_box(b"trex", &full(0, &[1, 1, 1024, 0, 0]));
        let moov = mp4_box(b"moov", &[mvhd, trak, mp4_box(b"mvex", &trex)].concat());
        let first = mp4_box(
            b"traf",
            &[
                mp4_box(b"tfhd", &full(0x02_0000, &[1])),
                mp4_box(b"trun", &full(0x300, &[3, 1024, 10, 1024, 10, 512, 10])),
            ]
            .concat(),
        );
        let second = mp4_box(
            b"traf",
            &[
                mp4_box(b"tfhd", &full(0, &[1])),
                mp4_box(b"trun", &full(0, &[10])),
            ]
            .concat(),
        );
        let data = [
            mp4_box(b"ftyp", b"iso5\0\0\0\0iso5"),
            moov,
            mp4_box(b"moof", &first),
            mp4_box(b"mdat", &[0; 30]),
            mp4_box(b"moof", &second),
        ]
        .concat();

        // Act + Assert: (1024 + 1024 + 512 + 10 × 1024) / 48 000 s
        assert_eq!(super::super::sniff::sniff(&data), Some(Format::M4a));
        assert_eq!(duration_ms(Format::M4a, &data), Some(266));
    }

    /// An Ogg page of one `packet` (at most 255 bytes) ending at `granule` (its CRC, not
    /// checked here, left zero).
    fn ogg_page(granule: i64, packet: &[u8]) -> Vec<u8> {
        let mut page = b"OggS\0\0".to_vec();
        page.extend_from_slice(&granule.to_le_bytes());
        page.extend_from_slice(&[0; 12]); // serial, sequence, CRC
        page.extend_from_slice(&[1, packet.len() as u8]);
        page.extend_from_slice(packet);
        page
    }

    /// The identification header's page: 47 bytes, pre-skip 312, granule position 0.
    fn opus_head_page() -> Vec<u8> {
        let mut head = b"OpusHead\x01\x01".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&[0, 0, 0]);
        ogg_page(0, &head)
    }

    #[test]
    fn an_ogg_lasts_its_last_granule_position_less_the_pre_skip() {
        let data = [opus_head_page(), ogg_page(312 + 96_000, &[0xFC; 40])].concat();
        assert_eq!(duration_ms(Format::OggOpus, &data), Some(2_000));
    }

    #[test]
    fn an_ogg_without_audio_has_no_duration() {
        let head = opus_head_page();
        assert_eq!(head.len(), 47);
        let with_junk = [head.clone(), vec![0xAB; 500]].concat();
        let silent = [head.clone(), ogg_page(312, &[0xFC; 40])].concat();
        let unfinished = [head.clone(), ogg_page(-1, &[0xFC; 40])].concat();
        for data in [head, with_junk, silent, unfinished] {
            assert_eq!(duration_ms(Format::OggOpus, &data), None, "{data:?}");
        }
    }

    #[test]
    fn an_absurd_duration_saturates_instead_of_overflowing() {
        let data = [opus_head_page(), ogg_page(i64::MAX, &[0xFC; 40])].concat();
        assert!(duration_ms(Format::OggOpus, &data).is_some_and(|ms| ms > 1 << 40));
    }
}
