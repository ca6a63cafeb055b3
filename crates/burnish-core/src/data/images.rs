//! Image folders: PNG or JPEG files, one sub-folder per class (`cats/001.png`, `dogs/x.jpg`),
//! as the browser's directory picker or a dropped folder gives them.
//!
//! Each image is decoded, converted to grayscale or RGB, resized to a fixed size and stored
//! channel-major with values in `[0, 1]`. Decoding is bounded (dimensions and allocation), so a
//! file that claims a huge size is an error, not an out-of-memory crash.

use std::collections::BTreeMap;
use std::io::Cursor;

use image::imageops::FilterType;
use serde::{Deserialize, Serialize};

use super::ClassificationDataset;
use crate::{Error, Result};

/// How images become rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImageFolderConfig {
    /// Height and width every image is resized to (default 28x28).
    pub size: [usize; 2],
    /// One channel (default) or three (RGB).
    pub grayscale: bool,
}

impl Default for ImageFolderConfig {
    fn default() -> Self {
        Self {
            size: [28, 28],
            grayscale: true,
        }
    }
}

/// A file of a dropped folder: its path relative to the folder, and its bytes.
#[derive(Debug, Clone)]
pub struct FolderFile {
    /// Relative path with `/` separators, e.g. `cats/001.png`.
    pub path: String,
    /// The file's content.
    pub bytes: Vec<u8>,
}

/// What loading a folder made, and what it left out.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The images as a data set; classes are the sub-folder names, sorted.
    pub dataset: ClassificationDataset,
    /// Files that are not PNG or JPEG by name (e.g. `.DS_Store`, `README.md`), skipped.
    pub skipped: Vec<String>,
}

const MAX_SIDE: u32 = 8192;
const MAX_DECODE_BYTES: u64 = 256 << 20;

fn is_image_name(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    [".png", ".jpg", ".jpeg"].iter().any(|e| lower.ends_with(e))
}

/// Decode one image to channel-major floats of the configured size.
fn decode(path: &str, bytes: &[u8], config: &ImageFolderConfig) -> Result<Vec<f32>> {
    let fail = |reason: String| Error::data(path, reason);
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(format!("cannot read the file ({e})")))?;
    if reader.format().is_none() {
        return Err(fail(
            "the file is named like an image but is not a PNG or JPEG".into(),
        ));
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| {
        fail(format!(
            "cannot decode the image ({})",
            e.to_string().trim()
        ))
    })?;
    let [h, w] = config.size;
    let img = img.resize_exact(w as u32, h as u32, FilterType::Triangle);
    Ok(if config.grayscale {
        img.to_luma8()
            .into_raw()
            .into_iter()
            .map(|v| f32::from(v) / 255.0)
            .collect()
    } else {
        let rgb = img.to_rgb8().into_raw();
        let plane = h * w;
        let mut out = vec![0.0; 3 * plane];
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = f32::from(px[c]) / 255.0;
            }
        }
        out
    })
}

/// Decode one PNG or JPEG to a row of the given `[channels, height, width]` (1 channel is
/// grayscale, 3 is RGB), values in `[0, 1]`: how a model trained on an image folder sees a new
/// image.
///
/// # Errors
/// [`Error::Data`] naming `name` when the bytes are not a PNG or JPEG, do not decode, or are too
/// large; [`Error::Config`] for a channel count other than 1 or 3.
pub fn decode_image(name: &str, bytes: &[u8], shape: [usize; 3]) -> Result<Vec<f32>> {
    let [c, h, w] = shape;
    if c != 1 && c != 3 {
        return Err(Error::config(
            "image_shape",
            format!("expected 1 (grayscale) or 3 (RGB) channels, found {c}"),
        ));
    }
    decode(
        name,
        bytes,
        &ImageFolderConfig {
            size: [h, w],
            grayscale: c == 1,
        },
    )
}

