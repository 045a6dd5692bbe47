//! Bad input, fuzzed on stable Rust in bounded time: every `Framing`, the RESP parser and
//! server, and the vpoll C ABI argument space. Inputs come from the committed seed corpora
//! (`corpus/`), their mutations, and seeded random bytes; the seed is printed and can be
//! replayed with `GREENFD_FUZZ_SEED`.

mod common;
use common::{PATIENCE, Running};

use greenfd_engine::{
    Config, Echo, FrameError, Framing, LengthPrefixed, Lines, ParseState, Parsed, Raw, split_frames,
};
use greenfd_reliability::{Rng, corpus, seed};
use greenfd_resp::{Db, Resp, RespServer, command_args, execute};
use greenfd_test_support::{child_command, is_child, run_with_timeout, tagged_lines};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

/// The framings under test, each with a small maximum so the limits are actually hit.
fn framings() -> Vec<(&'static str, Box<dyn Framing>)> {
    vec![
        ("lines-64", Box::new(Lines { max: 64 })),
        ("lines-default", Box::new(Lines::default())),
        ("lp-u16", Box::new(LengthPrefixed::u16())),
        (
            "lp-u16-max-40",
            Box::new(LengthPrefixed::u16().with_max(40)),
        ),
        (
            "lp-u32-max-4096",
            Box::new(LengthPrefixed::u32().with_max(4096)),
        ),
        ("resp-max-256", Box::new(Resp { max: 256 })),
        ("resp-default", Box::new(Resp::default())),
        ("raw-100", Box::new(Raw { max: 100 })),
    ]
}

/// Every corpus input (framing and RESP seeds together).
fn all_seeds() -> Vec<Vec<u8>> {
    let mut seeds: Vec<Vec<u8>> = corpus("framing")
        .expect("framing corpus")
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    seeds.extend(
        corpus("resp")
            .expect("resp corpus")
            .into_iter()
            .map(|(_, b)| b),
    );
    seeds
}

/// One fuzz input: a seed, a mutated seed, a splice of two seeds, or random bytes.
fn input(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    match rng.below(6) {
        0 => rng.pick(seeds).clone(),
        1 | 2 => {
            let s = rng.pick(seeds).clone();
            rng.mutate(&s)
        }
        3 => {
            let (a, b) = (rng.pick(seeds).clone(), rng.pick(seeds).clone());
            let mut v = rng.mutate(&a);
            v.extend_from_slice(&b);
            v
        }
        4 => {
            let n = rng.index(300);
            rng.bytes(n)
        }
        _ => {
            // Mostly printable, with the delimiters the framings look for.
            let n = rng.index(200);
            (0..n)
                .map(|_| *rng.pick(b"*$:+-\r\n0123456789abcPINGSET "))
                .collect()
        }
    }
}

/// What a framing does with a whole stream at once: the frames, and the error if the
/// stream turns invalid (frames after the first error are never seen).
fn split_whole(framing: &dyn Framing, stream: &[u8]) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let mut frames = Vec::new();
    match split_frames(framing, &mut ParseState::default(), stream, |f| {
        frames.push(f.bytes().to_vec());
        true
    }) {
        Ok(used) => (frames, None, stream.len() - used),
        Err(e) => (frames, Some(e), 0),
    }
}

/// What the engine does with the same stream arriving in pieces cut at `cuts`: leftover
/// bytes kept, new bytes appended, parse again.
fn split_in_pieces(
    framing: &dyn Framing,
    stream: &[u8],
    cuts: &[usize],
) -> (Vec<Vec<u8>>, Option<FrameError>, usize) {
    let mut frames = Vec::new();
    let mut pending = Vec::new();
    let mut state = ParseState::default();
    let mut from = 0;
    let mut points: Vec<usize> = cuts.to_vec();
    points.push(stream.len());
    points.sort_unstable();
    for to in points {
        pending.extend_from_slice(&stream[from..to]);
        from = to;
        match split_frames(framing, &mut state, &pending, |f| {
            frames.push(f.bytes().to_vec());
            true
        }) {
            Ok(used) => {
                pending.drain(..used);
            }
            Err(e) => return (frames, Some(e), 0),
        }
    }
    (frames, None, pending.len())
}

