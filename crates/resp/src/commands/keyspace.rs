//! Key-space commands: DEL, UNLINK, EXISTS, EXPIRE, PEXPIRE, TTL, PTTL, PERSIST, TYPE,
//! KEYS, SCAN.

use super::{NOT_INT, SYNTAX, int, is};
use crate::command::{After, Call, Command, Flags, cmd};

/// Every argument after the name is a key.
const ALL_ARGS: (u8, i8, u8) = (1, -1, 1);
/// The first argument is the key.
const FIRST: (u8, i8, u8) = (1, 1, 1);
/// No key arguments.
const NO_KEYS: (u8, i8, u8) = (0, 0, 0);
/// Read, fast.
const RF: Flags = Flags::READONLY.with(Flags::FAST);
/// Write, fast.
const WF: Flags = Flags::WRITE.with(Flags::FAST);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("del", -2, Flags::WRITE, ALL_ARGS, del),
    cmd("unlink", -2, Flags::WRITE, ALL_ARGS, del),
    cmd("exists", -2, RF, ALL_ARGS, exists),
    cmd("expire", -3, WF, FIRST, expire),
    cmd("pexpire", -3, WF, FIRST, expire),
    cmd("ttl", 2, RF, FIRST, ttl),
    cmd("pttl", 2, RF, FIRST, ttl),
    cmd("persist", 2, WF, FIRST, persist),
    cmd("type", 2, RF, FIRST, type_),
    cmd(
        "keys",
        2,
        Flags::READONLY.with(Flags::ALL_KEYS),
        NO_KEYS,
        keys,
    ),
    cmd(
        "scan",
        -2,
        Flags::READONLY.with(Flags::ALL_KEYS),
        NO_KEYS,
        scan,
    ),
];

/// DEL / UNLINK key [key ...]
fn del(c: &mut Call<'_, '_>) -> After {
    let n = c.args[1..]
        .iter()
        .filter(|k| c.keys.remove(k).is_some())
        .count();
    c.reply.integer(n as i64);
    After::Continue
}

/// EXISTS key [key ...] (a key named twice counts twice, as in redis)
fn exists(c: &mut Call<'_, '_>) -> After {
    let n = c.args[1..]
        .iter()
        .filter(|k| c.keys.get(k).is_some())
        .count();
    c.reply.integer(n as i64);
    After::Continue
}

/// EXPIRE / PEXPIRE key time [NX | XX | GT | LT]
fn expire(c: &mut Call<'_, '_>) -> After {
    let millis = is(c.args[0], "pexpire");
    let name = if millis { "pexpire" } else { "expire" };
    let Some(n) = int(c.args[2]) else {
        c.reply.error(NOT_INT);
        return After::Continue;
    };
    let (mut nx, mut xx, mut gt, mut lt) = (false, false, false, false);
    for opt in &c.args[3..] {
        if is(opt, "nx") {
            nx = true;
        } else if is(opt, "xx") {
            xx = true;
        } else if is(opt, "gt") {
            gt = true;
        } else if is(opt, "lt") {
            lt = true;
        } else {
            c.reply.error(&format!(
                "ERR Unsupported option {}",
                String::from_utf8_lossy(opt)
            ));
            return After::Continue;
        }
    }
    if nx && (xx || gt || lt) {
        c.reply
            .error("ERR NX and XX, GT or LT options at the same time are not compatible");
        return After::Continue;
    }
    if gt && lt {
        c.reply
            .error("ERR GT and LT options at the same time are not compatible");
        return After::Continue;
    }
    let now = c.keys.now() as i64;
    let when =
        if millis { Some(n) } else { n.checked_mul(1000) }.and_then(|ms| ms.checked_add(now));
    let Some(when) = when else {
        c.reply
            .error(&format!("ERR invalid expire time in '{name}' command"));
        return After::Continue;
    };
    let key = c.args[1];
    let Some(entry) = c.keys.get(key) else {
        c.reply.integer(0);
        return After::Continue;
    };
    let current = entry.expires.map(|t| t as i64);
    let allowed = (!nx || current.is_none())
        && (!xx || current.is_some())
        && (!gt || current.is_some_and(|t| when > t))
        && (!lt || current.is_none_or(|t| when < t));
    if !allowed {
        c.reply.integer(0);
    } else if when <= now {
        c.keys.remove(key);
        c.reply.integer(1);
    } else {
        c.keys.set_expiry(key, Some(when as u64));
        c.reply.integer(1);
    }
    After::Continue
}

/// TTL / PTTL key: -2 if missing, -1 without a deadline.
fn ttl(c: &mut Call<'_, '_>) -> After {
    let millis = is(c.args[0], "pttl");
    let now = c.keys.now();
    let answer = match c.keys.get(c.args[1]) {
        None => -2,
        Some(e) => match e.expires {
            None => -1,
            Some(t) => {
                let left = i64::try_from(t.saturating_sub(now)).unwrap_or(i64::MAX);
                if millis {
                    left
                } else {
                    left.saturating_add(500) / 1000
                }
            }
        },
    };
    c.reply.integer(answer);
    After::Continue
}

/// PERSIST key
fn persist(c: &mut Call<'_, '_>) -> After {
    let key = c.args[1];
    let had = c.keys.get(key).is_some_and(|e| e.expires.is_some());
    if had {
        c.keys.set_expiry(key, None);
    }
    c.reply.integer(i64::from(had));
    After::Continue
}

/// TYPE key
fn type_(c: &mut Call<'_, '_>) -> After {
    let name = c
        .keys
        .get(c.args[1])
        .map_or("none", |e| e.value.type_name());
    c.reply.simple(name);
    After::Continue
}

