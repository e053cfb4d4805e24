//! Reading and writing `gps_pano_mapping.pkl`: a Python pickle of a `dict[(lat, lng) -> pano_id]`.
//!
//! The reader is a small pickle virtual machine for the opcodes such a dict uses in protocols
//! 2 to 5 (what `pickle.dump` writes for floats, tuples, strings and dicts, with memoisation and
//! framing). Any other opcode (a numpy scalar's `GLOBAL`/`REDUCE`, say) is an error that names it.
//! The writer emits protocol 4, as Python's default `pickle.dump` does.

use std::collections::HashMap;
use std::rc::Rc;

/// The mapping in its file order: `((lat, lng), pano_id)`.
pub type Mapping = Vec<((f64, f64), String)>;

/// Why a pickle could not be read, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct PickleError {
    /// Byte offset of the failing opcode.
    pub offset: usize,
    pub problem: String,
}

/// A value on the machine's stack. Strings and tuples are shared, so memo lookups copy no data;
/// tuples hold only scalars and dicts no dicts, so values stay at most three levels deep (a
/// corrupt file can neither nest values until dropping them overflows the stack nor grow them
/// exponentially through the memo).
#[derive(Clone, Debug)]
enum Value {
    Mark,
    Int(i64),
    Float(f64),
    Str(Rc<str>),
    Tuple(Rc<[Value]>),
    Dict(Vec<(Value, Value)>),
}

const PROTO: u8 = 0x80;
const FRAME: u8 = 0x95;
const STOP: u8 = b'.';
const MARK: u8 = b'(';
const EMPTY_DICT: u8 = b'}';
const DICT: u8 = b'd';
const EMPTY_TUPLE: u8 = b')';
const TUPLE: u8 = b't';
const TUPLE1: u8 = 0x85;
const TUPLE2: u8 = 0x86;
const TUPLE3: u8 = 0x87;
const BINFLOAT: u8 = b'G';
const BININT: u8 = b'J';
const BININT1: u8 = b'K';
const BININT2: u8 = b'M';
const SHORT_BINUNICODE: u8 = 0x8c;
const BINUNICODE: u8 = b'X';
const BINUNICODE8: u8 = 0x8d;
const MEMOIZE: u8 = 0x94;
const BINPUT: u8 = b'q';
const LONG_BINPUT: u8 = b'r';
const BINGET: u8 = b'h';
const LONG_BINGET: u8 = b'j';
const SETITEM: u8 = b's';
const SETITEMS: u8 = b'u';

/// Names of opcodes this reader does not support, for the error message.
fn opcode_name(op: u8) -> &'static str {
    match op {
        b'c' => "GLOBAL",
        0x93 => "STACK_GLOBAL",
        b'R' => "REDUCE",
        0x81 => "NEWOBJ",
        b'b' => "BUILD",
        b']' => "EMPTY_LIST",
        b'l' => "LIST",
        b'a' => "APPEND",
        b'e' => "APPENDS",
        b'F' => "FLOAT",
        b'I' => "INT",
        b'L' => "LONG",
        0x8a => "LONG1",
        b'V' => "UNICODE",
        b'S' => "STRING",
        b'U' => "SHORT_BINSTRING",
        b'C' => "SHORT_BINBYTES",
        b'B' => "BINBYTES",
        b'N' => "NONE",
        0x88 => "NEWTRUE",
        0x89 => "NEWFALSE",
        b'p' => "PUT",
        b'g' => "GET",
        _ => "unknown opcode",
    }
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    op_at: usize,
    stack: Vec<Value>,
    memo: HashMap<u64, Value>,
}

