//! The optimizers (AdamW, Adam, SGD with momentum), with state that can be read back
//! asynchronously and put back: what an autosaved run needs.
//!
//! burn's `ModuleOptimizer` computes the same updates, but its record (`to_record`) reads every
//! moment with a synchronous `into_data`, which panics on WebGPU, and its state is keyed by
//! parameter ids that a rebuilt model does not share. Here each parameter's state is a flat
//! `[n]` tensor pair (on wgpu, a range of its fused group's one state buffer), found by the
//! parameter's position in the module's visit order when saved and restored. The arithmetic is burn 0.22's, operation for operation (AdamW: decoupled decay
//! `w * (1 - lr * wd)` then `- lr * m̂ / (sqrt(v̂) + eps)`; Adam: L2 penalty on the gradient, the
//! bias correction folded into one factor; SGD: L2 penalty, momentum without dampening), with
//! burn's defaults (betas 0.9 / 0.999, epsilon 1e-5), so runs match those of earlier versions.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;

use super::optimizer::OptimizerKind;
use crate::kernels::{
    self,
    adam::{AdamShared, AdamSlot},
    sgd::SgdShared,
};
use crate::{Error, Result};

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;
const EPSILON: f32 = 1e-5;

/// Which parameters weight decay (decoupled or L2) applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecayScope {
    /// Every parameter, as burn's optimizers do (the classifier trainer).
    #[default]
    All,
    /// Parameters of rank 2 and more: weight matrices and embeddings, not biases or LayerNorm
    /// scales and shifts (the grouping transformers' `Trainer` uses; the text trainers).
    Matrices,
}

impl DecayScope {
    /// Whether a parameter of rank `rank` takes weight decay.
    fn includes(self, rank: usize) -> bool {
        self == Self::All || rank >= 2
    }
}

/// One parameter's optimizer state on the device, flattened to `[n]`.
#[derive(Debug, Clone)]
struct Moments {
    /// Updates applied so far (Adam's bias correction).
    time: usize,
    /// First moment (Adam) or velocity (SGD).
    first: Tensor<1>,
    /// Second moment (Adam only).
    second: Option<Tensor<1>>,
}

/// Where one parameter's state lives.
#[derive(Debug, Clone)]
enum State {
    /// Tensors of its own: the composed update's, and state just restored.
    Own(Box<Moments>),
    /// A range of a fused group's state (`Optimizer::groups`): its moments are the `len` values
    /// from `start` of each of the group's moment blocks.
    Grouped {
        group: usize,
        start: usize,
        len: usize,
        time: usize,
    },
}

/// Parameters the fused kernels update in one launch, in visit order, and their state in one
/// tensor: `[moments * total]`, each moment's block holding the members' values in order
/// (`None` for SGD without momentum).
#[derive(Debug, Clone)]
struct Group {
    ids: Vec<ParamId>,
    total: usize,
    state: Option<Tensor<1>>,
}

/// One parameter's optimizer state as host values (an autosave).
#[derive(Debug, Clone, PartialEq)]
pub struct SavedMoments {
    /// Updates applied so far.
    pub time: usize,
    /// First moment or velocity, flattened in burn's layout.
    pub first: Vec<f32>,
    /// Second moment (Adam only).
    pub second: Option<Vec<f32>>,
}

/// An optimizer over every trainable parameter of a module.
#[derive(Debug, Clone)]
pub struct Optimizer {
    kind: OptimizerKind,
    weight_decay: f32,
    /// Which parameters `weight_decay` applies to.
    scope: DecayScope,
    momentum: f64,
    states: HashMap<ParamId, State>,
    /// The fused kernels' groups of the last step (their layout is kept while the same
    /// parameters have gradients, and rebuilt when that changes).
    groups: Vec<Group>,
    /// Run the update as fused WGSL kernels, a group of parameters a launch, where the device
    /// allows (`shaders/adam.wgsl`, `shaders/sgd.wgsl`); off, burn's composed operations only.
    fused: bool,
    /// Parameters per fused launch (`None`: `kernels::group_slots`; tests try others).
    group_slots: Option<usize>,
    /// Most bytes of one group's state buffer (`None`: the device's storage binding limit;
    /// tests try smaller).
    group_bytes: Option<u64>,
}

impl Optimizer {
    /// `weight_decay` is decoupled for AdamW and an L2 penalty for Adam and SGD; `momentum` is
    /// SGD's (0 turns it off).
    pub fn new(kind: OptimizerKind, weight_decay: f32, momentum: f64) -> Self {
        Self {
            kind,
            weight_decay,
            scope: DecayScope::All,
            momentum,
            states: HashMap::new(),
            groups: Vec::new(),
            fused: true,
            group_slots: None,
            group_bytes: None,
        }
    }

    /// Which parameters take weight decay (default: all).
    pub fn set_decay_scope(&mut self, scope: DecayScope) {
        self.scope = scope;
    }

    /// Whether Adam and AdamW may use the fused kernel (default yes). The composed operations
    /// compute the same update; this switch exists to compare the two.
    pub fn set_fused_kernels(&mut self, fused: bool) {
        self.fused = fused;
    }

    /// Tensors of state held per parameter (two per updated parameter for Adam/AdamW, one for
    /// SGD with momentum; parameters without gradients have none), whether in tensors of their
    /// own or in a fused group's.
    pub fn state_tensors(&self) -> usize {
        self.states
            .values()
            .map(|s| match s {
                State::Own(m) => 1 + usize::from(m.second.is_some()),
                State::Grouped { .. } => self.moments(),
            })
            .sum()
    }

    /// Moments kept per value: two for Adam and AdamW, one for SGD with momentum, none without.
    fn moments(&self) -> usize {
        match self.kind {
            OptimizerKind::Adam | OptimizerKind::Adamw => 2,
            OptimizerKind::Sgd => usize::from(self.momentum > 0.0),
        }
    }

    /// Update every parameter of `module` that has a gradient in `grads`, each gradient first
    /// multiplied by `scale` (a device scalar `[1]`: global-norm clipping's factor) where given.
    /// The fused kernels apply the scale as they read the gradient; the composed update
    /// multiplies first; the two give the same `f32` product.
    pub fn step<M: Module>(
        &mut self,
        learning_rate: f64,
        module: M,
        grads: GradientsParams,
        scale: Option<&Tensor<1>>,
    ) -> M {
        self.step_with(learning_rate, module, grads, scale, false)
    }

