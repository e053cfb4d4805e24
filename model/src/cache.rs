//! The key/value cache of batched generation, allocated once for the whole run
//! (`[batch, kv_heads, capacity, head_dim]` per layer) and filled in place.

use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;

/// One layer's cached keys and values.
#[derive(Debug)]
pub struct LayerCache<B: Backend> {
    keys: Tensor<B, 4>,
    values: Tensor<B, 4>,
    len: usize,
}

/// Cached keys and values of every layer, for `batch` sequences of up to `capacity` tokens.
#[derive(Debug)]
pub struct KvCache<B: Backend> {
    pub(crate) layers: Vec<LayerCache<B>>,
    capacity: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache with room for `capacity` positions per sequence.
    pub fn new(config: &LlamaConfig, batch: usize, capacity: usize, device: &B::Device) -> Self {
        let shape = [batch, config.num_key_value_heads, capacity, config.head_dim];
        let layers = (0..config.num_hidden_layers)
            .map(|_| LayerCache {
                keys: Tensor::zeros(shape, device),
                values: Tensor::zeros(shape, device),
                len: 0,
            })
            .collect();
        KvCache { layers, capacity }
    }

    /// How many positions are filled.
    pub fn len(&self) -> usize {
        self.layers.first().map_or(0, |l| l.len)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many positions fit.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<B: Backend> LayerCache<B> {
    /// Writes `keys`/`values` (`[batch, kv_heads, seq, head_dim]`) after the cached positions
    /// and returns the first `attended` positions: everything cached so far and, beyond it,
    /// empty slots (zeros) that the caller's mask hides. Attending over more than the filled
    /// positions keeps the shape of every decoding step the same.
    ///
    /// # Panics
    /// If the cache would overflow (callers size it for prompt plus generation), or if
    /// `attended` leaves out a filled position or exceeds the capacity.
    pub(crate) fn append(
        &mut self,
        keys: Tensor<B, 4>,
        values: Tensor<B, 4>,
        attended: usize,
    ) -> (Tensor<B, 4>, Tensor<B, 4>) {
        let [batch, heads, seq, dim] = keys.dims();
        let start = self.len;
        let end = start + seq;
        let capacity = self.keys.dims()[2];
        assert!(end <= capacity, "KV cache overflow: {end} > {capacity}");
        assert!(
            (end..=capacity).contains(&attended),
            "attending over {attended} of {capacity} cache slots, {end} filled"
        );
        let range = [0..batch, 0..heads, start..end, 0..dim];
        self.keys.inplace(|t| t.slice_assign(range.clone(), keys));
        self.values.inplace(|t| t.slice_assign(range, values));
        self.len = end;
        let attended = [0..batch, 0..heads, 0..attended, 0..dim];
        (
            self.keys.clone().slice(attended.clone()),
            self.values.clone().slice(attended),
        )
    }
}
