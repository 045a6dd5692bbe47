//! The command table, like redis' `commands.def`: each command's name, arity, flags,
//! key positions and the function that runs it. [`execute`] looks the name up, checks
//! the arity the way redis does (a positive arity is exact, a negative one a minimum,
//! both counting the command name), queues it inside MULTI, locks the shards of the
//! keys it names and calls the function. The functions, by data type, live in
//! `commands/`.

use crate::client::Client;
use crate::frame::Reply;
use crate::store::{Db, Keys};
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

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
    /// Works on the whole key space (locks every shard).
    pub const ALL_KEYS: Flags = Flags(1 << 4);
    /// Transaction control: runs at once inside MULTI instead of being queued.
    pub const TRANSACTION: Flags = Flags(1 << 5);

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

/// One command's invocation.
pub(crate) struct Call<'c, 'k> {
    /// The locked shards and the command's clock.
    pub(crate) keys: &'c mut Keys<'k>,
    /// The connection's state.
    pub(crate) client: &'c mut Client,
    /// The arguments, the command name first.
    pub(crate) args: &'c [&'c [u8]],
    /// Where the reply goes.
    pub(crate) reply: &'c mut Reply,
}

/// A command's implementation.
pub(crate) type Run = fn(&mut Call<'_, '_>) -> After;

/// Which arguments are keys, as redis' (first, last, step); `first == 0`: none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// Position of the first key (the command name is 0).
    pub first: u8,
    /// Position of the last key; negative counts from the end (-1: the last argument).
    pub last: i8,
    /// Distance between keys.
    pub step: u8,
}

/// One row of the command table.
#[derive(Clone, Copy)]
pub struct Command {
    /// The lower-case name.
    pub name: &'static str,
    /// Argument count including the name: exact if positive, a minimum if negative.
    pub arity: i32,
    /// What the command does.
    pub flags: Flags,
    /// Which arguments are keys.
    pub keys: KeySpec,
    /// The implementation.
    run: Run,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Command")
            .field("name", &self.name)
            .field("arity", &self.arity)
            .field("flags", &self.flags)
            .field("keys", &self.keys)
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

    /// The key arguments of `args` (which passed the arity check).
    pub fn key_args<'a>(&self, args: &'a [&'a [u8]]) -> impl Iterator<Item = &'a [u8]> + 'a {
        let KeySpec { first, last, step } = self.keys;
        let first = usize::from(first);
        let last = if last < 0 {
            args.len() as i64 + i64::from(last)
        } else {
            i64::from(last)
        };
        let end = if first == 0 || last < first as i64 {
            first
        } else {
            (last as usize + 1).min(args.len())
        };
        args[first.min(end)..end]
            .iter()
            .step_by(usize::from(step.max(1)))
            .copied()
    }

    /// Runs the command with its shards already locked.
    pub(crate) fn run(&self, call: &mut Call<'_, '_>) -> After {
        (self.run)(call)
    }
}

/// Shorthand for table rows.
pub(crate) const fn cmd(
    name: &'static str,
    arity: i32,
    flags: Flags,
    keys: (u8, i8, u8),
    run: Run,
) -> Command {
    Command {
        name,
        arity,
        flags,
        keys: KeySpec {
            first: keys.0,
            last: keys.1,
            step: keys.2,
        },
        run,
    }
}

/// The table, sorted by name on first use.
fn table() -> &'static [Command] {
    static TABLE: OnceLock<Vec<Command>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut all = crate::commands::all();
        all.sort_by_key(|c| c.name);
        all
    })
}

/// Every command this server knows, sorted by name.
pub fn commands() -> &'static [Command] {
    table()
}

/// FNV-1a: command names are short and trusted-shape, so a simple hash is enough.
#[derive(Default)]
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}

/// The table by lower-case name.
fn by_name() -> &'static HashMap<&'static [u8], &'static Command, BuildHasherDefault<Fnv>> {
    static BY_NAME: OnceLock<HashMap<&'static [u8], &'static Command, BuildHasherDefault<Fnv>>> =
        OnceLock::new();
    BY_NAME.get_or_init(|| table().iter().map(|c| (c.name.as_bytes(), c)).collect())
}

