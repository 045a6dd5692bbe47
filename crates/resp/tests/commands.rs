//! Command semantics through the engine over loopback TCP, one client state per
//! connection: expiry (lazy and active), transactions (atomic against other threads'
//! clients), RESP3 after HELLO 3, SCAN over a changing key space, and replies that
//! stop at the output bound.

use greenfd_engine::{Config, Group};
use greenfd_resp::{Db, Resp, RespServer, encode_command, execute};
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use greenfd_test_support::{PATIENCE, Running, wait_until};

/// A connection that sends commands and reads one raw reply each.
struct Client {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Client {
    fn new(s: TcpStream) -> Client {
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        Client {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }

    /// Sends one command and returns its whole reply (nested aggregates included).
    fn call(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        let mut req = Vec::new();
        encode_command(&args, &mut req);
        self.w.write_all(&req).unwrap();
        self.reply()
    }

    /// Reads one RESP2/RESP3 reply.
    fn reply(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed");
        let n = |l: &str| l[1..l.len() - 2].parse::<i64>().unwrap();
        match line.as_bytes()[0] {
            b'$' | b'=' if n(&line) >= 0 => {
                let mut body = vec![0u8; n(&line) as usize + 2];
                self.r.read_exact(&mut body).unwrap();
                line + &String::from_utf8_lossy(&body)
            }
            b'*' | b'~' if n(&line) > 0 => {
                let count = n(&line);
                (0..count).fold(line, |acc, _| acc + &self.reply())
            }
            b'%' if n(&line) > 0 => {
                let count = 2 * n(&line);
                (0..count).fold(line, |acc, _| acc + &self.reply())
            }
            _ => line,
        }
    }
}

fn server() -> Running {
    Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    )
}

#[test]
fn keys_expire_lazily_and_actively() {
    let db = Db::new(4);
    let run = |args: &[&[u8]]| {
        let mut out = Vec::new();
        execute(&db, args, &mut out);
        String::from_utf8(out).unwrap()
    };
    assert_eq!(run(&[b"SET", b"lazy", b"v", b"PX", b"30"]), "+OK\r\n");
    assert_eq!(run(&[b"SET", b"active", b"v", b"PX", b"30"]), "+OK\r\n");
    assert_eq!(run(&[b"SET", b"kept", b"v"]), "+OK\r\n");
    std::thread::sleep(Duration::from_millis(60));
    // Touched after its deadline: gone.
    assert_eq!(run(&[b"GET", b"lazy"]), "$-1\r\n");
    // Never touched: still stored until a cycle removes it.
    assert_eq!(db.len(), 2);
    assert_eq!(db.expire_cycle(), 1);
    assert_eq!(db.len(), 1);
    assert_eq!(run(&[b"EXISTS", b"active", b"kept"]), ":1\r\n");
}

#[test]
fn the_background_expiry_thread_removes_untouched_keys() {
    let db = Db::new(1);
    db.start_active_expiry(Duration::from_millis(10)).unwrap();
    let mut out = Vec::new();
    execute(&db, &[b"SET", b"k", b"v", b"PX", b"20"], &mut out);
    assert_eq!(db.len(), 1);
    wait_until("the expiry thread to remove the key", || db.is_empty());
}

#[test]
fn transactions_queue_then_run_and_abort_on_queueing_errors() {
    let engine = server();
    let mut c = Client::new(engine.connect());
    assert_eq!(c.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.call(&["SET", "a", "1"]), "+QUEUED\r\n");
    assert_eq!(c.call(&["INCR", "a"]), "+QUEUED\r\n");
    assert_eq!(c.call(&["LPUSH", "a", "x"]), "+QUEUED\r\n");
    assert_eq!(
        c.call(&["EXEC"]),
        "*3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"
    );
    assert_eq!(c.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.call(&["SET", "a", "9"]), "+QUEUED\r\n");
    assert_eq!(
        c.call(&["GET"]),
        "-ERR wrong number of arguments for 'get' command\r\n"
    );
    assert_eq!(
        c.call(&["EXEC"]),
        "-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(c.call(&["GET", "a"]), "$1\r\n2\r\n");
    assert_eq!(c.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.call(&["SET", "a", "7"]), "+QUEUED\r\n");
    assert_eq!(c.call(&["DISCARD"]), "+OK\r\n");
    assert_eq!(c.call(&["GET", "a"]), "$1\r\n2\r\n");
    engine.stop();
}

/// Four engines share one store: INCRs from many clients are exact, and a MULTI that
/// reads a counter twice never sees another client's INCR in between.
#[test]
fn exec_is_atomic_across_engine_threads() {
    let db: Arc<Db> = Db::new(64);
    let group = Group::spawn(4, "127.0.0.1:0".parse().unwrap(), Config::default(), |_| {
        (Resp::default(), RespServer::new(db.clone()))
    })
    .unwrap();
    let addr = group.local_addr();
    let writers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::new(TcpStream::connect(addr).unwrap());
                for _ in 0..500 {
                    c.call(&["INCR", "ctr"]);
                }
            })
        })
        .collect();
    let mut reader = Client::new(TcpStream::connect(addr).unwrap());
    for _ in 0..200 {
        reader.call(&["MULTI"]);
        reader.call(&["GET", "ctr"]);
        reader.call(&["GET", "ctr"]);
        let reply = reader.call(&["EXEC"]);
        let values: Vec<&str> = reply
            .lines()
            .filter(|l| !l.starts_with(['*', '$']))
            .collect();
        assert!(
            values.len() < 2 || values[0] == values[1],
            "a transaction saw a change: {reply:?}"
        );
    }
    for w in writers {
        w.join().unwrap();
    }
    assert_eq!(reader.call(&["GET", "ctr"]), "$4\r\n4000\r\n");
    group.shutdown_and_join().unwrap();
}