/// Random bytes and mutated seeds never panic any framing, never yield a frame longer
/// than its maximum (or than the buffer), never leave more than the maximum pending, and
/// split the same way whether the stream arrives at once or in random pieces.
#[test]
fn framings_survive_random_input_and_respect_their_maximum() {
    let mut rng = Rng::new(seed("framings", 0x5eed_0001));
    let seeds = all_seeds();
    let mut stats = (0usize, 0usize, 0usize); // frames, invalid streams, bytes
    for (name, framing) in framings() {
        let max = framing.max_frame();
        for case in 0..1500 {
            let stream = input(&mut rng, &seeds);
            stats.2 += stream.len();
            // The single-parse contract (the engine never parses an empty buffer).
            let mut state = ParseState::default();
            match framing.parse(&mut state, &stream) {
                _ if stream.is_empty() => {}
                Parsed::Frame(n) => {
                    assert!(
                        n > 0 && n <= stream.len() && n <= max,
                        "{name} case {case}: Frame({n}) of {} bytes, max {max}",
                        stream.len()
                    );
                    assert!(state.parts.iter().all(|r| r.start <= r.end && r.end <= n));
                    // The boundary depends only on the bytes before it (except for Raw,
                    // whose frames are whatever one read returned).
                    let mut longer = stream[..n].to_vec();
                    longer.extend_from_slice(b"\r\n*garbage$");
                    if !name.starts_with("raw") {
                        assert_eq!(
                            framing.parse(&mut ParseState::default(), &longer),
                            Parsed::Frame(n),
                            "{name} case {case}: boundary moved"
                        );
                    }
                }
                Parsed::NeedMore => assert!(
                    stream.len() < max,
                    "{name} case {case}: NeedMore with {} bytes, max {max}",
                    stream.len()
                ),
                Parsed::Invalid(_) => {}
            }
            // The engine's loop, whole and in pieces.
            let whole = split_whole(framing.as_ref(), &stream);
            let cuts: Vec<usize> = (0..rng.index(6))
                .map(|_| rng.index(stream.len() + 1))
                .collect();
            let pieces = split_in_pieces(framing.as_ref(), &stream, &cuts);
            if name.starts_with("raw") {
                assert_eq!(
                    whole.0.concat(),
                    pieces.0.concat(),
                    "{name} case {case}: bytes differ"
                );
            } else {
                assert_eq!(
                    whole.0, pieces.0,
                    "{name} case {case}: frames differ with cuts {cuts:?} of {stream:?}"
                );
            }
            assert_eq!(
                whole.1.is_some(),
                pieces.1.is_some(),
                "{name} case {case}: validity differs with cuts {cuts:?} of {stream:?}: {:?} vs {:?}",
                whole.1,
                pieces.1
            );
            assert_eq!(
                whole.2, pieces.2,
                "{name} case {case}: pending bytes differ"
            );
            assert!(
                whole.2 <= max,
                "{name}: {} bytes pending, max {max}",
                whole.2
            );
            for f in &whole.0 {
                assert!(
                    !f.is_empty() && f.len() <= max,
                    "{name}: frame of {} bytes, max {max}",
                    f.len()
                );
            }
            stats.0 += whole.0.len();
            stats.1 += usize::from(whole.1.is_some());
        }
    }
    eprintln!(
        "framings: {} frames, {} invalid streams, {} bytes checked",
        stats.0, stats.1, stats.2
    );
    assert!(
        stats.0 > 1000 && stats.1 > 100,
        "the inputs did not exercise both paths: {stats:?}"
    );
}

