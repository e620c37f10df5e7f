//! A tiny HTTP server for the `http://` config tests: std `TcpListener` on a
//! free loopback port, one thread, answers each GET from a table of
//! `path → (status, body)` (404 for anything else) and closes.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Path → (status, body).
type Pages = Arc<Mutex<HashMap<String, (u16, Vec<u8>)>>>;

/// The running server.
pub struct HttpServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    pages: Pages,
    requests: Arc<Mutex<Vec<String>>>,
}

impl HttpServer {
    /// Starts the server thread (it lives as long as the test process).
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind http server");
        let port = listener.local_addr().unwrap().port();
        let pages: Pages = Arc::default();
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let (p, r) = (pages.clone(), requests.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" || header == "\n" {
                        break;
                    }
                }
                let path = request_line.split_whitespace().nth(1).unwrap_or("").to_owned();
                r.lock().unwrap().push(path.clone());
                let (status, body) = p.lock().unwrap().get(&path).cloned().unwrap_or((404, b"not found".to_vec()));
                let head = format!(
                    "HTTP/1.0 {status} X\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&body));
            }
        });
        Self { port, pages, requests }
    }

    /// Serves `body` with `status` at `path`.
    pub fn set(&self, path: &str, status: u16, body: &str) {
        self.pages.lock().unwrap().insert(path.to_owned(), (status, body.as_bytes().to_vec()));
    }

    /// `http://127.0.0.1:PORT/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Paths requested so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}
