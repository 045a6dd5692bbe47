//! The command table, like redis' `commands.def`: each command's name, arity, flags
//! and the function that runs it. [`execute`] looks the name up, checks the arity the
//! way redis does (a positive arity is exact, a negative one a minimum, both counting
//! the command name) and calls the function.

use crate::frame::Reply;
use crate::store::Db;

/// What a command may do, as redis' command flags (a bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u8);

impl Flags {
    /// No flag.
    pub const NONE: Flags = Flags(0);
    /// Changes the key space.
    pub const WRITE: Flags = Flags(1);
    /// Only reads the key space.
    pub const READONLY: Flags = Flags(1 << 1);
    /// Constant or logarithmic time.
    pub const FAST: Flags = Flags(1 << 2);
    /// About the connection or the server, not the key space.
    pub const CONNECTION: Flags = Flags(1 << 3);

    /// Both sets of flags.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What the connection does after a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// Keep serving.
    Continue,
    /// Close after the reply (QUIT).
    Close,
}

/// One command's invocation: the store, its arguments (name first), its reply.
pub(crate) struct Call<'a, 'r> {
    /// The key space.
    pub(crate) db: &'a Db,
    /// The arguments, the command name first.
    pub(crate) args: &'a [&'a [u8]],
    /// Where the reply goes.
    pub(crate) reply: Reply<'r>,
}

/// A command's implementation.
type Run = fn(&mut Call<'_, '_>) -> After;

/// One row of the command table.
#[derive(Clone, Copy)]
pub struct Command {
    /// The lower-case name.
    pub name: &'static str,
    /// Argument count including the name: exact if positive, a minimum if negative.
    pub arity: i32,
    /// What the command does.
    pub flags: Flags,
    /// The implementation.
    run: Run,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("arity", &self.arity)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

impl Command {
    /// Whether `argc` arguments (the name included) fit the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = i64::try_from(argc).unwrap_or(i64::MAX);
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }
}

/// Shorthand for table rows.
const fn cmd(name: &'static str, arity: i32, flags: Flags, run: Run) -> Command {
    Command {
        name,
        arity,
        flags,
        run,
    }
}

/// Flag shorthands for the table.
const R: Flags = Flags::READONLY;
/// Write.
const W: Flags = Flags::WRITE;
/// Fast.
const F: Flags = Flags::FAST;
/// Connection.
const C: Flags = Flags::CONNECTION;

/// Every command, sorted by name (binary-searched; a test checks the order).
static COMMANDS: &[Command] = &[
    cmd("command", -1, C, command),
    cmd("config", -1, C, config),
    cmd("dbsize", 1, R.with(F), dbsize),
    cmd("del", -2, W, del),
    cmd("echo", 2, C.with(F), echo),
    cmd("exists", -2, R.with(F), exists),
    cmd("flushall", -1, W, flushall),
    cmd("get", 2, R.with(F), get),
    cmd("incr", 2, W.with(F), incr),
    cmd("mget", -2, R.with(F), mget),
    cmd("mset", -3, W, mset),
    cmd("ping", -1, C.with(F), ping),
    cmd("quit", -1, C.with(F), quit),
    cmd("select", 2, C.with(F), select),
    cmd("set", -3, W, set),
];

/// Every command this server knows, sorted by name.
pub fn commands() -> &'static [Command] {
    COMMANDS
}

/// The command called `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    // Lower-cased on the stack: command names are short, and this runs per request.
    let mut buf = [0u8; 24];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    COMMANDS
        .binary_search_by(|c| c.name.as_bytes().cmp(lower))
        .ok()
        .map(|i| &COMMANDS[i])
}

/// Executes one command, appending its reply to `out`.
pub fn execute(db: &Db, args: &[&[u8]], out: &mut Vec<u8>) -> After {
    let mut reply = Reply(out);
    let Some((name, rest)) = args.split_first() else {
        return After::Continue;
    };
    let Some(command) = lookup(name) else {
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
        reply.error(&msg);
        return After::Continue;
    };
    if !command.arity_ok(args.len()) {
        reply.arity(command.name);
        return After::Continue;
    }
    (command.run)(&mut Call { db, args, reply })
}

/// Parses a Redis integer: optional `-`, digits, no leading zeros or `+`, fits `i64`.
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
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

/// PING [message]
fn ping(c: &mut Call<'_, '_>) -> After {
    match c.args {
        [_] => c.reply.simple("PONG"),
        [_, msg] => c.reply.bulk(msg),
        _ => c.reply.arity("ping"),
    }
    After::Continue
}

/// ECHO message
fn echo(c: &mut Call<'_, '_>) -> After {
    c.reply.bulk(c.args[1]);
    After::Continue
}