/// Parses one RESP2 reply at `at`; returns where it ends, or `None` if it is malformed
/// or incomplete.
fn reply_end(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = |from: usize| -> Option<usize> {
        let cr = from + buf.get(from..)?.iter().position(|&b| b == b'\r')?;
        (buf.get(cr + 1) == Some(&b'\n')).then_some(cr)
    };
    let number = |from: usize, cr: usize| -> Option<i64> {
        std::str::from_utf8(&buf[from..cr]).ok()?.parse().ok()
    };
    let kind = *buf.get(at)?;
    let cr = line_end(at + 1)?;
    match kind {
        b'+' | b'-' => (!buf[at + 1..cr].contains(&b'\n')).then_some(cr + 2),
        b':' => number(at + 1, cr).map(|_| cr + 2),
        b'$' => match number(at + 1, cr)? {
            -1 => Some(cr + 2),
            n if n >= 0 => {
                let end = cr + 2 + n as usize;
                (buf.get(end..end + 2)? == b"\r\n").then_some(end + 2)
            }
            _ => None,
        },
        b'*' => match number(at + 1, cr)? {
            -1 => Some(cr + 2),
            n if n >= 0 => (0..n).try_fold(cr + 2, |pos, _| reply_end(buf, pos)),
            _ => None,
        },
        _ => None,
    }
}

/// Splits a reply stream into whole replies; `Err` names the offset of a malformed one.
fn replies(buf: &[u8]) -> Result<usize, usize> {
    let (mut at, mut n) = (0, 0);
    while at < buf.len() {
        at = reply_end(buf, at).ok_or(at)?;
        n += 1;
    }
    Ok(n)
}

/// Every frame the RESP framing accepts yields its arguments (the server treats a
/// failure there as a bug), and executing it never panics and answers exactly one
/// well-formed RESP reply (none for an empty request).
#[test]
fn resp_frames_always_parse_and_every_command_gets_one_well_formed_reply() {
    let mut rng = Rng::new(seed("resp-commands", 0x5eed_0002));
    let seeds = all_seeds();
    let framing = Resp::default();
    let db = Db::new(4);
    let (mut frames, mut commands) = (0usize, 0usize);
    let mut out = Vec::new();
    for case in 0..6000 {
        let stream = input(&mut rng, &seeds);
        let (got, _, _) = split_whole(&framing, &stream);
        let mut args = Vec::new();
        for f in &got {
            frames += 1;
            command_args(f, &mut args).unwrap_or_else(|e| {
                panic!("case {case}: framed {f:?} but command_args failed: {e}")
            });
            out.clear();
            execute(&db, &args, &mut out);
            if args.is_empty() {
                assert!(
                    out.is_empty(),
                    "case {case}: reply to an empty request: {out:?}"
                );
                continue;
            }
            commands += 1;
            assert_eq!(
                replies(&out),
                Ok(1),
                "case {case}: {args:?} answered {:?}",
                String::from_utf8_lossy(&out)
            );
        }
        if db.len() > 10_000 {
            db.clear();
        }
    }
    eprintln!("resp-commands: {frames} frames, {commands} commands executed");
    assert!(
        commands > 2000,
        "too few commands reached execute: {commands}"
    );
}

