//! A small Redis-compatible key/value server (RESP2): enough of Redis for `redis-cli`
//! and `redis-benchmark` to use it unmodified.
//!
//! Commands: PING, ECHO, SET, GET, DEL, INCR, MGET, MSET, EXISTS, DBSIZE, FLUSHALL,
//! COMMAND (`COMMAND DOCS` and friends answer an empty array), CONFIG GET (empty, so
//! `redis-benchmark` starts quietly), SELECT 0, QUIT. Replies and error texts follow
//! Redis 7, e.g. `-ERR unknown command 'FOO', with args beginning with: `,
//! `-ERR wrong number of arguments for 'get' command`.
//!
//! The store is shared by every engine of a [`crate::Group`]: keys are spread over
//! mutex-protected shards, so the lock a request takes is almost never contended.
//! Multi-key commands lock one key at a time (MSET is not atomic across shards).

use crate::engine::{ConnId, Ctx, Handler};
use crate::framing::command_args;
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex, MutexGuard};

/// One shard of the key space.
type Shard = HashMap<Vec<u8>, Vec<u8>>;

/// The key/value store behind [`RespServer`].
#[derive(Debug)]
pub struct Db {
    /// Key-space shards, chosen by key hash.
    shards: Box<[Mutex<Shard>]>,
    /// Hashes keys to shards.
    hasher: RandomState,
}

impl Db {
    /// An empty store with `shards` independently locked shards (1 for one thread).
    pub fn new(shards: usize) -> Arc<Db> {
        Arc::new(Db {
            shards: (0..shards.max(1))
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            hasher: RandomState::new(),
        })
    }

    /// Locks the shard holding `key`.
    fn shard(&self, key: &[u8]) -> MutexGuard<'_, Shard> {
        let i = if self.shards.len() == 1 {
            0
        } else {
            (self.hasher.hash_one(key) % self.shards.len() as u64) as usize
        };
        // A poisoned shard only means a handler panicked mid-command; the map itself
        // is still a valid map.
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes every key.
    pub fn clear(&self) {
        for s in self.shards.iter() {
            s.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    }
}

/// Appends RESP2 replies to a buffer.
struct Reply<'a>(&'a mut Vec<u8>);

