//! A TCP proxy in front of a real server that a test can cut (close every connection and
//! refuse new ones), stall (a black hole: connections stay open, new ones are accepted, but
//! nothing is forwarded either way) and restore: "the database is unreachable" or "the
//! network swallows packets" without stopping the shared server.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Proxy {
    pub port: u16,
    down: Arc<AtomicBool>,
    stalled: watch::Sender<bool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_owned();
        let (stalled, _) = watch::channel(false);
        let (d, c, st) = (down.clone(), conns.clone(), stalled.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if d.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let mut stall = st.subscribe();
                let task = tokio::spawn(async move {
                    if *stall.borrow() {
                        // Accepted, never answered: the task owns `client`, so it stays
                        // open until restore or drop aborts the task.
                        std::future::pending::<()>().await;
                    }
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            _ = async { stall.wait_for(|s| *s).await.is_ok() } => {
                                // Both sockets stay open; nothing moves any more.
                                std::future::pending::<()>().await;
                            }
                        }
                    }
                });
                let mut list = c.lock();
                list.retain(|t| !t.is_finished());
                list.push(task);
            }
        });
        Self {
            port,
            down,
            stalled,
            conns,
            accept,
        }
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for t in self.conns.lock().drain(..) {
            t.abort();
        }
    }

    /// A black hole: open connections stop forwarding (but stay open), new connections are
    /// accepted and never answered. Nothing fails fast; only the caller's own timeouts end it.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Accepts and forwards connections again. Connections held by [`Proxy::stall`] are
    /// closed (their clients see an error and reconnect).
    pub fn restore(&self) {
        if self.stalled.send_replace(false) {
            for t in self.conns.lock().drain(..) {
                t.abort();
            }
        }
        self.down.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        for t in self.conns.lock().drain(..) {
            t.abort();
        }
    }
}
