//! The event mask and control operations, bit-compatible with epoll and libvpoll.

use bitflags::bitflags;

bitflags! {
    /// Readiness bits; each is the `EPOLL*` bit of the same name.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct Events: u32 {
        /// `EPOLLIN`: readable.
        const IN = 0x001;
        /// `EPOLLPRI`: urgent/priority data.
        const PRI = 0x002;
        /// `EPOLLOUT`: writable.
        const OUT = 0x004;
        /// `EPOLLERR`: error condition.
        const ERR = 0x008;
        /// `EPOLLHUP`: hang-up.
        const HUP = 0x010;
        /// `EPOLLRDHUP`: peer closed its writing half.
        const RDHUP = 0x2000;
    }
}

/// A control operation, numbered as libvpoll's `VPOLL_CTL_*`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Op {
    /// `VPOLL_CTL_ADDEVENTS`: set the given bits.
    Add = 1,
    /// `VPOLL_CTL_DELEVENTS`: clear the given bits.
    Del = 2,
    /// `VPOLL_CTL_SETEVENTS`: replace the mask.
    Set = 3,
}

impl Op {
    /// The op for a libvpoll op number, or `None` for an unknown one.
    pub fn from_raw(op: u32) -> Option<Op> {
        match op {
            1 => Some(Op::Add),
            2 => Some(Op::Del),
            3 => Some(Op::Set),
            _ => None,
        }
    }

    /// The mask after applying this op with `events` to `current`.
    pub fn apply(self, current: Events, events: Events) -> Events {
        match self {
            Op::Add => current | events,
            Op::Del => current - events,
            Op::Set => events,
        }
    }

    /// The 8-byte control word of the kernel `EFD_VPOLL` protocol: op in the high
    /// 32 bits, events in the low 32. The Fuse backend accepts the same word via `write`.
    pub fn encode(self, events: Events) -> u64 {
        ((self as u64) << 32) | u64::from(events.bits())
    }

    /// Decodes a control word; unknown ops or bits outside [`Events`] give `None`.
    pub fn decode(word: u64) -> Option<(Op, Events)> {
        let op = Op::from_raw((word >> 32) as u32)?;
        let events = Events::from_bits(word as u32)?;
        Some((op, events))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_match_epoll() {
        assert_eq!(Events::IN.bits(), libc::EPOLLIN as u32);
        assert_eq!(Events::PRI.bits(), libc::EPOLLPRI as u32);
        assert_eq!(Events::OUT.bits(), libc::EPOLLOUT as u32);
        assert_eq!(Events::ERR.bits(), libc::EPOLLERR as u32);
        assert_eq!(Events::HUP.bits(), libc::EPOLLHUP as u32);
        assert_eq!(Events::RDHUP.bits(), libc::EPOLLRDHUP as u32);
    }

    #[test]
    fn control_word_round_trips() {
        for op in [Op::Add, Op::Del, Op::Set] {
            let ev = Events::IN | Events::RDHUP;
            assert_eq!(Op::decode(op.encode(ev)), Some((op, ev)));
        }
        assert_eq!(Op::decode(4 << 32), None);
        assert_eq!(Op::decode((1 << 32) | 0x8000_0000), None);
    }

    #[test]
    fn apply_is_idempotent() {
        let a = Op::Add.apply(Events::empty(), Events::IN);
        assert_eq!(Op::Add.apply(a, Events::IN), a);
        let d = Op::Del.apply(a, Events::IN);
        assert_eq!(Op::Del.apply(d, Events::IN), Events::empty());
        assert_eq!(Op::Set.apply(a, Events::OUT), Events::OUT);
    }
}
