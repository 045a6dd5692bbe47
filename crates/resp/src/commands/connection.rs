//! Connection commands: PING, ECHO, QUIT, SELECT, AUTH, HELLO, CLIENT, and the
//! transaction commands MULTI, EXEC, DISCARD.

use super::{NOT_INT, SYNTAX, int, is};
use crate::client::Multi;
use crate::command::{After, Call, Command, Flags, cmd, lookup};
use bytes::Bytes;

/// No key arguments.
const NO_KEYS: (u8, i8, u8) = (0, 0, 0);
/// Connection flags.
const C: Flags = Flags::CONNECTION.with(Flags::FAST);
/// Transaction control.
const T: Flags = Flags::CONNECTION.with(Flags::TRANSACTION);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd("ping", -1, C, NO_KEYS, ping),
    cmd("echo", 2, C, NO_KEYS, echo),
    cmd("quit", -1, C.with(Flags::TRANSACTION), NO_KEYS, quit),
    cmd("select", 2, C, NO_KEYS, select),
    cmd("auth", -2, C, NO_KEYS, auth),
    cmd("hello", -1, C, NO_KEYS, hello),
    cmd("client", -2, C, NO_KEYS, client),
    cmd("multi", 1, T, NO_KEYS, multi),
    cmd("exec", 1, T.with(Flags::ALL_KEYS), NO_KEYS, exec),
    cmd("discard", 1, T, NO_KEYS, discard),
];

/// The version this server reports (the Redis release whose semantics it follows).
pub(crate) const REDIS_VERSION: &str = "7.2.0";

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

/// QUIT
fn quit(c: &mut Call<'_, '_>) -> After {
    c.reply.simple("OK");
    After::Close
}

/// SELECT index (only database 0 exists)
fn select(c: &mut Call<'_, '_>) -> After {
    match c.args[1] {
        b"0" => c.reply.simple("OK"),
        index if int(index).is_some() => c.reply.error("ERR DB index is out of range"),
        _ => c.reply.error(NOT_INT),
    }
    After::Continue
}

/// Checks credentials as redis does with no password configured: the default user
/// takes any password, other users do not exist.
fn credentials_ok(user: &[u8]) -> bool {
    user == b"default"
}

/// AUTH [username] password
fn auth(c: &mut Call<'_, '_>) -> After {
    match c.args {
        [_, _password] => c.reply.error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        ),
        [_, user, _password] if credentials_ok(user) => c.reply.simple("OK"),
        [_, _, _] => {
            c.reply
                .error("WRONGPASS invalid username-password pair or user is disabled.");
        }
        _ => c.reply.error(SYNTAX),
    }
    After::Continue
}

/// HELLO [protover [AUTH username password] [SETNAME clientname]]
fn hello(c: &mut Call<'_, '_>) -> After {
    let mut resp3 = c.client.resp3;
    if let Some(v) = c.args.get(1) {
        match int(v) {
            None => {
                c.reply
                    .error("ERR Protocol version is not an integer or out of range");
                return After::Continue;
            }
            Some(2) => resp3 = false,
            Some(3) => resp3 = true,
            Some(_) => {
                c.reply.error("NOPROTO unsupported protocol version");
                return After::Continue;
            }
        }
    }
    let mut name = None;
    let mut i = 2;
    while i < c.args.len() {
        let more = c.args.len() - i - 1;
        if is(c.args[i], "auth") && more >= 2 {
            if !credentials_ok(c.args[i + 1]) {
                c.reply
                    .error("WRONGPASS invalid username-password pair or user is disabled.");
                return After::Continue;
            }
            i += 3;
        } else if is(c.args[i], "setname") && more >= 1 {
            if let Err(e) = valid_name(c.args[i + 1]) {
                c.reply.error(e);
                return After::Continue;
            }
            name = Some(c.args[i + 1]);
            i += 2;
        } else {
            c.reply.error(&format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(c.args[i])
            ));
            return After::Continue;
        }
    }
    c.client.resp3 = resp3;
    c.reply.set_resp3(resp3);
    if let Some(name) = name {
        c.client.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    }
    c.reply.map(7);
    c.reply.bulk_str("server");
    c.reply.bulk_str("redis");
    c.reply.bulk_str("version");
    c.reply.bulk_str(REDIS_VERSION);
    c.reply.bulk_str("proto");
    c.reply.integer(if resp3 { 3 } else { 2 });
    c.reply.bulk_str("id");
    let id = c.client.id(c.keys.db);
    c.reply.integer(id as i64);
    c.reply.bulk_str("mode");
    c.reply.bulk_str("standalone");
    c.reply.bulk_str("role");
    c.reply.bulk_str("master");
    c.reply.bulk_str("modules");
    c.reply.array(0);
    After::Continue
}

