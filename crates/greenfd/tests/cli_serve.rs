//! `greenfd serve` as a process: real Redis clients (`redis-cli`, `redis-benchmark`'s
//! default suite, redis-py from PyPI) against `--resp`, its replies compared with a real
//! `redis-server`, replies that cannot exhaust memory, parse work that stays linear
//! under a trickled request, echo and lines modes, `--threads`, and clean exit on
//! SIGINT/SIGTERM, and a clear failure when an engine dies. Every test but that last
//! one runs with `--io epoll` and with `--io uring` (`<test>::epoll`, `<test>::uring`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use greenfd_test_support::{IoDriver, have, on_both_drivers};

/// Safety net for every wait.
const PATIENCE: Duration = Duration::from_secs(60);

/// A running `greenfd serve`; killed on drop if a test fails before stopping it.
struct Server {
    child: Option<Child>,
    addr: SocketAddr,
    /// Kept open so the server never gets EPIPE on stdout.
    _stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts `greenfd serve <args> --io <io> --addr 127.0.0.1:0` and reads the address
    /// it prints.
    fn start(io: IoDriver, args: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_greenfd"));
        cmd.arg("serve").args(args).args(["--io", io.as_str()]);
        Server::spawn(cmd)
    }

    /// Starts `greenfd serve <args>` under an address-space limit of `bytes` (through
    /// the shell's `ulimit -v`, so the test itself needs no unsafe `pre_exec`).
    fn start_limited(io: IoDriver, bytes: u64, args: &[&str]) -> Server {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!(
                "ulimit -v {} && exec \"$0\" serve \"$@\"",
                bytes / 1024
            ))
            .arg(env!("CARGO_BIN_EXE_greenfd"))
            .args(args)
            .args(["--io", io.as_str()]);
        Server::spawn(cmd)
    }

    /// Spawns `cmd --addr 127.0.0.1:0` and reads the address it prints (stderr is
    /// inherited unless `cmd` says otherwise).
    fn spawn(mut cmd: Command) -> Server {
        let mut child = cmd
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn greenfd");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the banner");
        let addr = line
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no address in banner {line:?}"));
        Server {
            child: Some(child),
            addr,
            _stdout: stdout,
        }
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(PATIENCE)).unwrap();
        s
    }

    /// The server's process id.
    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// The server's resident set size, in bytes (`VmRSS` of /proc).
    fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS in /proc/pid/status");
        kib * 1024
    }

    /// CPU time the server's threads have used, in nanoseconds (the first field of
    /// each thread's /proc schedstat; clock ticks would be 10 ms coarse).
    fn cpu_ns(&self) -> u64 {
        let mut total = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid())).unwrap() {
            if let Ok(text) = std::fs::read_to_string(task.unwrap().path().join("schedstat")) {
                total += text
                    .split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        total
    }

    /// Sends `signal` and waits (with a safety-net timeout) for the exit status.
    fn stop_with(self, signal: rustix::process::Signal) -> ExitStatus {
        let pid = rustix::process::Pid::from_child(self.child.as_ref().unwrap());
        rustix::process::kill_process(pid, signal).unwrap();
        self.wait_for_exit(&format!("{signal:?}"))
    }

    /// Waits (with a safety-net timeout) for the server to exit after `what`.
    fn wait_for_exit(mut self, what: &str) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            tx.send(()).ok();
            status
        });
        if rx.recv_timeout(PATIENCE).is_err() {
            // Stuck: kill it by pid (our own child) so the test fails instead of hanging,
            // and its own children first (the server, when the child is strace: a
            // tracer's death would leave it running).
            let children = format!("/proc/{0}/task/{0}/children", pid.as_raw_nonzero());
            for grandchild in std::fs::read_to_string(children)
                .unwrap_or_default()
                .split_whitespace()
            {
                if let Some(gc) = grandchild
                    .parse()
                    .ok()
                    .and_then(rustix::process::Pid::from_raw)
                {
                    rustix::process::kill_process(gc, rustix::process::Signal::KILL).ok();
                }
            }
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).ok();
            panic!("greenfd serve did not exit after {what}");
        }
        waiter.join().unwrap().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `redis-cli` against `server` with `args`; returns stdout.
