//! The platform seam: spawning detached work and the [`Runtime`] bundle.

use core::future::Future;

use crate::sync::{MaybeSend, MaybeSync};
use crate::time::{Clock, Timer};

/// Runs detached background work (upstream fetches, refreshes).
///
/// Contract: `spawn` MUST NOT block and MUST NOT poll `task` to completion
/// inline; it SHOULD poll the task until it completes (`tokio::spawn`,
/// `spawn_local`, a Workers `waitUntil`). If the platform drops the task
/// unfinished, the engine's in-flight slot is still released (its guard runs on
/// drop), and waiters receive an error instead of hanging.
pub trait Spawn: MaybeSend + MaybeSync {
    /// Starts `task` in the background.
    fn spawn(&self, task: impl Future<Output = ()> + MaybeSend + 'static);
}

/// Everything the engine needs from a platform: clock, timer and spawner.
///
/// Implemented for every type that has the three parts; platform crates
/// provide `TokioRuntime` and `BrowserRuntime`.
pub trait Runtime: Clock + Timer + Spawn + Clone + 'static {}

impl<T: Clock + Timer + Spawn + Clone + 'static> Runtime for T {}
