//! The exhaustive 24-points solver of the reference (the Rosetta-code solver, paper-spec §1.4):
//! every distinct permutation of the four values × every operator triple × seven bracket
//! patterns, evaluated in exact rational arithmetic. It returns **every** solution string in the
//! reference's form (no spaces, e.g. `(10-6)*(3+1)`), which the verifier needs for its prefix
//! checks. Results are cached per value multiset and target.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use super::formula::Exact;

/// `x op y`, or `None` on division by zero.
fn apply(x: Exact, op: u8, y: Exact) -> Option<Exact> {
    x.apply(op, y).ok()
}

/// Evaluates `t0 op0 t1 op1 …` with the usual precedence (`*` `/` before `+` `-`), left to right.
fn eval_flat(terms: &[Exact], ops: &[u8]) -> Option<Exact> {
    let mut sum: Option<(Exact, u8)> = None; // running sum and the additive op before the product
    let mut product = terms[0];
    for (i, &op) in ops.iter().enumerate() {
        if op == b'*' || op == b'/' {
            product = apply(product, op, terms[i + 1])?;
        } else {
            let acc = match sum {
                None => product,
                Some((acc, add)) => apply(acc, add, product)?,
            };
            sum = Some((acc, op));
            product = terms[i + 1];
        }
    }
    match sum {
        None => Some(product),
        Some((acc, add)) => apply(acc, add, product),
    }
}

const OPS: [u8; 4] = [b'+', b'-', b'*', b'/'];

/// The values of `a o1 b o2 c o3 d` under the reference's seven bracket patterns, in its order
/// (`None` on division by zero): none, `(ab)cd`, `(abc)d`, `a(bc)d`, `a(bcd)`, `ab(cd)`, `(ab)(cd)`.
fn bracket_values(v: [i64; 4], o: [u8; 3]) -> [Option<Exact>; 7] {
    let [a, b, c, d] = v.map(Exact::int);
    let pair = |x: Exact, k: usize, y: Exact| apply(x, o[k], y);
    [
        eval_flat(&[a, b, c, d], &o),
        pair(a, 0, b).and_then(|x| eval_flat(&[x, c, d], &o[1..])),
        eval_flat(&[a, b, c], &o[..2]).and_then(|x| pair(x, 2, d)),
        pair(b, 1, c).and_then(|x| eval_flat(&[a, x, d], &[o[0], o[2]])),
        eval_flat(&[b, c, d], &o[1..]).and_then(|x| pair(a, 0, x)),
        pair(c, 2, d).and_then(|x| eval_flat(&[a, b, x], &o[..2])),
        pair(a, 0, b)
            .zip(pair(c, 2, d))
            .and_then(|(x, y)| pair(x, 1, y)),
    ]
}

/// The written form of bracket pattern `pattern` (see [`bracket_values`]).
fn bracket_text(v: [i64; 4], o: [u8; 3], pattern: usize) -> String {
    // Where the opening and closing brackets go, as "before term i" / "after term i".
    const OPEN: [&[usize]; 7] = [&[], &[0], &[0], &[1], &[1], &[2], &[0, 2]];
    const CLOSE: [&[usize]; 7] = [&[], &[1], &[2], &[2], &[3], &[3], &[1, 3]];
    let mut s = String::with_capacity(16);
    for (i, value) in v.iter().enumerate() {
        if OPEN[pattern].contains(&i) {
            s.push('(');
        }
        s.push_str(&value.to_string());
        if CLOSE[pattern].contains(&i) {
            s.push(')');
        }
        if i < 3 {
            s.push(char::from(o[i]));
        }
    }
    s
}

/// Every solution of a hand, sorted, so prefix questions are answered by binary search.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Solutions {
    sorted: Vec<String>,
}

impl Solutions {
    /// All solution strings, in sorted order.
    pub fn all(&self) -> &[String] {
        &self.sorted
    }

    /// Whether the hand has a solution.
    pub fn is_solvable(&self) -> bool {
        !self.sorted.is_empty()
    }

    /// The reference's `any(sol.startswith(prefix) for sol in solutions)`.
    pub fn any_starts_with(&self, prefix: &str) -> bool {
        let i = self.sorted.partition_point(|s| s.as_str() < prefix);
        self.sorted.get(i).is_some_and(|s| s.starts_with(prefix))
    }
}

