//! Property tests of the framing strategies: whatever pieces a stream arrives in, the
//! engine's parse loop yields the frames it was encoded from.
//!
//! An integration test rather than a unit test so it can share the piece-feeding helper
//! with the RESP framing's tests through `greenfd-test-support` (a unit test would see
//! two copies of the `Framing` trait).

use greenfd_engine::{Framing, LengthPrefixed, Lines, Raw};
use greenfd_test_support::reassemble_frames;
use proptest::prelude::*;

fn payloads() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..30)
}

/// Each frame as its one part: these framings find exactly one (the payload) per frame.
fn one_part_each(frames: &[Vec<u8>]) -> Vec<Vec<Vec<u8>>> {
    frames.iter().map(|p| vec![p.clone()]).collect()
}

proptest! {
    #[test]
    fn lines_any_split_same_frames(
        lines in prop::collection::vec("[^\n\r]{0,200}", 0..30),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let framing = Lines { max: 1024 };
        let mut stream = Vec::new();
        for l in &lines { framing.encode(l.as_bytes(), &mut stream); }
        let want: Vec<Vec<u8>> = lines.iter().map(|l| l.as_bytes().to_vec()).collect();
        prop_assert_eq!(reassemble_frames(&framing, &stream, &cuts), one_part_each(&want));
    }

    #[test]
    fn length_prefixed_u16_any_split_same_frames(
        frames in payloads(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let framing = LengthPrefixed::u16();
        let mut stream = Vec::new();
        for p in &frames { framing.encode(p, &mut stream); }
        prop_assert_eq!(reassemble_frames(&framing, &stream, &cuts), one_part_each(&frames));
    }

    #[test]
    fn length_prefixed_u32_any_split_same_frames(
        frames in payloads(),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let framing = LengthPrefixed::u32().with_max(4096);
        let mut stream = Vec::new();
        for p in &frames { framing.encode(p, &mut stream); }
        prop_assert_eq!(reassemble_frames(&framing, &stream, &cuts), one_part_each(&frames));
    }

    #[test]
    fn raw_any_split_same_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let framing = Raw { max: 100 };
        let frames = reassemble_frames(&framing, &bytes, &cuts);
        prop_assert!(frames.iter().all(|parts| parts.len() == 1), "{:?}", frames);
        let got: Vec<u8> = frames.concat().concat();
        prop_assert_eq!(got, bytes);
    }
}
