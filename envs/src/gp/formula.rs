//! Formula tokens and evaluation: Python's `re.findall(r'\d+|[+\-*/()]', f)` tokenisation and
//! `eval(f)` semantics (exact integers, true division to f64, `SyntaxError` and
//! `ZeroDivisionError`), and an exact rational evaluation for the paper's reward scheme.

use crate::extract::decimal_digit_value;

/// One token of a formula.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Token<'a> {
    /// A maximal run of decimal digits (any Unicode Nd digits, as Python's `\d`).
    Number(&'a str),
    /// One of `+ - * / ( )`.
    Op(u8),
}

/// Splits `f` into tokens, or `None` if it holds anything but digits and the six operator
/// characters (the reference's "illegal characters" test: the tokens joined back ≠ f).
pub fn tokenize(f: &str) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::with_capacity(f.len().min(64));
    let mut digits_from: Option<usize> = None;
    for (i, c) in f.char_indices() {
        let is_digit = c.is_ascii_digit() || (!c.is_ascii() && decimal_digit_value(c).is_some());
        if is_digit {
            digits_from.get_or_insert(i);
            continue;
        }
        if let Some(start) = digits_from.take() {
            tokens.push(Token::Number(&f[start..i]));
        }
        match c {
            '+' | '-' | '*' | '/' | '(' | ')' => tokens.push(Token::Op(c as u8)),
            _ => return None,
        }
    }
    if let Some(start) = digits_from {
        tokens.push(Token::Number(&f[start..]));
    }
    Some(tokens)
}

/// Python's `int()` of a digit run: a machine integer, or the normalised decimal digits of a
/// larger one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntLiteral {
    Small(u64),
    Big(String),
}

impl IntLiteral {
    /// Reads a digit run (see [`Token::Number`]).
    pub fn parse(run: &str) -> Self {
        if run.len() <= 19
            && run.bytes().all(|b| b.is_ascii_digit())
            && let Ok(v) = run.parse()
        {
            return IntLiteral::Small(v);
        }
        let digits: String = run
            .chars()
            .filter_map(decimal_digit_value)
            .map(|d| char::from(b'0' + d as u8))
            .skip_while(|&c| c == '0')
            .collect();
        match digits.parse() {
            Ok(v) => IntLiteral::Small(v),
            Err(_) if digits.is_empty() => IntLiteral::Small(0),
            Err(_) => IntLiteral::Big(digits),
        }
    }

    /// The value, if it fits in a `u64`.
    pub fn small(&self) -> Option<u64> {
        match self {
            IntLiteral::Small(v) => Some(*v),
            IntLiteral::Big(_) => None,
        }
    }
}

/// Prints the integer as Python does.
impl std::fmt::Display for IntLiteral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IntLiteral::Small(v) => write!(f, "{v}"),
            IntLiteral::Big(digits) => f.write_str(digits),
        }
    }
}

/// Why an evaluation raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalError {
    Syntax,
    ZeroDivision,
}

/// A number type an evaluator computes in.
trait Arith: Sized {
    fn literal(run: &str) -> Result<Self, EvalError>;
    fn apply(self, op: u8, other: Self) -> Result<Self, EvalError>;
}

/// CPython's parser refuses more than this many nested open brackets.
const MAX_NESTING: usize = 200;

struct Parser<'t, 'a> {
    tokens: &'t [Token<'a>],
    pos: usize,
    depth: usize,
}

impl<'t, 'a> Parser<'t, 'a> {
    fn peek_op(&self) -> Option<u8> {
        match self.tokens.get(self.pos) {
            Some(Token::Op(o)) => Some(*o),
            _ => None,
        }
    }

    fn expr<N: Arith>(&mut self) -> Result<N, EvalError> {
        let mut acc = self.term::<N>()?;
        while let Some(op @ (b'+' | b'-')) = self.peek_op() {
            self.pos += 1;
            let rhs = self.term::<N>()?;
            acc = acc.apply(op, rhs)?;
        }
        Ok(acc)
    }

    fn term<N: Arith>(&mut self) -> Result<N, EvalError> {
        let mut acc = self.factor::<N>()?;
        while let Some(op @ (b'*' | b'/')) = self.peek_op() {
            self.pos += 1;
            let rhs = self.factor::<N>()?;
            acc = acc.apply(op, rhs)?;
        }
        Ok(acc)
    }