/// Solves a hand from scratch (see [`solutions`] for the cached version).
pub fn solve(values: [u8; 4], target: i64) -> Solutions {
    let target = Exact::int(target);
    let mut perms: Vec<[i64; 4]> = Vec::with_capacity(24);
    for i in 0..4 {
        for j in (0..4).filter(|&j| j != i) {
            for k in (0..4).filter(|&k| k != i && k != j) {
                let l = 6 - i - j - k;
                let p = [values[i], values[j], values[k], values[l]].map(i64::from);
                if !perms.contains(&p) {
                    perms.push(p);
                }
            }
        }
    }
    let mut sorted = Vec::new();
    for p in perms {
        for o1 in OPS {
            for o2 in OPS {
                for o3 in OPS {
                    let ops = [o1, o2, o3];
                    for (pattern, value) in bracket_values(p, ops).into_iter().enumerate() {
                        if value == Some(target) {
                            sorted.push(bracket_text(p, ops, pattern));
                        }
                    }
                }
            }
        }
    }
    sorted.sort();
    Solutions { sorted }
}

type Cache = Mutex<HashMap<([u8; 4], i64), Arc<Solutions>>>;
static CACHE: LazyLock<Cache> = LazyLock::new(Default::default);

/// The solutions of a hand, computed once per value multiset and target and shared after that.
pub fn solutions(values: [u8; 4], target: i64) -> Arc<Solutions> {
    let mut key = values;
    key.sort_unstable();
    if let Some(s) = CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&(key, target))
    {
        return s.clone();
    }
    let s = Arc::new(solve(key, target));
    CACHE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((key, target), s.clone());
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every multiset of four values drawn from `1..=max`.
    fn multisets(max: u8) -> Vec<[u8; 4]> {
        let mut out = Vec::new();
        for a in 1..=max {
            for b in a..=max {
                for c in b..=max {
                    for d in c..=max {
                        out.push([a, b, c, d]);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn solvability_rates_match_the_reference() {
        let face10 = multisets(10);
        assert_eq!(face10.len(), 715);
        assert_eq!(
            face10
                .iter()
                .filter(|m| solve(**m, 24).is_solvable())
                .count(),
            566
        );
        let face13 = multisets(13);
        assert_eq!(face13.len(), 1820);
        assert_eq!(
            face13
                .iter()
                .filter(|m| solve(**m, 24).is_solvable())
                .count(),
            1362
        );
    }

    #[test]
    fn share_of_solvable_rank_tuples() {
        // 73.1% of uniform rank 4-tuples under the face=10 rule, 79.2% under face=11..13.
        let mut solvable = [0u32; 2];
        for a in 1..=13u8 {
            for b in 1..=13u8 {
                for c in 1..=13u8 {
                    for d in 1..=13u8 {
                        let ranks = [a, b, c, d];
                        solvable[0] += solutions(ranks.map(|r| r.min(10)), 24).is_solvable() as u32;
                        solvable[1] += solutions(ranks, 24).is_solvable() as u32;
                    }
                }
            }
        }
        let total = 13f64.powi(4);
        assert_eq!(format!("{:.1}", 100.0 * solvable[0] as f64 / total), "73.1");
        assert_eq!(format!("{:.1}", 100.0 * solvable[1] as f64 / total), "79.2");
    }

    #[test]
    fn solution_strings_take_the_reference_form() {
        let s = solve([1, 3, 10, 6], 24);
        for expected in ["(10*3-6)*1", "1*(10*3-6)", "10*3-6/1", "10*3-6*1"] {
            assert!(s.all().iter().any(|x| x == expected), "{expected} missing");
        }
        assert!(s.all().iter().all(|x| !x.contains(' ')));
        assert!(s.any_starts_with("(10*3-"));
        assert!(!s.any_starts_with("(10*3+"));
        // 8/(3-8/3) is only reachable with exact fractions.
        assert!(
            solve([3, 3, 8, 8], 24)
                .all()
                .contains(&"8/(3-8/3)".to_string())
        );
        assert!(!solve([1, 1, 1, 1], 24).is_solvable());
        assert!(
            solve([1, 1, 1, 1], 4)
                .all()
                .contains(&"1+1+1+1".to_string())
        );
    }
}
