//! The ceiling for Tower's reads on this machine: a bare hyper 1 HTTP/1.1 server on the same
//! two-thread runtime as Tower's, answering every request with one fixed JSON body (as large as
//! a flag's answer) and nothing else: no routing, no authentication, no logging, no store.
//!
//! ```text
//! cargo run --release -p flagtower-benches --bin bare -- [--port P] [--bytes N]
//! ```
//!
//! `benches/read-model.sh` runs `wrk` against it and against Tower in the same session.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() {
    let mut port = 0u16;
    let mut bytes = 1400usize;
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--port" => port = v.parse().expect("--port P"),
            "--bytes" => bytes = v.parse().expect("--bytes N"),
            other => panic!("unknown argument {other}"),
        }
    }
    // `{"payload":"xxx…"}`, `bytes` long.
    let filler = "x".repeat(bytes.saturating_sub(15));
    let body = Bytes::from(format!("{{\"payload\":\"{filler}\"}}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        println!("http://{}", listener.local_addr().expect("addr"));
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let _ = stream.set_nodelay(true);
            let body = body.clone();
            tokio::spawn(async move {
                let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        let mut res = Response::new(Full::new(body));
                        res.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, Infallible>(res)
                    }
                });
                let _ = http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}
