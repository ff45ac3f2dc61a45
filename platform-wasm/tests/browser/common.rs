use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use swre_wasm::{
    BrowserRuntime, CacheTtl, Clock, Engine, EngineBuilder, Entry, JsClock, ManualClock, Storage,
    StorageError, Timer,
};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(inline_js = r#"
export function makeMapStore() {
  const map = new Map();
  return {
    map,
    async get(key) { return map.has(key) ? map.get(key) : null; },
    lastOptions: undefined,
    async put(key, value, options) { map.set(key, value); this.lastOptions = options; },
    async delete(key) { map.delete(key); },
  };
}
export function makeThrowingStore() {
  return {
    get() { throw new Error("store is down"); },
    put() { return Promise.reject(new Error("store is down")); },
    delete() { throw new Error("store is down"); },
  };
}
export function idbPutRaw(dbName, storeName, key, value) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const db = open.result;
      const tx = db.transaction(storeName, "readwrite");
      tx.objectStore(storeName).put(value, key);
      tx.oncomplete = () => { db.close(); resolve(); };
      tx.onerror = () => { db.close(); reject(tx.error); };
    };
  });
}
export async function cachePutRaw(cacheName, url, body) {
  const cache = await caches.open(cacheName);
  await cache.put(url, new Response(body));
}
export async function cacheHeader(cacheName, url, header) {
  const cache = await caches.open(cacheName);
  const response = await cache.match(url);
  return response ? response.headers.get(header) : null;
}
export function garbageBytes() { return new Uint8Array([83, 87, 82, 69, 1, 0, 255, 255, 0, 1, 2, 3]); }
"#)]
extern "C" {
    pub fn makeMapStore() -> JsValue;
    pub fn makeThrowingStore() -> JsValue;
    #[wasm_bindgen(catch)]
    pub async fn idbPutRaw(
        db: &str,
        store: &str,
        key: &str,
        value: &JsValue,
    ) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(catch)]
    pub async fn cachePutRaw(cache: &str, url: &str, body: &JsValue) -> Result<JsValue, JsValue>;
    pub fn garbageBytes() -> JsValue;
    pub async fn cacheHeader(cache: &str, url: &str, header: &str) -> JsValue;
}

pub const SEC: Duration = Duration::from_secs(1);

pub fn ttl() -> CacheTtl {
    CacheTtl::new(10 * SEC, 20 * SEC, 30 * SEC)
}

thread_local! {
    static NEXT: Cell<u32> = const { Cell::new(0) };
}

/// A name no other test (or earlier run) uses.
pub fn unique(tag: &str) -> String {
    let n = NEXT.with(|c| {
        c.set(c.get() + 1);
        c.get()
    });
    format!("swre-test-{tag}-{}-{n}", JsClock.now_ms())
}

pub type Rt = BrowserRuntime<ManualClock>;

pub fn engine_on<S: Storage>(
    storage: S,
    f: impl FnOnce(EngineBuilder<S, Rt>) -> EngineBuilder<S, Rt>,
) -> (Engine<S, Rt>, ManualClock) {
    let clock = ManualClock::new(JsClock.now_ms());
    let engine = f(Engine::builder(storage, BrowserRuntime::with_clock(clock.clone())).ttl(ttl()))
        .build()
        .expect("valid configuration");
    (engine, clock)
}

/// Real `setTimeout` sleep.
pub async fn sleep_ms(ms: u64) {
    BrowserRuntime::new().sleep(Duration::from_millis(ms)).await;
}

#[derive(Debug, Clone)]
pub struct Boom;
impl fmt::Display for Boom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("upstream failed")
    }
}
impl std::error::Error for Boom {}

pub type FetchFuture = Pin<Box<dyn Future<Output = Result<&'static str, Boom>>>>;

/// Counts upstream calls.
#[derive(Clone, Default)]
pub struct Calls(pub Rc<Cell<usize>>);

impl Calls {
    pub fn get(&self) -> usize {
        self.0.get()
    }

    pub fn ok(&self, v: &'static str) -> impl FnOnce() -> FetchFuture + 'static {
        self.after(0, Ok(v))
    }

    pub fn err(&self) -> impl FnOnce() -> FetchFuture + 'static {
        self.after(0, Err(Boom))
    }

    /// Answers after `ms` of real time.
    pub fn after(
        &self,
        ms: u64,
        r: Result<&'static str, Boom>,
    ) -> impl FnOnce() -> FetchFuture + 'static {
        let c = self.0.clone();
        move || {
            c.set(c.get() + 1);
            Box::pin(async move {
                if ms > 0 {
                    sleep_ms(ms).await;
                }
                r
            })
        }
    }

    /// Never answers.
    pub fn hang(&self) -> impl FnOnce() -> FetchFuture + 'static {
        let c = self.0.clone();
        move || {
            c.set(c.get() + 1);
            Box::pin(std::future::pending())
        }
    }
}

/// Waits (on real timers) until the engine has no upstream call in flight.
pub async fn settle<S: Storage, C: swre_wasm::Codec + Clone>(engine: &Engine<S, Rt, C>) {
    for _ in 0..500 {
        let s = engine.stats();
        if s.in_flight == 0 && s.tasks_running == 0 {
            return;
        }
        sleep_ms(2).await;
    }
    panic!("engine did not settle: {:?}", engine.stats());
}

pub fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).expect("utf-8")
}

/// Counts reads that reach the wrapped storage.
pub struct Counting<S> {
    pub inner: S,
    pub gets: Cell<usize>,
}

impl<S: Storage> Storage for Counting<S> {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StorageError> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get(key).await
    }
    async fn set(&self, key: &str, entry: Entry) -> Result<(), StorageError> {
        self.inner.set(key, entry).await
    }
    async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.inner.delete(key).await
    }
}
