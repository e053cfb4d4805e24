//! Attention masks for causal decoding over padded batches.

use burn::tensor::{Bool, Int, Tensor, TensorData, backend::Backend};

use crate::cpu_dispatch;

/// The mask of queries at cache slots `offset..offset + q_len` over keys `0..kv_len`, in Burn's
/// convention (true = may not attend), laid out for grouped-query attention: `[batch,
/// kv_heads, group * q_len, kv_len]`, the `group` query heads of a key/value head stacked
/// along the query axis (see `attention.rs`). `key_valid` (`[batch, kv_len]`) is true for real
/// tokens and false for padding. A query never sees later slots nor padding, except that every
/// query sees itself, so rows of padding queries are not empty (an empty row would give NaN on
/// some backends and spread through the padding's values).
///
/// On the CPU backends the mask is written on the host in one pass, `[batch, 1, group * q_len,
/// kv_len]`, and expanded over the key/value heads without a copy; elsewhere it is built from
/// tensor operations on the device.
pub(crate) fn causal_mask<B: Backend>(
    key_valid: Tensor<B, 2, Bool>,
    q_len: usize,
    offset: usize,
    kv_heads: usize,
    group: usize,
) -> Tensor<B, 4, Bool> {
    if cpu_dispatch::CpuBackend::of::<B>().is_none() {
        return device_mask(key_valid, q_len, offset, kv_heads, group);
    }
    let [batch, kv_len] = key_valid.dims();
    let device = key_valid.device();
    let valid = key_valid.into_data();
    match valid.to_vec::<bool>() {
        Ok(valid) => {
            let rows = group * q_len;
            let mut mask = Vec::with_capacity(batch * rows * kv_len);
            for valid in valid.chunks_exact(kv_len.max(1)).take(batch) {
                for i in (0..group).flat_map(|_| 0..q_len) {
                    let slot = offset + i;
                    let row = valid.iter().enumerate();
                    mask.extend(row.map(|(key, &ok)| key > slot || (!ok && key != slot)));
                }
            }
            let data = TensorData::new(mask, [batch, 1, rows, kv_len]);
            Tensor::<B, 4, Bool>::from_data(data, &device).expand([batch, kv_heads, rows, kv_len])
        }
        Err(_) => {
            let key_valid = Tensor::from_data(valid, &device);
            device_mask(key_valid, q_len, offset, kv_heads, group)
        }
    }
}

/// [`causal_mask`] from tensor operations (comparisons of position ranges, broadcast).
fn device_mask<B: Backend>(
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

    #[test]
    fn host_mask_matches_device_mask() {
        type Reference = burn::backend::NdArray<f32>;
        let device = Default::default();
        // (valid keys per batch row, q_len, offset, kv_heads, group): training batches with
        // left padding, grouped queries, and decoding steps over a wider cache.
        type Case = (&'static [&'static [bool]], usize, usize, usize, usize);
        let cases: [Case; 4] = [
            (&[&[true; 5]], 5, 0, 1, 1),
            (
                &[&[false, true, true, true], &[false, false, false, true]],
                4,
                0,
                2,
                2,
            ),
            (&[&[true, true, false, true, true, true]], 2, 3, 3, 2),
            (
                &[&[false, true, true, true, false, false, false]],
                1,
                3,
                2,
                3,
            ),
        ];
        for (valid, q_len, offset, kv_heads, group) in cases {
            let kv_len = valid[0].len();
            let flat: Vec<bool> = valid.concat();
            let data = || TensorData::new(flat.clone(), [valid.len(), kv_len]);
            let host = causal_mask(
                Tensor::<CpuBackend, 2, Bool>::from_data(data(), &device),
                q_len,
                offset,
                kv_heads,
                group,
            );
            let reference = causal_mask(
                Tensor::<Reference, 2, Bool>::from_data(data(), &Default::default()),
                q_len,
                offset,
                kv_heads,
                group,
            );
            assert_eq!(host.dims(), reference.dims());
            let host: Vec<bool> = host.into_data().to_vec().unwrap();
            let reference: Vec<bool> = reference.into_data().to_vec().unwrap();
            assert_eq!(host, reference, "{valid:?} q_len {q_len} offset {offset}");
        }
    }
}
