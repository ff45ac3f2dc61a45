//! Crash safety as a figure: two writer processes share one directory while
//! one of them is killed with SIGKILL at a random moment, 100 times. After
//! each kill the directory is checked for torn entries (a file that does not
//! decode to exactly a value some writer wrote) and lost acknowledged writes
//! (a key of the killed writer holding less than its last acknowledged
//! round); at the end, for index/disk drift (entry files on disk that a
//! store's index does not know after one maintenance pass, or the reverse).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use swre_native::{envelope, FileStorage};

use crate::common::*;

const KILLS: u64 = 100;

/// A running crash writer and the thread collecting its acknowledgements.
struct Writer {
    child: Child,
    acks: JoinHandle<HashMap<String, u64>>,
}

impl Writer {
    fn start(dir: &Path, start: u64, id: usize) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
            .arg(dir)
            .arg(start.to_string())
            .arg(id.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the crash writer");
        let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
        let first = lines.next().and_then(Result::ok);
        assert_eq!(first.as_deref(), Some("ready"), "writer {id} did not start");
        let acks = std::thread::spawn(move || {
            let mut acks = HashMap::new();
            for line in lines.map_while(Result::ok) {
                let mut words = line.split(' ');
                if let (Some("ack"), Some(key), Some(Ok(i))) = (
                    words.next(),
                    words.next(),
                    words.next().map(str::parse::<u64>),
                ) {
                    let last = acks.entry(key.to_owned()).or_insert(i);
                    *last = (*last).max(i);
                }
            }
            acks
        });
        Self { child, acks }
    }

    /// SIGKILLs the writer (asserting it was still running: its writes
    /// never failed) and returns its acknowledged rounds by key.
    fn kill(mut self, id: usize) -> (u32, HashMap<String, u64>) {
        let early = self.child.try_wait().expect("poll the writer");
        assert!(
            early.is_none(),
            "writer {id} exited by itself ({early:?}): one of its writes failed"
        );
        let pid = self.child.id();
        self.child.kill().expect("SIGKILL the writer");
        self.child.wait().expect("reap the writer");
        (pid, self.acks.join().expect("the ack reader"))
    }
}

fn keys_of(id: usize) -> impl Iterator<Item = String> {
    (0..40).map(move |k| format!("p{id}-k{k}"))
}

/// The round held for `key`, `Ok(None)` if no file, `Err` if the file is
/// torn, mixed or another key's.
fn held(storage: &FileStorage, key: &str) -> Result<Option<u64>, String> {
    let bytes = match std::fs::read(storage.path_for(key)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{key}: cannot read: {e}")),
    };
    let entry = envelope::decode_for(key, &bytes).ok_or(format!("{key}: does not decode"))?;
    let (owner, i) =
        swre_tests::crash_round(&entry.value).ok_or(format!("{key}: unparseable value"))?;
    if owner != key || entry.value[..] != swre_tests::crash_value(key, i)[..] {
        return Err(format!("{key}: torn or mixed (holds {owner} round {i})"));
    }
    Ok(Some(i))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_of_two_writers_never_tears_loses_or_drifts() {
    let dir = TempDir::new("crash");
    let checker = FileStorage::open(dir.path()).await.expect("open");
    let mut writers = [
        Some(Writer::start(dir.path(), 0, 0)),
        Some(Writer::start(dir.path(), 0, 1)),
    ];
    let mut acked: HashMap<String, u64> = HashMap::new();
    let (mut torn, mut lost, mut checked) = (0u64, 0u64, 0u64);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 1..=KILLS {
        std::thread::sleep(Duration::from_millis(5 + next() % 60));
        let victim = (next() % 2) as usize;
        let (pid, acks) = writers[victim].take().expect("running").kill(victim);
        for (key, i) in acks {
            let last = acked.entry(key).or_insert(i);
            *last = (*last).max(i);
        }
        // The other writer runs on while the directory is checked.
        checker.maintain().await.expect("a maintenance pass");
        let temps = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&format!(".tmp-{pid}-")))
            .count();
        assert_eq!(
            temps, 0,
            "round {round}: the dead writer's temp files stayed"
        );
        for key in keys_of(0)
            .chain(keys_of(1))
            .chain((0..8).map(|k| format!("s{k}")))
        {
            match held(&checker, &key) {
                Err(why) => {
                    eprintln!("round {round}: torn: {why}");
                    torn += 1;
                }
                Ok(i) if keys_of(victim).any(|k| k == key) => {
                    checked += 1;
                    if let Some(&a) = acked.get(&key) {
                        if i.is_none_or(|i| i < a) {
                            eprintln!("round {round}: lost: {key} holds {i:?}, acked {a}");
                            lost += 1;
                        }
                    }
                }
                Ok(_) => {}
            }
        }
        writers[victim] = Some(Writer::start(dir.path(), round * 1_000_000, victim));
    }
    for (id, w) in writers.iter_mut().enumerate() {
        let (_, acks) = w.take().expect("running").kill(id);
        for (key, i) in acks {
            let last = acked.entry(key).or_insert(i);
            *last = (*last).max(i);
        }
    }
    for (key, &a) in &acked {
        match held(&checker, key) {
            Ok(Some(i)) if i >= a => {}
            other => {
                eprintln!("at the end: {key} holds {other:?}, acked {a}");
                lost += 1;
            }
        }
    }

    // Drift: after one pass the checker's index describes the directory.
    checker.maintain().await.expect("a maintenance pass");
    let (mut files, mut bytes) = (0usize, 0u64);
    for e in std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
    {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "temp file left: {name}");
        if name.ends_with(".swre") {
            files += 1;
            bytes += e.metadata().expect("stat").len();
        }
    }
    let drift = files.abs_diff(checker.len()) as u64 + bytes.abs_diff(checker.bytes());
    eprintln!(
        "crash: {KILLS} kills of 2 writers on one directory, {checked} key checks, \
         {} acknowledged keys: torn {torn}, lost {lost}, drift {drift} ({files} files)",
        acked.len()
    );
    assert_eq!((torn, lost, drift), (0, 0, 0));
    assert_eq!(
        acked.len(),
        80,
        "every key of both writers was acknowledged"
    );
    assert!(
        checked > 2_000,
        "too few checks to prove anything: {checked}"
    );
}
