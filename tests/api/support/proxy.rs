//! A TCP proxy in front of PostgreSQL that a test can cut and restore, to make
//! the database "go away" and "come back" for the server under test.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tokio::{
    io::copy_bidirectional,
    net::{TcpListener, TcpStream, UnixStream},
    task::{AbortHandle, JoinHandle},
};

#[derive(Debug, Clone)]
pub enum Upstream {
    Tcp(String),
    Unix(PathBuf),
}

pub struct TcpProxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
    acceptor: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: Upstream) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("the proxy's address");
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn(accept_loop(
            listener,
            upstream,
            open.clone(),
            connections.clone(),
        ));
        Self {
            addr,
            open,
            connections,
            acceptor,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Drops every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
        self.acceptor.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Upstream,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
) {
    while let Ok((client, _)) = listener.accept().await {
        if !open.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let task = tokio::spawn(forward(client, upstream.clone()));
        connections.lock().unwrap().push(task.abort_handle());
    }
}

async fn forward(mut client: TcpStream, upstream: Upstream) {
    let _ = match upstream {
        Upstream::Tcp(addr) => match TcpStream::connect(addr).await {
            Ok(mut server) => copy_bidirectional(&mut client, &mut server).await,
            Err(_) => return,
        },
        Upstream::Unix(path) => match UnixStream::connect(path).await {
            Ok(mut server) => copy_bidirectional(&mut client, &mut server).await,
            Err(_) => return,
        },
    };
}
