//! IDX files (the MNIST / Fashion-MNIST format), raw or gzipped.
//!
//! Layout: two zero bytes, a type byte, a dimension count, then each dimension as a big-endian
//! u32, then the values, big-endian. Sizes are checked against the bytes present before anything
//! is allocated, and gzip output is capped at what deflate can expand the input to.

use std::io::Read;

use super::ClassificationDataset;
use crate::{Error, Result};

/// An n-dimensional array read from an IDX file, values converted to f32.
#[derive(Debug, Clone, PartialEq)]
pub struct IdxArray {
    /// Dimensions, outermost first.
    pub dims: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
    /// Whether the file stored unsigned bytes (pixel values 0..=255).
    pub unsigned_bytes: bool,
}

/// Largest ratio deflate can reach (a stream of one repeated byte), plus slack.
const MAX_DEFLATE_RATIO: usize = 1040;

/// Undo gzip if the bytes start with its magic number; otherwise return them as they are.
///
/// # Errors
/// [`Error::Data`] when the gzip stream is corrupt or truncated.
pub fn gunzip_if_needed<'a>(source: &str, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let limit = bytes.len().saturating_mul(MAX_DEFLATE_RATIO);
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit));
    flate2::read::GzDecoder::new(bytes)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            Error::data(
                source,
                format!("the gzip data is corrupt or truncated ({e})"),
            )
        })?;
    if out.len() > limit {
        return Err(Error::data(
            source,
            "the gzip data expands beyond what deflate allows; the file is corrupt",
        ));
    }
    Ok(std::borrow::Cow::Owned(out))
}

impl IdxArray {
    /// Parse IDX bytes (gzipped or not).
    ///
    /// # Errors
    /// [`Error::Data`] for a wrong magic number, an unknown type byte, zero dimensions, or a size
    /// that does not match the bytes present.
    pub fn parse(source: &str, bytes: &[u8]) -> Result<Self> {
        let bytes = gunzip_if_needed(source, bytes)?;
        let fail = |reason: String| Error::data(source, reason);
        if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
            return Err(fail(format!(
                "not an IDX file: expected the magic bytes 00 00 <type> <dims>, found {:02x?}",
                &bytes[..bytes.len().min(4)]
            )));
        }
        let (type_byte, ndims) = (bytes[2], bytes[3] as usize);
        let width = match type_byte {
            0x08 | 0x09 => 1,
            0x0B => 2,
            0x0C | 0x0D => 4,
            0x0E => 8,
            other => {
                return Err(fail(format!(
                    "IDX type byte 0x{other:02x} is unknown (expected 08, 09, 0B, 0C, 0D or 0E)"
                )));
            }
        };
        if ndims == 0 {
            return Err(fail("IDX header declares 0 dimensions".into()));
        }
        let header = 4 + 4 * ndims;
        if bytes.len() < header {
            return Err(fail(format!(
                "IDX header declares {ndims} dimensions but the file ends after {} bytes",
                bytes.len()
            )));
        }
        let dims: Vec<usize> = bytes[4..header]
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let count = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let expected = count.and_then(|c| c.checked_mul(width));
        let body = &bytes[header..];
        if expected != Some(body.len()) {
            return Err(fail(format!(
                "IDX dimensions {dims:?} of {width}-byte values need {} bytes of data, the file has {}",
                expected.map_or("more than addressable".to_string(), |e| e.to_string()),
                body.len()
            )));
        }
        let values: Vec<f32> = match type_byte {
            0x08 => body.iter().map(|&b| f32::from(b)).collect(),
            0x09 => body.iter().map(|&b| f32::from(b as i8)).collect(),
            0x0B => body
                .chunks_exact(2)
                .map(|c| f32::from(i16::from_be_bytes([c[0], c[1]])))
                .collect(),
            0x0C => body
                .chunks_exact(4)
                .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as f32)
                .collect(),
            0x0D => body
                .chunks_exact(4)
                .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            _ => body
                .chunks_exact(8)
                .map(|c| {
                    f64::from_be_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32
                })
                .collect(),
        };
        Ok(Self {
            dims,
            values,
            unsigned_bytes: type_byte == 0x08,
        })
    }
}

