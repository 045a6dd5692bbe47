//! Hash commands: HSET, HGET, HGETALL, HDEL, HLEN.

use super::{WRONGTYPE, WrongType, hash, hash_or_new};
use crate::command::{After, Call, Command, Flags, cmd};
use bytes::Bytes;

/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// Read, fast.
const RF: Flags = Flags::READONLY.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("hset", -4, Flags::WRITE.with(Flags::FAST), FIRST, hset),
    cmd("hget", 3, RF, FIRST, hget),
    cmd("hgetall", 2, Flags::READONLY, FIRST, hgetall),
    cmd("hdel", -3, Flags::WRITE.with(Flags::FAST), FIRST, hdel),
    cmd("hlen", 2, RF, FIRST, hlen),
];

/// HSET key field value [field value ...]
fn hset(c: &mut Call<'_, '_>) -> After {
    if c.args.len() % 2 != 0 {
        c.reply.arity("hset");
        return After::Continue;
    }
    match hash_or_new(c.keys, c.args[1]) {
        Ok(h) => {
            let added = c.args[2..]
                .chunks_exact(2)
                .filter(|fv| {
                    h.insert(Bytes::copy_from_slice(fv[0]), Bytes::copy_from_slice(fv[1]))
                        .is_none()
                })
                .count();
            c.reply.integer(added as i64);
        }
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// HGET key field
fn hget(c: &mut Call<'_, '_>) -> After {
    match hash(c.keys, c.args[1]) {
        Ok(h) => match h.and_then(|h| h.get(c.args[2])) {
            Some(v) => c.reply.bulk_shared(v),
            None => c.reply.null(),
        },
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// HGETALL key
fn hgetall(c: &mut Call<'_, '_>) -> After {
    match hash(c.keys, c.args[1]) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.map(0),
        Ok(Some(h)) => {
            c.reply.map(h.len());
            for (f, v) in h.iter() {
                c.reply.bulk_shared(f);
                c.reply.bulk_shared(v);
                if c.reply.overflowed() {
                    break;
                }
            }
        }
    }
    After::Continue
}

/// HDEL key field [field ...]
fn hdel(c: &mut Call<'_, '_>) -> After {
    let key = c.args[1];
    match hash(c.keys, key) {
        Ok(Some(h)) => {
            let removed = c.args[2..]
                .iter()
                .filter(|f| h.remove(**f).is_some())
                .count();
            c.reply.integer(removed as i64);
            c.keys.drop_if_empty(key);
        }
        Ok(None) => c.reply.integer(0),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// HLEN key
fn hlen(c: &mut Call<'_, '_>) -> After {
    match hash(c.keys, c.args[1]) {
        Ok(h) => c.reply.integer(h.map_or(0, |h| h.len() as i64)),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}
