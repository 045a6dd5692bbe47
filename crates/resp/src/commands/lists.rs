//! List commands: LPUSH, RPUSH, LPOP, RPOP, LRANGE, LLEN.

use super::{NOT_INT, WRONGTYPE, WrongType, count_arg, index_range, int, is, list, list_or_new};
use crate::command::{After, Call, Command, Flags, cmd};
use bytes::Bytes;

/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// Write, fast.
const WF: Flags = Flags::WRITE.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("lpush", -3, WF, FIRST, push),
    cmd("rpush", -3, WF, FIRST, push),
    cmd("lpop", -2, WF, FIRST, pop),
    cmd("rpop", -2, WF, FIRST, pop),
    cmd("lrange", 4, Flags::READONLY, FIRST, lrange),
    cmd("llen", 2, Flags::READONLY.with(Flags::FAST), FIRST, llen),
];

/// LPUSH / RPUSH key element [element ...]
fn push(c: &mut Call<'_, '_>) -> After {
    let left = is(c.args[0], "lpush");
    match list_or_new(c.keys, c.args[1]) {
        Ok(l) => {
            for e in &c.args[2..] {
                let e = Bytes::copy_from_slice(e);
                if left {
                    l.push_front(e);
                } else {
                    l.push_back(e);
                }
            }
            c.reply.integer(l.len() as i64);
        }
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}

/// LPOP / RPOP key [count]
fn pop(c: &mut Call<'_, '_>) -> After {
    let left = is(c.args[0], "lpop");
    if c.args.len() > 3 {
        c.reply.arity(if left { "lpop" } else { "rpop" });
        return After::Continue;
    }
    let Ok(count) = count_arg(c, 2) else {
        return After::Continue;
    };
    let key = c.args[1];
    match list(c.keys, key) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(None) => match count {
            None => c.reply.null(),
            Some(_) => c.reply.null_array(),
        },
        Ok(Some(l)) => {
            let take = |l: &mut std::collections::VecDeque<Bytes>| {
                if left { l.pop_front() } else { l.pop_back() }
            };
            match count {
                None => match take(l) {
                    Some(v) => c.reply.bulk_shared(&v),
                    None => c.reply.null(),
                },
                Some(n) => {
                    let n = n.min(l.len());
                    c.reply.array(n);
                    for _ in 0..n {
                        if let Some(v) = take(l) {
                            c.reply.bulk_shared(&v);
                        }
                    }
                }
            }
            c.keys.drop_if_empty(key);
        }
    }
    After::Continue
}

/// LRANGE key start stop
fn lrange(c: &mut Call<'_, '_>) -> After {
    let (Some(start), Some(stop)) = (int(c.args[2]), int(c.args[3])) else {
        c.reply.error(NOT_INT);
        return After::Continue;
    };
    match list(c.keys, c.args[1]) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(None) => c.reply.array(0),
        Ok(Some(l)) => match index_range(start, stop, l.len()) {
            None => c.reply.array(0),
            Some((from, to)) => {
                c.reply.array(to - from + 1);
                for v in l.range(from..=to) {
                    c.reply.bulk_shared(v);
                    if c.reply.overflowed() {
                        break;
                    }
                }
            }
        },
    }
    After::Continue
}

/// LLEN key
fn llen(c: &mut Call<'_, '_>) -> After {
    match list(c.keys, c.args[1]) {
        Ok(l) => c.reply.integer(l.map_or(0, |l| l.len() as i64)),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}