impl Machine<'_> {
    fn fail<T>(&self, problem: impl Into<String>) -> Result<T, PickleError> {
        Err(PickleError {
            offset: self.op_at,
            problem: problem.into(),
        })
    }

    fn take(&mut self, n: usize) -> Result<&[u8], PickleError> {
        match self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
        {
            Some(end) => {
                let bytes = &self.data[self.pos..end];
                self.pos = end;
                Ok(bytes)
            }
            None => self.fail("file ends inside an opcode (truncated pickle)"),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        match self.stack.pop() {
            Some(Value::Mark) | None => self.fail("stack underflow"),
            Some(v) => Ok(v),
        }
    }

    /// Pops everything above the topmost mark, and the mark.
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        match self.stack.iter().rposition(|v| matches!(v, Value::Mark)) {
            Some(at) => {
                let items = self.stack.split_off(at + 1);
                self.stack.pop();
                Ok(items)
            }
            None => self.fail("no MARK on the stack"),
        }
    }

    fn string(&mut self, len: u64) -> Result<(), PickleError> {
        let len = usize::try_from(len).or_else(|_| self.fail("string length overflows"))?;
        let bytes = self.take(len)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => {
                let s = Rc::from(s);
                self.stack.push(Value::Str(s));
                Ok(())
            }
            Err(_) => self.fail("string is not valid UTF-8"),
        }
    }

    /// Pushes a tuple of scalars.
    fn tuple(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if items
            .iter()
            .any(|v| matches!(v, Value::Tuple(_) | Value::Dict(_)))
        {
            return self.fail("a tuple or dict inside a tuple is not supported");
        }
        self.stack.push(Value::Tuple(Rc::from(items)));
        Ok(())
    }

    fn put(&mut self, index: u64) -> Result<(), PickleError> {
        match self.stack.last() {
            Some(Value::Mark) | None => self.fail("memoising an empty stack"),
            Some(v) => {
                let v = v.clone();
                self.memo.insert(index, v);
                Ok(())
            }
        }
    }

    fn get(&mut self, index: u64) -> Result<(), PickleError> {
        match self.memo.get(&index) {
            Some(Value::Dict(_)) => self.fail("a shared reference to a dict is not supported"),
            Some(v) => {
                let v = v.clone();
                self.stack.push(v);
                Ok(())
            }
            None => self.fail(format!("memo entry {index} was never stored")),
        }
    }

    fn set_items(&mut self, items: Vec<Value>) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return self.fail("odd number of items for a dict");
        }
        if items.iter().any(|v| matches!(v, Value::Dict(_))) {
            return self.fail("a dict inside a dict is not supported");
        }
        let Some(Value::Dict(entries)) = self.stack.last_mut() else {
            return self.fail("SETITEM(S) without a dict below");
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            entries.push((k, v));
        }
        Ok(())
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            self.op_at = self.pos;
            let [op] = self.take_array::<1>()?;
            match op {
                PROTO => {
                    let [v] = self.take_array::<1>()?;
                    if !(2..=5).contains(&v) {
                        return self
                            .fail(format!("pickle protocol {v} is not supported (2 to 5 are)"));
                    }
                }
                FRAME => {
                    self.take(8)?;
                }
                STOP => {
                    let top = self.pop()?;
                    return if self.stack.is_empty() {
                        Ok(top)
                    } else {
                        self.fail("values left on the stack at STOP")
                    };
                }
                MARK => self.stack.push(Value::Mark),
                EMPTY_DICT => self.stack.push(Value::Dict(Vec::new())),
                DICT => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Dict(Vec::new()));
                    self.set_items(items)?;
                }
                EMPTY_TUPLE => self.stack.push(Value::Tuple(Rc::from([]))),
                TUPLE => {
                    let items = self.pop_mark()?;
                    self.tuple(items)?;
                }
                TUPLE1 | TUPLE2 | TUPLE3 => {
                    let n = (op - TUPLE1 + 1) as usize;
                    let mut items = (0..n).map(|_| self.pop()).collect::<Result<Vec<_>, _>>()?;
                    items.reverse();
                    self.tuple(items)?;
                }
                BINFLOAT => {
                    let v = f64::from_be_bytes(self.take_array()?);
                    self.stack.push(Value::Float(v));
                }
                BININT => {
                    let v = i32::from_le_bytes(self.take_array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                BININT1 => {
                    let [v] = self.take_array::<1>()?;
                    self.stack.push(Value::Int(v.into()));
                }
                BININT2 => {
                    let v = u16::from_le_bytes(self.take_array()?);
                    self.stack.push(Value::Int(v.into()));
                }
                SHORT_BINUNICODE => {
                    let [n] = self.take_array::<1>()?;
                    self.string(n.into())?;
                }
                BINUNICODE => {
                    let n = u32::from_le_bytes(self.take_array()?);
                    self.string(n.into())?;
                }
                BINUNICODE8 => {
                    let n = u64::from_le_bytes(self.take_array()?);
                    self.string(n)?;
                }
                MEMOIZE => {
                    let n = self.memo.len() as u64;
                    self.put(n)?;
                }
                BINPUT => {
                    let [i] = self.take_array::<1>()?;
                    self.put(i.into())?;
                }
                LONG_BINPUT => {
                    let i = u32::from_le_bytes(self.take_array()?);
                    self.put(i.into())?;
                }
                BINGET => {
                    let [i] = self.take_array::<1>()?;
                    self.get(i.into())?;
                }
                LONG_BINGET => {
                    let i = u32::from_le_bytes(self.take_array()?);
                    self.get(i.into())?;
                }
                SETITEM => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![k, v])?;
                }
                SETITEMS => {
                    let items = self.pop_mark()?;
                    self.set_items(items)?;
                }
                other => {
                    return self.fail(format!(
                        "unsupported pickle opcode 0x{other:02x} ({}); the mapping must be a plain dict of (float, float) tuples to str",
                        opcode_name(other)
                    ));
                }
            }
        }
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::Float(f) => Some(f),
        Value::Int(i) => Some(i as f64),
        _ => None,
    }
}