#[test]
fn hello_3_switches_the_connection_to_resp3() {
    let engine = server();
    let mut c = Client::new(engine.connect());
    let hello = c.call(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n"), "{hello:?}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    c.call(&["HSET", "h", "f", "v"]);
    assert_eq!(c.call(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(c.call(&["GET", "nope"]), "_\r\n");
    c.call(&["ZADD", "z", "1.5", "m"]);
    assert_eq!(c.call(&["ZSCORE", "z", "m"]), ",1.5\r\n");
    assert_eq!(
        c.call(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(c.call(&["HELLO", "2"]).lines().next(), Some("*14"));
    assert_eq!(c.call(&["GET", "nope"]), "$-1\r\n");
    engine.stop();
}

/// SCAN returns every key that exists for the whole iteration, while other keys come
/// and go between its calls.
#[test]
fn scan_sees_every_stable_key_while_others_change() {
    let engine = server();
    let mut c = Client::new(engine.connect());
    for i in 0..300 {
        c.call(&["SET", &format!("stable:{i}"), "v"]);
    }
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    let mut churn = 0;
    loop {
        let reply = c.call(&["SCAN", &cursor, "COUNT", "17"]);
        let lines: Vec<&str> = reply.lines().collect();
        // *2, $len, cursor, *n, then $len/key pairs.
        cursor = lines[2].to_string();
        seen.extend(lines[4..].iter().skip(1).step_by(2).map(|k| k.to_string()));
        for _ in 0..5 {
            c.call(&["SET", &format!("churn:{churn}"), "v"]);
            c.call(&["DEL", &format!("churn:{}", churn / 2)]);
            churn += 1;
        }
        if cursor == "0" {
            break;
        }
    }
    for i in 0..300 {
        assert!(
            seen.contains(&format!("stable:{i}")),
            "stable:{i} never returned"
        );
    }
    engine.stop();
}

/// A reply past the output bound is never built: the client is closed, the server
/// answers others.
#[test]
fn a_reply_past_the_output_bound_closes_only_its_client() {
    let engine = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config {
            max_output: 1 << 20,
            ..Config::default()
        },
    );
    let mut c = Client::new(engine.connect());
    let value = "x".repeat(300_000);
    assert_eq!(c.call(&["SET", "big", &value]), "+OK\r\n");
    let mut mget = vec!["MGET"];
    mget.extend(std::iter::repeat_n("big", 10));
    let args: Vec<&[u8]> = mget.iter().map(|a| a.as_bytes()).collect();
    let mut req = Vec::new();
    encode_command(&args, &mut req);
    c.w.write_all(&req).unwrap();
    let mut rest = Vec::new();
    let _ = c.r.read_to_end(&mut rest);
    assert!(
        rest.is_empty(),
        "{} bytes of a reply that cannot fit",
        rest.len()
    );
    let mut other = Client::new(engine.connect());
    assert_eq!(other.call(&["STRLEN", "big"]), ":300000\r\n");
    engine.stop();
}
