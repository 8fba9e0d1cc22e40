//! Building the model's parameters from a checkpoint, or only listing them.
//!
//! Every component's `load` asks a [`Loader`] for the checkpoint tensors it needs, by name and
//! shape. The same code runs in two ways: with a [`TensorSource`] and a device it reads, checks and
//! uploads real tensors; as a dry run ([`Loader::dry_run`]) it reads nothing, stores `()` for every
//! parameter and only records what was asked for. That record is [`super::parameter_shapes`]: the
//! list a checkpoint header is checked against cannot drift from what loading accepts.

use std::collections::BTreeSet;

use burn::tensor::{Device, Tensor, TensorData};

use crate::weights::{LoadError, TensorSource};

/// Where loaded parameters go: a device, or nowhere (a dry run).
pub trait Store {
    /// What a parameter of rank `D` becomes.
    type Tensor<const D: usize>;

    /// Stores one checkpoint tensor as one or more parameters of `shapes`: `read` gives its values
    /// and `layout` rearranges them into one buffer per shape (gathered, split, reshaped...).
    fn store<const D: usize>(
        &self,
        read: impl FnOnce() -> Result<Vec<f32>, LoadError>,
        layout: impl FnOnce(Vec<f32>) -> Vec<Vec<f32>>,
        shapes: &[[usize; D]],
    ) -> Result<Vec<Self::Tensor<D>>, LoadError>;
}

impl Store for Device {
    type Tensor<const D: usize> = Tensor<D>;

    fn store<const D: usize>(
        &self,
        read: impl FnOnce() -> Result<Vec<f32>, LoadError>,
        layout: impl FnOnce(Vec<f32>) -> Vec<Vec<f32>>,
        shapes: &[[usize; D]],
    ) -> Result<Vec<Tensor<D>>, LoadError> {
        let parts = layout(read()?);
        debug_assert_eq!(parts.len(), shapes.len(), "a layout gives one buffer per shape");
        Ok(parts
            .into_iter()
            .zip(shapes)
            .map(|(v, &s)| Tensor::from_data(TensorData::new(v, s), self))
            .collect())
    }
}

/// The dry run's store: nothing is read, nothing is allocated, every parameter is `()`.
pub struct NoStore;

impl Store for NoStore {
    type Tensor<const D: usize> = ();

    fn store<const D: usize>(
        &self,
        _read: impl FnOnce() -> Result<Vec<f32>, LoadError>,
        _layout: impl FnOnce(Vec<f32>) -> Vec<Vec<f32>>,
        shapes: &[[usize; D]],
    ) -> Result<Vec<()>, LoadError> {
        Ok(vec![(); shapes.len()])
    }
}

/// Hands checkpoint tensors to the model's `load` functions, checking each name and shape, and
/// records every request, so that [`Loader::finish`] can refuse leftovers and a dry run can list
/// what the model reads.
pub struct Loader<'a, S: Store> {
    /// `None` in a dry run: every request is accepted as asked.
    source: Option<&'a dyn TensorSource>,
    store: S,
    requested: Vec<(String, Vec<usize>)>,
}

impl<'a> Loader<'a, Device> {
    pub fn new(source: &'a dyn TensorSource, device: &Device) -> Self {
        Self { source: Some(source), store: device.clone(), requested: Vec::new() }
    }
}

impl Loader<'static, NoStore> {
    pub fn dry_run() -> Self {
        Self { source: None, store: NoStore, requested: Vec::new() }
    }
}

impl<S: Store> Loader<'_, S> {
    /// The tensor `name` of `shape`, stored as it is.
    pub fn tensor<const D: usize>(
        &mut self,
        name: &str,
        shape: [usize; D],
    ) -> Result<S::Tensor<D>, LoadError> {
        self.tensor_as(name, &shape, shape, |values| values)
    }

    /// The tensor `name` of `shape`, rearranged by `layout` into a parameter of shape `out`.
    pub fn tensor_as<const D: usize>(
        &mut self,
        name: &str,
        shape: &[usize],
        out: [usize; D],
        layout: impl FnOnce(Vec<f32>) -> Vec<f32>,
    ) -> Result<S::Tensor<D>, LoadError> {
        let mut one = self.pieces(name, shape, &[out], |values| vec![layout(values)])?;
        Ok(one.remove(0))
    }

    /// The tensor `name` of `shape`, split by `layout` into one parameter per shape of `outs`.
    pub fn pieces<const D: usize>(
        &mut self,
        name: &str,
        shape: &[usize],
        outs: &[[usize; D]],
        layout: impl FnOnce(Vec<f32>) -> Vec<Vec<f32>>,
    ) -> Result<Vec<S::Tensor<D>>, LoadError> {
        let source = self.source;
        if let Some(source) = source {
            let found = source.shape(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
            if found != shape {
                return Err(LoadError::Shape { name: name.to_string(), expected: shape.to_vec(), found });
            }
        }
        self.requested.push((name.to_string(), shape.to_vec()));
        let read = || match source {
            Some(source) => {
                let values = source.read_f32(name)?;
                crate::weights::check_finite(name, &values)?;
                Ok(values)
            }
            None => Err(LoadError::Missing(name.to_string())),
        };
        self.store.store(read, layout, outs)
    }

    /// Whether the checkpoint holds `name` (a dry run holds nothing).
    pub fn holds(&self, name: &str) -> bool {
        self.source.is_some_and(|source| source.shape(name).is_some())
    }

    /// The tensor `name` of `shape` as host values, for the few small parameters a model uses on the
    /// CPU (SAM's prompt encoder); empty in a dry run.
    pub fn values(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, LoadError> {
        self.check_unused(name, shape)?;
        match self.source {
            Some(source) => {
                let values = source.read_f32(name)?;
                crate::weights::check_finite(name, &values)?;
                Ok(values)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Checks that the checkpoint holds `name` with `shape` and counts it as taken, without reading
    /// it: for parameters of a part the model holds but never runs (SAM's mask-input embedding).
    pub fn check_unused(&mut self, name: &str, shape: &[usize]) -> Result<(), LoadError> {
        if let Some(source) = self.source {
            let found = source.shape(name).ok_or_else(|| LoadError::Missing(name.to_string()))?;
            if found != shape {
                return Err(LoadError::Shape { name: name.to_string(), expected: shape.to_vec(), found });
            }
        }
        self.requested.push((name.to_string(), shape.to_vec()));
        Ok(())
    }

    /// Every `(name, shape)` asked for, in order; errors if the checkpoint holds tensors that
    /// were never asked for.
    pub fn finish(self) -> Result<Vec<(String, Vec<usize>)>, LoadError> {
        if let Some(source) = self.source {
            let taken: BTreeSet<&str> = self.requested.iter().map(|(n, _)| n.as_str()).collect();
            let extra: Vec<String> =
                source.names().into_iter().filter(|n| !taken.contains(n.as_str())).collect();
            if !extra.is_empty() {
                return Err(LoadError::Unexpected(extra));
            }
        }
        Ok(self.requested)
    }
}
