//! A fleet of three processes (`fleet_node`), each an engine over
//! `Backplane<Tiered<MemoryStorage, RedisStorage>>` on one real
//! redis-server, sharing a counting upstream on loopback. Prints and
//! asserts upstream calls per burst, the worst invalidation lag and the
//! recovery time after `kill -9` of Redis. Run by the test command with
//! `--nocapture`, so its figures are in the log.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::redis::RedisServer;

/// Longest an instance may keep serving a value after another instance
/// invalidated it (issue 19).
const MAX_LAG: Duration = Duration::from_millis(100);

/// The shared upstream: answers `key` with `key-GENERATION`, after `delay`,
/// counting calls per key.
#[derive(Clone, Default)]
struct Upstream {
    calls: Arc<Mutex<HashMap<String, usize>>>,
    generation: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
}

impl Upstream {
    async fn start(&self) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let port = listener.local_addr().expect("upstream address").port();
        let me = self.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = me.clone();
                tokio::spawn(async move {
                    let (read, mut write) = stream.into_split();
                    let mut line = String::new();
                    if BufReader::new(read).read_line(&mut line).await.is_err() {
                        return;
                    }
                    let key = line.trim_end().to_owned();
                    *me.calls.lock().unwrap().entry(key.clone()).or_default() += 1;
                    let delay = me.delay_ms.load(Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                    let generation = me.generation.load(Ordering::SeqCst);
                    let _ = write
                        .write_all(format!("{key}-{generation}\n").as_bytes())
                        .await;
                });
            }
        });
        port
    }

    fn calls(&self, key: &str) -> usize {
        self.calls.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// The next generation of every value; its number.
    fn bump(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn set_delay(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }
}

/// One `fleet_node` process, killed on drop.
struct Node {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Node {
    async fn start(redis: &str, prefix: &str, upstream: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleet_node"))
            .args([redis, prefix, &upstream.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start fleet_node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut node = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(node.read().await, "ready");
        node
    }

    async fn send(&mut self, command: &str) {
        self.stdin
            .write_all(format!("{command}\n").as_bytes())
            .await
            .expect("write to fleet_node");
        self.stdin.flush().await.expect("flush");
    }

    async fn read(&mut self) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .expect("fleet_node answers within 30 s")
            .expect("read from fleet_node");
        line.expect("fleet_node is running")
    }

    async fn ask(&mut self, command: &str) -> String {
        self.send(command).await;
        self.read().await
    }

    /// `get KEY`'s value.
    async fn value(&mut self, key: &str) -> String {
        let answer = self.ask(&format!("get {key}")).await;
        let words: Vec<&str> = answer.split(' ').collect();
        assert_eq!(words.first(), Some(&"value"), "{answer}");
        words[1].to_owned()
    }

    async fn stats(&mut self) -> HashMap<String, u64> {
        let answer = self.ask("stats").await;
        answer
            .split(' ')
            .skip(1)
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.parse().unwrap_or(u64::MAX)))
            .collect()
    }
}

fn micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0)
}

fn word(line: &str, i: usize) -> u128 {
    line.split(' ')
        .nth(i)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number at {i} in {line:?}"))
}

/// Runs `change` on `nodes[by]` while the others watch `key` leave `old`;
/// the longest time another node still answered `old` after the change
/// returned (the time to fetch the new value is not counted: a node that
/// waits for it serves nothing old meanwhile).
async fn lag(nodes: &mut [Node], by: usize, key: &str, old: &str, change: &str) -> Lag {
    let watchers: Vec<usize> = (0..nodes.len()).filter(|&i| i != by).collect();
    for &w in &watchers {
        nodes[w].send(&format!("watch {key} {old} 5000")).await;
    }
    // The watchers are looking before the change is made.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let done = nodes[by].ask(change).await;
    assert!(done.starts_with("done "), "{change}: {done}");
    let at = word(&done, 1);
    let mut worst = Lag::default();
    for &w in &watchers {
        let changed = nodes[w].read().await;
        assert!(
            changed.starts_with("changed "),
            "{change}: node {w}: {changed}"
        );
        let after = |i| Duration::from_micros(word(&changed, i).saturating_sub(at) as u64);
        worst = worst.max(Lag {
            last_old: after(1),
            first_new: after(2),
        });
    }
    worst
}

