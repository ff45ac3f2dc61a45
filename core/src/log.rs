//! Events through the `log` facade (feature `log`), or nothing at all.
//!
//! The macros take a format string and arguments as `log`'s do. Without the
//! feature they expand to a borrow of each argument, so a `no_std` or
//! size-sensitive wasm build carries no formatting code and no dependency.
//! Events are never emitted per hit: only for what an operator should know
//! (a breaker opening or closing, a refresh that failed or was abandoned, a
//! value too large to store, a storage error degraded to a miss).

#[cfg(feature = "log")]
macro_rules! event_warn {
    ($($arg:tt)+) => { ::log::warn!(target: "swre", $($arg)+) };
}

#[cfg(not(feature = "log"))]
macro_rules! event_warn {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

#[cfg(feature = "log")]
macro_rules! event_info {
    ($($arg:tt)+) => { ::log::info!(target: "swre", $($arg)+) };
}

#[cfg(not(feature = "log"))]
macro_rules! event_info {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

#[cfg(feature = "log")]
macro_rules! event_debug {
    ($($arg:tt)+) => { ::log::debug!(target: "swre", $($arg)+) };
}

#[cfg(not(feature = "log"))]
macro_rules! event_debug {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{ $( let _ = &$arg; )* }};
}

pub(crate) use {event_debug, event_info, event_warn};