/// Redis' rule for client names: printable, no spaces.
fn valid_name(name: &[u8]) -> Result<(), &'static str> {
    if name.iter().all(|&b| b > b' ' && b <= b'~') {
        Ok(())
    } else {
        Err("ERR Client names cannot contain spaces, newlines or special characters.")
    }
}

/// CLIENT SETNAME | GETNAME | ID | SETINFO | INFO
fn client(c: &mut Call<'_, '_>) -> After {
    let sub = c.args[1];
    let argc = c.args.len();
    let arity = |c: &mut Call<'_, '_>, name: &str| {
        c.reply.arity(&format!("client|{name}"));
    };
    if is(sub, "setname") {
        if argc != 3 {
            arity(c, "setname");
        } else if let Err(e) = valid_name(c.args[2]) {
            c.reply.error(e);
        } else {
            let name = c.args[2];
            c.client.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
            c.reply.simple("OK");
        }
    } else if is(sub, "getname") {
        if argc != 2 {
            arity(c, "getname");
        } else {
            match c.client.name.clone() {
                Some(name) => c.reply.bulk(&name),
                None => c.reply.null(),
            }
        }
    } else if is(sub, "id") {
        if argc != 2 {
            arity(c, "id");
        } else {
            let id = c.client.id(c.keys.db);
            c.reply.integer(id as i64);
        }
    } else if is(sub, "setinfo") {
        if argc != 4 {
            arity(c, "setinfo");
        } else {
            let value = Bytes::copy_from_slice(c.args[3]);
            if c.args[3].iter().any(|&b| b <= b' ' || b > b'~') {
                c.reply.error(&format!(
                    "ERR {} cannot contain spaces, newlines or special characters.",
                    String::from_utf8_lossy(c.args[2]).to_ascii_lowercase()
                ));
            } else if is(c.args[2], "lib-name") {
                c.client.lib_name = Some(value);
                c.reply.simple("OK");
            } else if is(c.args[2], "lib-ver") {
                c.client.lib_ver = Some(value);
                c.reply.simple("OK");
            } else {
                c.reply.error(&format!(
                    "ERR Unrecognized option '{}'",
                    String::from_utf8_lossy(c.args[2])
                ));
            }
        }
    } else if is(sub, "info") {
        if argc != 2 {
            arity(c, "info");
        } else {
            let text = client_info(c);
            c.reply.verbatim(&text);
        }
    } else {
        c.reply.error(&format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(sub)
        ));
    }
    After::Continue
}

/// The CLIENT INFO line of this connection.
fn client_info(c: &mut Call<'_, '_>) -> String {
    let id = c.client.id(c.keys.db);
    let text = |b: &Option<Bytes>| {
        b.as_ref()
            .map_or(String::new(), |b| String::from_utf8_lossy(b).into_owned())
    };
    let multi = c.client.multi.as_ref().map_or(-1, |m| m.queue.len() as i64);
    format!(
        "id={} name={} db=0 multi={} resp={} user=default lib-name={} lib-ver={} cmd=client|info\n",
        id,
        text(&c.client.name),
        multi,
        if c.client.resp3 { 3 } else { 2 },
        text(&c.client.lib_name),
        text(&c.client.lib_ver),
    )
}

/// MULTI
fn multi(c: &mut Call<'_, '_>) -> After {
    if c.client.in_transaction() {
        c.reply.error("ERR MULTI calls can not be nested");
    } else {
        c.client.multi = Some(Multi::default());
        c.reply.simple("OK");
    }
    After::Continue
}

/// DISCARD
fn discard(c: &mut Call<'_, '_>) -> After {
    if c.client.multi.take().is_some() {
        c.reply.simple("OK");
    } else {
        c.reply.error("ERR DISCARD without MULTI");
    }
    After::Continue
}

/// EXEC: runs the queued commands with every shard locked, so no other client's
/// command runs in between.
fn exec(c: &mut Call<'_, '_>) -> After {
    let Some(multi) = c.client.multi.take() else {
        c.reply.error("ERR EXEC without MULTI");
        return After::Continue;
    };
    if multi.dirty {
        c.reply
            .error("EXECABORT Transaction discarded because of previous errors.");
        return After::Continue;
    }
    c.reply.array(multi.queue.len());
    let mut after = After::Continue;
    for queued in &multi.queue {
        let argv: Vec<&[u8]> = queued.iter().map(|b| &b[..]).collect();
        let Some(command) = argv.first().and_then(|name| lookup(name)) else {
            c.reply.error("ERR unknown command");
            continue;
        };
        let result = command.run(&mut Call {
            keys: &mut *c.keys,
            client: &mut *c.client,
            args: &argv,
            reply: &mut *c.reply,
        });
        if result == After::Close {
            after = After::Close;
        }
    }
    after
}
