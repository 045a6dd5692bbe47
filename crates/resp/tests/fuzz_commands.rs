//! Every command of the table, with arguments drawn from numbers at the edges of their
//! ranges, option words and short strings, in random sequences over one store: nothing
//! panics, and each command gets exactly one well-formed RESP2 reply.

use greenfd_resp::{Db, commands, execute};
use proptest::prelude::*;

/// Arguments that reach the corners of the commands' parsing.
const WORDS: &[&str] = &[
    "k",
    "k2",
    "h",
    "l",
    "s",
    "z",
    "0",
    "1",
    "-1",
    "2",
    "10",
    "-100",
    "1.5",
    "-inf",
    "+inf",
    "nan",
    "(1",
    "9223372036854775807",
    "-9223372036854775808",
    "99999999999999999999",
    "NX",
    "XX",
    "GT",
    "LT",
    "CH",
    "INCR",
    "GET",
    "EX",
    "PX",
    "EXAT",
    "PXAT",
    "KEEPTTL",
    "WITHSCORES",
    "BYSCORE",
    "REV",
    "LIMIT",
    "COUNT",
    "MATCH",
    "TYPE",
    "*",
    "k*",
    "[a-",
    "\\",
    "ASYNC",
    "SYNC",
    "SETNAME",
    "GETNAME",
    "ID",
    "SETINFO",
    "LIB-NAME",
    "INFO",
    "GET",
    "DOCS",
    "",
    " ",
    "a b",
];

/// Length of the one well-formed RESP2 reply at the start of `b`, if there is one.
fn reply_len(b: &[u8]) -> Option<usize> {
    let cr = b.iter().position(|&c| c == b'\r')?;
    if b.get(cr + 1) != Some(&b'\n') {
        return None;
    }
    let head = std::str::from_utf8(&b[1..cr]).ok()?;
    match b.first()? {
        b'+' | b'-' => Some(cr + 2),
        b':' => head.parse::<i64>().ok().map(|_| cr + 2),
        b'$' => match head.parse::<i64>().ok()? {
            -1 => Some(cr + 2),
            n if n >= 0 => {
                let end = cr + 2 + n as usize;
                (b.get(end..end + 2)? == b"\r\n").then_some(end + 2)
            }
            _ => None,
        },
        b'*' => match head.parse::<i64>().ok()? {
            -1 => Some(cr + 2),
            n if n >= 0 => {
                let mut at = cr + 2;
                for _ in 0..n {
                    at += reply_len(&b[at..])?;
                }
                Some(at)
            }
            _ => None,
        },
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn every_command_answers_exactly_once(
        calls in prop::collection::vec(
            (any::<prop::sample::Index>(), prop::collection::vec(any::<prop::sample::Index>(), 0..7)),
            1..60,
        ),
    ) {
        let db = Db::new(4);
        let table = commands();
        for (name, args) in calls {
            let command = table[name.index(table.len())];
            if command.name == "quit" {
                continue;
            }
            let mut argv: Vec<&[u8]> = vec![command.name.as_bytes()];
            argv.extend(args.iter().map(|i| WORDS[i.index(WORDS.len())].as_bytes()));
            let mut out = Vec::new();
            execute(&db, &argv, &mut out);
            let len = reply_len(&out);
            prop_assert_eq!(
                len,
                Some(out.len()),
                "{:?} answered {:?}",
                argv.iter().map(|a| String::from_utf8_lossy(a)).collect::<Vec<_>>(),
                String::from_utf8_lossy(&out)
            );
        }
    }
}
