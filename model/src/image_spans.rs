//! The token-side contract of images in a [`crate::Vlm`] prompt: each image is a run of exactly
//! `image_tokens` consecutive placeholder ids (`image_token_id`), which the model replaces by
//! the image's features. Tokenizers and chat templates write one placeholder per image;
//! [`expand_image_placeholders`] widens it, and [`ImageSpans::find`] locates the runs in a
//! (padded) batch.

use crate::error::ModelError;

/// `ids` with every `image_token_id` repeated `n` times.
pub fn expand_image_placeholders(ids: &[u32], image_token_id: u32, n: usize) -> Vec<u32> {
    ids.iter()
        .flat_map(|&t| {
            let times = if t == image_token_id { n } else { 1 };
            std::iter::repeat_n(t, times)
        })
        .collect()
}

/// Where the images of a batch sit: image `k` (in pixel-batch order) fills positions
/// `start[k] .. start[k] + image_tokens` of batch row `row[k]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageSpans {
    pub row: Vec<usize>,
    pub start: Vec<usize>,
}

impl ImageSpans {
    /// The spans of the placeholder runs in `rows` (the batch's token rows, all of one width
    /// when padded; the padding id must not be the placeholder), images numbered row by row,
    /// left to right. Errors unless every run is a whole number of images and there are
    /// `images` images in all.
    pub fn find(
        rows: &[&[u32]],
        image_token_id: u32,
        image_tokens: usize,
        images: usize,
    ) -> Result<Self, ModelError> {
        let mut spans = ImageSpans::default();
        for (r, ids) in rows.iter().enumerate() {
            let mut pos = 0;
            while pos < ids.len() {
                if ids[pos] != image_token_id {
                    pos += 1;
                    continue;
                }
                let run = ids[pos..]
                    .iter()
                    .take_while(|&&t| t == image_token_id)
                    .count();
                if !run.is_multiple_of(image_tokens) {
                    return Err(ModelError::Input(format!(
                        "row {r}: {run} image placeholders (id {image_token_id}) at position \
                         {pos}, not a multiple of the {image_tokens} tokens of an image"
                    )));
                }
                for k in 0..run / image_tokens {
                    spans.row.push(r);
                    spans.start.push(pos + k * image_tokens);
                }
                pos += run;
            }
        }
        if spans.len() != images {
            return Err(ModelError::Input(format!(
                "the token rows hold {} images, but {images} were given",
                spans.len()
            )));
        }
        Ok(spans)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.row.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.row.is_empty()
    }

    /// For a `[batch, seq]` batch flattened to `batch · seq` token rows followed by the
    /// `len() · image_tokens` image-token rows: the source row of each of the batch's
    /// positions (the image's row at placeholders, the token's own row elsewhere).
    pub(crate) fn gather_index(
        &self,
        batch: usize,
        seq: usize,
        image_tokens: usize,
    ) -> Result<Vec<i64>, ModelError> {
        let mut index: Vec<i64> = (0..(batch * seq) as i64).collect();
        for (k, (&row, &start)) in self.row.iter().zip(&self.start).enumerate() {
            if row >= batch || start.checked_add(image_tokens).is_none_or(|end| end > seq) {
                return Err(ModelError::Input(format!(
                    "image span (row {row}, position {start}) of {image_tokens} tokens lies \
                     outside the [{batch}, {seq}] token batch"
                )));
            }
            for t in 0..image_tokens {
                index[row * seq + start + t] = (batch * seq + k * image_tokens + t) as i64;
            }
        }
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_each_placeholder() {
        assert_eq!(
            expand_image_placeholders(&[1, 9, 2, 9], 9, 3),
            [1, 9, 9, 9, 2, 9, 9, 9]
        );
        assert_eq!(expand_image_placeholders(&[1, 2], 9, 3), [1, 2]);
    }

    #[test]
    fn finds_runs_row_by_row_and_checks_counts() {
        let rows: [&[u32]; 3] = [
            &[0, 1, 9, 9, 2, 9, 9],
            &[3, 4, 5, 6, 7, 8, 1],
            &[9, 9, 9, 9, 1, 2, 3],
        ];
        let spans = ImageSpans::find(&rows, 9, 2, 4).unwrap();
        assert_eq!(spans.row, [0, 0, 2, 2]);
        assert_eq!(spans.start, [2, 5, 0, 2]);
        assert_eq!(
            spans.gather_index(3, 7, 2).unwrap()[..7],
            [0, 1, 21, 22, 4, 23, 24]
        );
        let e = spans.gather_index(2, 7, 2).unwrap_err().to_string();
        assert!(e.contains("row 2") && e.contains("[2, 7]"), "{e}");
        assert!(spans.gather_index(3, 6, 2).is_err());

        let e = ImageSpans::find(&rows, 9, 3, 2).unwrap_err().to_string();
        assert!(
            e.contains("row 0: 2 image placeholders (id 9) at position 2"),
            "{e}"
        );
        let e = ImageSpans::find(&rows, 9, 2, 3).unwrap_err().to_string();
        assert!(e.contains("hold 4 images, but 3 were given"), "{e}");
        assert!(ImageSpans::find(&rows[1..2], 9, 2, 0).unwrap().is_empty());
    }
}