fn redis_cli(server: &Server, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(s) = stdin {
        input.write_all(s.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn redis_cli_round_trips_and_errors_keep_the_connection(io: IoDriver) {
    if !have("redis-cli") {
        return;
    }
    let server = Server::start(io, &["--resp"]);
    assert_eq!(redis_cli(&server, &["SET", "k", "v"], None), "OK\n");
    assert_eq!(redis_cli(&server, &["GET", "k"], None), "v\n");
    assert_eq!(redis_cli(&server, &["INCR", "n"], None), "1\n");
    assert_eq!(redis_cli(&server, &["INCR", "n"], None), "2\n");
    assert_eq!(
        redis_cli(&server, &["INCR", "k"], None),
        // redis-cli (not on a tty) prints an empty line after an error.
        "ERR value is not an integer or out of range\n\n"
    );
    assert_eq!(
        redis_cli(&server, &["MSET", "a", "1", "b", "2"], None),
        "OK\n"
    );
    assert_eq!(
        redis_cli(&server, &["MGET", "k", "n", "missing", "b"], None),
        "v\n2\n\n2\n"
    );
    assert_eq!(redis_cli(&server, &["EXISTS", "k", "missing"], None), "1\n");
    assert_eq!(redis_cli(&server, &["DBSIZE"], None), "4\n");
    assert_eq!(
        redis_cli(&server, &["DEL", "k", "n", "missing"], None),
        "2\n"
    );
    assert_eq!(redis_cli(&server, &["GET", "k"], None), "\n");
    // Several commands over one redis-cli connection: the error does not end it.
    let out = redis_cli(&server, &[], Some("FOO bar\nGET\nPING\nECHO hi\n"));
    assert_eq!(
        out,
        "ERR unknown command 'FOO', with args beginning with: 'bar' \n\n\
         ERR wrong number of arguments for 'get' command\n\nPONG\nhi\n"
    );
    // The same on a raw socket, to see the exact RESP bytes.
    let mut c = server.connect();
    c.write_all(b"*1\r\n$3\r\nFOO\r\n*1\r\n$4\r\nPING\r\n")
        .unwrap();
    let want = b"-ERR unknown command 'FOO', with args beginning with: \r\n+PONG\r\n";
    let mut got = vec![0u8; want.len()];
    c.read_exact(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(want));
    assert_eq!(redis_cli(&server, &["FLUSHALL"], None), "OK\n");
    assert_eq!(redis_cli(&server, &["DBSIZE"], None), "0\n");
    assert!(server.stop_with(rustix::process::Signal::TERM).success());
}

/// Runs redis-benchmark's default test list (no `-t`); it exits with an error status at
/// the first error reply. Returns (test, requests per second) rows.
fn benchmark(server: &Server, pipeline: &str) -> Vec<(String, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args(["-n", "4000", "-c", "50", "-P", pipeline, "--csv"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark -P {pipeline}: {out:?}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stderr.to_ascii_lowercase().contains("error")
            && !stdout.to_ascii_lowercase().contains("error"),
        "redis-benchmark -P {pipeline} reported errors: {stderr} {stdout}"
    );
    stdout
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|s| s.trim_matches('"'));
            let name = f.next()?.to_string();
            let rps = f.next()?.parse::<f64>().ok()?;
            Some((name, rps))
        })
        .collect()
}

fn redis_benchmark_default_suite_has_no_errors_plain_and_pipelined(io: IoDriver) {
    if !have("redis-benchmark") {
        return;
    }
    let server = Server::start(io, &["--resp"]);
    for pipeline in ["1", "16"] {
        let rows = benchmark(&server, pipeline);
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        for test in [
            "PING_INLINE",
            "SET",
            "GET",
            "INCR",
            "LPUSH",
            "RPOP",
            "SADD",
            "HSET",
            "SPOP",
            "ZADD",
            "ZPOPMIN",
            "LRANGE_600 (first 600 elements)",
            "MSET (10 keys)",
        ] {
            assert!(
                names.contains(&test),
                "-P {pipeline}: no {test} in {names:?}"
            );
        }
        assert!(rows.iter().all(|(_, rps)| *rps > 0.0));
        eprintln!("redis-benchmark -P {pipeline}: {rows:?}");
    }
    // Every SET landed: the keyspace has the benchmark's key.
    assert_eq!(
        redis_cli(&server, &["EXISTS", "key:__rand_int__"], None),
        "1\n"
    );
    assert!(server.stop_with(rustix::process::Signal::INT).success());
}

fn echo_mode_and_sigterm_with_a_client_connected(io: IoDriver) {
    let server = Server::start(io, &["--echo"]);
    let mut c = server.connect();
    c.write_all(b"any bytes \x00\xff at all").unwrap();
    let mut got = [0u8; 19];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"any bytes \x00\xff at all");
    let status = server.stop_with(rustix::process::Signal::TERM);
    assert!(status.success(), "{status:?}");
    // The server closed the connection on its way out.
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// Whether strace can trace (and so inject faults into) a child here: ptrace may be
/// forbidden in a container; prints why the calling test skips if not.
fn strace_works() -> bool {
    if !have("strace") {
        return false;
    }
    let out = greenfd_test_support::run(
        Command::new("strace").args(["-f", "-qq", "-o", "/dev/null", "true"]),
        PATIENCE,
    );
    if !out.status.success() {
        eprintln!(
            "skipped: strace cannot trace here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    out.status.success()
}

/// An engine that dies (strace makes its second `epoll_wait` fail with EIO, the first
/// one having reported the client's connection) ends the whole server at once, with
/// status 1 and a message saying why, although the main thread waits with no timeout:
/// the group's stop notifier wakes it. Epoll only, as that is where the fault goes in;
/// the notifier is the same for both drivers.
#[test]
fn an_engine_that_dies_ends_serve_with_its_reason() {
    if !strace_works() {
        return;
    }
    let epoll_waits = "/^epoll_(p)?wait2?$";
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o", "/dev/null"])
        .args(["-e", &format!("trace={epoll_waits}")])
        .args(["-e", &format!("inject={epoll_waits}:error=EIO:when=2+")])
        .arg(env!("CARGO_BIN_EXE_greenfd"))
        .args(["serve", "--echo", "--io", "epoll"])
        .stderr(Stdio::piped());
    let mut server = Server::spawn(cmd);
    let mut stderr = server.child.as_mut().unwrap().stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).map(|_| text)
    });
    let mut client = server.connect();
    let status = server.wait_for_exit("its engine failed");
    let stderr = reader.join().unwrap().unwrap();
    assert_eq!(status.code(), Some(1), "{status:?}; stderr: {stderr}");
    assert!(
        stderr.contains("greenfd: an engine stopped: reactor error: Input/output error"),
        "{stderr}"
    );
    assert!(greenfd_test_support::is_closed_by_server(&mut client));
}

