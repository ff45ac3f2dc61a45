//! One instance of a fleet, for the multi-process test: an engine over
//! `Backplane<Tiered<MemoryStorage, RedisStorage>>`, with early refresh from
//! half the fresh phase on, whose upstream is a counting server on loopback
//! (one line `key` in, one line `value` out).
//!
//! Usage: `fleet_node REDIS_URL PREFIX UPSTREAM_PORT`. Reads one command per
//! line on stdin and answers each with one line on stdout (times are the
//! wall clock in microseconds since the Unix epoch, comparable across the
//! processes of one machine):
//!
//! - `get KEY` → `value VALUE STATUS` (or `error MESSAGE`)
//! - `tagged KEY TAG` → the same, the value fetched with tag `TAG`
//! - `burst KEY N FRESH_MS` → `burst HITS STALE MISSES ERRORS`: N lookups at
//!   once, fetched values fresh for `FRESH_MS` (stale for a minute after)
//! - `watch KEY OLD TIMEOUT_MS` → `changed LAST_OLD FIRST_NEW VALUE` once a
//!   lookup answers something other than `OLD` (looking every millisecond):
//!   when the last answer of `OLD` came back (0 if none did) and when the
//!   first other one did; or `timeout`
//! - `invalidate KEY`, `invalidate_tag TAG`, `clear` → `done TIME` (or
//!   `error MESSAGE`)
//! - `stats` → `stats NAME=N …`: the backplane's recovery counters
//! - `quit` → exits

#![allow(
    clippy::std_instead_of_core,
    clippy::std_instead_of_alloc,
    clippy::alloc_instead_of_core
)]

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use swre_native::{
    Backplane, BackplaneOptions, CacheTtl, CallOptions, EarlyRefresh, Engine, MemoryStorage,
    RedisOptions, RedisStorage, Status, Tiered, TokioRuntime,
};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

type Node = Engine<Backplane, TokioRuntime>;

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

/// Asks the upstream on `port` for `key`'s value.
async fn upstream(port: u16, key: String) -> Result<String, std::io::Error> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(format!("{key}\n").as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).await?;
    Ok(line.trim_end().to_owned())
}

async fn lookup(
    node: &Node,
    port: u16,
    key: &str,
    opts: CallOptions,
) -> Result<(String, Status), String> {
    let k = key.to_owned();
    node.with(opts)
        .get_or_fetch(key, move || upstream(port, k))
        .await
        .map(|c| (String::from_utf8_lossy(&c.value).into_owned(), c.status))
        .map_err(|e| e.to_string().replace('\n', " "))
}

fn answer(result: Result<(String, Status), String>) -> String {
    match result {
        Ok((v, s)) => format!("value {v} {s:?}"),
        Err(e) => format!("error {e}"),
    }
}

fn done(result: Result<(), impl std::fmt::Display>) -> String {
    match result {
        Ok(()) => format!("done {}", micros()),
        Err(e) => format!("error {e}"),
    }
}

async fn burst(node: &Node, port: u16, key: &str, n: usize, fresh_ms: u64) -> String {
    let ttl = CacheTtl::new(
        Duration::from_millis(fresh_ms),
        Duration::from_secs(60),
        Duration::from_secs(60),
    );
    let lookups: Vec<_> = (0..n)
        .map(|_| {
            let (node, key) = (node.clone(), key.to_owned());
            tokio::spawn(
                async move { lookup(&node, port, &key, CallOptions::new().ttl(ttl)).await },
            )
        })
        .collect();
    let mut counts = [0usize; 4];
    for l in lookups {
        let slot = match l.await {
            Ok(Ok((_, Status::Hit))) => 0,
            Ok(Ok((_, Status::Stale))) => 1,
            Ok(Ok((_, Status::Miss))) => 2,
            _ => 3,
        };
        counts[slot] += 1;
    }
    format!(
        "burst {} {} {} {}",
        counts[0], counts[1], counts[2], counts[3]
    )
}

async fn watch(node: &Node, port: u16, key: &str, old: &str, timeout_ms: u64) -> String {
    let until = Instant::now() + Duration::from_millis(timeout_ms);
    let mut last_old = 0;
    while Instant::now() < until {
        if let Ok((v, _)) = lookup(node, port, key, CallOptions::new()).await {
            if v != old {
                return format!("changed {last_old} {} {v}", micros());
            }
            last_old = micros();
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    "timeout".to_owned()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: fleet_node REDIS_URL PREFIX UPSTREAM_PORT";
    let url = args.next().ok_or(usage)?;
    let prefix = args.next().ok_or(usage)?;
    let port: u16 = args.next().ok_or(usage)?.parse()?;
    let timeouts = RedisOptions {
        prefix: prefix.clone(),
        connection_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        ..RedisOptions::default()
    };
    let l2 = RedisStorage::connect_with(&url, timeouts).await?;
    let options = BackplaneOptions {
        channel: format!("{prefix}:backplane"),
        connection_timeout: Duration::from_millis(500),
        response_timeout: Duration::from_secs(2),
        ..BackplaneOptions::default()
    };
    let store =
        Backplane::connect_with(&url, Tiered::new(MemoryStorage::new(), l2), options).await?;
    let node: Node = Engine::builder(store, TokioRuntime::new())
        .ttl(CacheTtl::new(
            Duration::from_secs(60),
            Duration::from_secs(60),
            Duration::from_secs(60),
        ))
        // A fresh hit past half the fresh phase refreshes early.
        .early_refresh(EarlyRefresh::Threshold(0.5))
        .build()?;

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    println!("ready");
    while let Some(line) = lines.next_line().await? {
        let words: Vec<&str> = line.split(' ').collect();
        let reply = match words.as_slice() {
            ["get", key] => answer(lookup(&node, port, key, CallOptions::new()).await),
            ["tagged", key, tag] => {
                answer(lookup(&node, port, key, CallOptions::new().tags([*tag])).await)
            }
            ["burst", key, n, fresh] => burst(&node, port, key, n.parse()?, fresh.parse()?).await,
            ["watch", key, old, timeout] => watch(&node, port, key, old, timeout.parse()?).await,
            ["invalidate", key] => done(node.invalidate(key).await),
            ["invalidate_tag", tag] => done(node.invalidate_tag(tag).await),
            ["clear"] => done(node.clear().await),
            ["stats"] => {
                let s = node.storage().stats();
                format!(
                    "stats resubscribed={} pending={} queued={} replayed={} replay_skipped={} replay_errors={} replay_dropped={}",
                    s.resubscribed, s.pending, s.queued, s.replayed, s.replay_skipped, s.replay_errors, s.replay_dropped
                )
            }
            ["quit"] => break,
            _ => format!("error unknown command {line:?}"),
        };
        out.write_all(format!("{reply}\n").as_bytes()).await?;
        out.flush().await?;
    }
    Ok(())
}
