//! A robust epoll IO manager (being built; see the reactor issue).

pub mod poller;
pub mod waker;

pub use poller::{Event, Events, Interest, Mode, Poller, epoll_flags};
pub use waker::Waker;
