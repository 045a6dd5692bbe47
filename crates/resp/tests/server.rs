//! The RESP server on a real engine over loopback TCP: invalid requests, half-closed
//! peers, values larger than the read buffer, QUIT.

use greenfd_engine::Config;
use greenfd_resp::{Db, Resp, RespServer, encode_command};
use std::io::{Read, Write};

use greenfd_test_support::{Running, is_closed_by_server};

#[test]
fn invalid_resp_disconnects_only_that_client() {
    let engine = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    );
    let mut good = engine.connect();
    let mut bad = engine.connect();
    let mut pong = [0u8; 7];
    good.write_all(b"PING\r\n").unwrap();
    good.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    // An integer where a bulk string must be: no Redis client sends this.
    bad.write_all(b"*1\r\n:3\r\n").unwrap();
    assert!(is_closed_by_server(&mut bad));
    good.write_all(b"*2\r\n$4\r\nECHO\r\n$2\r\nhi\r\n").unwrap();
    let mut hi = [0u8; 8];
    good.read_exact(&mut hi).unwrap();
    assert_eq!(&hi, b"$2\r\nhi\r\n");
    assert_eq!(engine.handle.stats().invalid_frames, 1);
    engine.stop();
}

#[test]
fn half_closed_peer_gets_its_replies_then_eof() {
    let engine = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    );
    let mut c = engine.connect();
    c.write_all(b"SET k 41\r\nINCR k\r\nGET k\r\n").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"+OK\r\n:42\r\n$2\r\n42\r\n");
    engine.stop();
}

#[test]
fn large_resp_values_cross_many_reads_intact() {
    let engine = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    );
    let mut c = engine.connect();
    let value: Vec<u8> = (0..3_000_000u32).map(|i| (i % 241) as u8).collect();
    let mut request = Vec::new();
    encode_command(&[b"SET", b"big", &value], &mut request);
    encode_command(&[b"GET", b"big"], &mut request);
    let writer = {
        let mut w = c.try_clone().unwrap();
        std::thread::spawn(move || w.write_all(&request).unwrap())
    };
    let mut ok = [0u8; 5];
    c.read_exact(&mut ok).unwrap();
    assert_eq!(&ok, b"+OK\r\n");
    let header = format!("${}\r\n", value.len());
    let mut reply = vec![0u8; header.len() + value.len() + 2];
    c.read_exact(&mut reply).unwrap();
    writer.join().unwrap();
    assert_eq!(&reply[..header.len()], header.as_bytes());
    assert!(reply[header.len()..header.len() + value.len()] == value[..]);
    assert!(
        engine.handle.stats().reads > 10,
        "the value crossed many reads"
    );
    engine.stop();
}

#[test]
fn quit_replies_then_closes() {
    let engine = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    );
    let mut c = engine.connect();
    c.write_all(b"PING\r\nQUIT\r\nPING\r\n").unwrap();
    let mut all = Vec::new();
    c.read_to_end(&mut all).unwrap();
    assert_eq!(all, b"+PONG\r\n+OK\r\n");
    engine.stop();
}