    fn factor<N: Arith>(&mut self) -> Result<N, EvalError> {
        match self.tokens.get(self.pos) {
            Some(Token::Number(run)) => {
                self.pos += 1;
                N::literal(run)
            }
            Some(Token::Op(b'(')) => {
                self.depth += 1;
                if self.depth > MAX_NESTING {
                    return Err(EvalError::Syntax);
                }
                self.pos += 1;
                let v = self.expr::<N>()?;
                if self.peek_op() != Some(b')') {
                    return Err(EvalError::Syntax);
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(v)
            }
            _ => Err(EvalError::Syntax),
        }
    }
}

fn evaluate<N: Arith>(tokens: &[Token<'_>]) -> Result<N, EvalError> {
    let mut p = Parser {
        tokens,
        pos: 0,
        depth: 0,
    };
    let v = p.expr::<N>()?;
    if p.pos == tokens.len() {
        Ok(v)
    } else {
        Err(EvalError::Syntax)
    }
}

/// A Python number: `int` (exact; these formulas hold few, small numbers) or `float`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PyNum {
    Int(i128),
    Float(f64),
}

impl PyNum {
    fn as_f64(self) -> f64 {
        match self {
            PyNum::Int(i) => i as f64,
            PyNum::Float(f) => f,
        }
    }

    /// Python's `self == target` for an integer target.
    pub fn equals_int(self, target: i64) -> bool {
        match self {
            PyNum::Int(i) => i == target as i128,
            PyNum::Float(f) => f == target as f64,
        }
    }
}

impl Arith for PyNum {
    fn literal(run: &str) -> Result<Self, EvalError> {
        // Python source accepts only ASCII digits, and no leading zeros unless all are zeros.
        let ok = run.is_ascii() && (!run.starts_with('0') || run.bytes().all(|b| b == b'0'));
        if !ok {
            return Err(EvalError::Syntax);
        }
        // Longer literals cannot reach evaluation (only card values pass the number checks).
        run.parse::<i128>()
            .map(PyNum::Int)
            .map_err(|_| EvalError::Syntax)
    }

    fn apply(self, op: u8, other: Self) -> Result<Self, EvalError> {
        use PyNum::*;
        if op == b'/' {
            let d = other.as_f64();
            if d == 0.0 {
                return Err(EvalError::ZeroDivision);
            }
            return Ok(Float(self.as_f64() / d));
        }
        let float_op = |x: f64, y: f64| {
            Float(match op {
                b'+' => x + y,
                b'-' => x - y,
                _ => x * y,
            })
        };
        Ok(match (self, other) {
            (Int(a), Int(b)) => {
                let exact = match op {
                    b'+' => a.checked_add(b),
                    b'-' => a.checked_sub(b),
                    _ => a.checked_mul(b),
                };
                // Python integers never overflow; so far out, floats are close enough.
                exact.map_or_else(|| float_op(a as f64, b as f64), Int)
            }
            (a, b) => float_op(a.as_f64(), b.as_f64()),
        })
    }
}

/// `eval(f)` as Python computes it, for a formula already split into tokens.
pub fn python_eval(tokens: &[Token<'_>]) -> Result<PyNum, EvalError> {
    evaluate::<PyNum>(tokens)
}

/// An exact rational (`num / den`, `den > 0`), for the paper's reward scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exact {
    num: i128,
    den: i128,
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Exact {
    fn new(num: i128, den: i128) -> Result<Self, EvalError> {
        if den == 0 {
            return Err(EvalError::ZeroDivision);
        }
        let g = gcd(num, den).max(1) * den.signum();
        Ok(Exact {
            num: num / g,
            den: den / g,
        })
    }

    /// The integer `v`.
    pub fn int(v: i64) -> Self {
        Exact {
            num: v.into(),
            den: 1,
        }
    }

    /// Whether this equals the integer `target`.
    pub fn equals_int(self, target: i64) -> bool {
        self.den == 1 && self.num == target as i128
    }

    /// `self op o` for `op` in `+ - * /`; division by zero (and, far beyond any card game, i128
    /// overflow) is an error.
    pub fn apply(self, op: u8, o: Self) -> Result<Self, EvalError> {
        let overflow = |x: Option<i128>| x.ok_or(EvalError::Syntax);
        match op {
            b'+' | b'-' => {
                let l = overflow(self.num.checked_mul(o.den))?;
                let r = overflow(o.num.checked_mul(self.den))?;
                let n = overflow(if op == b'+' {
                    l.checked_add(r)
                } else {
                    l.checked_sub(r)
                })?;
                Exact::new(n, overflow(self.den.checked_mul(o.den))?)
            }
            b'*' => Exact::new(
                overflow(self.num.checked_mul(o.num))?,
                overflow(self.den.checked_mul(o.den))?,
            ),
            _ => Exact::new(
                overflow(self.num.checked_mul(o.den))?,
                overflow(self.den.checked_mul(o.num))?,
            ),
        }
    }
}

impl Arith for Exact {
    fn literal(run: &str) -> Result<Self, EvalError> {
        let v = IntLiteral::parse(run).small().ok_or(EvalError::Syntax)?;
        Ok(Exact {
            num: v.into(),
            den: 1,
        })
    }

    fn apply(self, op: u8, o: Self) -> Result<Self, EvalError> {
        Exact::apply(self, op, o)
    }
}

impl std::fmt::Display for Exact {
    /// `7`, or `7/3` for a fraction.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.den {
            1 => write!(f, "{}", self.num),
            den => write!(f, "{}/{den}", self.num),
        }
    }
}