    /// [`Self::step`] with dynamic loss scaling's factor (`kernels::clip::dynamic_factor`), of
    /// which exactly 0 means "skip": the gradients overflowed, and every parameter's weights and
    /// moments stay as they were, as PyTorch's `GradScaler` skips `optimizer.step()`. The fused
    /// kernels check the factor as they read it; the composed update (a parameter too large for
    /// a fused group: BERT-base's word embeddings under WebGPU's default 128 MiB binding) keeps
    /// its old values where the factor is 0, on the device, with no read-back. Known, left: the
    /// step still counts towards Adam's bias correction (the host cannot tell without a read).
    pub(crate) fn step_or_skip<M: Module>(
        &mut self,
        learning_rate: f64,
        module: M,
        grads: GradientsParams,
        factor: &Tensor<1>,
    ) -> M {
        self.step_with(learning_rate, module, grads, Some(factor), true)
    }

    fn step_with<M: Module>(
        &mut self,
        learning_rate: f64,
        module: M,
        mut grads: GradientsParams,
        scale: Option<&Tensor<1>>,
        skippable: bool,
    ) -> M {
        let mut mapper = Update {
            optim: self,
            grads: &mut grads,
            lr: learning_rate,
            scale,
            skippable,
            pending: Vec::new(),
        };
        let module = module.map(&mut mapper);
        let pending = std::mem::take(&mut mapper.pending);
        if !pending.is_empty() {
            self.fused_step(learning_rate, pending, scale);
        }
        module
    }

    /// The state of every parameter of `module`, in its visit order (`None` for a parameter
    /// never updated), read back asynchronously.
    ///
    /// # Errors
    /// [`Error::Readback`] when the device fails to return a tensor.
    pub async fn save<M: Module>(&self, module: &M) -> Result<Vec<Option<SavedMoments>>> {
        let mut saved = Vec::new();
        // Each group's state is read once, for all its members.
        let mut read_groups: HashMap<usize, Vec<f32>> = HashMap::new();
        for id in param_ids(module) {
            saved.push(match self.states.get(&id) {
                Some(State::Own(m)) => Some(SavedMoments {
                    time: m.time,
                    first: read(m.first.clone()).await?,
                    second: match &m.second {
                        Some(v) => Some(read(v.clone()).await?),
                        None => None,
                    },
                }),
                Some(&State::Grouped {
                    group,
                    start,
                    len,
                    time,
                }) => {
                    let g = &self.groups[group];
                    if let Entry::Vacant(entry) = read_groups.entry(group) {
                        let state = g.state.clone().expect("a grouped parameter has state");
                        entry.insert(read(state).await?);
                    }
                    let values = &read_groups[&group];
                    let block = |k: usize| values[k * g.total + start..][..len].to_vec();
                    Some(SavedMoments {
                        time,
                        first: block(0),
                        second: (self.moments() == 2).then(|| block(1)),
                    })
                }
                None => None,
            });
        }
        Ok(saved)
    }

    /// Put back state saved by [`Self::save`] for `module` (the same architecture; its
    /// parameters may have new ids), on `device`.
    ///
    /// # Errors
    /// [`Error::Config`] when the count or sizes do not match the module's parameters.
    pub fn restore<M: Module>(
        &mut self,
        module: &M,
        saved: Vec<Option<SavedMoments>>,
        device: &Device,
    ) -> Result<()> {
        let params = param_sizes(module);
        if params.len() != saved.len() {
            return Err(Error::config(
                "checkpoint",
                format!(
                    "optimizer state for {} tensors, the model has {}",
                    saved.len(),
                    params.len()
                ),
            ));
        }
        let device = device.clone().without_autodiff();
        let mut states = HashMap::new();
        for (i, ((id, size), state)) in params.into_iter().zip(saved).enumerate() {
            let Some(state) = state else { continue };
            let fits = state.first.len() == size
                && state.second.as_ref().is_none_or(|v| v.len() == size)
                && state.second.is_some()
                    == matches!(self.kind, OptimizerKind::Adam | OptimizerKind::Adamw);
            if !fits {
                return Err(Error::config(
                    "checkpoint",
                    format!(
                        "optimizer state of tensor {i} does not fit a tensor of {size} values for {:?}",
                        self.kind
                    ),
                ));
            }
            let upload = |v: Vec<f32>| Tensor::<1>::from_data(TensorData::new(v, [size]), &device);
            states.insert(
                id,
                State::Own(Box::new(Moments {
                    time: state.time,
                    first: upload(state.first),
                    second: state.second.map(upload),
                })),
            );
        }
        self.states = states;
        self.groups.clear();
        Ok(())
    }
}

async fn read(t: Tensor<1>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(Error::readback("optimizer state"))?
        .try_to_vec::<f32>()
        .map_err(|e| Error::Readback {
            what: "optimizer state",
            reason: format!("{e:?}"),
        })
}

/// The float parameters of a module in visit order, with their sizes.
struct Params(Vec<(ParamId, usize)>);

impl ModuleVisitor for Params {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push((param.id, param.shape().num_elements()));
    }
}

fn param_sizes<M: Module>(module: &M) -> Vec<(ParamId, usize)> {
    let mut visitor = Params(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

fn param_ids<M: Module>(module: &M) -> Vec<ParamId> {
    param_sizes(module).into_iter().map(|(id, _)| id).collect()
}

struct Update<'a> {
    optim: &'a mut Optimizer,
    grads: &'a mut GradientsParams,
    lr: f64,
    scale: Option<&'a Tensor<1>>,
    /// Whether a `scale` of 0 skips the update ([`Optimizer::step_or_skip`]).
    skippable: bool,
    /// Parameters left to the fused kernels, in visit order.
    pending: Vec<Pending>,
}

/// A parameter the fused kernels update after the module's visit: its value (writable; the
/// module holds a clone, which sees the update), its gradient and decay.
struct Pending {
    id: ParamId,
    value: Tensor<1>,
    grad: Tensor<1>,
    decay: f32,
}

impl ModuleMapper for Update<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let checkpointing = tensor.gradient_checkpointing_strategy();
        let value = tensor.inner();
        let grad = grad.to_device(&value.device());
        let shape = value.shape();
        let n = shape.num_elements();
        let flat_value: Tensor<1> = value.reshape([n]);
        let flat_grad: Tensor<1> = grad.reshape([n]);
        let decay = if self.optim.scope.includes(D) {
            self.optim.weight_decay
        } else {
            0.0
        };
        let scale = self
            .scale
            .map(|s| s.clone().to_device(&flat_value.device()));
        let fused = self.optim.fused
            && n > 0
            && u32::try_from(n).is_ok()
            && n <= self.optim.group_values(&flat_value.device())
            && scale.as_ref().is_none_or(|s| kernels::applies(&[s]))
            && kernels::applies(&[&flat_value, &flat_grad]);
        let updated = if fused {
            let value = kernels::writable(flat_value);
            self.pending.push(Pending {
                id,
                value: value.clone(),
                grad: flat_grad,
                decay,
            });
            value
        } else {
            let state = self.optim.take_own(id);
            let grad = Gradient {
                value: flat_grad,
                scale,
                skippable: self.skippable,
            };
            let (updated, state) = self.optim.update(self.lr, decay, flat_value, grad, state);
            if let Some(state) = state {
                self.optim.states.insert(id, State::Own(Box::new(state)));
            }
            updated
        };
        let mut updated = Tensor::<D>::from_inner(updated.reshape(shape));
        if let Some(strategy) = checkpointing {
            updated = updated.with_gradient_checkpointing_strategy(strategy);
        }
        if require_grad {
            updated = updated.require_grad();
        }
        Param::from_mapped_value(id, updated, mapper)
    }
}

