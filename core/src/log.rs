//! Events through the `log` facade (feature `log`), the `tracing` facade
//! (feature `tracing`), both, or nothing at all.
//!
//! The macros take a format string and arguments as `log`'s do, optionally
//! preceded by a name and fields for `tracing`:
//! `event_warn!(name: "swre.breaker.transition", { scope = s }, "opened")`.
//! With neither feature they expand to a borrow of each argument, so a
//! `no_std` or size-sensitive wasm build carries no formatting code and no
//! dependency; field values are evaluated only when `tracing` is on and its
//! subscriber wants the event. With both features an event goes to both
//! facades (an application bridging one into the other should enable one).
//! Events are never emitted per hit: only for what an operator should know
//! (a breaker changing state, a refresh that failed or was abandoned, a
//! value too large to store, a storage error degraded to a miss, a call
//! waiting on another process's lease).

macro_rules! event_warn {
    ($($t:tt)+) => { $crate::log::emit!(warn, WARN, $($t)+) };
}

macro_rules! event_info {
    ($($t:tt)+) => { $crate::log::emit!(info, INFO, $($t)+) };
}

macro_rules! event_debug {
    ($($t:tt)+) => { $crate::log::emit!(debug, DEBUG, $($t)+) };
}

/// One event to each facade enabled: `log`'s macro `$lvl`, `tracing`'s
/// level `$tl`.
macro_rules! emit {
    ($lvl:ident, $tl:ident, name: $name:literal, { $($field:tt)* }, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        $crate::log::to_log!($lvl, $fmt $(, $arg)*);
        $crate::log::to_tracing!($tl, name: $name, { $($field)* }, $fmt $(, $arg)*);
    }};
    ($lvl:ident, $tl:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        $crate::log::to_log!($lvl, $fmt $(, $arg)*);
        $crate::log::to_tracing!($tl, $fmt $(, $arg)*);
    }};
}

#[cfg(feature = "log")]
macro_rules! to_log {
    ($lvl:ident, $fmt:literal $(, $arg:expr)*) => { ::log::$lvl!(target: "swre", $fmt $(, $arg)*) };
}

#[cfg(not(feature = "log"))]
macro_rules! to_log {
    ($lvl:ident, $fmt:literal $(, $arg:expr)*) => {{ $( let _ = &$arg; )* }};
}

#[cfg(feature = "tracing")]
macro_rules! to_tracing {
    ($tl:ident, name: $name:literal, { $($field:tt)* }, $fmt:literal $(, $arg:expr)*) => {
        ::tracing::event!(
            name: $name,
            target: "swre",
            ::tracing::Level::$tl,
            { $($field)* },
            $fmt $(, $arg)*
        )
    };
    ($tl:ident, $fmt:literal $(, $arg:expr)*) => {
        ::tracing::event!(target: "swre", ::tracing::Level::$tl, $fmt $(, $arg)*)
    };
}

#[cfg(not(feature = "tracing"))]
macro_rules! to_tracing {
    ($($t:tt)*) => {{}};
}

pub(crate) use {emit, event_debug, event_info, event_warn, to_log, to_tracing};
