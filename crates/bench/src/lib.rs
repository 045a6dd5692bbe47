//! Side-by-side measurements of greenfd against its peers.
//!
//! Every figure greenfd reports is a ratio against a peer measured in the same run,
//! alternating ours and theirs and repeating, because this machine is shared and
//! noisy: absolute numbers drift by tens of percent between runs, ratios much less.
//! The peers (a tokio `current_thread` echo server, a raw mio loop) live here, in a
//! bench-only crate, so no product crate depends on them.
//!
//! ```
//! use greenfd_bench::measure::Samples;
//! let s = Samples::from(vec![3.0, 1.0, 2.0]);
//! assert_eq!(s.median(), 2.0);
//! ```

// `deny`, not `forbid`: the vpoll scenario `dlopen`s Debian's libvpoll (its `capi` module
// is the one place allowed to).
#![deny(unsafe_code)]

pub mod echo;
pub mod measure;
pub mod memory;
pub mod pin;
pub mod process;
pub mod report;
pub mod resp;
pub mod scenarios;
pub mod vpoll;
pub mod wake;
