//! What a new Rust user writes first, through `swre-native`: the error types
//! they already have, owned keys, `?` on storage errors, readable messages.

use std::time::Duration;

use swre_native::{CacheTtl, CallOptions, Engine, Error, FileStorage, NotCounted, Status};

use crate::common::*;

#[tokio::test]
async fn fetch_errors_of_every_common_type_are_accepted() {
    let (engine, _) = engine_with(|b| b);
    let r = engine
        .get_or_fetch("anyhow", || async {
            Err::<Vec<u8>, _>(anyhow::anyhow!("upstream said no"))
        })
        .await;
    match r {
        Err(Error::Upstream(e)) => {
            assert_eq!(e.to_string(), "upstream said no");
            assert!(e.counts_against_breaker());
        }
        other => panic!("expected the upstream error, got {other:?}"),
    }
    let boxed = engine
        .get_or_fetch("boxed", || async {
            let e: Box<dyn std::error::Error + Send + Sync> = "boxed failure".into();
            Err::<Vec<u8>, _>(e)
        })
        .await;
    assert!(matches!(boxed, Err(Error::Upstream(e)) if e.to_string() == "boxed failure"));
    let string = engine
        .get_or_fetch("string", || async {
            Err::<Vec<u8>, _>(String::from("plain message"))
        })
        .await;
    assert!(matches!(string, Err(Error::Upstream(e)) if e.to_string() == "plain message"));
    let not_found = engine
        .get_or_fetch("missing", || async {
            Err::<Vec<u8>, _>(NotCounted::new(anyhow::anyhow!("no such id")))
        })
        .await;
    assert!(
        matches!(not_found, Err(Error::Upstream(e)) if !e.counts_against_breaker() && e.to_string() == "no such id")
    );
}

#[tokio::test]
async fn owned_keys_typed_values_and_per_call_options() {
    #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq, Clone)]
    struct User {
        id: u32,
        name: String,
    }
    let (engine, _) = engine_with(|b| b);
    for id in [1u32, 2] {
        let key = format!("user:{id}");
        let r = engine
            .get_or_fetch_as(key.clone(), move || async move {
                Ok::<_, std::io::Error>(Some(User {
                    id,
                    name: format!("user {id}"),
                }))
            })
            .await
            .unwrap();
        assert_eq!(r.status, Status::Miss);
        let peeked = engine.peek_as::<Option<User>>(&key).await.unwrap().unwrap();
        assert_eq!(peeked.value.as_ref().as_ref().map(|u| u.id), Some(id));
    }
    let day = CacheTtl::new(Duration::from_secs(86_400), Duration::ZERO, Duration::ZERO);
    engine
        .with(CallOptions::new().ttl(day))
        .set_as("config", &vec![1u8, 2, 3])
        .await
        .unwrap();
    let c = engine.peek_as::<Vec<u8>>("config").await.unwrap().unwrap();
    assert_eq!(
        (c.value.as_slice(), c.fresh_until - c.created_at),
        (&[1u8, 2, 3][..], 86_400_000)
    );
}

#[tokio::test]
async fn storage_errors_convert_with_question_mark_and_read_as_sentences() {
    async fn open_in(path: &std::path::Path) -> Result<FileStorage, Error> {
        Ok(FileStorage::open(path).await?)
    }
    // A file where the directory should be: opening fails.
    let file = std::env::temp_dir().join(format!("swre-first-use-{}", std::process::id()));
    std::fs::write(&file, b"not a directory").unwrap();
    let err = open_in(&file).await.unwrap_err();
    let _ = std::fs::remove_file(&file);
    let message = err.to_string();
    assert!(message.starts_with("storage error: "), "{message}");
    assert!(
        !message.contains("Io:") && !message.contains("Unavailable:"),
        "{message}"
    );
    let (engine, _) = engine_with(|b| b);
    let e = engine
        .get_or_fetch("", || async { Ok::<_, std::io::Error>("v") })
        .await;
    assert_eq!(
        e.unwrap_err().to_string(),
        "invalid key: the key is empty; use a non-empty string"
    );
    let _: Option<Engine<swre_native::MemoryStorage, swre_native::TokioRuntime>> = None;
}
