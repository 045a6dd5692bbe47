//! `greenfd serve` as a process: real Redis clients (`redis-cli`, `redis-benchmark`)
//! against `--resp`, echo and lines modes, `--threads`, and clean exit on SIGINT/SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use greenfd_test_support::have;

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
    /// Starts `greenfd serve <args> --addr 127.0.0.1:0` and reads the address it prints.
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_greenfd"))
            .arg("serve")
            .args(args)
            .args(["--addr", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
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

    /// Sends `signal` and waits (with a safety-net timeout) for the exit status.
    fn stop_with(mut self, signal: rustix::process::Signal) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = rustix::process::Pid::from_child(&child);
        rustix::process::kill_process(pid, signal).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait();
            tx.send(()).ok();
            status
        });
        if rx.recv_timeout(PATIENCE).is_err() {
            // Stuck: kill it by pid (our own child) so the test fails instead of hanging.
            rustix::process::kill_process(pid, rustix::process::Signal::KILL).ok();
            panic!("greenfd serve did not exit after {signal:?}");
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

#[test]
fn redis_cli_round_trips_and_errors_keep_the_connection() {
    if !have("redis-cli") {
        return;
    }
    let server = Server::start(&["--resp"]);
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

/// Runs redis-benchmark; returns (test, requests per second) rows.
fn benchmark(server: &Server, pipeline: &str) -> Vec<(String, f64)> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &server.addr.port().to_string()])
        .args([
            "-t",
            "ping,set,get",
            "-n",
            "20000",
            "-c",
            "50",
            "-P",
            pipeline,
            "--csv",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "redis-benchmark -P {pipeline}: {out:?}"
    );
    assert!(
        !stderr.to_ascii_lowercase().contains("error"),
        "redis-benchmark reported: {stderr}"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split(',').map(|s| s.trim_matches('"'));
            let name = f.next()?.to_string();
            let rps = f.next()?.parse::<f64>().ok()?;
            Some((name, rps))
        })
        .collect()
}

#[test]
fn redis_benchmark_completes_without_errors_plain_and_pipelined() {
    if !have("redis-benchmark") {
        return;
    }
    let server = Server::start(&["--resp"]);
    for pipeline in ["1", "16"] {
        let rows = benchmark(&server, pipeline);
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["PING_INLINE", "PING_MBULK", "SET", "GET"],
            "-P {pipeline}"
        );
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

#[test]
fn echo_mode_and_sigterm_with_a_client_connected() {
    let server = Server::start(&["--echo"]);
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

#[test]
fn lines_mode_on_two_threads_and_sigint() {
    let server = Server::start(&["--lines", "--threads", "2"]);
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
