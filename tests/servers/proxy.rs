//! A TCP proxy owned by a test, to cut the connection between the emperor
//! and a server without stopping the server.

use super::SERVER_DEADLINE;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Forwards 127.0.0.1:`port` to a server port until [`Proxy::cut`].
pub struct Proxy {
    /// The port clients connect to.
    pub port: u16,
    shared: Arc<Shared>,
}

struct Shared {
    target: u16,
    open: AtomicBool,
    /// Bytes are dropped both ways and new connections are accepted but
    /// never answered: a partition without FIN or RST.
    blackhole: AtomicBool,
    stop: AtomicBool,
    live: Mutex<Vec<TcpStream>>,
}

impl Proxy {
    /// A proxy to 127.0.0.1:`target`, forwarding at once.
    pub fn new(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            target,
            open: AtomicBool::new(true),
            blackhole: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            live: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || accept_loop(&listener, &s));
        Proxy { port, shared }
    }

    /// Closes every forwarded connection and refuses new ones (accepted and
    /// closed at once) until [`Proxy::restore`].
    pub fn cut(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
        for stream in self.shared.live.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Forwards new connections again. After [`Proxy::blackhole`], the
    /// connections it kept are closed: bytes were lost on them, as TCP
    /// would have given them up during a long partition.
    pub fn restore(&self) {
        if self.shared.blackhole.swap(false, Ordering::SeqCst) {
            for stream in self.shared.live.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
        self.shared.open.store(true, Ordering::SeqCst);
    }

    /// A partition without FIN or RST: every connection stays open but
    /// carries nothing either way, and new ones are accepted and left
    /// unanswered, until [`Proxy::restore`].
    pub fn blackhole(&self) {
        self.shared.blackhole.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok(_) if shared.stop.load(Ordering::SeqCst) => return,
            Ok((client, _)) if shared.blackhole.load(Ordering::SeqCst) => {
                shared.live.lock().unwrap_or_else(|e| e.into_inner()).push(client);
            }
            Ok((client, _)) if shared.open.load(Ordering::SeqCst) => forward(client, shared),
            Ok((client, _)) => drop(client),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the test proxy cannot accept: {e}"),
        }
    }
}

fn forward(client: TcpStream, shared: &Arc<Shared>) {
    let addr = SocketAddr::from(([127, 0, 0, 1], shared.target));
    let Ok(server) = TcpStream::connect_timeout(&addr, SERVER_DEADLINE) else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else { return };
    {
        let mut live = shared.live.lock().unwrap_or_else(|e| e.into_inner());
        live.push(c2.try_clone().expect("clone"));
        live.push(s2.try_clone().expect("clone"));
    }
    let (up, down) = (shared.clone(), shared.clone());
    std::thread::spawn(move || pump(client, server, &up));
    std::thread::spawn(move || pump(s2, c2, &down));
}

/// Copies `from` to `to` until either side closes, then closes both;
/// while the proxy is a black hole, what is read is dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, shared: &Shared) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if shared.blackhole.load(Ordering::SeqCst) => {}
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
