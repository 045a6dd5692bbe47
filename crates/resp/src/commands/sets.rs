//! Set commands: SADD, SREM, SPOP, SMEMBERS, SCARD, SISMEMBER.

use super::{WRONGTYPE, WrongType, count_arg, set, set_or_new};
use crate::command::{After, Call, Command, Flags, cmd};
use bytes::Bytes;

/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// Write, fast.
const WF: Flags = Flags::WRITE.with(Flags::FAST);
/// Read, fast.
const RF: Flags = Flags::READONLY.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("sadd", -3, WF, FIRST, sadd),
    cmd("srem", -3, WF, FIRST, srem),
    cmd("spop", -2, WF, FIRST, spop),
    cmd("smembers", 2, Flags::READONLY, FIRST, smembers),
    cmd("scard", 2, RF, FIRST, scard),
    cmd("sismember", 3, RF, FIRST, sismember),
];

/// SADD key member [member ...]
fn sadd(c: &mut Call<'_, '_>) -> After {
    match set_or_new(c.keys, c.args[1]) {
        Ok(s) => {
            let added = c.args[2..]
                .iter()
                .filter(|m| s.insert(Bytes::copy_from_slice(m)))
                .count();
            c.reply.integer(added as i64);
        }
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// SREM key member [member ...]
fn srem(c: &mut Call<'_, '_>) -> After {
    let key = c.args[1];
    match set(c.keys, key) {
        Ok(Some(s)) => {
            let removed = c.args[2..].iter().filter(|m| s.remove(**m)).count();
            c.reply.integer(removed as i64);
            c.keys.drop_if_empty(key);
        }
        Ok(None) => c.reply.integer(0),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// SPOP key [count]: removes members in the set's own (randomly seeded) order.
fn spop(c: &mut Call<'_, '_>) -> After {
    if c.args.len() > 3 {
        c.reply.error(super::SYNTAX);
        return After::Continue;
    }
    let Ok(count) = count_arg(c, 2) else {
        return After::Continue;
    };
    let key = c.args[1];
    match set(c.keys, key) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(None) => match count {
            None => c.reply.null(),
            Some(_) => c.reply.set(0),
        },
        Ok(Some(s)) => {
            let n = count.unwrap_or(1).min(s.len());
            let taken: Vec<Bytes> = s.iter().take(n).cloned().collect();
            for m in &taken {
                s.remove(m);
            }
            match count {
                None => match taken.first() {
                    Some(m) => c.reply.bulk_shared(m),
                    None => c.reply.null(),
                },
                Some(_) => {
                    c.reply.set(taken.len());
                    for m in &taken {
                        c.reply.bulk_shared(m);
                    }
                }
            }
            c.keys.drop_if_empty(key);
        }
    }
    After::Continue
}

/// SMEMBERS key
fn smembers(c: &mut Call<'_, '_>) -> After {
    match set(c.keys, c.args[1]) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.set(0),
        Ok(Some(s)) => {
            c.reply.set(s.len());
            for m in s.iter() {
                c.reply.bulk_shared(m);
                if c.reply.overflowed() {
                    break;
                }
            }
        }
    }
    After::Continue
}

/// SCARD key
fn scard(c: &mut Call<'_, '_>) -> After {
    match set(c.keys, c.args[1]) {
        Ok(s) => c.reply.integer(s.map_or(0, |s| s.len() as i64)),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// SISMEMBER key member
fn sismember(c: &mut Call<'_, '_>) -> After {
    match set(c.keys, c.args[1]) {
        Ok(s) => c
            .reply
            .integer(i64::from(s.is_some_and(|s| s.contains(c.args[2])))),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}
