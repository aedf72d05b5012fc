//! The `slow-net` nemesis's userspace delay proxy (the kernel here has no netem): every node's
//! Raft address in the membership is a proxy that forwards to the port the node really listens
//! on, and holds each chunk of bytes, both ways, for the delay its link has at that moment.
//!
//! A link's delay is the sum of its two ends' delays, so slowing one node slows every link it
//! has, inbound and outbound. The sender of an inbound connection is known by its source
//! address, which is why slow links need each node in a network namespace of its own
//! ([`crate::netns`]): each proxy runs inside its node's namespace, so a partition cuts the
//! proxied links just as it cuts the direct ones.
//!
//! Bytes keep their order (a chunk never overtakes an earlier one) and nothing is dropped or
//! changed: TLS between the nodes runs through the proxy untouched.

use crate::{ChaosError, ChaosResult};
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest chunk read at once, in bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks held in one direction of one connection at once; a full queue stops reading, so a
/// slow link pushes back on its sender instead of buffering without bound.
pub const MAX_HELD_CHUNKS: usize = 256;

/// The delay of every node's links, in milliseconds, by node index; shared by all proxies.
#[derive(Clone)]
pub struct LinkDelays {
    by_node: Arc<Vec<AtomicU64>>,
    /// Each node's address, to know which node an inbound connection comes from.
    hosts: Arc<Vec<IpAddr>>,
}

impl LinkDelays {
    pub fn new(hosts: Vec<IpAddr>) -> Self {
        LinkDelays { by_node: Arc::new(hosts.iter().map(|_| AtomicU64::new(0)).collect()), hosts: Arc::new(hosts) }
    }

    /// Slows every link of node `i` by `ms` (0 restores it).
    pub fn set(&self, i: usize, ms: u64) {
        self.by_node[i].store(ms, Ordering::Relaxed);
    }

    fn of(&self, i: Option<usize>) -> u64 {
        i.map_or(0, |i| self.by_node[i].load(Ordering::Relaxed))
    }

    fn node_at(&self, ip: IpAddr) -> Option<usize> {
        self.hosts.iter().position(|h| *h == ip)
    }
}

/// One node's proxy: accepts on the node's advertised Raft address and forwards to where the
/// node listens. Stops accepting when dropped; open connections end with the node's.
pub struct DelayProxy {
    listen: SocketAddr,
    stopped: Arc<AtomicBool>,
}

impl DelayProxy {
    /// Starts node `node`'s proxy from `listen` to `upstream`, inside network namespace
    /// `namespace` when given (its accepts and connects happen there).
    pub fn start(
        node: usize,
        listen: SocketAddr,
        upstream: SocketAddr,
        namespace: Option<&str>,
        delays: LinkDelays,
    ) -> ChaosResult<Self> {
        let stopped = Arc::new(AtomicBool::new(false));
        let (bound, bound_rx) = sync_channel::<ChaosResult<()>>(1);
        let namespace = namespace.map(str::to_owned);
        let stop = stopped.clone();
        std::thread::Builder::new()
            .name(format!("delay-proxy-{node}"))
            .spawn(move || {
                let listener = match enter(namespace.as_deref()).and_then(|()| {
                    TcpListener::bind(listen).map_err(ChaosError::io(format!("bind the proxy {listen}")))
                }) {
                    Ok(listener) => listener,
                    Err(e) => {
                        let _ = bound.send(Err(e));
                        return;
                    }
                };
                let _ = bound.send(Ok(()));
                accept_loop(node, &listener, upstream, &delays, &stop);
            })
            .map_err(ChaosError::io("start a delay proxy thread"))?;
        bound_rx.recv().map_err(|_| ChaosError::Network("a delay proxy thread ended before it bound".into()))??;
        Ok(DelayProxy { listen, stopped })
    }
}

impl Drop for DelayProxy {
    fn drop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        // Wakes the accept; the host reaches every namespace's address.
        let _ = TcpStream::connect_timeout(&self.listen, Duration::from_millis(200));
    }
}

/// Moves the calling thread into network namespace `name` (made by `ip netns add`).
fn enter(name: Option<&str>) -> ChaosResult<()> {
    let Some(name) = name else { return Ok(()) };
    let file = std::fs::File::open(format!("/run/netns/{name}")).map_err(ChaosError::io("open a network namespace"))?;
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| ChaosError::Network(format!("enter network namespace {name}: {e}")))
}

