//! The command implementations, one module per group as in redis' documentation,
//! and the helpers they share (typed access to a key, argument parsing, error texts).

use crate::command::{Call, Command};
use crate::store::{Entry, Keys, Value, ZSet};
use bytes::Bytes;
use std::collections::{HashMap, HashSet, VecDeque};

mod connection;
mod hashes;
mod keyspace;
mod lists;
mod server;
mod sets;
mod strings;
mod zsets;

/// Every command of every group.
pub(crate) fn all() -> Vec<Command> {
    [
        connection::COMMANDS,
        server::COMMANDS,
        keyspace::COMMANDS,
        strings::COMMANDS,
        lists::COMMANDS,
        sets::COMMANDS,
        hashes::COMMANDS,
        zsets::COMMANDS,
    ]
    .concat()
}

/// Redis' error for a value that is not an integer.
pub(crate) const NOT_INT: &str = "ERR value is not an integer or out of range";
/// Redis' error for a value that is not a float.
pub(crate) const NOT_FLOAT: &str = "ERR value is not a valid float";
/// Redis' syntax error.
pub(crate) const SYNTAX: &str = "ERR syntax error";
/// Redis' error for an operation on a key of another type.
pub(crate) const WRONGTYPE: &str =
    "WRONGTYPE Operation against a key holding the wrong kind of value";
/// Redis' error for a negative count.
pub(crate) const NOT_POSITIVE: &str = "ERR value is out of range, must be positive";

/// A key holds another type than the command works on.
pub(crate) struct WrongType;

/// Parses an integer argument.
pub(crate) fn int(b: &[u8]) -> Option<i64> {
    crate::command::parse_i64(b)
}

/// Parses a float argument as redis does (`inf`, `-inf`, `+1.5`; never NaN).
pub(crate) fn float(b: &[u8]) -> Option<f64> {
    let s = std::str::from_utf8(b).ok()?;
    if s.is_empty() || s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace) {
        return None;
    }
    let f: f64 = match s.to_ascii_lowercase().as_str() {
        "inf" | "+inf" | "infinity" | "+infinity" => f64::INFINITY,
        "-inf" | "-infinity" => f64::NEG_INFINITY,
        _ => s.parse().ok()?,
    };
    (!f.is_nan()).then_some(f)
}

/// Whether `arg` is `word`, ignoring case.
pub(crate) fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

/// Generates typed access to a key: the value if it holds `$variant`, `Ok(None)` if
/// missing, `Err(WrongType)` otherwise; and a variant that creates an empty one.
macro_rules! typed {
    ($get:ident, $get_or_new:ident, $variant:ident, $ty:ty) => {
        /// The key's value of this type, if it exists.
        pub(crate) fn $get<'e>(
            keys: &'e mut Keys<'_>,
            key: &[u8],
        ) -> Result<Option<&'e mut $ty>, WrongType> {
            match keys.get(key) {
                None => Ok(None),
                Some(Entry {
                    value: Value::$variant(v),
                    ..
                }) => Ok(Some(v)),
                Some(_) => Err(WrongType),
            }
        }

        /// The key's value of this type, created empty if missing.
        pub(crate) fn $get_or_new<'e>(
            keys: &'e mut Keys<'_>,
            key: &[u8],
        ) -> Result<&'e mut $ty, WrongType> {
            if keys.get(key).is_none() {
                keys.insert(key, Value::$variant(Default::default()), None);
            }
            match keys.get(key) {
                Some(Entry {
                    value: Value::$variant(v),
                    ..
                }) => Ok(v),
                _ => Err(WrongType),
            }
        }
    };
}

typed!(list, list_or_new, List, VecDeque<Bytes>);
typed!(set, set_or_new, Set, HashSet<Bytes>);
typed!(hash, hash_or_new, Hash, HashMap<Bytes, Bytes>);
typed!(zset, zset_or_new, ZSet, ZSet);

/// The key's string value, if it exists.
pub(crate) fn string<'e>(
    keys: &'e mut Keys<'_>,
    key: &[u8],
) -> Result<Option<&'e Bytes>, WrongType> {
    match keys.get(key) {
        None => Ok(None),
        Some(Entry {
            value: Value::Str(v),
            ..
        }) => Ok(Some(v)),
        Some(_) => Err(WrongType),
    }
}

/// The integer of an optional COUNT argument: `Ok(None)` when absent.
pub(crate) fn count_arg(c: &mut Call<'_, '_>, at: usize) -> Result<Option<usize>, ()> {
    let Some(arg) = c.args.get(at) else {
        return Ok(None);
    };
    match int(arg) {
        None => {
            c.reply.error(NOT_POSITIVE);
            Err(())
        }
        Some(n) if n < 0 => {
            c.reply.error(NOT_POSITIVE);
            Err(())
        }
        Some(n) => Ok(Some(n as usize)),
    }
}

/// Redis' index normalisation for LRANGE/ZRANGE: the inclusive range of `len`
/// elements from `start` to `stop`, or `None` if it is empty.
pub(crate) fn index_range(start: i64, stop: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 {
        len.saturating_add(start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len.saturating_add(stop)
    } else {
        stop.min(len - 1)
    };
    (start <= stop && start < len).then_some((start as usize, stop as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_normalise_like_redis() {
        assert_eq!(index_range(0, -1, 5), Some((0, 4)));
        assert_eq!(index_range(-2, -1, 5), Some((3, 4)));
        assert_eq!(index_range(1, 100, 5), Some((1, 4)));
        assert_eq!(index_range(3, 1, 5), None);
        assert_eq!(index_range(5, 10, 5), None);
        assert_eq!(index_range(-100, 0, 5), Some((0, 0)));
        assert_eq!(index_range(0, -1, 0), None);
        assert_eq!(index_range(i64::MIN, i64::MAX, 5), Some((0, 4)));
        assert_eq!(index_range(i64::MIN, i64::MIN, 5), None);
    }

    #[test]
    fn floats_parse_like_redis() {
        assert_eq!(float(b"1.5"), Some(1.5));
        assert_eq!(float(b"+inf"), Some(f64::INFINITY));
        assert_eq!(float(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(float(b"nan"), None);
        assert_eq!(float(b" 1"), None);
        assert_eq!(float(b"x"), None);
    }
}
