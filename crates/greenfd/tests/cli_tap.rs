//! `greenfd tap` in a fresh network namespace: two TAP devices on one executor. A ping
//! through device A is answered (1) while device B's task is parked in a read that
//! would block a naive loop forever, and (2) while B's task is stalled for seconds with
//! frames queueing on B; deleting B ends only B's task; SIGTERM exits cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Why this machine cannot run the test, if it cannot.
fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    if !std::path::Path::new("/dev/net/tun").exists() {
        return Some("no /dev/net/tun".into());
    }
    for (bin, pkg) in [("ip", "iproute2"), ("ping", "iputils-ping")] {
        if Command::new(bin).arg("-V").output().is_err() {
            return Some(format!("`{bin}` missing (apt-get install {pkg})"));
        }
    }
    None
}

/// A network namespace deleted on drop (also when the test fails), with the server
/// process inside it killed first.
struct Netns {
    /// Its name.
    name: String,
    /// The `greenfd tap` process, if started.
    server: Option<Child>,
}

impl Netns {
    fn new() -> Netns {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let name = format!("greenfd-tap-{}-{nanos}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap();
        assert!(st.success(), "ip netns add {name}");
        Netns { name, server: None }
    }

    /// Runs a command inside the namespace and waits for it.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Pings `addr` `count` times inside the namespace; returns the number of replies.
fn ping(ns: &Netns, addr: &str, count: u32) -> u32 {
    let out = ns.run(&["ping", "-n", "-c", &count.to_string(), "-W", "2", addr]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    text.lines()
        .find_map(|l| {
            let (_, rest) = l.split_once("transmitted, ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .unwrap_or(0)
}

#[test]
fn two_taps_one_executor_one_never_blocks_the_other() {
    if let Some(why) = missing_prerequisite() {
        eprintln!("skip: {why}");
        return;
    }
    let mut ns = Netns::new();
    let mut child = Command::new("ip")
        .args(["netns", "exec", &ns.name, env!("CARGO_BIN_EXE_greenfd")])
        .args([
            "tap",
            "--name",
            "gtap0",
            "--count",
            "2",
            "--addr",
            "10.77.0.1/24",
            "--stall",
            "gtap1:4000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    ns.server = Some(child);
    let (err_tx, err_rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            eprintln!("server: {line}");
            let _ = err_tx.send(line);
        }
    });

    // Wait for "ready" (a thread reads, so a broken server fails the test, not hangs it).
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let mut devices = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l == "ready" => break,
            Ok(l) => devices.push(l),
            Err(e) => panic!("server not ready: {e}"),
        }
    }
    assert_eq!(devices.len(), 2, "{devices:?}");
    assert!(devices[0].starts_with("device gtap0 kernel 10.77.0.1/24 peer 10.77.0.2"));
    assert!(devices[1].starts_with("device gtap1 kernel 10.77.1.1/24 peer 10.77.1.2"));

    // Device B (gtap1) gets no traffic: its task sits in `recv`, which with a blocking
    // read would freeze the one thread that also serves A.
    assert_eq!(
        ping(&ns, "10.77.0.2", 3),
        3,
        "ping through A answered while B idles"
    );

    // B's task receives a frame and stalls for 4 s (cooperatively); B's queue backs up.
    let mut ping_b = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.name,
            "ping",
            "-n",
            "-c",
            "3",
            "-i",
            "0.2",
            "10.77.1.2",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stalled = loop {
        match err_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(l) if l.contains("gtap1: stalling") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(stalled, "B's task got traffic and stalled");
    assert_eq!(
        ping(&ns, "10.77.0.2", 3),
        3,
        "ping through A answered while B is stalled"
    );
    let _ = ping_b.kill();
    let _ = ping_b.wait();

    // B vanishes: only B's task ends (with a clear error); A keeps answering.
    let out = ns.run(&["ip", "link", "del", "gtap1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ping(&ns, "10.77.0.2", 1), 1, "A unaffected by B's removal");

    // Once its stall ends, B's task reads again and reports the vanished device.
    let vanished = loop {
        match err_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains("\"gtap1\" vanished") => break true,
            Ok(_) => {}
            Err(_) => break false,
        }
    };
    assert!(vanished, "B's task reported the vanished device");
    assert_eq!(
        ping(&ns, "10.77.0.2", 1),
        1,
        "A still served after B's task ended"
    );

    // SIGTERM ends the server cleanly.
    let mut child = ns.server.take().unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(child.wait());
    });
    let status = match done_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(st) => st.unwrap(),
        Err(_) => {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            panic!("server ignored SIGTERM");
        }
    };
    assert!(status.success(), "clean exit on SIGTERM: {status:?}");
}
