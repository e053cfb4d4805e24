//! The key/value cache of batched generation, allocated once for the whole run
//! (`[batch, kv_heads, capacity, head_dim]` per layer) and filled in place.

use burn::tensor::{Tensor, backend::Backend};

use crate::config::LlamaConfig;
use crate::error::ModelError;

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

    /// Checks that `seq` new positions of `batch` sequences fit after the cached ones, and that
    /// attending over the first `attended` slots covers every filled position without going
    /// past the capacity: what writing them (inside the attention layers) requires.
    pub fn check_append(
        &self,
        batch: usize,
        seq: usize,
        attended: usize,
    ) -> Result<(), ModelError> {
        let cached = self.layers.first().map_or(batch, |l| l.keys.dims()[0]);
        let end = self.len() + seq;
        let capacity = self.capacity;
        let problem = if batch != cached {
            format!("{batch} sequences for a cache of {cached}")
        } else if end > capacity {
            format!("{end} positions overflow the KV cache of {capacity}")
        } else if !(end..=capacity).contains(&attended) {
            format!("attending over {attended} of {capacity} cache slots, {end} filled")
        } else {
            return Ok(());
        };
        Err(ModelError::Input(problem))
    }
}

impl<B: Backend> LayerCache<B> {
    /// Writes `keys`/`values` (`[batch, kv_heads, seq, head_dim]`) after the cached positions
    /// and returns the first `attended` positions: everything cached so far and, beyond it,
    /// empty slots (zeros) that the caller's mask hides. Attending over more than the filled
    /// positions keeps the shape of every decoding step the same.
    ///
    /// # Panics
    /// If the cache would overflow, or if `attended` leaves out a filled position or exceeds
    /// the capacity: callers check with [`KvCache::check_append`] first.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;

    /// Appends that do not fit are errors before any layer writes them.
    #[test]
    fn appends_that_do_not_fit_are_errors() {
        let config = LlamaConfig::tiny(16);
        let cache = KvCache::<CpuBackend>::new(&config, 2, 8, &Default::default());
        cache.check_append(2, 8, 8).unwrap();
        cache.check_append(2, 3, 5).unwrap();
        for (batch, seq, attended, words) in [
            (3, 1, 1, "3 sequences for a cache of 2"),
            (2, 9, 9, "overflow"),
            (2, 3, 2, "attending over 2"),
            (2, 3, 9, "attending over 9"),
        ] {
            let e = cache.check_append(batch, seq, attended).unwrap_err();
            assert!(e.to_string().contains(words), "{e}");
        }
    }
}