fn lines_mode_on_two_threads_and_sigint(io: IoDriver) {
    let server = Server::start(io, &["--lines", "--threads", "2"]);
    let mut clients: Vec<BufReader<TcpStream>> =
        (0..16).map(|_| BufReader::new(server.connect())).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        // A line in two writes: framing holds the first half until the newline.
        c.get_mut()
            .write_all(format!("line {i} ").as_bytes())
            .unwrap();
        c.get_mut().write_all(b"ends here\n").unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut line = String::new();
        c.read_line(&mut line).unwrap();
        assert_eq!(line, format!("line {i} ends here\n"));
    }
    assert!(server.stop_with(rustix::process::Signal::INT).success());
}

/// Encodes one command as a RESP array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one whole RESP2 reply and returns its bytes (nested arrays included).
fn read_reply(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let n = || -> i64 {
        String::from_utf8_lossy(&line[1..line.len() - 2])
            .parse()
            .unwrap()
    };
    match line[0] {
        b'$' if n() >= 0 => {
            let mut body = vec![0u8; n() as usize + 2];
            r.read_exact(&mut body)?;
            line.extend_from_slice(&body);
        }
        b'*' if n() > 0 => {
            for _ in 0..n() {
                let element = read_reply(r)?;
                line.extend_from_slice(&element);
            }
        }
        _ => {}
    }
    Ok(line)
}

