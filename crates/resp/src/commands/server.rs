//! Server commands: INFO, CONFIG GET, COMMAND, DBSIZE, FLUSHALL, FLUSHDB.

use super::{SYNTAX, is};
use crate::command::{After, Call, Command, Flags, cmd, commands};
use crate::commands::connection::REDIS_VERSION;
use std::sync::atomic::Ordering;

/// No key arguments.
const NO_KEYS: (u8, i8, u8) = (0, 0, 0);

/// This group's table rows.
pub(crate) const COMMANDS: &[Command] = &[
    cmd(
        "info",
        -1,
        Flags::CONNECTION.with(Flags::ALL_KEYS),
        NO_KEYS,
        info,
    ),
    cmd("config", -2, Flags::CONNECTION, NO_KEYS, config),
    cmd("command", -1, Flags::CONNECTION, NO_KEYS, command),
    cmd(
        "dbsize",
        1,
        Flags::READONLY.with(Flags::ALL_KEYS),
        NO_KEYS,
        dbsize,
    ),
    cmd(
        "flushall",
        -1,
        Flags::WRITE.with(Flags::ALL_KEYS),
        NO_KEYS,
        flush,
    ),
    cmd(
        "flushdb",
        -1,
        Flags::WRITE.with(Flags::ALL_KEYS),
        NO_KEYS,
        flush,
    ),
];

/// INFO [section ...]: server, clients and keyspace, as key:value lines.
fn info(c: &mut Call<'_, '_>) -> After {
    let (mut keys, mut volatile) = (0, 0);
    for shard in c.keys.shards() {
        keys += shard.len();
        volatile += shard.volatile();
    }
    let clients = c.keys.db.clients.load(Ordering::Relaxed);
    let mut text = format!(
        "# Server\r\nredis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nos:Linux\r\n\
         arch_bits:64\r\nprocess_id:{}\r\n\r\n# Clients\r\nconnected_clients:{clients}\r\n\r\n\
         # Persistence\r\nloading:0\r\n\r\n# Replication\r\nrole:master\r\n\r\n# Keyspace\r\n",
        std::process::id()
    );
    if keys > 0 {
        text.push_str(&format!("db0:keys={keys},expires={volatile},avg_ttl=0\r\n"));
    }
    c.reply.verbatim(&text);
    After::Continue
}

/// The configuration parameters CONFIG GET knows (persistence is off).
const CONFIG: &[(&str, &str)] = &[
    ("appendonly", "no"),
    ("databases", "1"),
    ("maxmemory", "0"),
    ("save", ""),
];

/// CONFIG GET parameter [parameter ...]
fn config(c: &mut Call<'_, '_>) -> After {
    let sub = c.args[1];
    if !is(sub, "get") {
        c.reply.error(&format!(
            "ERR unknown subcommand '{}'. Try CONFIG HELP.",
            String::from_utf8_lossy(sub)
        ));
        return After::Continue;
    }
    if c.args.len() < 3 {
        c.reply.arity("config|get");
        return After::Continue;
    }
    let matches: Vec<(&str, &str)> = CONFIG
        .iter()
        .filter(|(name, _)| {
            c.args[2..]
                .iter()
                .any(|p| crate::commands::keyspace::glob(&p.to_ascii_lowercase(), name.as_bytes()))
        })
        .copied()
        .collect();
    c.reply.map(matches.len());
    for (name, value) in matches {
        c.reply.bulk_str(name);
        c.reply.bulk_str(value);
    }
    After::Continue
}

/// COMMAND [COUNT | DOCS | INFO | LIST ...]
fn command(c: &mut Call<'_, '_>) -> After {
    match c.args.get(1) {
        Some(sub) if is(sub, "count") => c.reply.integer(commands().len() as i64),
        Some(sub) if is(sub, "list") => {
            c.reply.array(commands().len());
            for command in commands() {
                c.reply.bulk_str(command.name);
            }
        }
        // COMMAND DOCS (redis-cli asks at start-up): no docs, clients use their own.
        Some(sub) if is(sub, "docs") => c.reply.map(0),
        // COMMAND, COMMAND INFO ...: an empty array tells clients to use their
        // built-in tables.
        _ => c.reply.array(0),
    }
    After::Continue
}

/// DBSIZE
fn dbsize(c: &mut Call<'_, '_>) -> After {
    let n: usize = c.keys.shards().map(|s| s.len()).sum();
    c.reply.integer(n as i64);
    After::Continue
}

/// FLUSHALL / FLUSHDB [ASYNC | SYNC]: anything else is a syntax error and keeps the
/// data. ASYNC frees the old values on another thread.
fn flush(c: &mut Call<'_, '_>) -> After {
    let asynchronous = match c.args {
        [_] => false,
        [_, mode] if is(mode, "sync") => false,
        [_, mode] if is(mode, "async") => true,
        _ => {
            c.reply.error(SYNTAX);
            return After::Continue;
        }
    };
    let old = c.keys.flush();
    if asynchronous {
        let freed = std::thread::Builder::new()
            .name("greenfd-resp-free".into())
            .spawn(move || drop(old));
        if let Err(e) = freed {
            tracing::warn!(error = %e, "cannot free asynchronously; values were freed in place");
        }
    } else {
        drop(old);
    }
    c.reply.simple("OK");
    After::Continue
}