/// One parameter's gradient, flattened, and the factor to scale it by first.
struct Gradient {
    value: Tensor<1>,
    scale: Option<Tensor<1>>,
    /// Whether a factor of 0 skips the update ([`Optimizer::step_or_skip`]).
    skippable: bool,
}

impl Optimizer {
    /// [`Self::update_unmasked`], where a skippable factor of 0 keeps the weights and moments
    /// as they were (both computed, one kept per value by a mask: no read-back).
    fn update(
        &self,
        lr: f64,
        decay: f32,
        value: Tensor<1>,
        grad: Gradient,
        state: Option<Moments>,
    ) -> (Tensor<1>, Option<Moments>) {
        let skip = match (&grad.scale, grad.skippable) {
            (Some(factor), true) => factor.clone().equal_elem(0.0),
            _ => return self.update_unmasked(lr, decay, value, grad, state),
        };
        let before = (
            value.clone(),
            state.as_ref().map(|s| (s.first.clone(), s.second.clone())),
        );
        let (updated, state) = self.update_unmasked(lr, decay, value, grad, state);
        let keep = skip.expand(updated.dims());
        let updated = updated.mask_where(keep.clone(), before.0);
        let state = state.map(|mut s| {
            // A first step's moments were zeros.
            let (first, second) = before.1.unwrap_or_else(|| {
                (
                    s.first.zeros_like(),
                    s.second.as_ref().map(Tensor::zeros_like),
                )
            });
            s.first = s.first.mask_where(keep.clone(), first);
            s.second = match (s.second, second) {
                (Some(new), Some(old)) => Some(new.mask_where(keep.clone(), old)),
                (new, _) => new,
            };
            s
        });
        (updated, state)
    }

    /// One parameter's update with weight decay `decay`, as burn 0.22 computes it.
    fn update_unmasked(
        &self,
        lr: f64,
        decay: f32,
        value: Tensor<1>,
        grad: Gradient,
        state: Option<Moments>,
    ) -> (Tensor<1>, Option<Moments>) {
        let mut grad = match grad.scale {
            Some(scale) => grad.value * scale,
            None => grad.value,
        };
        match self.kind {
            OptimizerKind::Adamw => {
                let state = adaptive_moments(grad, state);
                let t = state.time as i32;
                let m_hat = state.first.clone().div_scalar(1f32 - BETA_1.powi(t));
                let v = state.second.clone().expect("Adam keeps a second moment");
                let v_hat = v.div_scalar(1f32 - BETA_2.powi(t));
                let delta = m_hat.div(v_hat.sqrt().add_scalar(EPSILON));
                let decay = lr * f64::from(decay);
                let decayed = if decay == 0.0 {
                    value
                } else {
                    value.mul_scalar(1.0 - decay)
                };
                (decayed - delta.mul_scalar(lr), Some(state))
            }
            OptimizerKind::Adam => {
                if decay > 0.0 {
                    grad = value.clone().mul_scalar(decay).add(grad);
                }
                let state = adaptive_moments(grad, state);
                let t = state.time as i32;
                let correction_2 = (1.0 - BETA_2.powi(t)).sqrt();
                let factor = correction_2 / (1.0 - BETA_1.powi(t));
                let v = state.second.clone().expect("Adam keeps a second moment");
                let delta = state
                    .first
                    .clone()
                    .mul_scalar(factor)
                    .div(v.sqrt().add_scalar(EPSILON * correction_2));
                (value - delta.mul_scalar(lr), Some(state))
            }
            OptimizerKind::Sgd => {
                if decay > 0.0 {
                    grad = value.clone().mul_scalar(decay).add(grad);
                }
                let state = (self.momentum > 0.0).then(|| {
                    let velocity = match state {
                        Some(s) => grad
                            .clone()
                            .mul_scalar(1.0)
                            .add(s.first.mul_scalar(self.momentum)),
                        None => grad.clone(),
                    };
                    Moments {
                        time: 0,
                        first: velocity,
                        second: None,
                    }
                });
                let step = state.as_ref().map_or(grad, |s| s.first.clone());
                (value - step.mul_scalar(lr), state)
            }
        }
    }
}

impl Optimizer {
    /// A parameter's state as tensors of its own, taken out (a grouped one's range copied out
    /// of its group's state: the composed update's way in).
    fn take_own(&mut self, id: ParamId) -> Option<Moments> {
        match self.states.remove(&id)? {
            State::Own(m) => Some(*m),
            State::Grouped {
                group,
                start,
                len,
                time,
            } => {
                let g = &self.groups[group];
                let state = g.state.clone().expect("a grouped parameter has state");
                let block = |k: usize| {
                    let from = k * g.total + start;
                    state.clone().slice(from..from + len)
                };
                Some(Moments {
                    time,
                    first: block(0),
                    second: (self.moments() == 2).then(|| block(1)),
                })
            }
        }
    }

    /// Parameters per fused launch.
    fn slots(&self) -> usize {
        self.group_slots.unwrap_or_else(kernels::group_slots).max(1)
    }