/// Sends `input` in random pieces, half-closes, and returns every byte the server sent
/// until it closed (a reset counts as the end too: the server may drop an invalid
/// client with input unread).
fn fuzz_client(running: &Running, input: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut s = running.connect();
    let mut at = 0;
    while at < input.len() {
        let n = (1 + rng.index(64)).min(input.len() - at);
        match s.write_all(&input[at..at + n]) {
            Ok(()) => at += n,
            // The server already dropped us (invalid input): what it sent still counts.
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                break;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    let _ = s.shutdown(Shutdown::Write);
    let mut got = Vec::new();
    loop {
        let mut buf = [0u8; 4096];
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read (server never closed?): {e}"),
        }
    }
    got
}

/// The replies a RESP server owes a client for `stream`: one per non-empty request up to
/// and including QUIT, and whether the stream ends invalid before a QUIT.
fn owed_replies(stream: &[u8]) -> (usize, bool) {
    let (frames, err, _) = split_whole(&Resp::default(), stream);
    let mut args = Vec::new();
    let mut n = 0;
    for f in &frames {
        command_args(f, &mut args).expect("framed requests parse");
        if args.is_empty() {
            continue;
        }
        n += 1;
        if args[0].eq_ignore_ascii_case(b"quit") {
            return (n, false);
        }
    }
    (n, err.is_some())
}

/// A RESP server under 60 fuzzing clients: each gets well-formed replies, exactly one per
/// request when its stream is valid (when it turns invalid: the replies before the error,
/// then `-ERR Protocol error: ...`, then the connection closes, as redis does); exactly the invalid streams are counted invalid;
/// a well-behaved client running alongside gets every answer right.
#[test]
fn resp_server_drops_only_the_invalid_clients_and_answers_the_rest_exactly() {
    let mut rng = Rng::new(seed("resp-server", 0x5eed_0003));
    let seeds: Vec<Vec<u8>> = corpus("resp")
        .unwrap()
        .into_iter()
        .map(|(_, b)| b)
        .collect();
    let server = Running::start(
        Resp::default(),
        RespServer::new(Db::new(4)),
        Config::default(),
    );
    let key = format!("good:{}", rng.next_u64());
    let mut good = server.connect();
    let good_addr = server.addr;
    let good_t = std::thread::spawn(move || {
        for i in 1..=300u64 {
            let cmd = format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len());
            good.write_all(cmd.as_bytes()).unwrap();
            let want = format!(":{i}\r\n");
            let mut got = vec![0u8; want.len()];
            good.read_exact(&mut got).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&got),
                want,
                "good client at {i} ({good_addr})"
            );
        }
    });
    let mut expected_invalid = 0;
    let mut checked = 0;
    for case in 0..60 {
        let stream = match case % 3 {
            0 => rng.pick(&seeds).clone(),
            _ => {
                let s = rng.pick(&seeds).clone();
                rng.mutate(&s)
            }
        };
        let (owed, invalid) = owed_replies(&stream);
        expected_invalid += usize::from(invalid);
        let got = fuzz_client(&server, &stream, &mut rng);
        let n = replies(&got).unwrap_or_else(|at| {
            panic!(
                "case {case}: malformed reply at {at}: {:?}",
                String::from_utf8_lossy(&got)
            )
        });
        if invalid {
            // The replies owed before the error, then redis' protocol error reply.
            assert!(
                n <= owed + 1,
                "case {case}: {n} replies for {owed} requests before the error"
            );
            let text = String::from_utf8_lossy(&got);
            assert!(
                text.contains("-ERR Protocol error: ") || n < owed,
                "case {case}: no protocol error reply: {text:?}"
            );
        } else {
            assert_eq!(
                n,
                owed,
                "case {case}: replies lost for {stream:?}: {:?}",
                String::from_utf8_lossy(&got)
            );
            checked += n;
        }
    }
    good_t.join().expect("the good client saw a wrong answer");
    // Everyone who ended is counted; the server still answers new clients.
    let mut late = server.connect();
    late.write_all(b"PING\r\n").unwrap();
    let mut pong = [0u8; 7];
    late.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    let stats = server.handle.stats();
    assert_eq!(
        stats.invalid_frames, expected_invalid as u64,
        "invalid clients counted"
    );
    eprintln!(
        "resp-server: 60 fuzz clients, {expected_invalid} invalid, {checked} replies checked exactly, {} accepted",
        stats.accepted
    );
    server.stop();
}

