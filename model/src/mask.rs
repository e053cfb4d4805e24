//! Attention masks for causal decoding over padded batches.

use burn::tensor::{Bool, Int, Tensor, backend::Backend};

/// The mask of queries at cache slots `offset..offset + q_len` over keys `0..kv_len`, in Burn's
/// convention (true = may not attend), laid out for grouped-query attention: `[batch,
/// kv_heads, group * q_len, kv_len]`, the `group` query heads of a key/value head stacked
/// along the query axis (see `attention.rs`). `key_valid` (`[batch, kv_len]`) is true for real
/// tokens and false for padding. A query never sees later slots nor padding, except that every
/// query sees itself, so rows of padding queries are not empty (an empty row would give NaN on
/// some backends and spread through the padding's values).
pub(crate) fn causal_mask<B: Backend>(
    key_valid: Tensor<B, 2, Bool>,
    q_len: usize,
    offset: usize,
    kv_heads: usize,
    group: usize,
) -> Tensor<B, 4, Bool> {
    let [batch, kv_len] = key_valid.dims();
    let device = key_valid.device();
    let shape = [batch, 1, q_len, kv_len];
    let rows = Tensor::<B, 1, Int>::arange(offset as i64..(offset + q_len) as i64, &device)
        .reshape([1, 1, q_len, 1])
        .expand(shape);
    let cols = Tensor::<B, 1, Int>::arange(0..kv_len as i64, &device)
        .reshape([1, 1, 1, kv_len])
        .expand(shape);
    let future = cols.clone().greater(rows.clone());
    let other = cols.not_equal(rows);
    let padding = key_valid
        .bool_not()
        .reshape([batch, 1, 1, kv_len])
        .expand(shape);
    future
        .bool_or(padding.bool_and(other))
        .unsqueeze_dim::<5>(1)
        .expand([batch, kv_heads, group, q_len, kv_len])
        .reshape([batch, kv_heads, group * q_len, kv_len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::CpuBackend;

    #[test]
    fn blocks_future_and_padding_but_not_self() {
        let device = Default::default();
        let valid = Tensor::<CpuBackend, 2, Bool>::from_data([[false, true, true]], &device);
        let m: Vec<bool> = causal_mask(valid, 3, 0, 1, 1).into_data().to_vec().unwrap();
        #[rustfmt::skip]
        let expected = vec![
            false, true, true,   // the padding query sees only itself
            true, false, true,
            true, false, false,
        ];
        assert_eq!(m, expected);
        let valid = Tensor::<CpuBackend, 2, Bool>::from_data([[false, true, true]], &device);
        let m: Vec<bool> = causal_mask(valid, 1, 2, 2, 3).into_data().to_vec().unwrap();
        assert_eq!(m, [true, false, false].repeat(6));
    }
}