fn accept_loop(node: usize, listener: &TcpListener, upstream: SocketAddr, delays: &LinkDelays, stop: &AtomicBool) {
    for inbound in listener.incoming() {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let Ok(inbound) = inbound else { continue };
        let from = inbound.peer_addr().ok().and_then(|a| delays.node_at(a.ip()));
        // Connected from this (namespaced) thread, so the upstream socket is in the node's
        // namespace too.
        let Ok(outbound) = TcpStream::connect(upstream) else {
            tracing::debug!(node, %upstream, "delay proxy: the node does not accept; connection dropped");
            continue;
        };
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let link = Link { delays: delays.clone(), ends: [from, Some(node)] };
        for (source, sink) in [(&inbound, &outbound), (&outbound, &inbound)] {
            if let (Ok(source), Ok(sink)) = (source.try_clone(), sink.try_clone()) {
                forward(source, sink, link.clone());
            }
        }
    }
}

#[derive(Clone)]
struct Link {
    delays: LinkDelays,
    ends: [Option<usize>; 2],
}

impl Link {
    fn delay(&self) -> Duration {
        Duration::from_millis(self.delays.of(self.ends[0]) + self.delays.of(self.ends[1]))
    }
}

/// One direction of one connection: a reader stamps each chunk with when it may leave, a
/// writer sends it then. When either end fails, both sockets of the direction are shut.
fn forward(source: TcpStream, sink: TcpStream, link: Link) {
    let (held, queue) = sync_channel::<(Instant, Vec<u8>)>(MAX_HELD_CHUNKS);
    let Ok(source_again) = source.try_clone() else { return };
    let reading =
        std::thread::Builder::new().name("delay-proxy-read".into()).spawn(move || read_chunks(source, &held, &link));
    if reading.is_ok() {
        let _ = std::thread::Builder::new()
            .name("delay-proxy-write".into())
            .spawn(move || write_chunks(sink, &queue, &source_again));
    }
}

fn read_chunks(mut source: TcpStream, held: &SyncSender<(Instant, Vec<u8>)>, link: &Link) {
    let mut buffer = vec![0u8; CHUNK_BYTES];
    let mut last_due = Instant::now();
    loop {
        match source.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Never before an earlier chunk, even when the delay just shrank.
                let due = (Instant::now() + link.delay()).max(last_due);
                last_due = due;
                if held.send((due, buffer[..n].to_vec())).is_err() {
                    break;
                }
            }
        }
    }
    let _ = source.shutdown(Shutdown::Read);
}

fn write_chunks(mut sink: TcpStream, queue: &Receiver<(Instant, Vec<u8>)>, source: &TcpStream) {
    while let Ok((due, chunk)) = queue.recv() {
        let now = Instant::now();
        if due > now {
            // The delay this nemesis injects: holding the bytes is the fault itself.
            std::thread::sleep(due - now);
        }
        if sink.write_all(&chunk).is_err() {
            // The receiver is gone: the sender learns it at its next read or write.
            let _ = source.shutdown(Shutdown::Both);
            break;
        }
    }
    let _ = sink.shutdown(Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream that echoes every byte back.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut writer = stream.try_clone().unwrap();
                    let _ = std::io::copy(&mut &stream, &mut writer);
                });
            }
        });
        addr
    }

    fn round_trip(stream: &mut TcpStream, message: &[u8]) -> (Vec<u8>, Duration) {
        let started = Instant::now();
        stream.write_all(message).unwrap();
        let mut back = vec![0u8; message.len()];
        stream.read_exact(&mut back).unwrap();
        (back, started.elapsed())
    }

    #[test]
    fn bytes_pass_unchanged_and_in_order_held_back_by_both_ends_delays() {
        let upstream = echo_server();
        let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        // The client connects from 127.0.0.1, which is node 0 here: both ends of the link are
        // node 0, so its delay counts twice each way.
        let delays = LinkDelays::new(vec!["127.0.0.1".parse().unwrap()]);
        let _proxy = DelayProxy::start(0, listen, upstream, None, delays.clone()).unwrap();
        let mut stream = TcpStream::connect(listen).unwrap();
        let message: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();

        let (back, _) = round_trip(&mut stream, &message);
        assert_eq!(back, message, "undelayed, the bytes come back as sent");

        delays.set(0, 100);
        let (back, took) = round_trip(&mut stream, &message);
        assert_eq!(back, message, "delayed, the bytes come back as sent and in order");
        assert!(took >= Duration::from_millis(400), "2 × 100 ms each way, there and back: {took:?}");

        delays.set(0, 0);
        let (back, _) = round_trip(&mut stream, b"after");
        assert_eq!(back, b"after");
    }

    #[test]
    fn a_node_that_does_not_accept_closes_the_proxied_connection() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let listen = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let delays = LinkDelays::new(vec!["127.0.0.2".parse().unwrap()]);
        let _proxy = DelayProxy::start(0, listen, closed, None, delays).unwrap();
        let mut stream = TcpStream::connect(listen).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let read = stream.read(&mut [0u8; 1]);
        assert!(matches!(read, Ok(0)) || read.is_err(), "{read:?}");
    }
}