impl Reply<'_> {
    /// `+OK`-style status.
    fn simple(&mut self, s: &str) {
        self.0.push(b'+');
        self.0.extend_from_slice(s.as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// `-ERR ...`; CR/LF in the text (echoed user input) become spaces.
    fn error(&mut self, s: &str) {
        self.0.push(b'-');
        self.0.extend(
            s.bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        self.0.extend_from_slice(b"\r\n");
    }

    /// `:n`.
    fn integer(&mut self, n: i64) {
        self.0.push(b':');
        self.0.extend_from_slice(n.to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// `$len\r\nbytes\r\n`.
    fn bulk(&mut self, b: &[u8]) {
        self.0.push(b'$');
        self.0.extend_from_slice(b.len().to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
        self.0.extend_from_slice(b);
        self.0.extend_from_slice(b"\r\n");
    }

    /// `$-1` (nil).
    fn null(&mut self) {
        self.0.extend_from_slice(b"$-1\r\n");
    }

    /// `*n` header.
    fn array(&mut self, n: usize) {
        self.0.push(b'*');
        self.0.extend_from_slice(n.to_string().as_bytes());
        self.0.extend_from_slice(b"\r\n");
    }

    /// Redis' arity error.
    fn arity(&mut self, cmd: &str) {
        self.error(&format!(
            "ERR wrong number of arguments for '{cmd}' command"
        ));
    }
}

/// Parses a Redis integer: optional `-`, digits, no leading zeros or `+`, fits `i64`.
fn parse_i64(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty()
        || !digits.bytes().all(|c| c.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
        || s == "-0"
    {
        return None;
    }
    s.parse().ok()
}

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    /// Keep serving.
    Continue,
    /// Close after the reply (QUIT).
    Close,
}

/// Executes one command, appending its reply to `out`.
pub fn execute(db: &Db, args: &[&[u8]], out: &mut Vec<u8>) -> After {
    let mut r = Reply(out);
    let Some((name, rest)) = args.split_first() else {
        return After::Continue;
    };
    // Lower-cased on the stack: command names are short, and this runs per request.
    let mut name_buf = [0u8; 16];
    let lower: &[u8] = if name.len() <= name_buf.len() {
        let buf = &mut name_buf[..name.len()];
        buf.copy_from_slice(name);
        buf.make_ascii_lowercase();
        buf
    } else {
        // No command is this long: it falls through to "unknown command".
        name
    };
    let argc = args.len();
    match lower {
        b"ping" => match rest {
            [] => r.simple("PONG"),
            [msg] => r.bulk(msg),
            _ => r.arity("ping"),
        },
        b"echo" => match rest {
            [msg] => r.bulk(msg),
            _ => r.arity("echo"),
        },
        b"set" => match rest {
            [k, v] => {
                db.shard(k).insert(k.to_vec(), v.to_vec());
                r.simple("OK");
            }
            [] | [_] => r.arity("set"),
            _ => r.error("ERR syntax error"),
        },
        b"get" => match rest {
            [k] => match db.shard(k).get(*k) {
                Some(v) => r.bulk(v),
                None => r.null(),
            },
            _ => r.arity("get"),
        },
        b"del" | b"exists" if rest.is_empty() => {
            r.arity(if lower == b"del" { "del" } else { "exists" })
        }
        b"del" => {
            let n = rest
                .iter()
                .filter(|k| db.shard(k).remove(**k).is_some())
                .count();
            r.integer(n as i64);
        }
        b"exists" => {
            let n = rest
                .iter()
                .filter(|k| db.shard(k).contains_key(**k))
                .count();
            r.integer(n as i64);
        }
        b"incr" => match rest {
            [k] => {
                let mut shard = db.shard(k);
                let current = match shard.get(*k) {
                    None => Some(0),
                    Some(v) => parse_i64(v),
                };
                match current {
                    None => r.error("ERR value is not an integer or out of range"),
                    Some(n) => match n.checked_add(1) {
                        None => r.error("ERR increment or decrement would overflow"),
                        Some(n) => {
                            shard.insert(k.to_vec(), n.to_string().into_bytes());
                            r.integer(n);
                        }
                    },
                }
            }
            _ => r.arity("incr"),
        },
        b"mget" if rest.is_empty() => r.arity("mget"),
        b"mget" => {
            r.array(rest.len());
            for k in rest {
                let value = db.shard(k).get(*k).cloned();
                match value {
                    Some(v) => r.bulk(&v),
                    None => r.null(),
                }
            }
        }
        b"mset" if rest.is_empty() || rest.len() % 2 != 0 => r.arity("mset"),
        b"mset" => {
            for kv in rest.chunks_exact(2) {
                db.shard(kv[0]).insert(kv[0].to_vec(), kv[1].to_vec());
            }
            r.simple("OK");
        }
        b"dbsize" if argc == 1 => r.integer(db.len() as i64),
        b"dbsize" => r.arity("dbsize"),
        b"flushall" if argc <= 2 => {
            db.clear();
            r.simple("OK");
        }
        b"flushall" => r.error("ERR syntax error"),
        b"command" => match rest.first().map(|s| s.to_ascii_lowercase()) {
            Some(sub) if sub == b"count" => r.integer(COMMANDS.len() as i64),
            // COMMAND, COMMAND DOCS (redis-cli asks at start-up), COMMAND INFO ...:
            // an empty array tells clients to use their built-in tables.
            _ => r.array(0),
        },
        b"config" => match rest.first().map(|s| s.to_ascii_lowercase()) {
            Some(sub) if sub == b"get" && rest.len() >= 2 => {
                // The two parameters redis-benchmark asks for; persistence is off.
                let known: Vec<(&[u8], &[u8])> = rest[1..]
                    .iter()
                    .filter_map(|p| match p.to_ascii_lowercase().as_slice() {
                        b"save" => Some((&b"save"[..], &b""[..])),
                        b"appendonly" => Some((&b"appendonly"[..], &b"no"[..])),
                        _ => None,
                    })
                    .collect();
                r.array(known.len() * 2);
                for (k, v) in known {
                    r.bulk(k);
                    r.bulk(v);
                }
            }
            Some(sub) if sub == b"get" => r.arity("config|get"),
            _ => r.error("ERR unknown subcommand or wrong number of arguments for 'config'"),
        },
        b"select" => match rest {
            [db_index] if *db_index == b"0" => r.simple("OK"),
            [db_index] if parse_i64(db_index).is_some() => r.error("ERR DB index is out of range"),
            [_] => r.error("ERR value is not an integer or out of range"),
            _ => r.arity("select"),
        },
        b"quit" => {
            r.simple("OK");
            return After::Close;
        }
        _ => {
            let mut msg = format!(
                "ERR unknown command '{}', with args beginning with: ",
                String::from_utf8_lossy(&name[..name.len().min(128)])
            );
            for a in rest {
                msg.push_str(&format!(
                    "'{}' ",
                    String::from_utf8_lossy(&a[..a.len().min(128)])
                ));
            }
            r.error(&msg);
        }
    }
    After::Continue
}

/// The commands this server knows (for `COMMAND COUNT`).
const COMMANDS: &[&str] = &[
    "ping", "echo", "set", "get", "del", "incr", "mget", "mset", "exists", "dbsize", "flushall",
    "command", "config", "select", "quit",
];

/// The engine handler: parses each RESP frame, executes it, replies through [`Ctx`].
#[derive(Debug)]
pub struct RespServer {
    /// The shared store.
    db: Arc<Db>,
    /// Reply scratch buffer, reused across requests.
    reply: Vec<u8>,
}

impl RespServer {
    /// A server over `db`.
    pub fn new(db: Arc<Db>) -> RespServer {
        RespServer {
            db,
            reply: Vec::with_capacity(256),
        }
    }
}

impl Handler for RespServer {
    fn on_message(&mut self, ctx: &mut Ctx<'_>, id: ConnId, frame: &[u8]) {
        let mut args = Vec::new();
        self.reply.clear();
        let after = match command_args(frame, &mut args) {
            Ok(()) => execute(&self.db, &args, &mut self.reply),
            Err(e) => {
                // The framing already validated the frame, so this is a bug; answer and
                // close rather than panic.
                Reply(&mut self.reply).error(&format!("ERR Protocol error: {e}"));
                After::Close
            }
        };
        if let Err(e) = ctx.send(&self.reply) {
            tracing::debug!(id = %id, error = %e, "reply does not fit; closing");
            ctx.close();
            return;
        }
        if after == After::Close {
            ctx.close();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(db: &Db, cmd: &[&str]) -> String {
        let args: Vec<&[u8]> = cmd.iter().map(|s| s.as_bytes()).collect();
        let mut out = Vec::new();
        execute(db, &args, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn commands_answer_like_redis() {
        let db = Db::new(4);
        assert_eq!(run(&db, &["PING"]), "+PONG\r\n");
        assert_eq!(run(&db, &["ping", "hi"]), "$2\r\nhi\r\n");
        assert_eq!(run(&db, &["SET", "k", "v"]), "+OK\r\n");
        assert_eq!(run(&db, &["GET", "k"]), "$1\r\nv\r\n");
        assert_eq!(run(&db, &["GET", "nope"]), "$-1\r\n");
        assert_eq!(
            run(&db, &["GET"]),
            "-ERR wrong number of arguments for 'get' command\r\n"
        );
        assert_eq!(
            run(&db, &["INCR", "k"]),
            "-ERR value is not an integer or out of range\r\n"
        );
        assert_eq!(run(&db, &["INCR", "n"]), ":1\r\n");
        assert_eq!(run(&db, &["INCR", "n"]), ":2\r\n");
        assert_eq!(run(&db, &["SET", "big", &i64::MAX.to_string()]), "+OK\r\n");
        assert_eq!(
            run(&db, &["INCR", "big"]),
            "-ERR increment or decrement would overflow\r\n"
        );
        assert_eq!(run(&db, &["MSET", "a", "1", "b", "2"]), "+OK\r\n");
        assert_eq!(
            run(&db, &["MSET", "a"]),
            "-ERR wrong number of arguments for 'mset' command\r\n"
        );
        assert_eq!(
            run(&db, &["MGET", "a", "x", "b"]),
            "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"
        );
        assert_eq!(run(&db, &["EXISTS", "a", "b", "x"]), ":2\r\n");
        assert_eq!(run(&db, &["DBSIZE"]), ":5\r\n");
        assert_eq!(run(&db, &["DEL", "a", "b", "x"]), ":2\r\n");
        assert_eq!(run(&db, &["FLUSHALL"]), "+OK\r\n");
        assert_eq!(run(&db, &["DBSIZE"]), ":0\r\n");
        assert_eq!(run(&db, &["COMMAND", "DOCS"]), "*0\r\n");
        assert_eq!(
            run(&db, &["FOO", "a"]),
            "-ERR unknown command 'FOO', with args beginning with: 'a' \r\n"
        );
        assert_eq!(run(&db, &[]), "");
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(parse_i64(b"42"), Some(42));
        assert_eq!(parse_i64(b"-7"), Some(-7));
        for bad in [
            &b""[..],
            b"+1",
            b"01",
            b"-0",
            b" 1",
            b"1x",
            b"99999999999999999999",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
