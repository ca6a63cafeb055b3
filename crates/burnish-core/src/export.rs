//! Export and import of trained classifiers as safetensors.
//!
//! Layout (documented in ARCHITECTURE.md): every tensor of the model under the names and in the
//! PyTorch layout of [`ModelConfig::tensor_layout`] (MLP `layers.{i}.weight` `[out, in]`,
//! `layers.{i}.bias`; CNN `convs.{i}.weight` `[out, in, 3, 3]`, `convs.{i}.bias`, then
//! `head.{i}.weight`, `head.{i}.bias`), all F32, so `torch` code reads them as they are. The
//! safetensors metadata (`__metadata__`, string to string) holds: `format` =
//! `burnish.classifier.v1`, `model` (the [`ModelConfig`] as JSON, tagged by `kind`), `classes`
//! (JSON list of class names), `normalizer` (the [`Normalizer`] as JSON, or `null`) and
//! `image_shape` (`[channels, height, width]` of image inputs, or `null` for tables) and `features`
//! (JSON list of the input column names of a table, possibly empty). Files of the
//! earlier `burnish.mlp-classifier.v1` format (an MLP config without `kind`) still load.
//!
//! Export reads every weight with `into_data_async`, so it works in the browser, where burn-store's
//! synchronous save panics.

use burn::prelude::*;
use safetensors::tensor::Dtype;

use crate::data::split::Normalizer;
use crate::model::{Classifier, MlpConfig, ModelConfig};
use crate::{Error, Result};

/// The `format` metadata value of this layout.
pub const FORMAT: &str = "burnish.classifier.v1";
/// The format of the first exports (MLP only), still read.
const FORMAT_MLP_V1: &str = "burnish.mlp-classifier.v1";

/// A trained classifier and what is needed to use it on new rows.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedClassifier {
    /// The model's shape.
    pub config: ModelConfig,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The normalisation fitted on the training rows, if one was used.
    pub normalizer: Option<Normalizer>,
    /// `[channels, height, width]` when the inputs are images.
    pub image_shape: Option<[usize; 3]>,
    /// Names of the input columns of a table, in order (empty when unknown or for images).
    pub feature_names: Vec<String>,
    /// Every tensor, in the order and PyTorch layout of [`ModelConfig::tensor_layout`].
    pub tensors: Vec<Vec<f32>>,
}

impl ExportedClassifier {
    /// Read a model's weights back from its device (asynchronously).
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn from_model(
        model: &Classifier,
        config: &ModelConfig,
        classes: Vec<String>,
        normalizer: Option<Normalizer>,
        image_shape: Option<[usize; 3]>,
    ) -> Result<Self> {
        Ok(Self {
            config: config.clone(),
            classes,
            normalizer,
            image_shape,
            feature_names: Vec::new(),
            tensors: model.tensors().await?,
        })
    }

    /// Trainable parameters.
    pub fn parameters(&self) -> usize {
        self.tensors.iter().map(Vec::len).sum()
    }