/// Reads a pickled `dict[(lat, lng) -> pano_id]`, keeping the dict's order. A key stored twice
/// keeps its first position and its last value, as a Python dict does.
pub fn read_mapping(bytes: &[u8]) -> Result<Mapping, PickleError> {
    let machine = Machine {
        data: bytes,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        memo: HashMap::new(),
    };
    let end = bytes.len();
    let Value::Dict(entries) = machine.run()? else {
        return Err(PickleError {
            offset: end,
            problem: "the pickled object is not a dict".into(),
        });
    };
    let mut out: Mapping = Vec::with_capacity(entries.len());
    let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, (k, v)) in entries.into_iter().enumerate() {
        let bad = |what: &str| PickleError {
            offset: end,
            problem: format!("dict entry {i}: {what}"),
        };
        let key = match &k {
            Value::Tuple(t) if t.len() == 2 => match (as_f64(&t[0]), as_f64(&t[1])) {
                (Some(lat), Some(lng)) => (lat, lng),
                _ => return Err(bad("key is not a pair of numbers")),
            },
            _ => return Err(bad("key is not a (lat, lng) tuple")),
        };
        let Value::Str(pano) = v else {
            return Err(bad("value is not a str pano id"));
        };
        let pano = pano.to_string();
        // Python compares float keys by value, so -0.0 and 0.0 are one key.
        let bits = ((key.0 + 0.0).to_bits(), (key.1 + 0.0).to_bits());
        match seen.get(&bits) {
            Some(&at) => out[at].1 = pano,
            None => {
                seen.insert(bits, out.len());
                out.push((key, pano));
            }
        }
    }
    Ok(out)
}