/// An image data set from an IDX images file `[n, height, width]` (or `[n, features]`) and an
/// IDX labels file `[n]`. Byte pixels are scaled to `[0, 1]`; classes are `0..=max label`.
///
/// # Errors
/// [`Error::Data`] naming the file when either does not parse, the counts differ, a label is
/// negative or not whole, or there are fewer than two classes.
pub fn idx_dataset(
    images_name: &str,
    images: &[u8],
    labels_name: &str,
    labels: &[u8],
) -> Result<ClassificationDataset> {
    let images = IdxArray::parse(images_name, images)?;
    let labels = IdxArray::parse(labels_name, labels)?;
    if labels.dims.len() != 1 {
        return Err(Error::data(
            labels_name,
            format!(
                "expected a 1-dimensional labels file, found dimensions {:?}",
                labels.dims
            ),
        ));
    }
    if images.dims.len() < 2 {
        return Err(Error::data(
            images_name,
            format!(
                "expected [count, ...] images, found dimensions {:?}",
                images.dims
            ),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(Error::data(
            labels_name,
            format!(
                "{} labels for {} images in {images_name}",
                labels.dims[0], images.dims[0]
            ),
        ));
    }
    let mut ints = Vec::with_capacity(labels.values.len());
    for (i, &v) in labels.values.iter().enumerate() {
        if v < 0.0 || v.fract() != 0.0 || v > 65_535.0 {
            return Err(Error::data(
                labels_name,
                format!("record {i}: label {v} is not a class index"),
            ));
        }
        ints.push(v as u32);
    }
    let classes = ints.iter().max().map_or(0, |&m| m as usize + 1);
    let scale = if images.unsigned_bytes {
        1.0 / 255.0
    } else {
        1.0
    };
    let n_features: usize = images.dims[1..].iter().product();
    let mut features: Vec<f32> = images.values.into_iter().map(|v| v * scale).collect();
    // Colour images are stored [h, w, c] (channel last); rows are channel-major here.
    if let [h, w, c] = images.dims[1..] {
        let mut chw = vec![0.0; features.len()];
        for (src, dst) in features
            .chunks_exact(n_features)
            .zip(chw.chunks_exact_mut(n_features))
        {
            for y in 0..h {
                for x in 0..w {
                    for ch in 0..c {
                        dst[ch * h * w + y * w + x] = src[(y * w + x) * c + ch];
                    }
                }
            }
        }
        features = chw;
    }
    let dataset = ClassificationDataset::new(
        images_name,
        features,
        ints,
        n_features,
        (0..classes).map(|c| c.to_string()).collect(),
    )?;
    match images.dims[1..] {
        [h, w] => dataset.with_image_shape([1, h, w]),
        [h, w, c] => dataset.with_image_shape([c, h, w]),
        _ => Ok(dataset),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// An IDX file of unsigned bytes with the given dimensions.
    pub(crate) fn idx_u8(dims: &[u32], values: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 0x08, dims.len() as u8];
        for d in dims {
            out.extend_from_slice(&d.to_be_bytes());
        }
        out.extend_from_slice(values);
        out
    }

    pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).expect("write");
        enc.finish().expect("finish")
    }

    #[test]
    fn raw_and_gzipped_images_and_labels() {
        let images = idx_u8(
            &[3, 2, 2],
            &[0, 255, 0, 255, 10, 20, 30, 40, 255, 255, 255, 255],
        );
        let labels = idx_u8(&[3], &[1, 0, 2]);
        let raw = idx_dataset("img", &images, "lbl", &labels).expect("valid");
        let gz = idx_dataset("img", &gzip(&images), "lbl", &gzip(&labels)).expect("valid");
        assert_eq!(raw, gz);
        assert_eq!(raw.len(), 3);
        assert_eq!(raw.n_features, 4);
        assert_eq!(raw.image_shape, Some([1, 2, 2]));
        assert_eq!(raw.class_names, ["0", "1", "2"]);
        assert_eq!(raw.row(0), [0.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn colour_images_become_channel_major() {
        // Two 1x2 images with 3 channels stored [h, w, c]; the first has pixels (r, g, b) =
        // (1, 2, 3), (4, 5, 6).
        let images = idx_u8(&[2, 1, 2, 3], &[1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0]);
        let labels = idx_u8(&[2], &[0, 1]);
        let d = idx_dataset("img", &images, "lbl", &labels).expect("valid");
        assert_eq!(d.image_shape, Some([3, 1, 2]));
        let expected: Vec<f32> = [1., 4., 2., 5., 3., 6.]
            .iter()
            .map(|v| v * (1.0 / 255.0))
            .collect();
        assert_eq!(d.row(0), expected.as_slice());
    }

    #[test]
    fn other_value_types_are_big_endian() {
        let mut f = vec![0, 0, 0x0D, 1, 0, 0, 0, 2];
        f.extend_from_slice(&1.5f32.to_be_bytes());
        f.extend_from_slice(&(-2.0f32).to_be_bytes());
        assert_eq!(IdxArray::parse("f", &f).expect("valid").values, [1.5, -2.0]);
        let mut s = vec![0, 0, 0x0B, 1, 0, 0, 0, 1];
        s.extend_from_slice(&(-300i16).to_be_bytes());
        assert_eq!(IdxArray::parse("s", &s).expect("valid").values, [-300.0]);
    }

    #[test]
    fn malformed_files_are_named_errors_without_huge_allocations() {
        let huge_dims = idx_u8(&[u32::MAX, u32::MAX, u32::MAX], &[]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not an IDX file"),
            (b"PK\x03\x04".to_vec(), "not an IDX file"),
            (
                vec![0, 0, 0x42, 1, 0, 0, 0, 1, 0],
                "type byte 0x42 is unknown",
            ),
            (vec![0, 0, 0x08, 0], "0 dimensions"),
            (
                vec![0, 0, 0x08, 3, 0, 0],
                "declares 3 dimensions but the file ends after 6 bytes",
            ),
            (
                idx_u8(&[2, 2], &[1, 2, 3]),
                "need 4 bytes of data, the file has 3",
            ),
            (huge_dims, "more than addressable"),
            (
                vec![0x1f, 0x8b, 8, 0, 0, 0],
                "gzip data is corrupt or truncated",
            ),
        ];
        for (bytes, expected) in cases {
            let err = IdxArray::parse("bad.idx", &bytes)
                .expect_err(expected)
                .to_string();
            assert!(
                err.contains("bad.idx") && err.contains(expected),
                "expected `{expected}` in `{err}`"
            );
        }
        let images = idx_u8(&[2, 1, 1], &[0, 1]);
        let err = idx_dataset("i", &images, "l", &idx_u8(&[3], &[0, 1, 1]))
            .expect_err("count")
            .to_string();
        assert!(err.contains("3 labels for 2 images"), "{err}");
        let err = idx_dataset("i", &images, "l", &idx_u8(&[1, 2], &[0, 1]))
            .expect_err("dims")
            .to_string();
        assert!(err.contains("1-dimensional"), "{err}");
    }
}