/// SET key value
fn set(c: &mut Call<'_, '_>) -> After {
    match c.args {
        [_, k, v] => {
            c.db.shard(k).insert(k.to_vec(), v.to_vec());
            c.reply.simple("OK");
        }
        _ => c.reply.error("ERR syntax error"),
    }
    After::Continue
}

/// GET key
fn get(c: &mut Call<'_, '_>) -> After {
    let k = c.args[1];
    match c.db.shard(k).get(k) {
        Some(v) => c.reply.bulk(v),
        None => c.reply.null(),
    }
    After::Continue
}

/// DEL key [key ...]
fn del(c: &mut Call<'_, '_>) -> After {
    let n = c.args[1..]
        .iter()
        .filter(|k| c.db.shard(k).remove(**k).is_some())
        .count();
    c.reply.integer(n as i64);
    After::Continue
}

/// EXISTS key [key ...]
fn exists(c: &mut Call<'_, '_>) -> After {
    let n = c.args[1..]
        .iter()
        .filter(|k| c.db.shard(k).contains_key(**k))
        .count();
    c.reply.integer(n as i64);
    After::Continue
}

/// INCR key
fn incr(c: &mut Call<'_, '_>) -> After {
    let k = c.args[1];
    let mut shard = c.db.shard(k);
    let current = match shard.get(k) {
        None => Some(0),
        Some(v) => parse_i64(v),
    };
    match current {
        None => c.reply.error("ERR value is not an integer or out of range"),
        Some(n) => match n.checked_add(1) {
            None => c.reply.error("ERR increment or decrement would overflow"),
            Some(n) => {
                shard.insert(k.to_vec(), n.to_string().into_bytes());
                c.reply.integer(n);
            }
        },
    }
    After::Continue
}

/// MGET key [key ...]
fn mget(c: &mut Call<'_, '_>) -> After {
    let keys = &c.args[1..];
    c.reply.array(keys.len());
    for k in keys {
        let value = c.db.shard(k).get(*k).cloned();
        match value {
            Some(v) => c.reply.bulk(&v),
            None => c.reply.null(),
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
        c.db.shard(kv[0]).insert(kv[0].to_vec(), kv[1].to_vec());
    }
    c.reply.simple("OK");
    After::Continue
}

/// DBSIZE
fn dbsize(c: &mut Call<'_, '_>) -> After {
    c.reply.integer(c.db.len() as i64);
    After::Continue
}

/// FLUSHALL [ASYNC|SYNC]
fn flushall(c: &mut Call<'_, '_>) -> After {
    if c.args.len() <= 2 {
        c.db.clear();
        c.reply.simple("OK");
    } else {
        c.reply.error("ERR syntax error");
    }
    After::Continue
}

/// COMMAND [COUNT|DOCS|INFO ...]
fn command(c: &mut Call<'_, '_>) -> After {
    match c.args.get(1).map(|s| s.to_ascii_lowercase()) {
        Some(sub) if sub == b"count" => c.reply.integer(COMMANDS.len() as i64),
        // COMMAND, COMMAND DOCS (redis-cli asks at start-up), COMMAND INFO ...:
        // an empty array tells clients to use their built-in tables.
        _ => c.reply.array(0),
    }
    After::Continue
}

/// CONFIG GET parameter [parameter ...]
fn config(c: &mut Call<'_, '_>) -> After {
    let rest = &c.args[1..];
    match rest.first().map(|s| s.to_ascii_lowercase()) {
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
            c.reply.array(known.len() * 2);
            for (k, v) in known {
                c.reply.bulk(k);
                c.reply.bulk(v);
            }
        }
        Some(sub) if sub == b"get" => c.reply.arity("config|get"),
        _ => c
            .reply
            .error("ERR unknown subcommand or wrong number of arguments for 'config'"),
    }
    After::Continue
}

/// SELECT index (only database 0 exists)
fn select(c: &mut Call<'_, '_>) -> After {
    match c.args[1] {
        b"0" => c.reply.simple("OK"),
        index if parse_i64(index).is_some() => c.reply.error("ERR DB index is out of range"),
        _ => c.reply.error("ERR value is not an integer or out of range"),
    }
    After::Continue
}

/// QUIT
fn quit(c: &mut Call<'_, '_>) -> After {
    c.reply.simple("OK");
    After::Close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_lower_case() {
        for pair in COMMANDS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} before {}",
                pair[0].name,
                pair[1].name
            );
        }
        for c in COMMANDS {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(lookup(c.name.to_ascii_uppercase().as_bytes()).is_some());
        }
        assert!(lookup(b"no-such-command").is_none());
        assert!(lookup(&[b'x'; 100]).is_none());
    }

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
