//! A slow, lossy TCP proxy between the operator and the API server: every chunk a client sends
//! waits `latency` before it goes on, and a share of connections is cut at once. TLS passes
//! through untouched (the API server's certificate names 127.0.0.1).

use super::Lcg;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the proxy did.
#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    /// Connections accepted.
    pub connections: usize,
    /// Connections cut at once.
    pub dropped: usize,
}

/// A running proxy; dropped, it stops accepting.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    counts: Arc<Mutex<Counts>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `upstream`, adding `latency` to each
    /// chunk a client sends and cutting `drop_percent` of the connections.
    ///
    /// # Errors
    /// When no port is free.
    pub async fn start(
        upstream: SocketAddr,
        latency: Duration,
        drop_percent: u64,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Mutex::new(Counts::default()));
        let seen = counts.clone();
        let task = tokio::spawn(async move {
            let mut random = Lcg::new(7);
            while let Ok((client, _)) = listener.accept().await {
                let cut = random.below(100) < drop_percent;
                if let Ok(mut c) = seen.lock() {
                    c.connections += 1;
                    c.dropped += usize::from(cut);
                }
                if cut {
                    drop(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream, latency));
            }
        });
        Ok(Self { addr, counts, task })
    }

    /// What it did so far.
    #[must_use]
    pub fn counts(&self) -> Counts {
        self.counts.lock().map(|c| *c).unwrap_or_default()
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, latency: Duration) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = client_read.read(&mut buf).await {
            if n == 0 {
                break;
            }
            tokio::time::sleep(latency).await;
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(up, down);
}