    /// Most values one group's state buffer may cover on `device` (its storage binding limit
    /// over the moments' bytes per value).
    fn group_values(&self, device: &Device) -> usize {
        let bytes = self
            .group_bytes
            .unwrap_or_else(|| kernels::max_storage_binding(device));
        match self.moments() {
            0 => usize::MAX,
            m => usize::try_from(bytes / (4 * m as u64)).unwrap_or(usize::MAX),
        }
    }

    /// How many of `pending` (in visit order) each group takes: at most [`Self::slots`], and
    /// no more values than one state buffer may hold on the device (its storage binding limit:
    /// MiniLM's word embeddings alone are 94 MB of moments; BERT-base's, 188 MB, must not share
    /// a buffer with more). A parameter too large for one on its own never gets here: the
    /// composed update takes it, its moments in tensors of their own.
    fn layout(&self, pending: &[Pending]) -> Vec<usize> {
        let slots = self.slots();
        let values = self.group_values(&pending[0].value.device());
        let mut sizes = Vec::new();
        let (mut count, mut total) = (0, 0usize);
        for p in pending {
            let len = p.value.shape().num_elements();
            if count == slots || (count > 0 && total.saturating_add(len) > values) {
                sizes.push(count);
                (count, total) = (0, 0);
            }
            count += 1;
            total += len;
        }
        if count > 0 {
            sizes.push(count);
        }
        sizes
    }

    /// Lay the groups out for `pending` (as [`Self::layout`] says) where they differ from the
    /// last step's: every grouped state is taken out, then each new group's state is its
    /// members' moments (zeros for a parameter without state yet) joined, or zeros in one
    /// allocation where no member has state (the first step: no second copy of the moments).
    fn regroup(&mut self, pending: &[Pending], sizes: &[usize]) {
        let moments = self.moments();
        let in_group = |id: &ParamId, index: usize| {
            moments == 0
                || matches!(self.states.get(id), Some(State::Grouped { group, .. }) if *group == index)
        };
        let chunks = || {
            sizes.iter().scan(0, |start, n| {
                let chunk = &pending[*start..*start + n];
                *start += n;
                Some(chunk)
            })
        };
        let same = self.groups.len() == sizes.len()
            && self
                .groups
                .iter()
                .zip(chunks())
                .enumerate()
                .all(|(index, (g, chunk))| {
                    g.ids.iter().eq(chunk.iter().map(|p| &p.id))
                        && g.ids.iter().all(|id| in_group(id, index))
                });
        if same {
            return;
        }
        let grouped: Vec<ParamId> = self
            .states
            .iter()
            .filter(|(_, s)| matches!(s, State::Grouped { .. }))
            .map(|(id, _)| *id)
            .collect();
        for id in grouped {
            if let Some(m) = self.take_own(id) {
                self.states.insert(id, State::Own(Box::new(m)));
            }
        }
        self.groups.clear();
        for chunk in chunks() {
            let index = self.groups.len();
            let device = chunk[0].value.device();
            let mut owned = Vec::with_capacity(chunk.len());
            let mut start = 0;
            for p in chunk {
                let len = p.value.shape().num_elements();
                let own = match self.states.remove(&p.id) {
                    Some(State::Own(m)) => Some(*m),
                    _ => None,
                };
                if moments > 0 {
                    let time = own.as_ref().map_or(0, |m| m.time);
                    let place = State::Grouped {
                        group: index,
                        start,
                        len,
                        time,
                    };
                    self.states.insert(p.id, place);
                }
                owned.push((len, own));
                start += len;
            }
            let state = (moments > 0).then(|| {
                if owned.iter().all(|(_, own)| own.is_none()) {
                    return Tensor::zeros([moments * start], &device);
                }
                let mut blocks: Vec<Vec<Tensor<1>>> = vec![Vec::new(); moments];
                for (len, own) in owned {
                    let mut parts = own
                        .map(|m| [Some(m.first), m.second])
                        .unwrap_or_default()
                        .into_iter();
                    for block in &mut blocks {
                        let part = parts.next().flatten();
                        block.push(part.unwrap_or_else(|| Tensor::zeros([len], &device)));
                    }
                }
                Tensor::cat(blocks.concat(), 0)
            });
            self.groups.push(Group {
                ids: chunk.iter().map(|p| p.id).collect(),
                total: start,
                state,
            });
        }
    }

    /// The fused update of every parameter in `pending`: one launch per group.
    fn fused_step(&mut self, lr: f64, pending: Vec<Pending>, scale: Option<&Tensor<1>>) {
        let sizes = self.layout(&pending);
        self.regroup(&pending, &sizes);
        let mut pending = pending.into_iter();
        for (index, size) in sizes.into_iter().enumerate() {
            let chunk: Vec<Pending> = pending.by_ref().take(size).collect();
            let scale = scale.map(|s| s.clone().to_device(&chunk[0].value.device()));
            let values: Vec<Tensor<1>> = chunk.iter().map(|p| p.value.clone()).collect();
            let decays: Vec<f32> = chunk.iter().map(|p| p.decay).collect();
            let grads: Vec<Tensor<1>> = chunk.into_iter().map(|p| p.grad).collect();
            let state = self.groups[index].state.take();
            self.groups[index].state = match self.kind {
                OptimizerKind::Adam | OptimizerKind::Adamw => {
                    let slots: Vec<AdamSlot> = self.groups[index]
                        .ids
                        .clone()
                        .iter()
                        .zip(&decays)
                        .map(|(id, decay)| self.adam_slot(*id, lr, *decay))
                        .collect();
                    let shared = AdamShared {
                        decoupled: self.kind == OptimizerKind::Adamw,
                        lr: lr as f32,
                        beta_1: BETA_1,
                        one_minus_beta_1: 1.0 - BETA_1,
                        beta_2: BETA_2,
                        one_minus_beta_2: 1.0 - BETA_2,
                    };
                    let state = state.expect("Adam's group has state");
                    Some(kernels::adam::step_group(
                        &shared, &slots, &values, grads, state, scale,
                    ))
                }
                OptimizerKind::Sgd => {
                    let shared = SgdShared {
                        lr: lr as f32,
                        momentum: self.momentum as f32,
                    };
                    kernels::sgd::step_group(shared, &decays, &values, grads, state, scale)
                }
            };
        }
    }

