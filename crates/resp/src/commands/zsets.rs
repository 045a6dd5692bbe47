//! Sorted-set commands: ZADD, ZRANGE, ZREVRANGE, ZPOPMIN, ZSCORE, ZCARD.

use super::{
    NOT_FLOAT, NOT_INT, SYNTAX, WRONGTYPE, WrongType, count_arg, float, index_range, int, is, zset,
    zset_or_new,
};
use crate::command::{After, Call, Command, Flags, cmd};
use crate::frame::Reply;
use crate::store::{Score, ZSet};
use bytes::Bytes;
use std::ops::Bound;

/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// Read, fast.
const RF: Flags = Flags::READONLY.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("zadd", -4, Flags::WRITE.with(Flags::FAST), FIRST, zadd),
    cmd("zrange", -4, Flags::READONLY, FIRST, zrange),
    cmd("zrevrange", -4, Flags::READONLY, FIRST, zrange),
    cmd(
        "zpopmin",
        -2,
        Flags::WRITE.with(Flags::FAST),
        FIRST,
        zpopmin,
    ),
    cmd("zscore", 3, RF, FIRST, zscore),
    cmd("zcard", 2, RF, FIRST, zcard),
];

/// ZADD key [NX | XX] [GT | LT] [CH] [INCR] score member [score member ...]
fn zadd(c: &mut Call<'_, '_>) -> After {
    let (mut nx, mut xx, mut gt, mut lt, mut ch, mut incr) =
        (false, false, false, false, false, false);
    let mut i = 2;
    while i < c.args.len() {
        let a = c.args[i];
        if is(a, "nx") {
            nx = true;
        } else if is(a, "xx") {
            xx = true;
        } else if is(a, "gt") {
            gt = true;
        } else if is(a, "lt") {
            lt = true;
        } else if is(a, "ch") {
            ch = true;
        } else if is(a, "incr") {
            incr = true;
        } else {
            break;
        }
        i += 1;
    }
    let pairs = &c.args[i..];
    if pairs.is_empty() || pairs.len() % 2 != 0 {
        c.reply.error(SYNTAX);
        return After::Continue;
    }
    if nx && xx {
        c.reply
            .error("ERR XX and NX options at the same time are not compatible");
        return After::Continue;
    }
    if [gt, lt, nx].iter().filter(|&&f| f).count() > 1 {
        c.reply
            .error("ERR GT, LT, and/or NX options at the same time are not compatible");
        return After::Continue;
    }
    if incr && pairs.len() != 2 {
        c.reply
            .error("ERR INCR option supports a single increment-element pair");
        return After::Continue;
    }
    let mut scores = Vec::with_capacity(pairs.len() / 2);
    for pair in pairs.chunks_exact(2) {
        match float(pair[0]) {
            Some(s) => scores.push((s, pair[1])),
            None => {
                c.reply.error(NOT_FLOAT);
                return After::Continue;
            }
        }
    }
    let key = c.args[1];
    if xx && !matches!(zset(c.keys, key), Ok(Some(_))) {
        // XX on a missing key creates nothing.
        match zset(c.keys, key) {
            Err(WrongType) => c.reply.error(WRONGTYPE),
            _ if incr => c.reply.null(),
            _ => c.reply.integer(0),
        }
        return After::Continue;
    }
    let z = match zset_or_new(c.keys, key) {
        Ok(z) => z,
        Err(WrongType) => {
            c.reply.error(WRONGTYPE);
            return After::Continue;
        }
    };
    let (mut added, mut changed) = (0, 0);
    let mut incr_result = None;
    for (score, member) in scores {
        let old = z.scores.get(member).copied();
        let new = match (incr, old) {
            (true, Some(o)) => o + score,
            _ => score,
        };
        if new.is_nan() {
            c.reply.error("ERR resulting score is not a number (NaN)");
            c.keys.drop_if_empty(key);
            return After::Continue;
        }
        let allowed = match old {
            None => !xx,
            Some(o) => !nx && (!gt || new > o) && (!lt || new < o),
        };
        if !allowed {
            continue;
        }
        match old {
            None => {
                z.insert(Bytes::copy_from_slice(member), new);
                added += 1;
            }
            Some(o) if o != new => {
                z.insert(Bytes::copy_from_slice(member), new);
                changed += 1;
            }
            Some(_) => {}
        }
        incr_result = Some(new);
    }
    c.keys.drop_if_empty(key);
    if incr {
        match incr_result {
            Some(s) => c.reply.double(s),
            None => c.reply.null(),
        }
    } else {
        c.reply.integer(if ch { added + changed } else { added });
    }
    After::Continue
}

/// A score bound of ZRANGE BYSCORE: `1.5`, `(1.5` (exclusive), `-inf`, `+inf`.
fn score_bound(arg: &[u8]) -> Option<Bound<f64>> {
    match arg.strip_prefix(b"(") {
        Some(rest) => float(rest).map(Bound::Excluded),
        None => float(arg).map(Bound::Included),
    }
}

/// Whether `s` is above `min` and below `max`.
fn in_bounds(s: f64, min: Bound<f64>, max: Bound<f64>) -> bool {
    let above = match min {
        Bound::Included(m) => s >= m,
        Bound::Excluded(m) => s > m,
        Bound::Unbounded => true,
    };
    let below = match max {
        Bound::Included(m) => s <= m,
        Bound::Excluded(m) => s < m,
        Bound::Unbounded => true,
    };
    above && below
}

