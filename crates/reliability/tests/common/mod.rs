//! Fixtures shared by the reliability test binaries.

pub use greenfd_test_support::{PATIENCE, Running};