/// How long after a change returned another node still answered the old
/// value, and answered the new one (its fetch included).
#[derive(Clone, Copy, Debug, Default)]
struct Lag {
    last_old: Duration,
    first_new: Duration,
}

impl Lag {
    fn max(self, other: Lag) -> Lag {
        Lag {
            last_old: self.last_old.max(other.last_old),
            first_new: self.first_new.max(other.first_new),
        }
    }
}

async fn burst(nodes: &mut [Node], key: &str, each: usize, fresh_ms: u64) -> [u128; 4] {
    for n in nodes.iter_mut() {
        n.send(&format!("burst {key} {each} {fresh_ms}")).await;
    }
    let mut totals = [0; 4];
    for n in nodes.iter_mut() {
        let answer = n.read().await;
        assert!(answer.starts_with("burst "), "{answer}");
        for (i, t) in totals.iter_mut().enumerate() {
            *t += word(&answer, i + 1);
        }
    }
    totals
}

/// Polls `calls` until it reaches `want` (within 10 s), then checks it
/// stays there for `settle`.
async fn calls_reach(upstream: &Upstream, key: &str, want: usize, settle: Duration) {
    let started = Instant::now();
    while upstream.calls(key) < want && started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(settle).await;
    assert_eq!(upstream.calls(key), want, "upstream calls for {key}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_share_one_upstream_call_and_stay_coherent_through_a_redis_restart() {
    let mut redis = RedisServer::start();
    let upstream = Upstream::default();
    let port = upstream.start().await;
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(Node::start(&redis.url(), "fleet", port).await);
    }

    // A cold burst: 300 lookups over three processes, one upstream call.
    upstream.set_delay(300);
    let [hits, stale, misses, errors] = burst(&mut nodes, "hot", 100, 60_000).await;
    println!(
        "fleet: cold burst of 300 over 3 processes: {} upstream call(s); {hits} hit, {stale} stale, {misses} miss, {errors} errors",
        upstream.calls("hot")
    );
    assert_eq!(errors, 0);
    assert_eq!(hits + stale + misses, 300);
    calls_reach(&upstream, "hot", 1, Duration::from_millis(200)).await;

    // A stale burst: every process answers stale and refreshes in the
    // background; the lease and the re-read of Redis make it one call.
    let _ = burst(&mut nodes, "warm", 10, 1_000).await;
    calls_reach(&upstream, "warm", 1, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    upstream.bump();
    let [_, stale, _, errors] = burst(&mut nodes, "warm", 100, 1_000).await;
    assert_eq!(errors, 0);
    assert!(stale > 0, "the entry was stale for some lookups");
    calls_reach(&upstream, "warm", 2, Duration::from_millis(500)).await;
    println!(
        "fleet: stale burst of 300 over 3 processes: {} background refresh call(s) in all",
        upstream.calls("warm") - 1
    );

    // Early refresh: fresh hits past half the fresh phase refresh ahead of
    // expiry, once across the fleet.
    let _ = burst(&mut nodes, "early", 10, 2_000).await;
    calls_reach(&upstream, "early", 1, Duration::ZERO).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    upstream.bump();
    let [hits, _, _, errors] = burst(&mut nodes, "early", 100, 2_000).await;
    assert_eq!(
        (hits, errors),
        (300, 0),
        "fresh hits, each may start a refresh"
    );
    calls_reach(&upstream, "early", 2, Duration::from_millis(500)).await;
    println!(
        "fleet: fresh burst of 300 past the early-refresh threshold: {} early refresh call(s) in all",
        upstream.calls("early") - 1
    );

    // Invalidation: no other process answers the old value more than
    // MAX_LAG after `invalidate` returned on one.
    upstream.set_delay(0);
    let mut worst = Lag::default();
    for round in 0..6 {
        let old = nodes[0].value("hot").await;
        for n in nodes.iter_mut() {
            assert_eq!(n.value("hot").await, old, "round {round}: all agree first");
        }
        upstream.bump();
        worst = worst.max(lag(&mut nodes, round % 3, "hot", &old, "invalidate hot").await);
    }
    println!(
        "fleet: invalidate: over 6 rounds, the old value answered at worst {:?} after it returned; the new one at worst {:?} after (its fetch included)",
        worst.last_old, worst.first_new
    );
    assert!(worst.last_old <= MAX_LAG, "invalidate lag {worst:?}");

    // Tags and clear likewise.
    let mut worst_tag = Lag::default();
    let mut worst_clear = Lag::default();
    for round in 0..3 {
        for n in nodes.iter_mut() {
            let answer = n.ask("tagged t group").await;
            assert!(answer.starts_with("value "), "{answer}");
        }
        let old = nodes[0].value("t").await;
        upstream.bump();
        worst_tag = worst_tag.max(lag(&mut nodes, round, "t", &old, "invalidate_tag group").await);

        let old = nodes[0].value("hot").await;
        for n in nodes.iter_mut() {
            assert_eq!(n.value("hot").await, old);
        }
        upstream.bump();
        worst_clear = worst_clear.max(lag(&mut nodes, round, "hot", &old, "clear").await);
    }
    println!(
        "fleet: invalidate_tag: old value at worst {:?} after, new at worst {:?}; clear: old at worst {:?}, new at worst {:?}",
        worst_tag.last_old, worst_tag.first_new, worst_clear.last_old, worst_clear.first_new
    );
    assert!(worst_tag.last_old <= MAX_LAG, "tag lag {worst_tag:?}");
    assert!(worst_clear.last_old <= MAX_LAG, "clear lag {worst_clear:?}");

    // kill -9 of Redis, and a restart with no data.
    let before = nodes[0].value("r").await;
    for n in nodes.iter_mut() {
        assert_eq!(n.value("r").await, before);
    }
    redis.stop();
    let new = upstream.bump();
    // During the outage: node 0 invalidates (Redis cannot take it: its L1
    // copy goes, the delete is queued) and fetches a new key (its write is
    // queued).
    let _ = nodes[0].ask("invalidate r").await;
    assert_eq!(nodes[0].value("w").await, format!("w-{new}"));
    assert_eq!(upstream.calls("w"), 1);
    let restarted = Instant::now();
    let restarted_at = micros();
    redis.launch();
    let mut recovered = Duration::ZERO;
    for (i, n) in nodes.iter_mut().enumerate() {
        loop {
            let s = n.stats().await;
            if s["resubscribed"] >= 1 && s["pending"] == 0 {
                break;
            }
            assert!(
                restarted.elapsed() < Duration::from_secs(10),
                "node {i} not recovered 10 s after the restart: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        recovered = recovered.max(restarted.elapsed());
    }
    println!(
        "fleet: Redis killed (SIGKILL) and restarted empty: all 3 processes recovered {recovered:?} after the restart (at {restarted_at} us)"
    );
    assert!(
        recovered < Duration::from_secs(5),
        "recovery took {recovered:?}"
    );
    let s = nodes[0].stats().await;
    assert_eq!(
        (s["replayed"], s["replay_skipped"], s["replay_errors"]),
        (1, 1, 0),
        "node 0 made its delete of r, and not its write of w (Redis lost the history it was conditional on): {s:?}"
    );
    // None serves what it held before the outage as fresh: each emptied its
    // L1 and reads Redis (restarted empty).
    for (i, n) in nodes.iter_mut().enumerate() {
        assert_eq!(n.value("r").await, format!("r-{new}"), "node {i}");
    }
    // w, fetched by node 0 during the outage, is fetched once more across
    // the fleet (node 0's copy went with the skipped write).
    for n in nodes.iter_mut() {
        assert_eq!(n.value("w").await, format!("w-{new}"));
    }
    assert_eq!(
        upstream.calls("w"),
        2,
        "w: once during the outage, once after"
    );

    for n in nodes.iter_mut() {
        n.send("quit").await;
        let _ = n.child.wait().await;
    }
}
