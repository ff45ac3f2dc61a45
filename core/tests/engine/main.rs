#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]
#![allow(unreachable_pub)]
//! Behaviour of the engine through its public API, driven deterministically
//! with `ManualClock`, `ManualTimer` and the test executor.

mod batch;
mod breaker;
mod common;
mod deadlines;
mod early;
mod expire;
mod fetch_context;
mod fixtures;
mod latest_write;
mod phases;
mod rules;
mod shutdown;
mod soft_timeout;
mod stale_hits;
mod storage;
mod tag_races;
mod tags;
mod threads;
mod throttle;
mod typed;