/// Load an image folder.
///
/// # Errors
/// [`Error::Config`] for a zero size; [`Error::Data`] naming the file for an image outside a
/// class folder, a file that does not decode, or one larger than 8192 pixels a side; and when
/// fewer than two classes hold images.
pub fn image_folder(
    root: &str,
    files: &[FolderFile],
    config: &ImageFolderConfig,
) -> Result<ImageFolder> {
    if config.size.contains(&0) {
        return Err(Error::config(
            "size",
            format!(
                "expected a height and width of at least 1, found {:?}",
                config.size
            ),
        ));
    }
    let mut by_class: BTreeMap<&str, Vec<&FolderFile>> = BTreeMap::new();
    let mut skipped = Vec::new();
    for file in files {
        let path = file.path.trim_start_matches('/');
        if !is_image_name(path) {
            skipped.push(file.path.clone());
            continue;
        }
        match path.rsplit_once('/') {
            Some((dir, _)) => by_class
                .entry(dir.rsplit('/').next().unwrap_or(dir))
                .or_default()
                .push(file),
            None => {
                return Err(Error::data(
                    &file.path,
                    format!(
                        "images must sit in one sub-folder per class (e.g. cats/{path}, dogs/...), not loose at the top of the dropped folder"
                    ),
                ));
            }
        }
    }
    if by_class.len() < 2 {
        return Err(Error::data(
            root,
            format!(
                "expected images in at least 2 class sub-folders, found {}",
                by_class.len()
            ),
        ));
    }
    let [h, w] = config.size;
    let channels = if config.grayscale { 1 } else { 3 };
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let class_names: Vec<String> = by_class.keys().map(|s| s.to_string()).collect();
    for (label, files) in by_class.values().enumerate() {
        for file in files {
            features.extend(decode(&file.path, &file.bytes, config)?);
            labels.push(label as u32);
        }
    }
    let dataset =
        ClassificationDataset::new(root, features, labels, channels * h * w, class_names)?
            .with_image_shape([channels, h, w])?;
    Ok(ImageFolder { dataset, skipped })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32, value: u8) -> Vec<u8> {
        let img = image::GrayImage::from_pixel(w, h, image::Luma([value]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        out.into_inner()
    }

    fn jpeg_rgb(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 0, 0]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode");
        out.into_inner()
    }

    fn file(path: &str, bytes: Vec<u8>) -> FolderFile {
        FolderFile {
            path: path.into(),
            bytes,
        }
    }

    #[test]
    fn classes_from_folders_resized_and_scaled() {
        let files = vec![
            file("dark/a.png", png(10, 6, 0)),
            file("light/b.PNG", png(3, 3, 255)),
            file("light/c.jpg", jpeg_rgb(5, 5)),
            file(".DS_Store", vec![1, 2, 3]),
            file("light/notes.txt", b"hi".to_vec()),
        ];
        let folder = image_folder(
            "shapes",
            &files,
            &ImageFolderConfig {
                size: [4, 4],
                grayscale: true,
            },
        )
        .expect("valid");
        let ds = folder.dataset;
        assert_eq!(ds.class_names, ["dark", "light"]);
        assert_eq!(ds.labels, [0, 1, 1]);
        assert_eq!(ds.image_shape, Some([1, 4, 4]));
        assert!(ds.row(0).iter().all(|&v| v == 0.0));
        assert!(ds.row(1).iter().all(|&v| v == 1.0));
        assert_eq!(folder.skipped, [".DS_Store", "light/notes.txt"]);
        let rgb = image_folder(
            "shapes",
            &files,
            &ImageFolderConfig {
                size: [2, 2],
                grayscale: false,
            },
        )
        .expect("valid");
        let red = rgb.dataset.row(2);
        assert!(
            red[..4].iter().all(|&v| v > 0.9),
            "red plane first: {red:?}"
        );
        assert!(red[4..].iter().all(|&v| v < 0.1), "{red:?}");
    }

    #[test]
    fn bad_folders_and_files_are_named() {
        let config = ImageFolderConfig::default();
        let cases: Vec<(Vec<FolderFile>, &str)> = vec![
            (vec![file("top.png", png(2, 2, 0))], "top.png"),
            (
                vec![file("a/x.png", png(2, 2, 0))],
                "at least 2 class sub-folders, found 1",
            ),
            (
                vec![
                    file("a/x.png", png(2, 2, 0)),
                    file("b/fake.png", b"not an image at all".to_vec()),
                ],
                "b/fake.png",
            ),
            (
                vec![
                    file("a/x.png", png(2, 2, 0)),
                    file("b/cut.png", png(2, 2, 0)[..30].to_vec()),
                ],
                "b/cut.png: cannot decode",
            ),
        ];
        for (files, expected) in cases {
            let err = image_folder("root", &files, &config)
                .expect_err(expected)
                .to_string();
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        }
        // A PNG header claiming 100000 x 100000 pixels is refused before allocating.
        let mut huge = png(1, 1, 0);
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let files = vec![file("a/x.png", png(2, 2, 0)), file("b/huge.png", huge)];
        let err = image_folder("root", &files, &config)
            .expect_err("huge")
            .to_string();
        assert!(err.contains("b/huge.png"), "{err}");
        let err = image_folder(
            "root",
            &[],
            &ImageFolderConfig {
                size: [0, 4],
                ..config
            },
        )
        .expect_err("size")
        .to_string();
        assert!(err.contains("size"), "{err}");
    }
}