    /// One parameter's settings for this step of a fused Adam group, its step count advanced:
    /// the scalars the composed update uses, computed the same way on the host.
    fn adam_slot(&mut self, id: ParamId, lr: f64, decay: f32) -> AdamSlot {
        let Some(State::Grouped { time, .. }) = self.states.get_mut(&id) else {
            unreachable!("every member of a group has grouped state")
        };
        *time += 1;
        let t = *time as i32;
        let decoupled = self.kind == OptimizerKind::Adamw;
        let adam_correction_2 = (1.0 - BETA_2.powi(t)).sqrt();
        AdamSlot {
            decay_factor: (1.0 - lr * f64::from(decay)) as f32,
            weight_decay: if decoupled { 0.0 } else { decay },
            correction_1: 1f32 - BETA_1.powi(t),
            correction_2: 1f32 - BETA_2.powi(t),
            moment_factor: adam_correction_2 / (1.0 - BETA_1.powi(t)),
            epsilon: if decoupled {
                EPSILON
            } else {
                EPSILON * adam_correction_2
            },
        }
    }
}

/// Adam's moment update (burn's `AdaptiveMomentum`, without AMSGrad).
fn adaptive_moments(grad: Tensor<1>, state: Option<Moments>) -> Moments {
    match state {
        Some(mut s) => {
            s.first = s
                .first
                .mul_scalar(BETA_1)
                .add(grad.clone().mul_scalar(1.0 - BETA_1));
            let v = s.second.take().expect("Adam keeps a second moment");
            s.second = Some(
                v.mul_scalar(BETA_2)
                    .add(grad.square().mul_scalar(1.0 - BETA_2)),
            );
            s.time += 1;
            s
        }
        None => Moments {
            time: 1,
            first: grad.clone().mul_scalar(1.0 - BETA_1),
            second: Some(grad.square().mul_scalar(1.0 - BETA_2)),
        },
    }
}

#[cfg(test)]
mod tests {
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::decay::WeightDecayConfig;
    use burn::optim::momentum::MomentumConfig;
    use burn::optim::{AdamConfig, AdamWConfig, SgdConfig};

    use super::*;

    fn values(layer: &Linear) -> Vec<f32> {
        let mut v: Vec<f32> = layer.weight.val().into_data().try_to_vec().expect("f32");
        v.extend(
            layer
                .bias
                .as_ref()
                .expect("bias")
                .val()
                .into_data()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
        v
    }

    fn grads(layer: &Linear, i: usize, device: &Device) -> GradientsParams {
        let x = Tensor::<2>::from_floats(
            [[0.3 * i as f32, -1.0, 2.0], [1.0, 0.5, -0.25 * i as f32]],
            device,
        );
        GradientsParams::from_grads(layer.forward(x).powf_scalar(2.0).sum().backward(), layer)
    }

    /// Ten steps of ours and of burn's `ModuleOptimizer` from the same weights agree (to the
    /// last bits), for each kind, with weight decay and a changing learning rate.
    #[test]
    fn updates_match_burns_optimizers() {
        let device = Device::flex().autodiff();
        for kind in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            let start: Linear = LinearConfig::new(3, 2).init(&device);
            let mut burns = match kind {
                OptimizerKind::Adamw => AdamWConfig::new().with_weight_decay(0.1).init(),
                OptimizerKind::Adam => AdamConfig::new()
                    .with_weight_decay(Some(WeightDecayConfig::new(0.1)))
                    .init(),
                OptimizerKind::Sgd => SgdConfig::new()
                    .with_weight_decay(Some(WeightDecayConfig::new(0.1)))
                    .with_momentum(Some(
                        MomentumConfig::new().with_momentum(0.9).with_dampening(0.0),
                    ))
                    .init(),
            };
            let mut ours = Optimizer::new(kind, 0.1, 0.9);
            let (mut a, mut b) = (start.clone(), start);
            for i in 0..10 {
                let lr = 0.01 * (1.0 + i as f64 / 10.0);
                let ga = grads(&a, i, &device);
                a = burns.step(lr, a, ga);
                let gb = grads(&b, i, &device);
                b = ours.step(lr, b, gb, None);
            }
            let (va, vb) = (values(&a), values(&b));
            for (x, y) in va.iter().zip(&vb) {
                assert!(
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0),
                    "{kind:?}: {va:?} vs {vb:?}"
                );
            }
        }
    }

    /// Dynamic loss scaling's skip (`step_or_skip` with a factor of 0) on the composed update
    /// (flex here; on wgpu a parameter too large for a fused group): the weights and every
    /// moment stay exactly as they were, on a first step and after one; the same factor through
    /// the plain `step` moves them (AdamW's decay, the moments' momentum), so the mask is what
    /// keeps them. A factor of 1 through `step_or_skip` is `step`.
    #[test]
    fn a_zero_factor_skips_the_composed_update() {
        let device = Device::flex().autodiff();
        let inner = Device::flex();
        let factor = |f: f32| Tensor::<1>::from_floats([f], &inner);
        let moments = |o: &Optimizer, l: &Linear| {
            pollster::block_on(o.save(l))
                .expect("save")
                .into_iter()
                .map(|m| m.map(|m| (m.first, m.second)))
                .collect::<Vec<_>>()
        };
        for kind in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            let start: Linear = LinearConfig::new(3, 2).init(&device);
            let mut optim = Optimizer::new(kind, 0.1, 0.9);
            let skipped =
                optim.step_or_skip(0.01, start.clone(), grads(&start, 1, &device), &factor(0.0));
            assert_eq!(
                values(&skipped),
                values(&start),
                "{kind:?}: a skipped first step"
            );
            for m in moments(&optim, &skipped).into_iter().flatten() {
                assert!(
                    m.0.iter().chain(m.1.iter().flatten()).all(|&v| v == 0.0),
                    "{kind:?}: {m:?}"
                );
            }

            let mut plain = Optimizer::new(kind, 0.1, 0.9);
            let mut ours = Optimizer::new(kind, 0.1, 0.9);
            let a = plain.step(
                0.01,
                start.clone(),
                grads(&start, 1, &device),
                Some(&factor(1.0)),
            );
            let b = ours.step_or_skip(0.01, start.clone(), grads(&start, 1, &device), &factor(1.0));
            assert_eq!(values(&a), values(&b), "{kind:?}: a factor of 1 steps");
            let before = (values(&b), moments(&ours, &b));
            let b = ours.step_or_skip(0.01, b.clone(), grads(&b, 2, &device), &factor(0.0));
            assert_eq!(
                (values(&b), moments(&ours, &b)),
                before,
                "{kind:?}: a skipped step"
            );
            let a = plain.step(0.01, a.clone(), grads(&a, 2, &device), Some(&factor(0.0)));
            assert_ne!(
                values(&a),
                before.0,
                "{kind:?}: unmasked, a zero gradient still moves"
            );
        }
    }

    /// State saved and restored into a rebuilt model (new parameter ids) continues exactly.
    #[test]
    fn saved_state_continues_exactly_on_a_rebuilt_model() {
        let device = Device::flex().autodiff();
        for kind in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            let mut layer: Linear = LinearConfig::new(3, 2).init(&device);
            let mut optim = Optimizer::new(kind, 0.01, 0.9);
            for i in 0..3 {
                let g = grads(&layer, i, &device);
                layer = optim.step(0.05, layer, g, None);
            }
            let saved = pollster::block_on(optim.save(&layer)).expect("save");
            // A rebuilt layer: same values, new ids.
            let mut rebuilt: Linear = LinearConfig::new(3, 2).init(&device);
            let v = values(&layer);
            rebuilt.weight =
                Param::from_tensor(Tensor::<1>::from_floats(&v[..6], &device).reshape([3, 2]));
            rebuilt.bias = Some(Param::from_tensor(Tensor::<1>::from_floats(
                &v[6..],
                &device,
            )));
            let mut resumed = Optimizer::new(kind, 0.01, 0.9);
            resumed.restore(&rebuilt, saved, &device).expect("restore");
            for i in 3..6 {
                let g = grads(&layer, i, &device);
                layer = optim.step(0.05, layer, g, None);
                let g = grads(&rebuilt, i, &device);
                rebuilt = resumed.step(0.05, rebuilt, g, None);
            }
            assert_eq!(values(&layer), values(&rebuilt), "{kind:?}");
        }
    }

    #[test]
    fn mismatched_state_is_refused() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let mut optim = Optimizer::new(OptimizerKind::Adamw, 0.0, 0.0);
        let wrong = vec![Some(SavedMoments {
            time: 1,
            first: vec![0.0; 5],
            second: Some(vec![0.0; 5]),
        })];
        assert!(optim.restore(&layer, wrong, &device).is_err());
        let sized = vec![
            Some(SavedMoments {
                time: 1,
                first: vec![0.0; 6],
                second: None,
            }),
            None,
        ];
        let e = optim
            .restore(&layer, sized, &device)
            .expect_err("no second moment");
        assert!(e.to_string().contains("tensor 0"), "{e}");
    }

    /// With zero gradients every kind's update is its weight decay alone: scoped to matrices,
    /// the weight matrix decays and the bias stays bit for bit; unscoped, both decay. AdamW's
    /// decoupled decay is exactly `w (1 - lr wd)`.
    #[test]
    fn weight_decay_reaches_only_the_scoped_parameters() {
        let device = Device::flex().autodiff();
        let layer: Linear = LinearConfig::new(3, 2).init(&device);
        let inner = device.clone().without_autodiff();
        let zeros = || {
            let mut g = GradientsParams::new();
            g.register(layer.weight.id, Tensor::<2>::zeros([3, 2], &inner));
            let bias = layer.bias.as_ref().expect("bias");
            g.register(bias.id, Tensor::<1>::zeros([2], &inner));
            g
        };
        let start = values(&layer);
        for kind in [
            OptimizerKind::Adamw,
            OptimizerKind::Adam,
            OptimizerKind::Sgd,
        ] {
            for scope in [DecayScope::All, DecayScope::Matrices] {
                let mut optim = Optimizer::new(kind, 0.1, 0.9);
                optim.set_decay_scope(scope);
                let after = values(&optim.step(0.5, layer.clone(), zeros(), None));
                let (weight, bias) = after.split_at(6);
                for (w, s) in weight.iter().zip(&start) {
                    assert_ne!(w, s, "{kind:?} {scope:?}: the matrix decays");
                    if kind == OptimizerKind::Adamw {
                        assert_eq!(
                            *w,
                            s * (1.0 - 0.5 * f64::from(0.1f32)) as f32,
                            "{kind:?} {scope:?}"
                        );
                    }
                }
                let kept = bias == &start[6..];
                assert_eq!(
                    kept,
                    scope == DecayScope::Matrices,
                    "{kind:?} {scope:?}: bias"
                );
            }
        }
    }
}