    /// Serialise to safetensors bytes; the same model always gives the same bytes.
    ///
    /// # Errors
    /// [`Error::Config`] when the tensors do not match the config's layout.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let layout = self.config.tensor_layout();
        if layout.len() != self.tensors.len() {
            return Err(Error::config(
                "model",
                format!(
                    "{} tensors for a model of {}",
                    self.tensors.len(),
                    layout.len()
                ),
            ));
        }
        let stored: Vec<(String, Vec<u8>, Vec<usize>)> = layout
            .into_iter()
            .zip(&self.tensors)
            .map(|((name, shape), values)| {
                (
                    name,
                    values.iter().flat_map(|v| v.to_le_bytes()).collect(),
                    shape,
                )
            })
            .collect();
        let mut metadata = std::collections::BTreeMap::from([("format", FORMAT.to_string())]);
        metadata.extend(classifier_metadata(self));
        Ok(write_safetensors(&stored, &metadata))
    }

    /// Parse safetensors bytes written by [`Self::to_bytes`] (or by another tool following the
    /// documented layout).
    ///
    /// # Errors
    /// [`Error::Data`] naming the file and the problem: not safetensors, a missing or different
    /// `format`, invalid metadata JSON, a missing tensor, a tensor of the wrong dtype or shape, or
    /// a tensor that is not part of the model.
    pub fn from_bytes(source: &str, bytes: &[u8]) -> Result<Self> {
        let fail = |reason: String| Error::data(source, reason);
        let (_, header) = safetensors::SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let tensors = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file ({e})")))?;
        let meta = header.metadata().clone().unwrap_or_default();
        Self::from_parts(source, &meta, &tensors, "")
    }

    /// Read the model whose tensors are named `{prefix}{name}` in `tensors`, with the metadata
    /// of [`Self::to_bytes`] in `meta` (an autosave holds one this way, next to other tensors).
    ///
    /// # Errors
    /// As [`Self::from_bytes`].
    pub(crate) fn from_parts(
        source: &str,
        meta: &std::collections::HashMap<String, String>,
        tensors: &safetensors::SafeTensors<'_>,
        prefix: &str,
    ) -> Result<Self> {
        let fail = |reason: String| Error::data(source, reason);
        let field = |key: &str| {
            meta.get(key).ok_or_else(|| {
                fail(format!(
                    "metadata has no `{key}` entry; this is not a burnish classifier export"
                ))
            })
        };
        let format = field("format")?;
        if format != FORMAT && format != FORMAT_MLP_V1 {
            return Err(fail(format!(
                "metadata `format` is `{format}`, expected `{FORMAT}`"
            )));
        }
        let model_json = field("model")?;
        let config: ModelConfig = if format == FORMAT {
            serde_json::from_str(model_json)
        } else {
            serde_json::from_str::<MlpConfig>(model_json).map(ModelConfig::Mlp)
        }
        .map_err(|e| fail(format!("metadata `model`: {e}")))?;
        config
            .validate()
            .map_err(|e| fail(format!("metadata `model`: {e}")))?;
        let classes: Vec<String> = serde_json::from_str(field("classes")?)
            .map_err(|e| fail(format!("metadata `classes`: {e}")))?;
        if classes.len() != config.n_classes() {
            return Err(fail(format!(
                "metadata lists {} classes, the model has {}",
                classes.len(),
                config.n_classes()
            )));
        }
        let normalizer: Option<Normalizer> = serde_json::from_str(field("normalizer")?)
            .map_err(|e| fail(format!("metadata `normalizer`: {e}")))?;
        if let Some(n) = &normalizer
            && (n.mean.len() != n.std.len() || n.mean.len() * n.span != config.d_input())
        {
            return Err(fail(format!(
                "metadata `normalizer` does not cover the model's {} inputs",
                config.d_input()
            )));
        }
        let image_shape: Option<[usize; 3]> = match meta.get("image_shape") {
            Some(json) => serde_json::from_str(json)
                .map_err(|e| fail(format!("metadata `image_shape`: {e}")))?,
            None => match &config {
                ModelConfig::Cnn(c) => Some(c.image_shape),
                ModelConfig::Mlp(_) => None,
            },
        };
        if let Some(shape) = image_shape
            && shape.iter().product::<usize>() != config.d_input()
        {
            return Err(fail(format!(
                "metadata `image_shape` {shape:?} does not match the model's {} inputs",
                config.d_input()
            )));
        }
        let feature_names: Vec<String> = match meta.get("features") {
            Some(json) => {
                serde_json::from_str(json).map_err(|e| fail(format!("metadata `features`: {e}")))?
            }
            None => Vec::new(),
        };
        if !feature_names.is_empty() && feature_names.len() != config.d_input() {
            return Err(fail(format!(
                "metadata `features` names {} columns, the model has {} inputs",
                feature_names.len(),
                config.d_input()
            )));
        }
        let layout = config.tensor_layout();
        let values = read_layout(source, tensors, &layout, prefix)?;
        if let Some(extra) = tensors.names().into_iter().find(|n| {
            n.strip_prefix(prefix)
                .is_some_and(|n| !layout.iter().any(|(name, _)| name == n))
        }) {
            return Err(fail(format!(
                "tensor `{extra}` is not part of this model ({} tensors expected)",
                layout.len()
            )));
        }
        Ok(Self {
            config,
            classes,
            normalizer,
            image_shape,
            feature_names,
            tensors: values,
        })
    }

    /// Build the model on `device`.
    ///
    /// # Errors
    /// When the tensors do not fit the config (cannot happen after [`Self::from_bytes`]).
    pub fn to_model(&self, device: &Device) -> Result<Classifier> {
        self.config.from_tensors(self.tensors.clone(), device)
    }
}

