//! Ports for tests of unreachable targets: one nothing listens on, and one
//! that accepts connections and never answers.

/// A port on 127.0.0.1 that refuses connections (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A port on 127.0.0.1 that accepts connections and never says anything.
pub async fn silent_port() -> u16 {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut kept = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            kept.push(stream);
        }
    });
    port
}
