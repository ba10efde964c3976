//! QR images uploaded to the vault (PNG or JPEG), decoded here with `image` (PNG and JPEG
//! decoders only) and `rqrr`. The bytes, the pixel dimensions and the decoder's allocations
//! are capped before anything is decoded, so a small file that claims a huge picture (a
//! decompression bomb) is refused instead of filling memory.

use std::io::Cursor;

/// Largest upload accepted.
pub const MAX_IMAGE_BYTES: usize = 2 * 1024 * 1024;
/// Largest width and height, in pixels.
pub const MAX_SIDE: u32 = 2048;
/// Most memory the decoder may allocate.
const MAX_ALLOC: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QrImageError {
    #[error("the image is larger than {MAX_IMAGE_BYTES} bytes or {MAX_SIDE}×{MAX_SIDE} pixels")]
    TooLarge,
    #[error("the upload is not a PNG or JPEG image")]
    Unsupported,
    #[error("the image could not be decoded: it is damaged or truncated")]
    Malformed,
    #[error("no readable QR code was found in the image")]
    NoQr,
}

impl QrImageError {
    /// The stable error code clients see.
    pub fn code(&self) -> &'static str {
        match self {
            QrImageError::TooLarge => "image_too_large",
            QrImageError::Unsupported => "image_unsupported",
            QrImageError::Malformed => "image_malformed",
            QrImageError::NoQr => "image_no_qr",
        }
    }
}

/// The text of the first QR code found in a PNG or JPEG image.
pub fn decode(bytes: &[u8]) -> Result<String, QrImageError> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(QrImageError::TooLarge);
    }
    let format = match image::guess_format(bytes) {
        Ok(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        _ => return Err(QrImageError::Unsupported),
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => QrImageError::TooLarge,
        _ => QrImageError::Malformed,
    })?;
    let luma = img.to_luma8();
    let (w, h) = (luma.width() as usize, luma.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| {
        luma.get_pixel(x as u32, y as u32).0[0]
    });
    prepared
        .detect_grids()
        .into_iter()
        .find_map(|g| g.decode().ok().map(|(_, text)| text))
        .ok_or(QrImageError::NoQr)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_qr_image() {
        assert_eq!(decode(b"hello"), Err(QrImageError::Unsupported));
        assert_eq!(decode(b"GIF89a....."), Err(QrImageError::Unsupported));
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&[0; 40]);
        assert_eq!(decode(&png), Err(QrImageError::Malformed));
        assert_eq!(
            decode(&vec![0u8; MAX_IMAGE_BYTES + 1]),
            Err(QrImageError::TooLarge)
        );
    }

    #[test]
    fn reads_a_qr_code_made_by_the_otp_crate() {
        let uri = "otpauth://totp/Acme:robot?secret=JBSWY3DPEHPK3PXP&issuer=Acme";
        let png = twofold_otp::qr::png(uri, 8).unwrap();
        assert_eq!(decode(&png).unwrap(), uri);
    }
}
