//! Pictures: decoding (off the loop), drawing with half-blocks, and encoding for a
//! terminal graphics protocol.
//!
//! [`decode`] reads a PNG or JPEG file and shrinks it to a [`Picture`] of at most
//! [`MAX_WIDTH`]×[`MAX_HEIGHT`] pixels, the most a preview ever shows, so what the
//! state keeps per picture is small whatever the file's size. It reads the disk and
//! decodes: the runtime calls it on the blocking pool.
//!
//! [`half_blocks`] draws a picture into at most `columns`×`rows` cells as rows of
//! `▀`, each cell two pixels: the upper in the foreground colour, the lower in the
//! background colour. A terminal cell is about twice as tall as it is wide, so the
//! two halves are about square and the picture keeps its proportions. It is a pure
//! function of the picture and the area (snapshot-tested). Every terminal that shows
//! 24-bit colour shows these, and they are what the message pane shows inline: they
//! are ordinary cells, so they scroll with the rows of text around them.
//!
//! [`encode`] prepares a picture for the picture viewer when the terminal has a
//! graphics protocol (kitty, sixel, iTerm2; see [`crate::graphics`]): decoded at full
//! size, fitted to the viewer's cells at the terminal's cell size in pixels, and
//! turned into the protocol's escape sequences by ratatui-image. That costs up to
//! seconds for a big photo, so it too runs on the blocking pool, and the result
//! ([`Encoded`]) is drawn as is into a rectangle of exactly its size.

use std::path::Path;
use std::sync::Arc;

use image::DynamicImage;
use ratatui::buffer::Buffer;
use ratatui::layout::{Rect, Size};
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Widget;
use ratatui_image::picker::Picker;
use ratatui_image::protocol::Protocol;
use ratatui_image::{FilterType, Resize};

/// The widest picture kept, in pixels (= columns of a preview).
pub const MAX_WIDTH: u32 = 256;
/// The tallest picture kept, in pixels (= 2 × the rows of the tallest preview).
pub const MAX_HEIGHT: u32 = 64;
/// Files larger than this are not decoded for a preview (a picture this big is
/// not one to decode on a whim, and a hostile "image" should cost little).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// The largest avatar accepted, in bytes: what the node itself accepts, so a
/// bigger one is not a picture it sent.
pub const MAX_AVATAR_BYTES: usize = kith_p2p::profile::MAX_AVATAR_BYTES;
/// Pictures wider or taller than this many pixels are refused before decoding.
const MAX_SIDE: u32 = 16_384;
/// The most a decode may allocate, in bytes.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// A small RGB picture, row by row.
#[derive(Clone, PartialEq, Eq)]
pub struct Picture {
    width: u32,
    height: u32,
    pixels: Vec<[u8; 3]>,
}

impl std::fmt::Debug for Picture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Picture({}×{})", self.width, self.height)
    }
}

impl Picture {
    /// A picture of `width`×`height` pixels, row by row; `None` if `pixels` does not
    /// hold exactly that many or a side is 0.
    pub fn new(width: u32, height: u32, pixels: Vec<[u8; 3]>) -> Option<Picture> {
        let count = u64::from(width) * u64::from(height);
        (width > 0 && height > 0 && pixels.len() as u64 == count).then_some(Picture { width, height, pixels })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y.min(self.height - 1) * self.width + x.min(self.width - 1)) as usize;
        self.pixels.get(i).copied().unwrap_or_default()
    }

    /// The average colour of pixels `x0..x1` × `y0..y1` (at least one pixel).
    fn average(&self, x0: u32, x1: u32, y0: u32, y1: u32) -> [u8; 3] {
        let (x1, y1) = (x1.max(x0 + 1), y1.max(y0 + 1));
        let mut sum = [0u64; 3];
        let mut n = 0u64;
        for y in y0..y1 {
            for x in x0..x1 {
                let p = self.pixel(x, y);
                for (s, c) in sum.iter_mut().zip(p) {
                    *s += u64::from(c);
                }
                n += 1;
            }
        }
        sum.map(|s| u8::try_from(s / n).unwrap_or(u8::MAX))
    }
}