/// An echo server with `Lines { max: 64 }` under fuzzing clients: a valid stream comes
/// back byte for byte; an invalid one gets a prefix of its valid lines, then the close.
#[test]
fn lines_echo_server_returns_valid_streams_byte_for_byte() {
    let mut rng = Rng::new(seed("lines-server", 0x5eed_0004));
    let seeds = all_seeds();
    let framing = Lines { max: 64 };
    let server = Running::start(framing, Echo, Config::default());
    let mut invalid_streams = 0;
    for case in 0..60 {
        let stream = input(&mut rng, &seeds);
        let (frames, err, _) = split_whole(&framing, &stream);
        let want: Vec<u8> = frames.concat();
        let got = fuzz_client(&server, &stream, &mut rng);
        if err.is_some() {
            invalid_streams += 1;
            assert!(
                want.starts_with(&got),
                "case {case}: echo is not a prefix of the valid lines"
            );
        } else {
            assert_eq!(got, want, "case {case}: echo differs for {stream:?}");
        }
    }
    assert_eq!(server.handle.stats().invalid_frames, invalid_streams);
    server.stop();
}

/// Kinds of descriptor the C ABI fuzzer passes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// A live vpoll fd, with the events the model says it has.
    Vpoll(u32),
    /// An open descriptor that is not a vpoll fd (pipe, epoll, /dev/null, stdio...).
    Foreign,
}

/// What the model expects from a call: success, or -1 with this errno.
type Expect = Result<(), i32>;

/// The six events greenfd can deliver.
const SETTABLE: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x2000;
/// `epoll_ctl` input flags: never events.
const INPUT_FLAGS: u32 = 0xf000_0000;

/// What poll(2) shows for a mask on `backend` (the emulated backend's documented
/// translations; poll always reports ERR and HUP).
fn observed(backend: &str, mask: u32) -> u32 {
    let mut m = mask;
    if backend == "emulated" {
        if m & 0x2 != 0 {
            m |= 0x1;
        }
        if m & 0x2000 != 0 {
            m |= 0x1;
        }
        if m & 0x10 != 0 {
            m |= 0x1 | 0x2000;
        }
    }
    m
}

