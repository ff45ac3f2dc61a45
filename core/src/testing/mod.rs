//! Test support (feature `testing`): the storage conformance suite every
//! storage runs, and a deterministic runtime — a manual timer and a
//! single-threaded executor — for driving the engine without sleeps.

pub mod conformance;

#[cfg(not(target_arch = "wasm32"))]
mod executor;
mod timer;

#[cfg(not(target_arch = "wasm32"))]
pub use executor::{JoinHandle, TestExecutor, TestRuntime, TestSpawner};
pub use timer::{ManualTimer, Sleep};