/// Why a picture could not be previewed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The file could not be read.
    #[error("reading the picture: {0}")]
    Io(#[from] std::io::Error),
    /// Too large to decode for a preview (over [`MAX_FILE_BYTES`]).
    #[error("too large to preview")]
    TooLarge,
    /// Not a PNG or JPEG this can decode.
    #[error("not a picture this can show: {0}")]
    Format(#[from] image::ImageError),
    /// Not base64 (an avatar's data).
    #[error("not a picture: {0}")]
    Data(String),
    /// Decoded, but the graphics protocol's encoder failed.
    #[error("encoding the picture for the terminal: {0}")]
    Encode(String),
}

/// Read the picture at `path` (PNG or JPEG, told by its content) and shrink it to
/// fit [`MAX_WIDTH`]×[`MAX_HEIGHT`], keeping its proportions; transparent parts
/// are drawn on black. Reads the disk and decodes: not on the interface's loop.
pub fn decode(path: &Path) -> Result<Picture, DecodeError> {
    shrink(read(path)?)
}

/// [`decode`] for a picture held in memory (an avatar, see [`avatar_bytes`]), with
/// the same limits.
pub fn decode_bytes(bytes: &[u8]) -> Result<Picture, DecodeError> {
    shrink(read_bytes(bytes)?)
}

/// The bytes of an avatar as the node sends it (standard padded base64), refused
/// unpadded, malformed, or larger than [`MAX_AVATAR_BYTES`] (checked on the text's
/// length before decoding, so a huge string costs nothing).
pub fn avatar_bytes(data: &str) -> Result<Vec<u8>, DecodeError> {
    use base64::Engine as _;
    if data.len() > MAX_AVATAR_BYTES.div_ceil(3) * 4 {
        return Err(DecodeError::TooLarge);
    }
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(data).map_err(|e| DecodeError::Data(e.to_string()))?;
    if bytes.len() > MAX_AVATAR_BYTES {
        return Err(DecodeError::TooLarge);
    }
    Ok(bytes)
}

/// `decoded` shrunk to fit [`MAX_WIDTH`]×[`MAX_HEIGHT`] and drawn on black.
fn shrink(decoded: DynamicImage) -> Result<Picture, DecodeError> {
    let small = if decoded.width() > MAX_WIDTH || decoded.height() > MAX_HEIGHT {
        decoded.resize(MAX_WIDTH, MAX_HEIGHT, image::imageops::FilterType::Triangle)
    } else {
        decoded
    };
    let rgba = small.to_rgba8();
    let pixels = rgba
        .pixels()
        .map(|p| {
            let [r, g, b, a] = p.0;
            let on_black = |c: u8| u8::try_from(u16::from(c) * u16::from(a) / 255).unwrap_or(u8::MAX);
            [on_black(r), on_black(g), on_black(b)]
        })
        .collect();
    Picture::new(rgba.width(), rgba.height(), pixels).ok_or(DecodeError::TooLarge)
}

/// The picture at `path` (PNG or JPEG, told by its content), whole, within the
/// limits that keep a hostile or huge file cheap: [`MAX_FILE_BYTES`] on disk,
/// [`MAX_SIDE`] pixels a side and [`MAX_ALLOC`] bytes, checked before decoding.
fn read(path: &Path) -> Result<DynamicImage, DecodeError> {
    if std::fs::metadata(path)?.len() > MAX_FILE_BYTES {
        return Err(DecodeError::TooLarge);
    }
    limited(image::ImageReader::open(path)?.with_guessed_format()?)
}

/// The picture in `bytes` (PNG or JPEG, told by its content), within the same
/// limits as [`read`] (the length is the caller's to bound).
fn read_bytes(bytes: &[u8]) -> Result<DynamicImage, DecodeError> {
    limited(image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format()?)
}

/// Decode what `reader` holds within [`MAX_SIDE`] and [`MAX_ALLOC`], checked
/// against the header before any pixel buffer is allocated.
fn limited<R: std::io::BufRead + std::io::Seek>(mut reader: image::ImageReader<R>) -> Result<DynamicImage, DecodeError> {
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    Ok(reader.decode()?)
}

/// A picture encoded for the terminal's graphics protocol, at a fixed size in cells.
///
/// Cheap to clone (shared). Two are equal only if they are the same encoding: the
/// escape sequences are not compared, and an answer to an older request for the same
/// picture is a different encoding.
#[derive(Clone)]
pub struct Encoded {
    protocol: Arc<Protocol>,
}

impl Encoded {
    /// Wrap an encoding made by ratatui-image (tests build one from its half-blocks,
    /// which need no terminal).
    pub fn new(protocol: Protocol) -> Encoded {
        Encoded { protocol: Arc::new(protocol) }
    }

    /// The size it is drawn at, in cells (columns, rows).
    pub fn size(&self) -> (u16, u16) {
        let Size { width, height } = self.protocol.size();
        (width, height)
    }

    /// Draw it with its top-left corner at `area`'s; nothing if it does not fit whole
    /// (a part of a sixel or iTerm2 picture cannot be drawn).
    pub(crate) fn render(&self, area: Rect, buf: &mut Buffer) {
        ratatui_image::Image::new(&self.protocol).render(area, buf);
    }
}

impl std::fmt::Debug for Encoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (columns, rows) = self.size();
        write!(f, "Encoded({columns}×{rows} cells)")
    }
}