/// The fused optimizer kernels (`shaders/adam.wgsl`, `shaders/sgd.wgsl`) against the composed
/// updates they replace,
/// on a wgpu device (CI: Debian's lavapipe).
#[cfg(all(test, feature = "wgpu"))]
mod fused_tests {
    use burn::module::Module;

    use super::*;
    use crate::rng::Rng;

    #[derive(Module, Debug)]
    struct Weights {
        w: Param<Tensor<1>>,
    }

    fn random(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (rng.next_f32() * 2.0 - 1.0) * scale)
            .collect()
    }

    fn read(t: Tensor<1>) -> Vec<f32> {
        pollster::block_on(t.into_data_async())
            .expect("read")
            .try_to_vec()
            .expect("f32")
    }

    /// How the gradients reach the update: scaled by a device factor (clipping) or not, and
    /// whether weight decay reaches this vector (`DecayScope::All`) or not (`Matrices`).
    #[derive(Debug, Clone, Copy)]
    struct Variant {
        scaled: bool,
        scope: DecayScope,
    }

    const PLAIN: Variant = Variant {
        scaled: false,
        scope: DecayScope::All,
    };

    /// Run `steps` steps with the kernel on or off from the same weights and gradients;
    /// `keep` holds a clone of the weights across each step (as the best epoch's copy does), so
    /// the kernel must not write in place.
    fn run(
        (kind, momentum): (OptimizerKind, f64),
        variant: Variant,
        fused: bool,
        keep: bool,
        n: usize,
        steps: usize,
        device: &Device,
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = Rng::new(n as u64);
        let start = random(&mut rng, n, 1.0);
        let mut weights = Weights {
            w: Param::from_tensor(Tensor::<1>::from_floats(start.as_slice(), device)),
        };
        let mut optim = Optimizer::new(kind, 0.05, momentum);
        optim.set_fused_kernels(fused);
        optim.set_decay_scope(variant.scope);
        let mut kept = Vec::new();
        for i in 0..steps {
            let g = Tensor::<1>::from_floats(random(&mut rng, n, 0.5).as_slice(), device);
            let mut grads = GradientsParams::new();
            grads.register(weights.w.id, g);
            if keep {
                kept.push(weights.w.val());
            }
            let lr = 0.01 * (1.0 + i as f64 / 4.0);
            let scale = Tensor::<1>::from_floats([0.3 + 0.25 * i as f32], device);
            weights = optim.step(lr, weights, grads, variant.scaled.then_some(&scale));
        }
        // A kept copy must still hold the values it had when kept.
        if keep {
            assert_eq!(
                read(kept.swap_remove(0)),
                start,
                "{kind:?}: the weights were written in place"
            );
        }
        let saved = pollster::block_on(optim.save(&weights)).expect("save");
        let (first, second) = match saved.into_iter().next().flatten() {
            Some(s) => (s.first, s.second.unwrap_or_default()),
            None => (Vec::new(), Vec::new()),
        };
        (read(weights.w.val()), first, second)
    }

    fn assert_close(what: &str, fused: &[f32], composed: &[f32]) {
        assert_eq!(fused.len(), composed.len(), "{what}: lengths");
        let worst = fused
            .iter()
            .zip(composed)
            .enumerate()
            .map(|(i, (a, b))| (i, (a - b).abs() / b.abs().max(1e-3)))
            .fold((0, 0.0f32), |w, d| if d.1 > w.1 { d } else { w });
        println!(
            "{what}: max relative difference {:.2e} at index {}",
            worst.1, worst.0
        );
        assert!(
            worst.1 <= 1e-5,
            "{what}: index {} differs: fused {} vs composed {} (relative {:.2e})",
            worst.0,
            fused[worst.0],
            composed[worst.0],
            worst.1
        );
    }

    #[test]
    fn fused_optimizers_match_the_composed_update() {
        let device = kernels::test_device();
        // Sizes around the workgroup (256) and, last, one past 65,535 workgroups: the 2-D grid.
        let sizes = [
            (1, 8),
            (255, 8),
            (256, 8),
            (257, 8),
            (10_007, 8),
            (65_535 * 256 + 3, 2),
        ];
        let kinds = [
            (OptimizerKind::Adamw, 0.0),
            (OptimizerKind::Adam, 0.0),
            (OptimizerKind::Sgd, 0.9),
            (OptimizerKind::Sgd, 0.0),
        ];
        for kind in kinds {
            for (n, steps) in sizes {
                for keep in [false, true] {
                    compare(kind, PLAIN, keep, n, steps, &device);
                }
            }
            // Clipping's factor and the decay scope, on one size.
            for scaled in [false, true] {
                for scope in [DecayScope::All, DecayScope::Matrices] {
                    compare(kind, Variant { scaled, scope }, false, 257, 8, &device);
                }
            }
        }
    }

    fn compare(
        kind: (OptimizerKind, f64),
        variant: Variant,
        keep: bool,
        n: usize,
        steps: usize,
        device: &Device,
    ) {
        let launched = kernels::test_util::launched;
        let before = launched();
        let fused = run(kind, variant, true, keep, n, steps, device);
        assert_eq!(launched() - before, steps, "{kind:?}: one kernel per step");
        let before = launched();
        let composed = run(kind, variant, false, keep, n, steps, device);
        assert_eq!(launched(), before, "{kind:?}: no kernel when switched off");
        let what = format!("{kind:?}, {variant:?}, {n} values, {steps} steps, kept copy {keep}");
        assert_close(&format!("{what}: weights"), &fused.0, &composed.0);
        assert_close(&format!("{what}: first moment"), &fused.1, &composed.1);
        assert_close(&format!("{what}: second moment"), &fused.2, &composed.2);
    }

    /// Parameters of several shapes and sizes, for the grouped launches.
    #[derive(Module, Debug)]
    struct Many {
        a: Param<Tensor<1>>,
        b: Param<Tensor<2>>,
        c: Param<Tensor<1>>,
        d: Param<Tensor<1>>,
        e: Param<Tensor<2>>,
    }

    const MANY: [&[usize]; 5] = [&[1], &[16, 17], &[257], &[5], &[300, 40]];

    fn many(rng: &mut Rng, device: &Device) -> Many {
        let mut tensor = |dims: &[usize]| {
            let n = dims.iter().product();
            Tensor::<1>::from_floats(random(rng, n, 1.0).as_slice(), device)
        };
        Many {
            a: Param::from_tensor(tensor(MANY[0])),
            b: Param::from_tensor(tensor(MANY[1]).reshape([16, 17])),
            c: Param::from_tensor(tensor(MANY[2])),
            d: Param::from_tensor(tensor(MANY[3])),
            e: Param::from_tensor(tensor(MANY[4]).reshape([300, 40])),
        }
    }

    /// Every parameter's values, in visit order.
    fn many_values(m: &Many) -> Vec<Vec<f32>> {
        vec![
            read(m.a.val()),
            read(m.b.val().reshape([-1])),
            read(m.c.val()),
            read(m.d.val()),
            read(m.e.val().reshape([-1])),
        ]
    }

    /// Step `i`'s gradients: `c` has none before step 3 (its state starts later, with its own
    /// step count) and `d` none at step 5 (its state must survive the step it sits out).
    fn many_grads(m: &Many, i: usize, rng: &mut Rng, device: &Device) -> (GradientsParams, usize) {
        let mut grads = GradientsParams::new();
        let mut g = |dims: &[usize]| {
            let n = dims.iter().product();
            Tensor::<1>::from_floats(random(rng, n, 0.5).as_slice(), device)
        };
        grads.register(m.a.id, g(MANY[0]));
        grads.register(m.b.id, g(MANY[1]).reshape([16, 17]));
        let mut count = 3;
        if i >= 3 {
            grads.register(m.c.id, g(MANY[2]));
            count += 1;
        }
        if i != 5 {
            grads.register(m.d.id, g(MANY[3]));
            count += 1;
        }
        grads.register(m.e.id, g(MANY[4]).reshape([300, 40]));
        (grads, count - 1)
    }

    /// Steps of `Many` with the given kernels setting and group width from the same weights,
    /// gradients and clipping factors; a copy of the optimizer is saved after step 4 and
    /// restored into a rebuilt module (new ids) that takes the remaining steps beside the
    /// original. Returns the weights, the saved state at the end, the resumed copy's weights and
    /// our kernels' launches.
    #[allow(clippy::type_complexity)]
    fn run_many(
        (kind, momentum): (OptimizerKind, f64),
        fused: bool,
        (slots, values): (Option<usize>, Option<usize>),
        device: &Device,
    ) -> (
        Vec<Vec<f32>>,
        Vec<Option<SavedMoments>>,
        Vec<Vec<f32>>,
        usize,
        usize,
    ) {
        let mut rng = Rng::new(7);
        let mut module = many(&mut rng, device);
        let fresh = |optim: &mut Optimizer| {
            optim.set_fused_kernels(fused);
            optim.set_decay_scope(DecayScope::Matrices);
            optim.group_slots = slots;
            optim.group_bytes = values.map(|v| (v * 4 * optim.moments().max(1)) as u64);
        };
        let mut optim = Optimizer::new(kind, 0.05, momentum);
        fresh(&mut optim);
        let mut resumed: Option<(Many, Optimizer)> = None;
        let (mut expected, before) = (0, kernels::test_util::launched());
        let mut resumed_launches = 0;
        let mut split = false;
        for i in 0..8 {
            let lr = 0.01 * (1.0 + i as f64 / 4.0);
            let scale = Tensor::<1>::from_floats([0.3 + 0.25 * i as f32], device);
            let mut grad_rng = Rng::new(100 + i as u64);
            let (grads, count) = many_grads(&module, i, &mut grad_rng, device);
            module = optim.step(lr, module, grads, Some(&scale));
            match values {
                None => {
                    let width = slots.unwrap_or_else(kernels::group_slots);
                    expected += (count + 1).div_ceil(width);
                }
                Some(limit) if fused => {
                    // Groups split by their state's size (a group short of the width before
                    // another), within the limit; `e` (12,000 values) is over it on its own
                    // and takes the composed update.
                    for g in &optim.groups {
                        assert!(
                            g.total <= limit || optim.moments() == 0,
                            "{kind:?}: a group of {} covers {} values",
                            g.ids.len(),
                            g.total
                        );
                    }
                    let width = kernels::group_slots();
                    split |= optim
                        .groups
                        .iter()
                        .rev()
                        .skip(1)
                        .any(|g| g.ids.len() < width);
                    expected += optim.groups.len();
                }
                Some(_) => {}
            }
            if let Some((m, o)) = resumed.take() {
                let mut grad_rng = Rng::new(100 + i as u64);
                let (grads, _) = many_grads(&m, i, &mut grad_rng, device);
                let launched = kernels::test_util::launched();
                let mut o = o;
                let m = o.step(lr, m, grads, Some(&scale));
                resumed_launches += kernels::test_util::launched() - launched;
                resumed = Some((m, o));
            }
            if i == 4 {
                let saved = pollster::block_on(optim.save(&module)).expect("save");
                let values = many_values(&module);
                let mut rebuilt = many(&mut Rng::new(99), device);
                let put = |v: &[f32]| Tensor::<1>::from_floats(v, device);
                rebuilt.a = Param::from_tensor(put(&values[0]));
                rebuilt.b = Param::from_tensor(put(&values[1]).reshape([16, 17]));
                rebuilt.c = Param::from_tensor(put(&values[2]));
                rebuilt.d = Param::from_tensor(put(&values[3]));
                rebuilt.e = Param::from_tensor(put(&values[4]).reshape([300, 40]));
                let mut o = Optimizer::new(kind, 0.05, momentum);
                fresh(&mut o);
                o.restore(&rebuilt, saved, device).expect("restore");
                resumed = Some((rebuilt, o));
            }
        }
        if fused && values.is_some() && optim.moments() > 0 {
            assert!(split, "{kind:?}: the byte limit split a group");
        }
        let launched = kernels::test_util::launched() - before - resumed_launches;
        let saved = pollster::block_on(optim.save(&module)).expect("save");
        let (rebuilt, _) = resumed.expect("resumed after step 4");
        (
            many_values(&module),
            saved,
            many_values(&rebuilt),
            launched,
            if fused { expected } else { 0 },
        )
    }

    /// The grouped launches (one per group of parameters) match the composed update parameter
    /// for parameter, weights and state, whatever the group width, with parameters whose
    /// gradients come and go; a group's state saves and restores into a rebuilt module exactly.
    #[test]
    fn grouped_steps_match_the_composed_update() {
        let device = kernels::test_device();
        let kinds = [
            (OptimizerKind::Adamw, 0.0),
            (OptimizerKind::Adam, 0.0),
            (OptimizerKind::Sgd, 0.9),
            (OptimizerKind::Sgd, 0.0),
        ];
        for kind in kinds {
            let (composed, composed_state, _, launched, _) =
                run_many(kind, false, (None, None), &device);
            assert_eq!(launched, 0, "{kind:?}: no kernel when switched off");
            // Group widths, and a state buffer limit of 300 values that splits the five
            // parameters by size and leaves the largest to the composed update.
            for slots in [
                (Some(1), None),
                (Some(2), None),
                (None, None),
                (None, Some(300)),
            ] {
                let (values, state, resumed, launched, expected) =
                    run_many(kind, true, slots, &device);
                assert_eq!(
                    launched, expected,
                    "{kind:?}, {slots:?}: one launch per group"
                );
                for (p, (f, c)) in values.iter().zip(&composed).enumerate() {
                    assert_close(&format!("{kind:?}, {slots:?}: parameter {p}"), f, c);
                }
                assert_eq!(values, resumed, "{kind:?}, {slots:?}: the resumed run");
                assert_eq!(state.len(), composed_state.len());
                for (p, (f, c)) in state.iter().zip(&composed_state).enumerate() {
                    let what = format!("{kind:?}, {slots:?}: state of parameter {p}");
                    match (f, c) {
                        (None, None) => {}
                        (Some(f), Some(c)) => {
                            assert_eq!(f.time, c.time, "{what}: step count");
                            assert_close(&what, &f.first, &c.first);
                            assert_eq!(f.second.is_some(), c.second.is_some(), "{what}");
                            if let (Some(fs), Some(cs)) = (&f.second, &c.second) {
                                assert_close(&what, fs, cs);
                            }
                        }
                        _ => panic!("{what}: one has state, the other not: {f:?} vs {c:?}"),
                    }
                }
            }
        }
    }

    #[test]
    fn the_kernel_is_not_used_off_wgpu() {
        let device = Device::flex();
        let t = Tensor::<1>::zeros([4], &device);
        assert!(!kernels::applies(&[&t, &t]));
    }
}
