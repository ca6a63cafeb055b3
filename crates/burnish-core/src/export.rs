//! Export and import of trained classifiers as safetensors.
//!
//! Layout (documented in ARCHITECTURE.md): tensors `layers.{i}.weight` `[d_output, d_input]`
//! (PyTorch's `nn.Linear` layout, so `torch` code reads them as they are) and `layers.{i}.bias`
//! `[d_output]`, all F32. The safetensors metadata (`__metadata__`, string to string) holds:
//! `format` = `burnish.mlp-classifier.v1`, `model` (the [`MlpConfig`] as JSON), `classes` (JSON
//! list of class names) and `normalizer` (the [`Normalizer`] as JSON, or `null`).
//!
//! Export reads every weight with `into_data_async`, so it works in the browser, where burn-store's
//! synchronous save panics.

use burn::prelude::*;
use safetensors::tensor::Dtype;

use crate::data::split::Normalizer;
use crate::model::{Mlp, MlpConfig};
use crate::{Error, Result};

/// The `format` metadata value of this layout.
pub const FORMAT: &str = "burnish.mlp-classifier.v1";

/// A trained classifier and what is needed to use it on new rows.
#[derive(Debug)]
pub struct ExportedClassifier {
    /// The model's shape.
    pub config: MlpConfig,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
    /// The normalisation fitted on the training rows, if one was used.
    pub normalizer: Option<Normalizer>,
    /// Per layer: weight in burn's `[d_input, d_output]` layout, row-major, and bias.
    pub weights: Vec<(Vec<f32>, Vec<f32>)>,
}

async fn read(tensor: Tensor<2>) -> Result<Vec<f32>> {
    let data = tensor
        .into_data_async()
        .await
        .map_err(Error::readback("weights"))?;
    data.try_to_vec::<f32>().map_err(|e| Error::Readback {
        what: "weights",
        reason: format!("{e:?}"),
    })
}

async fn read1(tensor: Tensor<1>) -> Result<Vec<f32>> {
    read(tensor.unsqueeze()).await
}

fn transpose(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = values[r * cols + c];
        }
    }
    out
}

impl ExportedClassifier {
    /// Read a model's weights back from its device (asynchronously).
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn from_model(
        model: &Mlp,
        config: &MlpConfig,
        classes: Vec<String>,
        normalizer: Option<Normalizer>,
    ) -> Result<Self> {
        let mut weights = Vec::new();
        for layer in model.layers() {
            let w = read(layer.weight.val()).await?;
            let b = match &layer.bias {
                Some(bias) => read1(bias.val()).await?,
                None => vec![0.0; layer.weight.val().dims()[1]],
            };
            weights.push((w, b));
        }
        Ok(Self {
            config: config.clone(),
            classes,
            normalizer,
            weights,
        })
    }

    /// Serialise to safetensors bytes.
    ///
    /// # Errors
    /// [`Error::Data`] if safetensors refuses the tensors (it should not).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let widths = self.config.widths();
        let mut stored: Vec<(String, Vec<u8>, Vec<usize>)> = Vec::new();
        for (i, ((w, b), pair)) in self.weights.iter().zip(widths.windows(2)).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let torch = transpose(w, d_in, d_out);
            stored.push((
                format!("layers.{i}.weight"),
                torch.iter().flat_map(|v| v.to_le_bytes()).collect(),
                vec![d_out, d_in],
            ));
            stored.push((
                format!("layers.{i}.bias"),
                b.iter().flat_map(|v| v.to_le_bytes()).collect(),
                vec![d_out],
            ));
        }
        let metadata = std::collections::BTreeMap::from([
            ("format", FORMAT.to_string()),
            ("model", to_json(&self.config)),
            ("classes", to_json(&self.classes)),
            ("normalizer", to_json(&self.normalizer)),
        ]);
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
        let field = |key: &str| {
            meta.get(key).ok_or_else(|| {
                fail(format!(
                    "metadata has no `{key}` entry; this is not a burnish classifier export"
                ))
            })
        };
        let format = field("format")?;
        if format != FORMAT {
            return Err(fail(format!(
                "metadata `format` is `{format}`, expected `{FORMAT}`"
            )));
        }
        let parse = |key: &str| -> Result<String> { field(key).cloned() };
        let config: MlpConfig = serde_json::from_str(&parse("model")?)
            .map_err(|e| fail(format!("metadata `model`: {e}")))?;
        config
            .validate()
            .map_err(|e| fail(format!("metadata `model`: {e}")))?;
        let classes: Vec<String> = serde_json::from_str(&parse("classes")?)
            .map_err(|e| fail(format!("metadata `classes`: {e}")))?;
        if classes.len() != config.n_classes {
            return Err(fail(format!(
                "metadata lists {} classes, the model has {}",
                classes.len(),
                config.n_classes
            )));
        }
        let normalizer: Option<Normalizer> = serde_json::from_str(&parse("normalizer")?)
            .map_err(|e| fail(format!("metadata `normalizer`: {e}")))?;
        if let Some(n) = &normalizer
            && (n.mean.len() != n.std.len() || n.mean.len() * n.span != config.d_input)
        {
            return Err(fail(format!(
                "metadata `normalizer` does not cover the model's {} inputs",
                config.d_input
            )));
        }
        let widths = config.widths();
        let mut expected = std::collections::BTreeSet::new();
        let mut weights = Vec::new();
        for (i, pair) in widths.windows(2).enumerate() {
            let (d_in, d_out) = (pair[0], pair[1]);
            let mut get = |name: String, shape: &[usize]| -> Result<Vec<f32>> {
                let view = tensors
                    .tensor(&name)
                    .map_err(|_| fail(format!("tensor `{name}` is missing")))?;
                if view.dtype() != Dtype::F32 {
                    return Err(fail(format!(
                        "tensor `{name}` is {:?}, expected F32",
                        view.dtype()
                    )));
                }
                if view.shape() != shape {
                    return Err(fail(format!(
                        "tensor `{name}` has shape {:?}, expected {shape:?}",
                        view.shape()
                    )));
                }
                expected.insert(name);
                Ok(view
                    .data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect())
            };
            let w = get(format!("layers.{i}.weight"), &[d_out, d_in])?;
            let b = get(format!("layers.{i}.bias"), &[d_out])?;
            weights.push((transpose(&w, d_out, d_in), b));
        }
        if let Some(extra) = tensors.names().into_iter().find(|n| !expected.contains(*n)) {
            return Err(fail(format!(
                "tensor `{extra}` is not part of a {}-layer model",
                widths.len() - 1
            )));
        }
        Ok(Self {
            config,
            classes,
            normalizer,
            weights,
        })
    }

    /// Build the model on `device`.
    ///
    /// # Errors
    /// When the weights do not fit the config (cannot happen after [`Self::from_bytes`]).
    pub fn to_model(&self, device: &Device) -> Result<Mlp> {
        Mlp::from_weights(&self.config, self.weights.clone(), device)
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
fn write_safetensors(
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

    fn model() -> (MlpConfig, Mlp) {
        let config = MlpConfig::new(3, 2).with_hidden(vec![4]);
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
        for ((w1, b1), (w2, b2)) in export.weights.iter().zip(&back.weights) {
            assert_eq!(
                w1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                w2.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
            assert_eq!(b1, b2);
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
        let burn_value = export.weights[0].0[4 + 2];
        let torch_value = f32::from_le_bytes(
            w.data()[(2 * 3 + 1) * 4..(2 * 3 + 1) * 4 + 4]
                .try_into()
                .expect("4 bytes"),
        );
        assert_eq!(burn_value, torch_value);
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