impl PartialEq for Encoded {
    fn eq(&self, other: &Encoded) -> bool {
        Arc::ptr_eq(&self.protocol, &other.protocol)
    }
}

impl Eq for Encoded {}

/// Read the picture at `path` and encode it with `picker` (which knows the protocol
/// and the cell size in pixels) to fit `columns`×`rows` cells, keeping its
/// proportions and never enlarging it. Reads the disk, decodes, resizes and encodes,
/// all slow for a big photo: not on the interface's loop.
pub(crate) fn encode(path: &Path, picker: &Picker, columns: u16, rows: u16) -> Result<Encoded, DecodeError> {
    if columns == 0 || rows == 0 {
        return Err(DecodeError::Encode("no room to show it".to_owned()));
    }
    fit(read(path)?, picker, columns, rows)
}

/// An avatar's bytes read once, both ways: the half-block [`Picture`], and the
/// picture encoded with `picker` to fit `columns`×`rows` cells when there is a
/// graphics protocol (same limits as [`decode_bytes`] and [`encode`]).
pub(crate) fn decode_avatar(
    bytes: &[u8],
    picker: Option<&Picker>,
    columns: u16,
    rows: u16,
) -> Result<(Picture, Option<Encoded>), DecodeError> {
    if picker.is_some() && (columns == 0 || rows == 0) {
        return Err(DecodeError::Encode("no room to show it".to_owned()));
    }
    let image = read_bytes(bytes)?;
    let Some(picker) = picker else { return Ok((shrink(image)?, None)) };
    let picture = shrink(image.clone())?;
    Ok((picture, Some(fit(image, picker, columns, rows)?)))
}

/// `image` encoded with `picker` to fit `columns`×`rows` cells (not 0).
fn fit(image: DynamicImage, picker: &Picker, columns: u16, rows: u16) -> Result<Encoded, DecodeError> {
    // Triangle, not ratatui-image's default (nearest): photos are shrunk a lot here,
    // and nearest-neighbour makes them grainy.
    let resize = Resize::Fit(Some(FilterType::Triangle));
    let protocol = picker
        .new_protocol(image, Size::new(columns, rows), resize)
        .map_err(|e| DecodeError::Encode(e.to_string()))?;
    Ok(Encoded::new(protocol))
}

/// The size, in cells, `picture` is drawn at within `columns`×`rows`: as large as
/// fits with its proportions (a cell is one pixel wide and two tall), never larger
/// than the picture itself, at least 1×1.
pub fn cells(picture: &Picture, columns: u16, rows: u16) -> (u16, u16) {
    if columns == 0 || rows == 0 {
        return (0, 0);
    }
    let (w, h) = (f64::from(picture.width), f64::from(picture.height));
    let scale = (f64::from(columns) / w).min(f64::from(rows) * 2.0 / h).min(1.0);
    let width = (w * scale).round().clamp(1.0, f64::from(columns));
    let pixel_rows = (h * scale).round().max(1.0);
    let height = (pixel_rows / 2.0).ceil().clamp(1.0, f64::from(rows));
    // Both are within u16 bounds by the clamps above.
    (width as u16, height as u16)
}