/// Every tensor of `layout`, named `{prefix}{name}`, checked for dtype F32, shape and finite
/// values.
///
/// # Errors
/// [`Error::Data`] naming `source` and the tensor.
pub(crate) fn read_layout(
    source: &str,
    tensors: &safetensors::SafeTensors<'_>,
    layout: &[(String, Vec<usize>)],
    prefix: &str,
) -> Result<Vec<Vec<f32>>> {
    let fail = |reason: String| Error::data(source, reason);
    let mut values = Vec::with_capacity(layout.len());
    for (name, shape) in layout {
        let name = format!("{prefix}{name}");
        let view = tensors
            .tensor(&name)
            .map_err(|_| fail(format!("tensor `{name}` is missing")))?;
        if view.dtype() != Dtype::F32 {
            return Err(fail(format!(
                "tensor `{name}` is {:?}, expected F32",
                view.dtype()
            )));
        }
        if view.shape() != shape.as_slice() {
            return Err(fail(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        values.push(decode_f32(source, &name, view.data())?);
    }
    Ok(values)
}

/// The metadata entries [`ExportedClassifier::to_bytes`] writes.
pub(crate) fn classifier_metadata(model: &ExportedClassifier) -> Vec<(&'static str, String)> {
    vec![
        ("model", to_json(&model.config)),
        ("classes", to_json(&model.classes)),
        ("normalizer", to_json(&model.normalizer)),
        ("image_shape", to_json(&model.image_shape)),
        ("features", to_json(&model.feature_names)),
    ]
}

/// The little-endian F32 values of a safetensors tensor's bytes, every one finite.
///
/// # Errors
/// [`Error::Data`] naming `source`, the tensor and the index of the first NaN or infinity.
pub(crate) fn decode_f32(source: &str, name: &str, bytes: &[u8]) -> Result<Vec<f32>> {
    let values: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    match values.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::data(
            source,
            format!("tensor `{name}` holds a non-finite value at index {i}"),
        )),
        None => Ok(values),
    }
}

/// IEEE half precision to single (exact: every f16 is an f32).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal: value = frac * 2^-24.
        (0, f) => {
            let magnitude = f as f32 * (-24f32).exp2();
            return if sign != 0 { -magnitude } else { magnitude };
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7fc0_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

/// Decode a checkpoint tensor stored as F32, F16 or BF16 (half-precision checkpoints are
/// widened to f32, exactly), checking every value is finite.
///
/// # Errors
/// [`Error::Data`] naming the tensor: another dtype, or a non-finite value.
pub(crate) fn decode_float(
    source: &str,
    name: &str,
    dtype: safetensors::tensor::Dtype,
    bytes: &[u8],
) -> Result<Vec<f32>> {
    use safetensors::tensor::Dtype;
    let values: Vec<f32> = match dtype {
        Dtype::F32 => return decode_f32(source, name, bytes),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])))
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|c| f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16))
            .collect(),
        other => {
            return Err(Error::data(
                source,
                format!("tensor `{name}` is {other:?}; expected F32, F16 or BF16"),
            ));
        }
    };
    match values.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(Error::data(
            source,
            format!("tensor `{name}` holds a non-finite value at index {i}"),
        )),
        None => Ok(values),
    }
}

/// JSON text of a serialisable value (metadata values are strings).
fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|e| format!("\"unserialisable: {e}\""))
}

