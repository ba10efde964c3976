//! QR codes for enrolment, as SVG (for the web page) or PNG (for clients that cannot render
//! SVG).
//!
//! Both keep the four-module quiet zone and the error-correction level M that ISO/IEC 18004
//! scanners expect, so phone cameras read them reliably at arm's length.

use qrcode::render::svg;
use qrcode::types::QrError as EncodeError;
use qrcode::{Color, EcLevel, QrCode};

/// Quiet zone around the symbol, in modules (ISO/IEC 18004 asks for four).
const QUIET_ZONE: usize = 4;
/// Smallest SVG size in pixels, so a browser showing it unscaled still gives phones enough
/// resolution.
const MIN_SVG_PX: u32 = 256;
/// Largest PNG module size. A full version-40 symbol at this size is already 5920 pixels
/// square; larger only wastes memory.
pub const MAX_MODULE_PX: u32 = 32;

/// Why a QR code could not be produced.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QrError {
    #[error("the data does not fit in a QR code")]
    DataTooLong,
    #[error("QR encoding failed: {0}")]
    Encode(String),
    #[error("module size must be between 1 and {MAX_MODULE_PX} pixels, not {0}")]
    InvalidModuleSize(u32),
    #[error("PNG encoding failed: {0}")]
    Png(String),
}

impl From<EncodeError> for QrError {
    fn from(e: EncodeError) -> Self {
        match e {
            EncodeError::DataTooLong => QrError::DataTooLong,
            other => QrError::Encode(other.to_string()),
        }
    }
}

fn encode(data: &str) -> Result<QrCode, QrError> {
    Ok(QrCode::with_error_correction_level(
        data.as_bytes(),
        EcLevel::M,
    )?)
}

/// A standalone SVG document (`<?xml ...?><svg ...>`), black on white, at least 256 pixels
/// wide, with a `viewBox` so it can be scaled by CSS.
pub fn svg(data: &str) -> Result<String, QrError> {
    let code = encode(data)?;
    Ok(code
        .render::<svg::Color<'_>>()
        .quiet_zone(true)
        .min_dimensions(MIN_SVG_PX, MIN_SVG_PX)
        .build())
}

/// An 8-bit grayscale PNG, `module_px` pixels per module (1 to [`MAX_MODULE_PX`]), black on
/// white with a four-module quiet zone.
pub fn png(data: &str, module_px: u32) -> Result<Vec<u8>, QrError> {
    if !(1..=MAX_MODULE_PX).contains(&module_px) {
        return Err(QrError::InvalidModuleSize(module_px));
    }
    let code = encode(data)?;
    let modules = code.width();
    let colors = code.to_colors();
    let scale = module_px as usize;
    let side = (modules + 2 * QUIET_ZONE) * scale;

    let mut pixels = vec![0xffu8; side * side];
    for (index, color) in colors.iter().enumerate() {
        if *color != Color::Dark {
            continue;
        }
        let (x, y) = (index % modules + QUIET_ZONE, index / modules + QUIET_ZONE);
        for row in y * scale..(y + 1) * scale {
            let start = row * side + x * scale;
            pixels[start..start + scale].fill(0);
        }
    }

    let side = u32::try_from(side).map_err(|_| QrError::InvalidModuleSize(module_px))?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let png_err = |e: png::EncodingError| QrError::Png(e.to_string());
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&pixels).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}