/// Writes `members` with or without scores, as ZRANGE answers in RESP2 and RESP3.
fn reply_members(reply: &mut Reply, members: &[(&Bytes, f64)], with_scores: bool) {
    if !with_scores {
        reply.array(members.len());
        for (m, _) in members {
            reply.bulk_shared(m);
        }
    } else if reply.is_resp3() {
        reply.array(members.len());
        for (m, s) in members {
            reply.array(2);
            reply.bulk_shared(m);
            reply.double(*s);
        }
    } else {
        reply.array(members.len() * 2);
        for (m, s) in members {
            reply.bulk_shared(m);
            reply.double(*s);
        }
    }
}

/// ZRANGE key start stop [BYSCORE] [REV] [LIMIT offset count] [WITHSCORES], and
/// ZREVRANGE key start stop [WITHSCORES]
fn zrange(c: &mut Call<'_, '_>) -> After {
    let reversed = is(c.args[0], "zrevrange");
    let (mut by_score, mut rev, mut with_scores) = (false, reversed, false);
    let mut limit: Option<(i64, i64)> = None;
    let mut i = 4;
    while i < c.args.len() {
        let a = c.args[i];
        if is(a, "byscore") && !reversed {
            by_score = true;
        } else if is(a, "rev") && !reversed {
            rev = true;
        } else if is(a, "withscores") {
            with_scores = true;
        } else if is(a, "limit") && !reversed && i + 2 < c.args.len() {
            match (int(c.args[i + 1]), int(c.args[i + 2])) {
                (Some(o), Some(n)) => limit = Some((o, n)),
                _ => {
                    c.reply.error(NOT_INT);
                    return After::Continue;
                }
            }
            i += 2;
        } else {
            c.reply.error(SYNTAX);
            return After::Continue;
        }
        i += 1;
    }
    if limit.is_some() && !by_score {
        c.reply.error(
            "ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX",
        );
        return After::Continue;
    }
    let z: &ZSet = match zset(c.keys, c.args[1]) {
        Err(WrongType) => {
            c.reply.error(WRONGTYPE);
            return After::Continue;
        }
        Ok(None) => {
            c.reply.array(0);
            return After::Continue;
        }
        Ok(Some(z)) => z,
    };
    let mut members: Vec<(&Bytes, f64)> = Vec::new();
    if by_score {
        let (lo, hi) = if rev {
            (c.args[3], c.args[2])
        } else {
            (c.args[2], c.args[3])
        };
        let (Some(min), Some(max)) = (score_bound(lo), score_bound(hi)) else {
            c.reply.error("ERR min or max is not a float");
            return After::Continue;
        };
        let (offset, count) = limit.unwrap_or((0, -1));
        fn matching<'z>(
            min: Bound<f64>,
            max: Bound<f64>,
        ) -> impl Fn(&'z (Score, Bytes)) -> Option<(&'z Bytes, f64)> {
            move |(s, m)| in_bounds(s.0, min, max).then_some((m, s.0))
        }
        let matching = matching(min, max);
        let all: Box<dyn Iterator<Item = (&Bytes, f64)>> = if rev {
            Box::new(z.order.iter().rev().filter_map(matching))
        } else {
            Box::new(z.order.iter().filter_map(matching))
        };
        if offset >= 0 {
            let taken = all.skip(offset as usize);
            members = if count < 0 {
                taken.collect()
            } else {
                taken.take(count as usize).collect()
            };
        }
    } else {
        let (Some(start), Some(stop)) = (int(c.args[2]), int(c.args[3])) else {
            c.reply.error(NOT_INT);
            return After::Continue;
        };
        if let Some((from, to)) = index_range(start, stop, z.len()) {
            let n = to - from + 1;
            members = if rev {
                z.order
                    .iter()
                    .rev()
                    .skip(from)
                    .take(n)
                    .map(|(s, m)| (m, s.0))
                    .collect()
            } else {
                z.order
                    .iter()
                    .skip(from)
                    .take(n)
                    .map(|(s, m)| (m, s.0))
                    .collect()
            };
        }
    }
    reply_members(c.reply, &members, with_scores);
    After::Continue
}

/// ZPOPMIN key [count]
fn zpopmin(c: &mut Call<'_, '_>) -> After {
    if c.args.len() > 3 {
        c.reply.error(SYNTAX);
        return After::Continue;
    }
    let Ok(count) = count_arg(c, 2) else {
        return After::Continue;
    };
    let key = c.args[1];
    let popped: Vec<(Bytes, f64)> = match zset(c.keys, key) {
        Err(WrongType) => {
            c.reply.error(WRONGTYPE);
            return After::Continue;
        }
        Ok(None) => Vec::new(),
        Ok(Some(z)) => (0..count.unwrap_or(1)).map_while(|_| z.pop_min()).collect(),
    };
    c.keys.drop_if_empty(key);
    let pairs: Vec<(&Bytes, f64)> = popped.iter().map(|(m, s)| (m, *s)).collect();
    if count.is_some() {
        reply_members(c.reply, &pairs, true);
    } else {
        // Without a count: one flat member/score pair (or an empty array).
        c.reply.array(pairs.len() * 2);
        for (m, s) in pairs {
            c.reply.bulk_shared(m);
            c.reply.double(s);
        }
    }
    After::Continue
}

/// ZSCORE key member
fn zscore(c: &mut Call<'_, '_>) -> After {
    match zset(c.keys, c.args[1]) {
        Err(WrongType) => c.reply.error(WRONGTYPE),
        Ok(z) => match z.and_then(|z| z.scores.get(c.args[2]).copied()) {
            Some(s) => c.reply.double(s),
            None => c.reply.null(),
        },
    }
    After::Continue
}

/// ZCARD key
fn zcard(c: &mut Call<'_, '_>) -> After {
    match zset(c.keys, c.args[1]) {
        Ok(z) => c.reply.integer(z.map_or(0, |z| z.len() as i64)),
        Err(WrongType) => c.reply.error(WRONGTYPE),
    }
    After::Continue
}
