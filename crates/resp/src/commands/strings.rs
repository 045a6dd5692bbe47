//! String commands: GET, SET, MGET, MSET, INCR, DECR, INCRBY, DECRBY, APPEND, STRLEN.

use super::{NOT_INT, SYNTAX, WRONGTYPE, WrongType, int, is, string};
use crate::command::{After, Call, Command, Flags, cmd};
use crate::store::Value;
use bytes::{Bytes, BytesMut};

/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// Every argument after the name is a key.
const ALL_ARGS: (u8, i8, u8) = (1, -1, 1);
/// Keys and values alternate.
const PAIRS: (u8, i8, u8) = (1, -1, 2);
/// Read, fast.
const RF: Flags = Flags::READONLY.with(Flags::FAST);
/// Write, fast.
const WF: Flags = Flags::WRITE.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("get", 2, RF, FIRST, get),
    cmd("set", -3, Flags::WRITE, FIRST, set),
    cmd("mget", -2, RF, ALL_ARGS, mget),
    cmd("mset", -3, Flags::WRITE, PAIRS, mset),
    cmd("incr", 2, WF, FIRST, incr),
    cmd("decr", 2, WF, FIRST, incr),
    cmd("incrby", 3, WF, FIRST, incr),
    cmd("decrby", 3, WF, FIRST, incr),
    cmd("append", 3, WF, FIRST, append),
    cmd("strlen", 2, RF, FIRST, strlen),
];

/// The longest string APPEND builds (redis' `proto-max-bulk-len`).
const MAX_STRING: usize = 512 << 20;