/// An exact value with the steps that computed it, in evaluation order.
struct Traced {
    value: Exact,
    steps: Vec<String>,
}

impl Arith for Traced {
    fn literal(run: &str) -> Result<Self, EvalError> {
        Ok(Traced {
            value: <Exact as Arith>::literal(run)?,
            steps: Vec::new(),
        })
    }

    fn apply(mut self, op: u8, o: Self) -> Result<Self, EvalError> {
        let value = self.value.apply(op, o.value)?;
        self.steps.extend(o.steps);
        let (l, r) = (self.value, o.value);
        // A fraction or negative operand is bracketed so that each step reads on its own.
        let show = |x: Exact| match x.den == 1 && x.num >= 0 {
            true => x.to_string(),
            false => format!("({x})"),
        };
        self.steps
            .push(format!("{}{}{}={value}", show(l), op as char, show(r)));
        Ok(Traced {
            value,
            steps: self.steps,
        })
    }
}

/// The arithmetic of a formula one operation at a time, in the order Python evaluates it
/// (`(10*3-6)*1` → `10*3=30`, `30-6=24`, `24*1=24`), with exact values.
pub fn exact_steps(tokens: &[Token<'_>]) -> Result<(Exact, Vec<String>), EvalError> {
    evaluate::<Traced>(tokens).map(|t| (t.value, t.steps))
}

/// The exact value of a formula (unbalanced brackets and division by zero are errors).
pub fn exact_eval(tokens: &[Token<'_>]) -> Result<Exact, EvalError> {
    evaluate::<Exact>(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(f: &str) -> Result<PyNum, EvalError> {
        python_eval(&tokenize(f).unwrap())
    }

    #[test]
    fn tokenizes_like_findall() {
        assert_eq!(tokenize("(10*3-6)*1").unwrap().len(), 9);
        assert_eq!(
            tokenize("١٢+3").unwrap(),
            vec![Token::Number("١٢"), Token::Op(b'+'), Token::Number("3")]
        );
        for bad in ["10 * 3", "2x3", "1=2", "None", "4÷2", "1.5"] {
            assert!(tokenize(bad).is_none(), "{bad}");
        }
        assert_eq!(tokenize("").unwrap(), vec![]);
    }

    #[test]
    fn steps_follow_python_evaluation_order() {
        let steps = |f| exact_steps(&tokenize(f).unwrap()).unwrap();
        let (value, s) = steps("(10*3-6)*1");
        assert!(value.equals_int(24));
        assert_eq!(s, ["10*3=30", "30-6=24", "24*1=24"]);
        let (value, s) = steps("8/(3-8/3)");
        assert!(value.equals_int(24));
        assert_eq!(s, ["8/3=8/3", "3-(8/3)=1/3", "8/(1/3)=24"]);
        assert_eq!(steps("6+18").1, ["6+18=24"]);
        assert_eq!(
            steps("10-2*(3-10)").1,
            ["3-10=-7", "2*(-7)=-14", "10-(-14)=24"]
        );
        assert!(exact_steps(&tokenize("1/(2-2)").unwrap()).is_err());
    }

    #[test]
    fn evaluates_like_python() {
        assert_eq!(eval("(10*3-6)*1"), Ok(PyNum::Int(24)));
        assert!(
            !eval("8/(3-8/3)").unwrap().equals_int(24),
            "float rounding, as in Python"
        );
        assert!(eval("6/2*8").unwrap().equals_int(24));
        assert_eq!(eval("1/(3-3)"), Err(EvalError::ZeroDivision));
        assert_eq!(eval("((1+2)*8"), Err(EvalError::Syntax));
        assert_eq!(eval("06+18"), Err(EvalError::Syntax));
        assert_eq!(eval("٣*8"), Err(EvalError::Syntax));
        let deep = format!("{}1{}", "(".repeat(201), ")".repeat(201));
        assert_eq!(eval(&deep), Err(EvalError::Syntax));
        let ok = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert_eq!(eval(&ok), Ok(PyNum::Int(1)));
    }

    #[test]
    fn exact_evaluation() {
        let t = tokenize("8/(3-8/3)").unwrap();
        assert!(exact_eval(&t).unwrap().equals_int(24));
        assert_eq!(
            exact_eval(&tokenize("1/(2-2)").unwrap()),
            Err(EvalError::ZeroDivision)
        );
        assert_eq!(IntLiteral::parse("007"), IntLiteral::Small(7));
        assert_eq!(IntLiteral::parse("٠"), IntLiteral::Small(0));
        assert_eq!(IntLiteral::parse("٠١٢").to_string(), "12");
        let big = format!("00{}", "9".repeat(30));
        assert_eq!(IntLiteral::parse(&big).to_string(), "9".repeat(30));
    }
}