/// The vpoll C ABI with random arguments on every available backend (each in a child
/// process, since the backend is chosen by environment): only documented errno values,
/// no crash, no foreign descriptor touched, and the readiness poll(2) sees always matches
/// a model of the calls that succeeded.
#[test]
fn vpoll_c_abi_random_arguments_give_only_documented_errors() {
    let mut ran = 0;
    for backend in [
        greenfd_vpoll::Backend::Fuse,
        greenfd_vpoll::Backend::Emulated,
    ] {
        if let Err(e) = backend.probe() {
            eprintln!("skipping the {backend} C ABI fuzz: {e}");
            continue;
        }
        let mut cmd = child_command("capi_fuzz_child").unwrap();
        cmd.env(greenfd_vpoll::BACKEND_ENV, backend.name());
        let out = run_with_timeout(&mut cmd, Duration::from_secs(120)).expect("fuzz child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{backend}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = tagged_lines(&stdout, "OK capi");
        assert_eq!(lines.len(), 1, "{backend}: {stdout}");
        eprintln!("{}", lines[0]);
        ran += 1;
    }
    assert!(
        ran > 0 || greenfd_vpoll::best_backend().is_err(),
        "no backend fuzzed"
    );
}

/// The child half of the C ABI fuzz; does nothing unless run as that child.
#[test]
fn capi_fuzz_child() {
    if !is_child("capi_fuzz_child") {
        return;
    }
    use std::collections::BTreeMap;
    use vpoll::{vpoll_close, vpoll_create, vpoll_ctl};
    let backend = std::env::var(greenfd_vpoll::BACKEND_ENV).unwrap();
    let mut rng = Rng::new(seed("capi", 0x5eed_0005));
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    let is_open = |fd: i32| {
        // SAFETY: F_GETFD only reads descriptor flags; any number is allowed.
        unsafe { libc::fcntl(fd, libc::F_GETFD) >= 0 }
    };
    // Foreign descriptors the fuzzer aims at, besides stdio and the backends' own.
    let mut model: BTreeMap<i32, Kind> = BTreeMap::new();
    let mut keep = Vec::new();
    let (r, w) = rustix::pipe::pipe().unwrap();
    let ep = rustix::event::epoll::create(rustix::event::epoll::CreateFlags::CLOEXEC).unwrap();
    let null = std::fs::File::open("/dev/null").unwrap();
    use std::os::fd::AsRawFd;
    for fd in [
        r.as_raw_fd(),
        w.as_raw_fd(),
        ep.as_raw_fd(),
        null.as_raw_fd(),
        0,
        1,
        2,
    ] {
        model.insert(fd, Kind::Foreign);
    }
    keep.push((r, w, ep, null));
    // A number that is closed, until something reuses it.
    let closed = {
        let (a, b) = rustix::pipe::pipe().unwrap();
        let n = a.as_raw_fd();
        drop((a, b));
        n
    };

    /// What `vpoll_ctl` must do under the documented rules: the result, the new mask
    /// (exact on a full-fidelity backend), and whether the backend may refuse a valid
    /// request with EINVAL (the emulated one cannot represent every transition).
    fn expect_ctl(
        model: &BTreeMap<i32, Kind>,
        backend: &str,
        fd: i32,
        op: i32,
        events: u32,
    ) -> (Expect, Option<u32>, bool) {
        if !(1..=3).contains(&op) {
            return (Err(libc::EINVAL), None, false);
        }
        if events & INPUT_FLAGS != 0 || (op != 2 && events & !SETTABLE != 0) {
            return (Err(libc::EINVAL), None, false);
        }
        let Some(Kind::Vpoll(cur)) = model.get(&fd).copied() else {
            return (Err(libc::EBADF), None, false);
        };
        let ev = events & SETTABLE;
        let new = match op {
            1 => cur | ev,
            2 => cur & !ev,
            _ => ev,
        };
        (Ok(()), Some(new), backend == "emulated")
    }

    /// The readiness poll(2) reports for `fd` now.
    fn poll_mask(fd: i32) -> u32 {
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN | libc::POLLPRI | libc::POLLOUT | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        assert!(n >= 0, "poll: {}", std::io::Error::last_os_error());
        p.revents as u16 as u32
    }

    // Replay the committed seed sequences, then random calls.
    let mut script: Vec<String> = Vec::new();
    for (_, text) in corpus("capi").unwrap() {
        for line in String::from_utf8(text).unwrap().lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                script.push(line.to_owned());
            }
        }
    }
    let parse_num = |s: &str| -> i64 {
        match s.strip_prefix("0x") {
            Some(hex) => i64::from_str_radix(hex, 16).unwrap(),
            None => s.parse().unwrap(),
        }
    };
    let pick_fd = |rng: &mut Rng, kind: &str, model: &BTreeMap<i32, Kind>| -> i32 {
        let of = |want: fn(&Kind) -> bool| -> Vec<i32> {
            model
                .iter()
                .filter(|(_, k)| want(k))
                .map(|(&f, _)| f)
                .collect()
        };
        let vpolls = of(|k| matches!(k, Kind::Vpoll(_)));
        match kind {
            "vpoll" if !vpolls.is_empty() => *rng.pick(&vpolls),
            "pipe" => keep[0].0.as_raw_fd(),
            "epoll" => keep[0].2.as_raw_fd(),
            "devnull" => keep[0].3.as_raw_fd(),
            "stdin" => 0,
            "negative" => -1 - rng.index(3) as i32,
            "closed" | "vpoll" => closed,
            // Any number at all, including the backends' own internal descriptors.
            _ => rng.index(72) as i32 - 4,
        }
    };
    let (mut calls, mut errors, mut polls, mut refused) = (0usize, BTreeMap::new(), 0usize, 0usize);
    let total = script.len() + 20_000;
    for step in 0..total {
        let line = if step < script.len() {
            script[step].clone()
        } else {
            let kinds = [
                "vpoll", "vpoll", "vpoll", "pipe", "epoll", "devnull", "closed", "negative",
                "stdin", "any", "any",
            ];
            let kind = *rng.pick(&kinds);
            let events = match rng.below(5) {
                0 => rng.next_u64() as u32,
                1 => rng.next_u64() as u32 & SETTABLE,
                2 => (rng.next_u64() as u32 & SETTABLE) | (1 << rng.below(32)),
                _ => 1 << *rng.pick(&[0u32, 1, 2, 3, 4, 13]),
            };
            let n_vpoll = model
                .values()
                .filter(|k| matches!(k, Kind::Vpoll(_)))
                .count();
            match rng.below(20) {
                0..=1 if n_vpoll < 24 => {
                    let wild = rng.next_u64() as i32 as i64;
                    let flags = *rng.pick(&[0i64, 1, 1, 1, 2, 0x80000, wild]);
                    let ev = if rng.chance(1, 2) {
                        events & SETTABLE
                    } else {
                        events
                    };
                    format!("create {ev:#x} {flags}")
                }
                2 => format!("close {kind}"),
                _ => {
                    let wild = rng.next_u64() as i32 as i64;
                    let op = *rng.pick(&[1i64, 2, 3, 1, 2, 3, 0, 4, -1, wild]);
                    format!("ctl {kind} {op} {events:#x}")
                }
            }
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        calls += 1;
        let (rv, err, expect): (i32, i32, Expect) = match words[0] {
            "create" => {
                let (ev, flags) = (parse_num(words[1]) as u32, parse_num(words[2]) as i32);
                let rv = vpoll_create(ev, flags);
                let err = errno();
                let bad = flags & !1 != 0 || ev & INPUT_FLAGS != 0 || ev & !SETTABLE != 0;
                let emulated_cannot = backend == "emulated" && ev & 0x8 != 0;
                if rv >= 0 {
                    assert!(
                        !model.contains_key(&rv),
                        "create returned {rv}, a number in use"
                    );
                    let mask = if backend == "emulated" {
                        poll_mask(rv)
                    } else {
                        ev
                    };
                    model.insert(rv, Kind::Vpoll(mask));
                }
                (
                    if rv >= 0 { 0 } else { rv },
                    err,
                    if bad || emulated_cannot {
                        Err(libc::EINVAL)
                    } else {
                        Ok(())
                    },
                )
            }
            "ctl" => {
                let fd = pick_fd(&mut rng, words[1], &model);
                let (op, events) = (parse_num(words[2]) as i32, parse_num(words[3]) as u32);
                let (expect, new, may_refuse) = expect_ctl(&model, &backend, fd, op, events);
                let before = new.map(|_| poll_mask(fd));
                let rv = vpoll_ctl(fd, op, events);
                let err = errno();
                match (rv, new, before) {
                    (0, Some(new), _) if !may_refuse => {
                        model.insert(fd, Kind::Vpoll(new));
                    }
                    (0, Some(_), _) => {
                        // Emulated: what the socketpair shows now; ADD and SET bits must show.
                        let now = poll_mask(fd);
                        if op != 2 {
                            let want = observed(&backend, events & SETTABLE);
                            assert_eq!(
                                now & want,
                                want,
                                "step {step} `{line}`: {now:#x} lacks {want:#x}"
                            );
                        }
                        model.insert(fd, Kind::Vpoll(now));
                    }
                    (-1, Some(_), Some(before)) if may_refuse && err == libc::EINVAL => {
                        refused += 1;
                        // A refused request changes nothing (this once lost PRI on
                        // the emulated backend; regression: faults.rs::emulated_refused_del_in_keeps_pri_after_hangup).
                        let after = poll_mask(fd);
                        assert_eq!(
                            after, before,
                            "step {step} `{line}`: a refused request changed fd {fd} from {before:#x} to {after:#x}"
                        );
                    }
                    _ => {}
                }
                let expect = if may_refuse && rv == -1 && err == libc::EINVAL {
                    Err(libc::EINVAL)
                } else {
                    expect
                };
                (rv, err, expect)
            }
            "close" => {
                let fd = pick_fd(&mut rng, words[1], &model);
                let expect = match model.get(&fd) {
                    Some(Kind::Vpoll(_)) => Ok(()),
                    _ => Err(libc::EBADF),
                };
                let was_open = is_open(fd);
                let rv = vpoll_close(fd);
                let err = errno();
                if rv == 0 {
                    model.remove(&fd);
                    assert!(
                        !is_open(fd),
                        "vpoll_close({fd}) returned 0 but the fd is open"
                    );
                } else {
                    assert_eq!(
                        is_open(fd),
                        was_open,
                        "failed vpoll_close({fd}) changed whether it is open"
                    );
                }
                (rv, err, expect)
            }
            other => panic!("unknown corpus call {other:?}"),
        };
        let got: Expect = if rv == 0 { Ok(()) } else { Err(err) };
        assert!(rv == 0 || rv == -1, "step {step} `{line}`: returned {rv}");
        assert_eq!(got, expect, "step {step} `{line}` on {backend}");
        if let Err(e) = got {
            *errors.entry(e).or_insert(0usize) += 1;
        }
        // Every live vpoll fd shows exactly the model's state (sampled: one per step).
        let vpolls: Vec<(i32, u32)> = model
            .iter()
            .filter_map(|(&f, k)| match k {
                Kind::Vpoll(m) => Some((f, *m)),
                _ => None,
            })
            .collect();
        if !vpolls.is_empty() {
            let (fd, mask) = *rng.pick(&vpolls);
            let want = if backend == "emulated" {
                mask
            } else {
                observed(&backend, mask)
            };
            let now = poll_mask(fd);
            assert_eq!(
                now, want,
                "step {step} `{line}`: fd {fd} shows {now:#x}, model {mask:#x}"
            );
            polls += 1;
        }
        // The foreign descriptors are never closed by the fuzzer.
        for (&fd, k) in &model {
            if *k == Kind::Foreign {
                assert!(
                    is_open(fd),
                    "step {step} `{line}`: foreign fd {fd} was closed"
                );
            }
        }
    }
    let live = model
        .values()
        .filter(|k| matches!(k, Kind::Vpoll(_)))
        .count();
    for (fd, k) in model.clone() {
        if matches!(k, Kind::Vpoll(_)) {
            assert_eq!(vpoll_close(fd), 0);
        }
    }
    println!(
        "OK capi {backend}: {calls} calls, errno counts {errors:?}, {refused} refused by the backend, {polls} poll checks, {live} fds closed at the end"
    );
}

/// The errors a RESP client gets for input that breaks the protocol: redis' own
/// `-ERR Protocol error: ...` text, then only that connection is dropped.
#[test]
fn resp_invalid_reasons_are_the_framings() {
    let server = Running::start(
        Resp::default(),
        RespServer::new(Db::new(1)),
        Config::default(),
    );
    let mut rng = Rng::new(1);
    for (bad, text) in [
        (&b"*1\r\n:3\r\n"[..], "expected '$', got ':'"),
        (b"*x\r\n", "invalid multibulk length"),
        (b"*1\r\n$-5\r\n", "invalid bulk length"),
        (b"SET \"k v\r\n", "unbalanced quotes in request"),
    ] {
        let got = fuzz_client(&server, bad, &mut rng);
        let want = format!("-ERR Protocol error: {text}\r\n");
        assert_eq!(String::from_utf8_lossy(&got), want, "reply to {bad:?}");
    }
    wait_for(|| server.handle.stats().invalid_frames == 4);
    server.stop();
}

/// Waits (bounded) for a condition the engine reaches asynchronously.
fn wait_for(mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "condition never held");
        std::thread::sleep(Duration::from_millis(5));
    }
}