/// `picture` drawn in half-blocks into at most `columns`×`rows` cells (see
/// [`cells`] for the size), one [`Line`] per row. A pure function of its inputs.
pub fn half_blocks(picture: &Picture, columns: u16, rows: u16) -> Vec<Line<'static>> {
    let (width, height) = cells(picture, columns, rows);
    if width == 0 || height == 0 {
        return Vec::new();
    }
    let pixel_rows = u32::from(height) * 2;
    let span_x = |x: u32| (x * picture.width / u32::from(width), (x + 1) * picture.width / u32::from(width));
    let span_y = |y: u32| (y * picture.height / pixel_rows, (y + 1) * picture.height / pixel_rows);
    let rgb = |[r, g, b]: [u8; 3]| Color::Rgb(r, g, b);
    (0..u32::from(height))
        .map(|row| {
            let spans: Vec<Span<'static>> = (0..u32::from(width))
                .map(|col| {
                    let (x0, x1) = span_x(col);
                    let (t0, t1) = span_y(row * 2);
                    let (b0, b1) = span_y(row * 2 + 1);
                    let top = picture.average(x0, x1, t0, t1);
                    let bottom = picture.average(x0, x1, b0, b1);
                    Span::styled("▀", Style::new().fg(rgb(top)).bg(rgb(bottom)))
                })
                .collect();
            Line::from(spans)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32, colour: [u8; 3]) -> Picture {
        Picture::new(width, height, vec![colour; (width * height) as usize]).unwrap_or_else(|| unreachable!())
    }

    #[test]
    fn keeps_proportions_within_the_area_and_never_enlarges() {
        // 200×100 pixels into 40 columns × 20 rows: width-bound, 40×20 pixels = 40×10 cells.
        assert_eq!(cells(&solid(200, 100, [0; 3]), 40, 20), (40, 10));
        // Height-bound: 100×200 into 80×10 → 10 rows = 20 pixels tall, 10 wide.
        assert_eq!(cells(&solid(100, 200, [0; 3]), 80, 10), (10, 10));
        // Small pictures stay their size: 6×4 pixels = 6×2 cells.
        assert_eq!(cells(&solid(6, 4, [0; 3]), 80, 10), (6, 2));
        assert_eq!(cells(&solid(1, 1000, [0; 3]), 80, 3), (1, 3));
        assert_eq!(cells(&solid(6, 4, [0; 3]), 0, 10), (0, 0));
        assert!(half_blocks(&solid(6, 4, [0; 3]), 10, 0).is_empty());
    }

    #[test]
    fn upper_and_lower_pixels_are_foreground_and_background() {
        let (red, blue) = ([255, 0, 0], [0, 0, 255]);
        let picture = Picture::new(1, 2, vec![red, blue]).unwrap_or_else(|| unreachable!());
        let lines = half_blocks(&picture, 5, 5);
        assert_eq!(lines.len(), 1);
        let span = &lines[0].spans[0];
        assert_eq!(span.content, "▀");
        assert_eq!(span.style.fg, Some(Color::Rgb(255, 0, 0)));
        assert_eq!(span.style.bg, Some(Color::Rgb(0, 0, 255)));
    }

    #[test]
    fn corrupt_and_oversized_files_are_refused_before_decoding() {
        let dir = std::env::temp_dir().join(format!("kith-picture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        // A PNG signature and then garbage.
        let corrupt = dir.join("corrupt.png");
        std::fs::write(&corrupt, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDRgarbage").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read(&corrupt), Err(DecodeError::Format(_))));
        // One pixel wider than `MAX_SIDE`: refused from its header (cheap to make: one row).
        let wide = dir.join("wide.png");
        image::RgbImage::new(MAX_SIDE + 1, 1).save(&wide).unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(read(&wide), Err(DecodeError::Format(image::ImageError::Limits(_)))));
        assert!(decode(&wide).is_err());
        assert!(matches!(read(&dir.join("missing.png")), Err(DecodeError::Io(_))));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn avatars_are_base64_within_bounds() {
        use base64::Engine as _;
        let mut png = Vec::new();
        let image = image::RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).unwrap_or_else(|e| panic!("{e}"));
        let data = base64::engine::general_purpose::STANDARD.encode(&png);
        let picture = decode_bytes(&avatar_bytes(&data).unwrap_or_else(|e| panic!("{e}"))).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((picture.width(), picture.height()), (4, 2));
        assert!(matches!(avatar_bytes("not base64!"), Err(DecodeError::Data(_))));
        assert!(matches!(avatar_bytes(&"A".repeat(MAX_AVATAR_BYTES * 2)), Err(DecodeError::TooLarge)));
        assert!(decode_bytes(b"\x89PNG\r\n\x1a\ngarbage").is_err());
    }

    #[test]
    fn rejects_inconsistent_pixels() {
        assert!(Picture::new(2, 2, vec![[0; 3]; 3]).is_none());
        assert!(Picture::new(0, 0, Vec::new()).is_none());
    }
}
