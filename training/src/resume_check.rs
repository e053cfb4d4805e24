//! `--resume` against the config a run started with: the fields that fix the shapes of a
//! checkpoint's tensors (the model and its source, LoRA, the value head; see
//! [`RunConfig::checkpoint_fields`]) must not change, or loading the checkpoint would fail deep
//! inside Burn or leave wrongly shaped weights. The first field that differs is named.

use std::path::Path;

use toml::Value;

use crate::config::RunConfig;
use crate::error::TrainError;

/// Checks that `new` agrees with the run's saved config (`saved`, the text of `path`) on every
/// one of `new`'s [`RunConfig::checkpoint_fields`]. Both are compared as resolved configs, so a
/// default written out in one and left implicit in the other is no difference.
pub fn check_resume<C: RunConfig>(path: &Path, saved: &str, new: &C) -> Result<(), TrainError> {
    let old = C::from_toml(saved, path)?;
    let (old_value, new_value) = (resolved(&old, path)?, resolved(new, path)?);
    let fields = old
        .checkpoint_fields()
        .into_iter()
        .chain(new.checkpoint_fields());
    for field in fields {
        let was = lookup(&old_value, field);
        let now = lookup(&new_value, field);
        if let Some((name, was, now)) = first_difference(field, was, now) {
            return Err(TrainError::Config {
                path: path.to_path_buf(),
                message: format!(
                    "`--resume` with `{name}` = {now}, but the run started with {was}: its \
                     checkpoints hold that model's tensors; restore the field, or start a new \
                     run under another `name`"
                ),
            });
        }
    }
    Ok(())
}

/// A config as a TOML value, every default filled in.
fn resolved(config: &impl RunConfig, path: &Path) -> Result<Value, TrainError> {
    Value::try_from(config).map_err(|e| TrainError::Config {
        path: path.to_path_buf(),
        message: format!("the config cannot be compared for `--resume`: {e}"),
    })
}

/// The value at a dotted `field` path (`model`, `data.path`), if present.
fn lookup<'a>(root: &'a Value, field: &str) -> Option<&'a Value> {
    field
        .split('.')
        .try_fold(root, |value, key| value.as_table()?.get(key))
}

/// The first leaf below `field` whose values differ, as (dotted name, old, new).
fn first_difference(
    field: &str,
    was: Option<&Value>,
    now: Option<&Value>,
) -> Option<(String, String, String)> {
    if let (Some(Value::Table(a)), Some(Value::Table(b))) = (was, now) {
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        return keys
            .into_iter()
            .find_map(|key| first_difference(&format!("{field}.{key}"), a.get(key), b.get(key)));
    }
    let show = |v: Option<&Value>| v.map_or("nothing (absent)".to_string(), Value::to_string);
    (was != now).then(|| (field.to_string(), show(was), show(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_differing_leaf_is_named() {
        let a: Value = toml::from_str("[m]\nx = 1\ny = { z = 2 }").unwrap();
        let b: Value = toml::from_str("[m]\nx = 1\ny = { z = 3 }").unwrap();
        let (name, was, now) = first_difference("m", lookup(&a, "m"), lookup(&b, "m")).unwrap();
        assert_eq!(
            (name.as_str(), was.as_str(), now.as_str()),
            ("m.y.z", "2", "3")
        );
        assert_eq!(
            first_difference("m", lookup(&a, "m"), lookup(&a, "m")),
            None
        );
        let (name, was, _) = first_difference("l", lookup(&a, "l"), lookup(&b, "m")).unwrap();
        assert_eq!((name.as_str(), was.as_str()), ("l", "nothing (absent)"));
    }
}