/// Pickles a mapping with protocol 4, in the layout of Python's `pickle.dump` (one frame,
/// `SETITEMS` batches of 1000, every tuple and string memoised).
pub fn write_mapping(entries: &[((f64, f64), String)]) -> Vec<u8> {
    let mut body = vec![EMPTY_DICT, MEMOIZE];
    for batch in entries.chunks(1000) {
        body.push(MARK);
        for ((lat, lng), pano) in batch {
            for v in [lat, lng] {
                body.push(BINFLOAT);
                body.extend_from_slice(&v.to_be_bytes());
            }
            body.extend_from_slice(&[TUPLE2, MEMOIZE]);
            if pano.len() < 256 {
                body.extend_from_slice(&[SHORT_BINUNICODE, pano.len() as u8]);
            } else {
                body.push(BINUNICODE);
                body.extend_from_slice(&(pano.len() as u32).to_le_bytes());
            }
            body.extend_from_slice(pano.as_bytes());
            body.push(MEMOIZE);
        }
        body.push(SETITEMS);
    }
    body.push(STOP);
    let mut out = vec![PROTO, 4, FRAME];
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Mapping {
        vec![
            ((40.72, -73.99), "pano_a".to_string()),
            ((40.7201, -73.9901), "b".repeat(300)),
        ]
    }

    #[test]
    fn round_trips_through_the_writer() {
        let m = sample();
        assert_eq!(read_mapping(&write_mapping(&m)).unwrap(), m);
        assert_eq!(read_mapping(&write_mapping(&[])).unwrap(), vec![]);
    }

    #[test]
    fn errors_name_the_opcode_and_offset() {
        let mut bytes = write_mapping(&sample());
        let err = read_mapping(&bytes[..bytes.len() - 5]).unwrap_err();
        assert!(err.problem.contains("truncated"), "{err:?}");
        // Replace the first BINFLOAT with a GLOBAL opcode (as a numpy scalar would use).
        let at = bytes.iter().position(|&b| b == BINFLOAT).unwrap();
        bytes[at] = b'c';
        let err = read_mapping(&bytes).unwrap_err();
        assert_eq!(err.offset, at);
        assert!(err.problem.contains("0x63 (GLOBAL)"), "{err:?}");
        assert!(
            read_mapping(&[PROTO, 1])
                .unwrap_err()
                .problem
                .contains("protocol 1")
        );
        assert!(read_mapping(b"").unwrap_err().problem.contains("truncated"));
        // A list at the top level.
        assert!(
            read_mapping(&[PROTO, 4, b']', STOP])
                .unwrap_err()
                .problem
                .contains("EMPTY_LIST")
        );
        // A dict whose value is an int.
        let bad = [
            PROTO, 2, EMPTY_DICT, BININT1, 1, BININT1, 2, TUPLE2, BININT1, 3, SETITEM, STOP,
        ];
        assert!(
            read_mapping(&bad)
                .unwrap_err()
                .problem
                .contains("value is not a str")
        );
    }

    #[test]
    fn deep_nesting_and_memo_bombs_stay_cheap() {
        // A hundred thousand nested one-tuples: refused at the second level, not dropped
        // recursively at the end.
        let mut deep = vec![PROTO, 4, BININT1, 1];
        deep.extend(std::iter::repeat_n(TUPLE1, 100_000));
        deep.push(STOP);
        let err = read_mapping(&deep).unwrap_err();
        assert!(err.problem.contains("inside a tuple"), "{err:?}");
        // Dicts set into dicts.
        let mut dicts = vec![PROTO, 4];
        for _ in 0..10_000 {
            dicts.extend([EMPTY_DICT, BININT1, 1]);
        }
        dicts.extend([EMPTY_DICT, SETITEM]);
        let err = read_mapping(&dicts).unwrap_err();
        assert!(err.problem.contains("dict inside a dict"), "{err:?}");
        // A 60 kB string memoised, then fetched 199 999 times: shared, not copied (copies
        // would take 12 GB).
        let mut bomb = vec![PROTO, 4, MARK, BINUNICODE];
        bomb.extend(60_000u32.to_le_bytes());
        bomb.extend(std::iter::repeat_n(b'x', 60_000));
        bomb.push(MEMOIZE);
        for _ in 0..199_999 {
            bomb.extend([BINGET, 0]);
        }
        bomb.extend([DICT, STOP]);
        let err = read_mapping(&bomb).unwrap_err();
        assert!(
            err.problem.contains("key is not a (lat, lng) tuple"),
            "{err:?}"
        );
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_give_a_mapping_or_an_error(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = read_mapping(&bytes);
        }

        #[test]
        fn damaged_pickles_give_a_mapping_or_an_error(at in 0usize..200, byte in proptest::prelude::any::<u8>(), cut in 0usize..200) {
            let mut bytes = write_mapping(&sample());
            let at = at % bytes.len();
            bytes[at] = byte;
            bytes.truncate(bytes.len() - cut % bytes.len());
            let _ = read_mapping(&bytes);
        }
    }
}
