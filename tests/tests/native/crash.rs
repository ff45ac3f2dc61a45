//! Crash safety: a child process writes entries in a loop and is killed with
//! SIGKILL at random moments; after each kill, opening the directory yields
//! only whole entries that decode to exactly what was written, and no temp files.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use swre_native::{FileStorage, Storage};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_never_leaves_a_torn_entry_or_a_temp_file() {
    let dir = TempDir::new("crash");
    let writer = env!("CARGO_BIN_EXE_crash_writer");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut seen_entries = 0;
    for round in 0..24u64 {
        let mut child = Command::new(writer)
            .arg(dir.path())
            .arg((round * 1_000_000).to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the crash writer");
        let stdout = child.stdout.take().expect("child stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read ready");
        assert_eq!(line.trim(), "ready", "round {round}");
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 120));
        child.kill().expect("SIGKILL the writer");
        child.wait().expect("reap the writer");

        let storage = FileStorage::open(dir.path())
            .await
            .expect("open after the kill");
        let temps: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(
            temps.is_empty(),
            "round {round}: temp files left: {temps:?}"
        );
        for k in 0..40 {
            let key = format!("k{k}");
            if let Some(entry) = storage.get(&key).await.expect("read") {
                let (owner, i) = swre_tests::crash_round(&entry.value)
                    .unwrap_or_else(|| panic!("round {round}: {key} holds an unparseable value"));
                assert_eq!(owner, key, "round {round}: {key} holds another key's value");
                assert_eq!(
                    &entry.value[..],
                    &swre_tests::crash_value(&key, i)[..],
                    "round {round}: {key} is torn or mixed"
                );
                seen_entries += 1;
            }
        }
    }
    assert!(
        seen_entries > 100,
        "the writer wrote too little to prove anything: {seen_entries}"
    );
}