/// The command called `name` (any case).
pub fn lookup(name: &[u8]) -> Option<&'static Command> {
    // Lower-cased on the stack: command names are short, and this runs per request.
    let mut buf = [0u8; 24];
    let lower = buf.get_mut(..name.len())?;
    lower.copy_from_slice(name);
    lower.make_ascii_lowercase();
    by_name().get(&*lower).copied()
}

/// Redis' unknown-command error.
fn unknown_command(name: &[u8], rest: &[&[u8]]) -> String {
    let mut msg = format!(
        "ERR unknown command '{}', with args beginning with: ",
        String::from_utf8_lossy(&name[..name.len().min(128)])
    );
    for a in rest.iter().take(16) {
        msg.push_str(&format!(
            "'{}' ",
            String::from_utf8_lossy(&a[..a.len().min(128)])
        ));
    }
    msg
}

/// Executes one command for `client`, appending its reply to `reply`.
pub(crate) fn dispatch(db: &Db, client: &mut Client, args: &[&[u8]], reply: &mut Reply) -> After {
    let Some((name, rest)) = args.split_first() else {
        return After::Continue;
    };
    let Some(command) = lookup(name) else {
        client.flag_transaction_error();
        reply.error(&unknown_command(name, rest));
        return After::Continue;
    };
    if !command.arity_ok(args.len()) {
        client.flag_transaction_error();
        reply.arity(command.name);
        return After::Continue;
    }
    if client.in_transaction() && !command.flags.contains(Flags::TRANSACTION) {
        match client.queue(args) {
            Ok(()) => reply.simple("QUEUED"),
            Err(e) => reply.error(e),
        }
        return After::Continue;
    }
    let mut keys = if command.flags.contains(Flags::ALL_KEYS) {
        db.lock_all()
    } else {
        db.lock_keys(command.key_args(args))
    };
    command.run(&mut Call {
        keys: &mut keys,
        client,
        args,
        reply,
    })
}

/// Executes one command outside any connection (a fresh client state each time),
/// appending its reply (RESP2) to `out`.
pub fn execute(db: &Db, args: &[&[u8]], out: &mut Vec<u8>) -> After {
    let mut client = Client::default();
    let mut reply = Reply::default();
    let after = dispatch(db, &mut client, args, &mut reply);
    out.extend_from_slice(&reply.to_vec());
    after
}

/// Parses a Redis integer (as its `string2ll`): optional `-`, digits, no leading zeros
/// or `+`, no `-0`, fits `i64`.
pub(crate) fn parse_i64(b: &[u8]) -> Option<i64> {
    let (negative, digits) = match b {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, b),
    };
    if digits.is_empty()
        || digits.len() > 19
        || (digits[0] == b'0' && (digits.len() > 1 || negative))
    {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if negative {
        // Down to i64::MIN, whose magnitude is one more than i64::MAX.
        (n <= i64::MAX as u64 + 1).then(|| (n as i64).wrapping_neg())
    } else {
        i64::try_from(n).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_is_found_in_any_case() {
        for c in commands() {
            assert_eq!(c.name, c.name.to_ascii_lowercase());
            assert!(lookup(c.name.to_ascii_uppercase().as_bytes()).is_some());
        }
        assert!(lookup(b"no-such-command").is_none());
        assert!(lookup(&[b'x'; 100]).is_none());
        for pair in commands().windows(2) {
            assert!(pair[0].name < pair[1].name, "duplicate {}", pair[0].name);
        }
    }

    #[test]
    fn key_specs_pick_the_keys() {
        let args: Vec<&[u8]> = vec![b"mset", b"a", b"1", b"b", b"2"];
        let keys: Vec<&[u8]> = lookup(b"mset").unwrap().key_args(&args).collect();
        assert_eq!(keys, [&b"a"[..], b"b"]);
        let args: Vec<&[u8]> = vec![b"ping"];
        assert_eq!(lookup(b"ping").unwrap().key_args(&args).count(), 0);
        let args: Vec<&[u8]> = vec![b"del", b"a", b"b", b"c"];
        assert_eq!(lookup(b"del").unwrap().key_args(&args).count(), 3);
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
            b"9223372036854775808",
            b"-9223372036854775809",
            b"-",
            b"--1",
        ] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
    }
}