/// Sends each request to `addr` on one connection and collects each raw reply; a
/// request ending in `\n` without a reply expected (protocol errors) closes it.
fn replies_from(addr: SocketAddr, requests: &[Vec<u8>]) -> Vec<String> {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut r = BufReader::new(c.try_clone().unwrap());
    requests
        .iter()
        .map(|req| {
            c.write_all(req).unwrap();
            String::from_utf8_lossy(&read_reply(&mut r).unwrap()).into_owned()
        })
        .collect()
}

/// A `redis-server` on a free port, persistence off; `None` (and a printed reason) if
/// it is not installed.
struct RedisServer {
    child: Child,
    addr: SocketAddr,
}

impl RedisServer {
    fn start() -> Option<RedisServer> {
        if !have("redis-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let deadline = std::time::Instant::now() + PATIENCE;
        while TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server never listened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(RedisServer { child, addr })
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The same requests, byte for byte, get the same replies from `greenfd serve` as from
/// a real `redis-server`: error texts, WRONGTYPE, arity, options, nil and empty replies.
fn replies_and_error_texts_match_redis_server(io: IoDriver) {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = Server::start(io, &["--resp"]);
    let c = |args: &[&str]| command(&args.iter().map(|a| a.as_bytes()).collect::<Vec<_>>());
    let requests = vec![
        c(&["FLUSHALL"]),
        c(&["SET", "s", "v"]),
        c(&["SET", "s", "w", "NX"]),
        c(&["SET", "s", "w", "XX", "GET"]),
        c(&["SET", "s", "v", "EX", "0"]),
        c(&["SET", "s", "v", "EX", "x"]),
        c(&["SET", "s", "v", "NX", "XX"]),
        c(&["SET", "s", "v", "KEEPTTL", "EX", "5"]),
        c(&["GET"]),
        c(&["FOO", "a", "b"]),
        c(&["INCR", "s"]),
        c(&["INCRBY", "n", "x"]),
        c(&["INCRBY", "n", "9223372036854775807"]),
        c(&["INCR", "n"]),
        c(&["DECRBY", "m", "-9223372036854775808"]),
        c(&["LPUSH", "s", "x"]),
        c(&["RPUSH", "l", "a", "b", "c"]),
        c(&["LRANGE", "l", "-100", "100"]),
        c(&["LPOP", "l", "-1"]),
        c(&["LPOP", "nolist", "2"]),
        c(&["RPOP", "nolist"]),
        c(&["SADD", "st", "a"]),
        c(&["SPOP", "nosuch", "3"]),
        c(&["HSET", "h", "f"]),
        c(&["HSET", "h", "f", "v", "g", "w"]),
        c(&["HGET", "h", "zz"]),
        c(&["ZADD", "z", "NX", "XX", "1", "a"]),
        c(&["ZADD", "z", "GT", "LT", "1", "a"]),
        c(&["ZADD", "z", "x", "a"]),
        c(&["ZADD", "z", "1", "a", "2.5", "b"]),
        c(&["ZADD", "z", "INCR", "1", "a", "2", "b"]),
        c(&["ZSCORE", "z", "b"]),
        c(&["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        c(&["ZRANGE", "z", "0", "-1", "LIMIT", "0", "1"]),
        c(&["ZPOPMIN", "z"]),
        c(&["ZPOPMIN", "nosuch"]),
        c(&["TYPE", "z"]),
        c(&["TYPE", "l"]),
        c(&["TYPE", "nosuch"]),
        c(&["EXPIRE", "s", "100", "NX", "XX"]),
        c(&["EXPIRE", "s", "100", "GT", "LT"]),
        c(&["EXPIRE", "s", "x"]),
        c(&["EXPIRE", "s", "100", "XX"]),
        c(&["EXPIRE", "s", "100"]),
        c(&["TTL", "s"]),
        c(&["PERSIST", "s"]),
        c(&["TTL", "nosuch"]),
        c(&["SELECT", "16"]),
        c(&["SELECT", "x"]),
        c(&["HELLO", "4"]),
        c(&["HELLO", "x"]),
        c(&["AUTH", "pw"]),
        c(&["CLIENT", "NOSUCH"]),
        c(&["CLIENT", "SETNAME", "a b"]),
        c(&["CLIENT", "GETNAME"]),
        c(&["MULTI"]),
        c(&["MULTI"]),
        c(&["NOSUCH"]),
        c(&["EXEC"]),
        c(&["EXEC"]),
        c(&["DISCARD"]),
        c(&["MULTI"]),
        c(&["INCR", "ctr"]),
        c(&["GET", "ctr"]),
        c(&["EXEC"]),
        c(&["FLUSHALL", "bogus"]),
        c(&["FLUSHALL", "ASYNC", "x"]),
        c(&["DBSIZE"]),
        c(&["APPEND", "ap", "abc"]),
        c(&["STRLEN", "ap"]),
        c(&["SCAN", "x"]),
        c(&["KEYS", "a?"]),
        c(&["MSET", "a", "1", "b"]),
        c(&["FLUSHDB", "SYNC"]),
        c(&["DBSIZE"]),
        c(&["CONFIG", "GET", "appendonly"]),
        b"*1\r\n$4\r\nPING\r\n*0\r\nPING\r\n".to_vec(),
    ];
    let ours = replies_from(server.addr, &requests);
    let theirs = replies_from(redis.addr, &requests);
    let mut differ = Vec::new();
    for ((req, a), b) in requests.iter().zip(&ours).zip(&theirs) {
        if a != b {
            differ.push(format!(
                "{:?}: greenfd {a:?}, redis {b:?}",
                String::from_utf8_lossy(req)
            ));
        }
    }
    assert!(differ.is_empty(), "replies differ:\n{}", differ.join("\n"));
}

/// Protocol errors get redis' `-ERR Protocol error: ...` reply (compared with a real
/// redis-server when one is installed), then the connection closes.
fn protocol_errors_are_answered_as_redis_answers_them(io: IoDriver) {
    let server = Server::start(io, &["--resp"]);
    let redis = RedisServer::start();
    for (bad, text) in [
        (&b"*1\r\n:3\r\n"[..], "expected '$', got ':'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"SET \"k v\r\n", "unbalanced quotes in request"),
    ] {
        let answer = |addr: SocketAddr| {
            let mut c = TcpStream::connect(addr).unwrap();
            c.set_read_timeout(Some(PATIENCE)).unwrap();
            c.write_all(b"PING\r\n").unwrap();
            c.write_all(bad).unwrap();
            let mut all = Vec::new();
            c.read_to_end(&mut all).unwrap();
            String::from_utf8_lossy(&all).into_owned()
        };
        let want = format!("+PONG\r\n-ERR Protocol error: {text}\r\n");
        assert_eq!(answer(server.addr), want, "{bad:?}");
        if let Some(redis) = &redis {
            assert_eq!(answer(redis.addr), want, "redis-server on {bad:?}");
        }
    }
}

fn flushall_with_a_bogus_argument_is_a_syntax_error_and_keeps_the_data(io: IoDriver) {
    let server = Server::start(io, &["--resp"]);
    let replies = replies_from(
        server.addr,
        &[
            command(&[b"SET", b"k", b"v"]),
            command(&[b"FLUSHALL", b"bogus"]),
            command(&[b"FLUSHDB", b"now"]),
            command(&[b"GET", b"k"]),
            command(&[b"FLUSHALL", b"sync"]),
            command(&[b"DBSIZE"]),
        ],
    );
    assert_eq!(
        replies,
        [
            "+OK\r\n",
            "-ERR syntax error\r\n",
            "-ERR syntax error\r\n",
            "$1\r\nv\r\n",
            "+OK\r\n",
            ":0\r\n"
        ]
    );
}

/// redis-py from PyPI, default settings, runs its suite (crates/greenfd/tests/redis_py):
/// connect without a warning, strings with options, counters, expiry, pipelines with
/// and without MULTI, client names, lists, sets, hashes, sorted sets, WRONGTYPE, and
/// 50 threads doing 10,000 INCRs with an exact count.
fn redis_py_with_default_settings_passes_its_suite(io: IoDriver) {
    let probe = Command::new("python3")
        .args(["-c", "import redis, pytest"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        eprintln!("skipped: python3 with redis and pytest not found (pip install redis pytest)");
        return;
    }
    let server = Server::start(io, &["--resp", "--threads", "4"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/redis_py/test_redis_py.py"
    );
    let out = Command::new("python3")
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .args(["-W", "error", "-W", "ignore::ResourceWarning", script])
        .env("GREENFD_RESP_PORT", server.addr.port().to_string())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{}", text.lines().last().unwrap_or_default());
}

/// Sets `key` to `len` bytes of a pattern; returns the value.
fn set_big(c: &mut TcpStream, r: &mut impl BufRead, key: &[u8], len: usize, seed: u8) -> Vec<u8> {
    let value: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed)
        .collect();
    c.write_all(&command(&[b"SET", key, &value])).unwrap();
    assert_eq!(read_reply(r).unwrap(), b"+OK\r\n");
    value
}

/// A 3 GiB MGET reply (3000 × a 1 MiB value) under a 2 GiB address-space limit: the
/// reply is never built past the output bound, the server survives, only the client
/// that asked is closed, and others are served before and after.
fn huge_mget_under_an_address_space_limit_only_affects_its_client(io: IoDriver) {
    let server = Server::start_limited(io, 2 << 30, &["--resp"]);
    let mut c = server.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    set_big(&mut c, &mut r, b"big", 1 << 20, 1);
    let mut other = server.connect();
    let mut other_r = BufReader::new(other.try_clone().unwrap());
    let mut mget: Vec<&[u8]> = vec![b"MGET"];
    mget.extend(std::iter::repeat_n(&b"big"[..], 3000));
    c.write_all(&command(&mget)).unwrap();
    // The asking client is closed without a (partial) reply.
    let mut rest = Vec::new();
    let closed = match r.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed && rest.is_empty(), "got {} bytes", rest.len());
    // Everyone else is fine, and the value is still there.
    other.write_all(&command(&[b"STRLEN", b"big"])).unwrap();
    assert_eq!(read_reply(&mut other_r).unwrap(), b":1048576\r\n");
    let status = server.stop_with(rustix::process::Signal::TERM);
    assert!(status.success(), "the server did not survive: {status:?}");
}

/// A 40 MiB reply reaches a client that reads it, whole and exact; after big replies
/// and FLUSHALL the server's RSS returns near where it started (measured here).
fn a_40_mib_reply_arrives_whole_and_memory_returns_after_flushall(io: IoDriver) {
    let server = Server::start(io, &["--resp"]);
    let mut c = server.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    c.write_all(&command(&[b"PING"])).unwrap();
    read_reply(&mut r).unwrap();
    let baseline = server.rss();
    let values: Vec<Vec<u8>> = (0..4)
        .map(|i| {
            set_big(
                &mut c,
                &mut r,
                format!("v{i}").as_bytes(),
                10 << 20,
                i as u8,
            )
        })
        .collect();
    // GET and MGET pipelined: 10 MiB then a 40 MiB reply.
    let mut req = command(&[b"GET", b"v0"]);
    req.extend(command(&[b"MGET", b"v0", b"v1", b"v2", b"v3"]));
    c.write_all(&req).unwrap();
    let get = read_reply(&mut r).unwrap();
    assert_eq!(
        &get[get.len() - 2 - values[0].len()..get.len() - 2],
        &values[0][..]
    );
    let mget = read_reply(&mut r).unwrap();
    let mut want = b"*4\r\n".to_vec();
    for v in &values {
        want.extend_from_slice(format!("${}\r\n", v.len()).as_bytes());
        want.extend_from_slice(v);
        want.extend_from_slice(b"\r\n");
    }
    assert!(mget.len() > 40 << 20);
    assert!(mget == want, "the 40 MiB reply differs");
    let peak = server.rss();
    c.write_all(&command(&[b"FLUSHALL"])).unwrap();
    assert_eq!(read_reply(&mut r).unwrap(), b"+OK\r\n");
    c.write_all(&command(&[b"DBSIZE"])).unwrap();
    assert_eq!(read_reply(&mut r).unwrap(), b":0\r\n");
    let after = server.rss();
    eprintln!(
        "RSS: baseline {} KiB, with 40 MiB stored {} KiB, after FLUSHALL {} KiB",
        baseline >> 10,
        peak >> 10,
        after >> 10
    );
    assert!(
        peak > baseline + (30 << 20),
        "the values were not resident?"
    );
    assert!(
        after < baseline + (8 << 20),
        "RSS stayed at {} KiB after FLUSHALL (baseline {} KiB)",
        after >> 10,
        baseline >> 10
    );
}

/// A 1M-element DEL sent 1,500 bytes at a time costs at most twice the server CPU of
/// the same request sent at once: each piece resumes the parse where the last stopped
/// (a ratio of CPU times from /proc, not a wall time).
fn a_trickled_million_element_request_costs_at_most_twice_the_cpu(io: IoDriver) {
    let server = Server::start(io, &["--resp"]);
    let keys: Vec<Vec<u8>> = (0..1_000_000)
        .map(|i| format!("k:{i:07}").into_bytes())
        .collect();
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(keys.iter().map(Vec::as_slice));
    let request = command(&args);
    let run = |trickle: bool| {
        let mut c = server.connect();
        c.set_nodelay(true).unwrap();
        let mut r = BufReader::new(c.try_clone().unwrap());
        let before = server.cpu_ns();
        if trickle {
            for piece in request.chunks(1500) {
                c.write_all(piece).unwrap();
                // Let the server take each piece in its own read.
                std::thread::sleep(Duration::from_micros(20));
            }
        } else {
            c.write_all(&request).unwrap();
        }
        assert_eq!(read_reply(&mut r).unwrap(), b":0\r\n");
        server.cpu_ns() - before
    };
    let at_once = run(false);
    let trickled = run(true);
    let ratio = trickled as f64 / at_once.max(1) as f64;
    eprintln!(
        "1M-element DEL: {:.1} ms CPU at once, {:.1} ms trickled, ratio {ratio:.2}",
        at_once as f64 / 1e6,
        trickled as f64 / 1e6
    );
    assert!(
        trickled <= 2 * at_once,
        "trickled {trickled} ns of CPU vs {at_once} ns at once"
    );
}

/// A client that pipelines GETs and never reads its replies stalls itself: the server
/// stops reading its requests above `--pause-output`, so its memory stays bounded
/// however long the client keeps writing.
fn pipelined_gets_never_read_keep_server_memory_bounded(io: IoDriver) {
    let server = Server::start(io, &["--resp"]);
    let mut c = server.connect();
    let mut r = BufReader::new(c.try_clone().unwrap());
    // Small values are copied into replies, so each unread GET costs reply memory.
    c.write_all(&command(&[b"SET", b"k", &[b'v'; 1000]]))
        .unwrap();
    assert_eq!(read_reply(&mut r).unwrap(), b"+OK\r\n");
    let baseline = server.rss();
    let batch: Vec<u8> = std::iter::repeat_n(command(&[b"GET", b"k"]), 1000)
        .flatten()
        .collect();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent = 0usize;
    // Until the kernel buffers on both sides are full and a write times out.
    while c.write_all(&batch).is_ok() {
        sent += batch.len();
        assert!(sent < 4 << 30, "the server kept reading 4 GiB of requests");
    }
    let held = server.rss();
    eprintln!(
        "unread GETs: {} MiB of requests sent, RSS {} -> {} KiB",
        sent >> 20,
        baseline >> 10,
        held >> 10
    );
    assert!(
        held < baseline + (48 << 20),
        "RSS grew from {} to {} KiB",
        baseline >> 10,
        held >> 10
    );
    // Another client is still served.
    let mut other = server.connect();
    let mut other_r = BufReader::new(other.try_clone().unwrap());
    other.write_all(&command(&[b"PING"])).unwrap();
    assert_eq!(read_reply(&mut other_r).unwrap(), b"+PONG\r\n");
}

/// Idle RESP connections (each having sent one PING) cost the server at most half a KiB
/// each, measured over the second of two batches of 1,000 (about 0.2 KiB in a release build): a connection without a partial frame or client state of its own
/// holds no parse state, no client entry and no buffers.
fn two_thousand_idle_connections_stay_small(io: IoDriver) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let want = 2_000 + 200;
    if limit.maximum.is_some_and(|max| max < want) {
        eprintln!("skipped: RLIMIT_NOFILE hard limit below {want}");
        return;
    }
    if limit.current.is_some_and(|cur| cur < want) {
        setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(want),
                maximum: limit.maximum,
            },
        )
        .unwrap();
    }
    let server = Server::start(io, &["--resp"]);
    let mut first = server.connect();
    let mut first_r = BufReader::new(first.try_clone().unwrap());
    first.write_all(b"PING\r\n").unwrap();
    read_reply(&mut first_r).unwrap();
    // Two batches of 1,000: the cost per connection is the growth over the second batch,
    // so memory that does not grow with connections (the io_uring driver's ring of
    // receive buffers, touched by the first batch already) is not charged to them.
    let mut conns: Vec<TcpStream> = Vec::with_capacity(2_000);
    let idle_batch = |conns: &mut Vec<TcpStream>| {
        let start = conns.len();
        conns.extend((0..1_000).map(|_| server.connect()));
        for c in &mut conns[start..] {
            c.write_all(b"PING\r\n").unwrap();
        }
        for c in &mut conns[start..] {
            let mut pong = [0u8; 7];
            c.read_exact(&mut pong).unwrap();
            assert_eq!(&pong, b"+PONG\r\n");
        }
        server.rss()
    };
    let after_first = idle_batch(&mut conns);
    let after_second = idle_batch(&mut conns);
    let per_conn = after_second.saturating_sub(after_first) / 1_000;
    eprintln!("idle RESP connections: {per_conn} bytes of server RSS each");
    assert!(per_conn <= 512, "{per_conn} bytes per idle connection");
    assert_eq!(conns.len(), 2_000);
}

on_both_drivers!(
    redis_cli_round_trips_and_errors_keep_the_connection,
    redis_benchmark_default_suite_has_no_errors_plain_and_pipelined,
    echo_mode_and_sigterm_with_a_client_connected,
    lines_mode_on_two_threads_and_sigint,
    replies_and_error_texts_match_redis_server,
    protocol_errors_are_answered_as_redis_answers_them,
    flushall_with_a_bogus_argument_is_a_syntax_error_and_keeps_the_data,
    redis_py_with_default_settings_passes_its_suite,
    huge_mget_under_an_address_space_limit_only_affects_its_client,
    a_40_mib_reply_arrives_whole_and_memory_returns_after_flushall,
    a_trickled_million_element_request_costs_at_most_twice_the_cpu,
    pipelined_gets_never_read_keep_server_memory_bounded,
    two_thousand_idle_connections_stay_small,
);