/// GET key
fn get(c: &mut Call<'_, '_>) -> After {
    match string(c.keys, c.args[1]) {
        Ok(Some(v)) => c.reply.bulk_shared(v),
        Ok(None) => c.reply.null(),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// How SET treats an existing key and its deadline.
#[derive(Default)]
struct SetOptions {
    /// Only if the key does not exist.
    nx: bool,
    /// Only if the key exists.
    xx: bool,
    /// Reply with the old value.
    get: bool,
    /// Keep the current deadline.
    keep_ttl: bool,
    /// The new deadline (ms since the epoch).
    expires: Option<u64>,
}

/// Parses SET's options; `Err` is the error reply.
fn set_options(args: &[&[u8]], now: u64) -> Result<SetOptions, &'static str> {
    let mut o = SetOptions::default();
    let mut expiry_given = false;
    let mut i = 0;
    while i < args.len() {
        let a = args[i];
        if is(a, "nx") && !o.xx {
            o.nx = true;
        } else if is(a, "xx") && !o.nx {
            o.xx = true;
        } else if is(a, "get") {
            o.get = true;
        } else if is(a, "keepttl") && !expiry_given {
            o.keep_ttl = true;
        } else if ["ex", "px", "exat", "pxat"].iter().any(|w| is(a, w))
            && !expiry_given
            && !o.keep_ttl
            && i + 1 < args.len()
        {
            let n = int(args[i + 1]).ok_or(NOT_INT)?;
            let invalid = "ERR invalid expire time in 'set' command";
            if n <= 0 {
                return Err(invalid);
            }
            let at = if is(a, "ex") {
                n.checked_mul(1000)
                    .and_then(|ms| ms.checked_add(now as i64))
            } else if is(a, "px") {
                n.checked_add(now as i64)
            } else if is(a, "exat") {
                n.checked_mul(1000)
            } else {
                Some(n)
            };
            o.expires = Some(at.ok_or(invalid)? as u64);
            expiry_given = true;
            i += 1;
        } else {
            return Err(SYNTAX);
        }
        i += 1;
    }
    Ok(o)
}

/// SET key value [NX | XX] [GET] [EX s | PX ms | EXAT s | PXAT ms | KEEPTTL]
fn set(c: &mut Call<'_, '_>) -> After {
    let (key, value) = (c.args[1], c.args[2]);
    let o = match set_options(&c.args[3..], c.keys.now()) {
        Ok(o) => o,
        Err(e) => {
            c.reply.error(e);
            return After::Continue;
        }
    };
    let (exists, old_expiry, old) = match c.keys.get(key) {
        None => (false, None, None),
        Some(e) => match &e.value {
            Value::Str(v) => (true, e.expires, Some(v.clone())),
            _ if o.get => {
                c.reply.error(WRONGTYPE);
                return After::Continue;
            }
            _ => (true, e.expires, None),
        },
    };
    let proceed = if exists { !o.nx } else { !o.xx };
    if proceed {
        let expires = if o.keep_ttl { old_expiry } else { o.expires };
        c.keys
            .insert(key, Value::Str(Bytes::copy_from_slice(value)), expires);
    }
    if o.get {
        match old {
            Some(v) => c.reply.bulk_shared(&v),
            None => c.reply.null(),
        }
    } else if proceed {
        c.reply.simple("OK");
    } else {
        c.reply.null();
    }
    After::Continue
}

/// MGET key [key ...]: a value of another type answers nil.
fn mget(c: &mut Call<'_, '_>) -> After {
    let keys = &c.args[1..];
    c.reply.array(keys.len());
    for k in keys {
        match string(c.keys, k) {
            Ok(Some(v)) => c.reply.bulk_shared(v),
            _ => c.reply.null(),
        }
        if c.reply.overflowed() {
            break;
        }
    }
    After::Continue
}

/// MSET key value [key value ...]
fn mset(c: &mut Call<'_, '_>) -> After {
    let pairs = &c.args[1..];
    if pairs.len() % 2 != 0 {
        c.reply.arity("mset");
        return After::Continue;
    }
    for kv in pairs.chunks_exact(2) {
        c.keys
            .insert(kv[0], Value::Str(Bytes::copy_from_slice(kv[1])), None);
    }
    c.reply.simple("OK");
    After::Continue
}

/// INCR / DECR key, INCRBY / DECRBY key delta
fn incr(c: &mut Call<'_, '_>) -> After {
    let name = c.args[0];
    let delta = if is(name, "incr") {
        1
    } else if is(name, "decr") {
        -1
    } else {
        let Some(n) = int(c.args[2]) else {
            c.reply.error(NOT_INT);
            return After::Continue;
        };
        if is(name, "decrby") {
            match n.checked_neg() {
                Some(n) => n,
                None => {
                    c.reply.error("ERR decrement would overflow");
                    return After::Continue;
                }
            }
        } else {
            n
        }
    };
    let key = c.args[1];
    let (current, expires) = match c.keys.get(key) {
        None => (Some(0), None),
        Some(e) => match &e.value {
            Value::Str(v) => (int(v), e.expires),
            _ => {
                c.reply.error(WRONGTYPE);
                return After::Continue;
            }
        },
    };
    let Some(current) = current else {
        c.reply.error(NOT_INT);
        return After::Continue;
    };
    match current.checked_add(delta) {
        None => c.reply.error("ERR increment or decrement would overflow"),
        Some(n) => {
            c.keys
                .insert(key, Value::Str(Bytes::from(n.to_string())), expires);
            c.reply.integer(n);
        }
    }
    After::Continue
}

/// APPEND key value: grows the stored buffer in place when no reply still holds it.
fn append(c: &mut Call<'_, '_>) -> After {
    let (key, tail) = (c.args[1], c.args[2]);
    let Some(entry) = c.keys.get(key) else {
        c.keys
            .insert(key, Value::Str(Bytes::copy_from_slice(tail)), None);
        c.reply.integer(tail.len() as i64);
        return After::Continue;
    };
    let Value::Str(v) = &mut entry.value else {
        c.reply.error(WRONGTYPE);
        return After::Continue;
    };
    if v.len() + tail.len() > MAX_STRING {
        c.reply
            .error("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        return After::Continue;
    }
    let mut grown = match std::mem::take(v).try_into_mut() {
        Ok(unique) => unique,
        Err(shared) => BytesMut::from(&shared[..]),
    };
    grown.extend_from_slice(tail);
    *v = grown.freeze();
    c.reply.integer(v.len() as i64);
    After::Continue
}

/// STRLEN key
fn strlen(c: &mut Call<'_, '_>) -> After {
    match string(c.keys, c.args[1]) {
        Ok(v) => c.reply.integer(v.map_or(0, |v| v.len() as i64)),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}