/// Write the safetensors layout: an 8-byte little-endian header length, the JSON header (keys
/// in sorted order, padded with spaces to 8 bytes), then the tensors' bytes in order. Written by
/// hand, rather than with `safetensors::serialize`, so that the same weights always give the
/// same bytes (that function takes the metadata as a `HashMap`, whose order varies).
pub(crate) fn write_safetensors(
    tensors: &[(String, Vec<u8>, Vec<usize>)],
    metadata: &std::collections::BTreeMap<&str, String>,
) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!(metadata));
    let mut offset = 0usize;
    for (name, bytes, shape) in tensors {
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes.len()]}),
        );
        offset += bytes.len();
    }
    let mut json = serde_json::Value::Object(header).to_string().into_bytes();
    while !json.len().is_multiple_of(8) {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, bytes, _) in tensors {
        out.extend_from_slice(bytes);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use safetensors::tensor::TensorView;

    use super::*;

    use crate::model::CnnConfig;

    #[test]
    fn half_precision_widens_exactly() {
        use safetensors::tensor::Dtype;
        let halves: [(u16, f32); 6] = [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x0001, 5.960_464_5e-8),
            (0x7bff, 65504.0),
            (0x8000, -0.0),
        ];
        let bytes: Vec<u8> = halves.iter().flat_map(|(h, _)| h.to_le_bytes()).collect();
        let got = decode_float("m", "t", Dtype::F16, &bytes).expect("f16");
        for ((_, want), got) in halves.iter().zip(&got) {
            assert_eq!(got.to_bits(), want.to_bits(), "{want} vs {got}");
        }
        let bf: Vec<u8> = [0x3f80u16, 0xc040]
            .iter()
            .flat_map(|h| h.to_le_bytes())
            .collect();
        assert_eq!(
            decode_float("m", "t", Dtype::BF16, &bf).expect("bf16"),
            [1.0, -3.0]
        );
        let err = decode_float("m", "t", Dtype::F16, &0x7c00u16.to_le_bytes())
            .expect_err("inf")
            .to_string();
        assert!(err.contains("non-finite value at index 0"), "{err}");
        let err = decode_float("m", "t", Dtype::I64, &[0; 8])
            .expect_err("i64")
            .to_string();
        assert!(err.contains("expected F32, F16 or BF16"), "{err}");
    }

    fn model() -> (ModelConfig, Classifier) {
        let config = ModelConfig::Mlp(MlpConfig::new(3, 2).with_hidden(vec![4]));
        let model = config.init(5, &Device::flex()).expect("valid");
        (config, model)
    }

    fn exported() -> ExportedClassifier {
        let (config, model) = model();
        let normalizer = Normalizer {
            mean: vec![1.0, 2.0, 3.0],
            std: vec![0.5, 1.0, 2.0],
            span: 1,
        };
        pollster::block_on(ExportedClassifier::from_model(
            &model,
            &config,
            vec!["no".into(), "yes".into()],
            Some(normalizer),
            None,
        ))
        .expect("read")
    }

    #[test]
    fn round_trip_is_bit_exact_and_predicts_the_same() {
        let (config, model) = model();
        let export = exported();
        let bytes = export.to_bytes().expect("serialise");
        let back = ExportedClassifier::from_bytes("m.safetensors", &bytes).expect("parse");
        assert_eq!(back.config, config);
        assert_eq!(back.classes, ["no", "yes"]);
        assert_eq!(back.normalizer, export.normalizer);
        for (a, b) in export.tensors.iter().zip(&back.tensors) {
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
        let x = Tensor::<2>::from_floats([[0.1, -0.2, 0.3], [1.0, 2.0, 3.0]], &Device::flex());
        let a = model.forward(x.clone()).into_data();
        let b = back
            .to_model(&Device::flex())
            .expect("model")
            .forward(x)
            .into_data();
        a.assert_eq(&b, true);
        assert_eq!(
            back.to_bytes().expect("again"),
            bytes,
            "export is deterministic"
        );
    }

    #[test]
    fn tensors_are_in_pytorch_layout_with_stable_names() {
        let export = exported();
        let bytes = export.to_bytes().expect("serialise");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        let mut names = st.names();
        names.sort();
        assert_eq!(
            names,
            [
                "layers.0.bias",
                "layers.0.weight",
                "layers.1.bias",
                "layers.1.weight"
            ]
        );
        let w = st.tensor("layers.0.weight").expect("w");
        assert_eq!(w.shape(), [4, 3]);
        // burn's [in, out] element (r=1, c=2) is PyTorch's (2, 1).
        let ExportedClassifier { config, .. } = &export;
        let model = config
            .from_tensors(export.tensors.clone(), &Device::flex())
            .expect("model");
        let Classifier::Mlp(mlp) = model else {
            panic!("an MLP")
        };
        let burn_weights = mlp.layers()[0]
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .expect("f32");
        let burn_value = burn_weights[4 + 2];
        let torch_value = f32::from_le_bytes(
            w.data()[(2 * 3 + 1) * 4..(2 * 3 + 1) * 4 + 4]
                .try_into()
                .expect("4 bytes"),
        );
        assert_eq!(burn_value, torch_value);
    }

    #[test]
    fn a_cnn_round_trips_with_its_image_shape() {
        let config = ModelConfig::Cnn(CnnConfig::new([1, 8, 8], 3));
        let model = config.init(2, &Device::flex()).expect("valid");
        let export = pollster::block_on(ExportedClassifier::from_model(
            &model,
            &config,
            vec!["a".into(), "b".into(), "c".into()],
            None,
            Some([1, 8, 8]),
        ))
        .expect("read");
        let bytes = export.to_bytes().expect("serialise");
        let back = ExportedClassifier::from_bytes("c.safetensors", &bytes).expect("parse");
        assert_eq!(back, export);
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid");
        assert_eq!(
            st.tensor("convs.1.weight").expect("w").shape(),
            [32, 16, 3, 3]
        );
        assert_eq!(
            st.tensor("head.0.weight").expect("w").shape(),
            [64, 32 * 2 * 2]
        );
        let x = Tensor::<2>::ones([2, 64], &Device::flex());
        model.forward(x.clone()).into_data().assert_eq(
            &back
                .to_model(&Device::flex())
                .expect("model")
                .forward(x)
                .into_data(),
            true,
        );
    }

    #[test]
    fn malformed_exports_are_named_errors() {
        let good = exported().to_bytes().expect("serialise");
        let with = |edit: &dyn Fn(&mut ExportedClassifier)| {
            let mut e = exported();
            edit(&mut e);
            e.to_bytes().expect("serialise")
        };
        let mut truncated = good.clone();
        truncated.truncate(good.len() - 10);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "not a valid safetensors file"),
            (
                b"\xff\xff\xff\xff\xff\xff\xff\x7f{}".to_vec(),
                "not a valid safetensors file",
            ),
            (truncated, "not a valid safetensors file"),
            (
                with(&|e| e.classes.push("maybe".into())),
                "metadata lists 3 classes, the model has 2",
            ),
            (
                with(&|e| {
                    e.normalizer = Some(Normalizer {
                        mean: vec![0.0],
                        std: vec![1.0],
                        span: 1,
                    })
                }),
                "normalizer` does not cover",
            ),
            (
                with(&|e| e.tensors[1][0] = f32::NAN),
                "tensor `layers.0.bias` holds a non-finite value at index 0",
            ),
            (
                with(&|e| e.image_shape = Some([1, 2, 2])),
                "`image_shape` [1, 2, 2] does not match the model's 3 inputs",
            ),
        ];
        for (bytes, expected) in cases {
            let err = ExportedClassifier::from_bytes("m.safetensors", &bytes)
                .expect_err(expected)
                .to_string();
            assert!(
                err.contains("m.safetensors") && err.contains(expected),
                "expected `{expected}` in `{err}`"
            );
        }
        // A file from elsewhere: right format, wrong tensors.
        let other = {
            let data = vec![0u8; 4 * 3];
            let view = TensorView::new(Dtype::F32, vec![3], &data).expect("view");
            let meta = HashMap::from([("format".to_string(), "pytorch".to_string())]);
            safetensors::serialize([("x", view)], Some(meta)).expect("serialise")
        };
        let err = ExportedClassifier::from_bytes("o.safetensors", &other)
            .expect_err("format")
            .to_string();
        assert!(err.contains("`format` is `pytorch`"), "{err}");
    }
}
