//! swre-native behaviour: the Go library's test suite ported, FileStorage,
//! and the SIGKILL crash test.

#![allow(
    unreachable_pub,
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

mod backplane;
mod backplane_recovery;
mod common;
mod crash;
mod faults;
mod file_storage;
mod finished_calls;
mod first_use;
mod fleet;
mod fuzz_corpus;
mod go_port;
mod go_port_breaker;
mod http_layer;
mod metrics_facade;
mod model;
mod proxy;
mod redis;
mod redis_faults;
mod redis_versions;
mod soak;
mod tracing_spans;
