//! A TCP proxy a test can cut and restore, and URLs pointed at it.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

/// A TCP proxy in front of a server, that a test can cut (every connection dropped, new ones
/// refused) and restore on the same port: an outage of the server as its clients see it.
pub struct TcpProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    target: SocketAddr,
    tasks: Arc<std::sync::Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Starts forwarding a free local port to `target`.
    pub async fn start(target: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let proxy = Self { addr, target, tasks: Arc::default() };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let (target, tasks) = (self.target, Arc::clone(&self.tasks));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().unwrap().push(conn);
            }
        });
        self.tasks.lock().unwrap().push(accept);
    }

    /// Drops every connection and stops listening.
    pub fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        // The aborted listener closes asynchronously: retry the bind briefly.
        for _ in 0..100 {
            if socket.bind(self.addr).is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.serve(socket.listen(128).expect("listen"));
    }
}

/// `url` (`scheme://user@host:port/db?…`) pointing at `addr` instead.
pub fn url_with_addr(url: &str, addr: SocketAddr) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|e| panic!("not a URL ({e})"));
    parsed.set_ip_host(addr.ip()).expect("a URL with a host");
    parsed.set_port(Some(addr.port())).expect("a URL with a host");
    parsed.to_string()
}
