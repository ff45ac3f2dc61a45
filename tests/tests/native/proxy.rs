//! A TCP proxy on loopback in front of a real server, which a test can cut
//! (every connection dropped, new ones closed at once), turn into a black
//! hole (connections stay open, nothing goes through: a silent network
//! partition) and restore: one instance's network outage while the others
//! keep reaching the server. Fault injection only; the server behind it is
//! real.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(crate) struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    hole: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Proxy {
    /// A proxy to `127.0.0.1:target`, up.
    pub(crate) async fn start(target: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let up = Arc::new(AtomicBool::new(true));
        let hole = Arc::new(AtomicBool::new(false));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, hole2, links2) = (up.clone(), hole.clone(), links.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let hole = hole2.clone();
                let link = tokio::spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await {
                        let (in_read, in_write) = inbound.into_split();
                        let (out_read, out_write) = outbound.into_split();
                        let there = forward(in_read, out_write, hole.clone());
                        let back = forward(out_read, in_write, hole);
                        let _ = tokio::join!(there, back);
                    }
                });
                links2.lock().unwrap().push(link);
            }
        });
        Self {
            port,
            up,
            hole,
            links,
            acceptor,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Drops every connection through it, and closes new ones at once.
    pub(crate) fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// Keeps every connection open but lets nothing through, either way,
    /// until [`restore`](Self::restore)d (what is sent meanwhile is lost).
    pub(crate) fn black_hole(&self) {
        self.hole.store(true, Ordering::SeqCst);
    }

    /// Lets connections through again.
    pub(crate) fn restore(&self) {
        self.hole.store(false, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Copies `from` to `to` until either ends, dropping what arrives while
/// `hole` is set.
async fn forward(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, hole: Arc<AtomicBool>) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if hole.load(Ordering::SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut();
    }
}