/// KEYS pattern
fn keys(c: &mut Call<'_, '_>) -> After {
    let pattern = c.args[1];
    let now = c.keys.now();
    let mut found = Vec::new();
    for shard in c.keys.shards() {
        found.extend(
            shard
                .live_keys(now)
                .filter(|(k, _)| glob(pattern, k))
                .map(|(k, _)| k.clone()),
        );
    }
    c.reply.array(found.len());
    for k in &found {
        c.reply.bulk_shared(k);
    }
    After::Continue
}

/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
///
/// The cursor is a position in a fixed order of keys (a hash of each key), so a full
/// iteration returns every key that exists from its start to its end, as redis
/// promises, whatever is added or removed meanwhile.
fn scan(c: &mut Call<'_, '_>) -> After {
    let Some(cursor) = std::str::from_utf8(c.args[1])
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        c.reply.error("ERR invalid cursor");
        return After::Continue;
    };
    let (mut pattern, mut count, mut kind) = (None, 10usize, None);
    let mut i = 2;
    while i < c.args.len() {
        let opt = c.args[i];
        let Some(&value) = c.args.get(i + 1) else {
            c.reply.error(SYNTAX);
            return After::Continue;
        };
        if is(opt, "match") {
            pattern = Some(value);
        } else if is(opt, "count") {
            match int(value) {
                Some(n) if n >= 1 => count = n as usize,
                Some(_) => {
                    c.reply.error(SYNTAX);
                    return After::Continue;
                }
                None => {
                    c.reply.error(NOT_INT);
                    return After::Continue;
                }
            }
        } else if is(opt, "type") {
            kind = Some(value);
        } else {
            c.reply.error(SYNTAX);
            return After::Continue;
        }
        i += 2;
    }
    let db = c.keys.db;
    let now = c.keys.now();
    let mut candidates = Vec::new();
    for shard in c.keys.shards() {
        candidates.extend(shard.live_keys(now).filter_map(|(k, e)| {
            let order = db.scan_order(k);
            (order >= cursor).then(|| (order, k.clone(), e.value.type_name()))
        }));
    }
    candidates.sort_unstable_by_key(|(order, _, _)| *order);
    let mut taken = count.min(candidates.len());
    // Keys of equal order go out together, so the next cursor skips none of them.
    while taken > 0 && taken < candidates.len() && candidates[taken].0 == candidates[taken - 1].0 {
        taken += 1;
    }
    let next = candidates.get(taken).map_or(0, |(order, _, _)| *order);
    let page: Vec<_> = candidates[..taken]
        .iter()
        .filter(|(_, k, t)| {
            pattern.is_none_or(|p| glob(p, k)) && kind.is_none_or(|want| is(want, t))
        })
        .collect();
    c.reply.array(2);
    c.reply.bulk_str(&next.to_string());
    c.reply.array(page.len());
    for (_, k, _) in page {
        c.reply.bulk_shared(k);
    }
    After::Continue
}

/// Redis' glob matching (`*`, `?`, `[a-z]`, `[^a]`, `\x`), without recursion.
pub(crate) fn glob(pattern: &[u8], s: &[u8]) -> bool {
    let (mut p, mut i) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, i));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    i += 1;
                    continue;
                }
                b'[' => {
                    let (matched, next) = class(pattern, p, s[i]);
                    if matched {
                        p = next;
                        i += 1;
                        continue;
                    }
                }
                b'\\' if p + 1 < pattern.len() => {
                    if pattern[p + 1] == s[i] {
                        p += 2;
                        i += 1;
                        continue;
                    }
                }
                ch => {
                    if ch == s[i] {
                        p += 1;
                        i += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, si)) => {
                p = sp + 1;
                i = si + 1;
                star = Some((sp, si + 1));
            }
            None => return false,
        }
    }
    while p < pattern.len() && pattern[p] == b'*' {
        p += 1;
    }
    p == pattern.len()
}

/// Whether `ch` matches the class starting at `pattern[at] == '['`; returns the
/// position after the class too.
fn class(pattern: &[u8], at: usize, ch: u8) -> (bool, usize) {
    let mut p = at + 1;
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut matched = false;
    while p < pattern.len() && pattern[p] != b']' {
        if pattern[p] == b'\\' && p + 1 < pattern.len() {
            matched |= pattern[p + 1] == ch;
            p += 2;
        } else if p + 2 < pattern.len() && pattern[p + 1] == b'-' && pattern[p + 2] != b']' {
            let (lo, hi) = (
                pattern[p].min(pattern[p + 2]),
                pattern[p].max(pattern[p + 2]),
            );
            matched |= (lo..=hi).contains(&ch);
            p += 3;
        } else {
            matched |= pattern[p] == ch;
            p += 1;
        }
    }
    (matched != negate, (p + 1).min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_like_redis() {
        for (p, s, want) in [
            ("*", "anything", true),
            ("h?llo", "hello", true),
            ("h*llo", "heeeello", true),
            ("h[ae]llo", "hallo", true),
            ("h[^e]llo", "hello", false),
            ("h[a-b]llo", "hbllo", true),
            ("key:*:x", "key:1:2:x", true),
            ("key:*:x", "key:1:2:y", false),
            ("a\\*", "a*", true),
            ("a\\*", "ab", false),
            ("", "", true),
            ("**a", "ba", true),
        ] {
            assert_eq!(glob(p.as_bytes(), s.as_bytes()), want, "{p} vs {s}");
        }
    }
}
