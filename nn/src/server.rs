//! The evaluator's serving loop: accepts worker connections on a Unix-domain socket, merges
//! their requests into batches and answers each with W/D/L and the priors of its listed moves.
//!
//! The work is split into *lanes*, one thread and one backend each. An acceptor thread hands
//! every new connection to the lane with the fewest. A lane does everything between its
//! forward passes: it polls its connections, reads whatever complete requests have arrived,
//! takes everything pending up to the batch limit (so a batch is flushed when full or when
//! nothing more is pending; there is no fixed wait), runs one evaluation, applies the policy
//! softmax and writes each connection its answers in request order. Requests that arrive
//! during a forward pass wait in the socket buffers.
//!
//! On the CPU each lane computes on one core, as Lc0's BLAS backend does per search thread:
//! two searches' batches run side by side instead of one batch split over both cores, whose
//! threads must meet after every layer. On a busy machine (two engines on two cores, as
//! tournaments run them) such a meeting waits for whichever thread the scheduler put off,
//! layer after layer; a lane that is put off delays only its own batch. A malformed message
//! closes that connection with a logged error; the server goes on.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{MsgFlags, recv};

use crate::backend::{Backend, EvalInput, RawEval};
use crate::priors::softmax_priors;
use crate::protocol::{self, HEADER_LEN, Header, Kind, ProtocolError, RequestBatch};

/// How long a write to a client that does not read may block the server before that client is
/// dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes read from a connection per system call.
const READ_CHUNK: usize = 64 * 1024;

/// Serving parameters.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Most positions per backend evaluation (also capped by the backend's own limit).
    pub max_batch: usize,
    /// Policy softmax temperature.
    pub policy_temperature: f32,
}

/// Serves connections from `listener` with one lane per backend (at least one) until
/// accepting fails (never, normally) or a backend does (a remote server gone), returning that
/// error.
pub fn serve(
    listener: UnixListener,
    backends: Vec<Box<dyn Backend>>,
    config: ServerConfig,
) -> io::Error {
    assert!(!backends.is_empty(), "an evaluator serves with a backend");
    let (failed, failure) = mpsc::channel::<io::Error>();
    let mut doors = Vec::new();
    for (index, backend) in backends.into_iter().enumerate() {
        let (wake, wakened) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => return e,
        };
        if let Err(e) = wakened.set_nonblocking(true) {
            return e;
        }
        let (hand, incoming) = mpsc::channel();
        let load = Arc::new(AtomicUsize::new(0));
        let lane = Lane {
            max_batch: config.max_batch.min(backend.max_batch()).max(1),
            temperature: config.policy_temperature,
            backend,
            connections: HashMap::new(),
            next_id: 0,
            jobs: VecDeque::new(),
            chunk: vec![0; READ_CHUNK],
            incoming,
            wakened,
            load: Arc::clone(&load),
        };
        let failed = failed.clone();
        let spawned = thread::Builder::new()
            .name(format!("lane-{index}"))
            .spawn(move || {
                let _ = failed.send(lane.run()); // The receiver lives as long as `serve`.
            });
        if let Err(e) = spawned {
            return e;
        }
        doors.push(Door { hand, wake, load });
    }
    let spawned = thread::Builder::new().name("accept".into()).spawn(move || {
        let _ = failed.send(accept(&listener, &doors));
    });
    if let Err(e) = spawned {
        return e;
    }
    failure
        .recv()
        .expect("the acceptor and the lanes hold senders")
}

/// How the acceptor reaches one lane: a channel for new connections, a socket to wake its
/// poll, and its count of open connections.
struct Door {
    hand: Sender<UnixStream>,
    wake: UnixStream,
    load: Arc<AtomicUsize>,
}

/// Accepts connections for ever, each to the lane with the fewest open; returns an error of
/// the listener (or of a lane that stopped taking connections).
fn accept(listener: &UnixListener, doors: &[Door]) -> io::Error {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The client gave up before we accepted: not the listener's fault.
            Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => continue,
            Err(e) => return e,
        };
        // Blocking writes (bounded by the timeout); reads never block (MSG_DONTWAIT).
        if let Err(e) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
            tracing::error!("evaluator: new connection: {e}");
            continue;
        }
        // Relaxed: a balancing hint; a stale count only places one connection less evenly.
        let door = doors
            .iter()
            .min_by_key(|d| d.load.load(Ordering::Relaxed))
            .expect("at least one lane");
        door.load.fetch_add(1, Ordering::Relaxed);
        if door.hand.send(stream).is_err() {
            return io::Error::other("a lane stopped");
        }
        if let Err(e) = (&door.wake).write_all(&[1]) {
            return e;
        }
    }
}

/// One client connection and the bytes of its next, incomplete request.
struct Connection {
    stream: UnixStream,
    pending: Vec<u8>,
}

/// One request waiting for evaluation.
struct Job {
    conn: u64,
    batch: RequestBatch,
}

/// One lane: its backend, its connections and their queued requests, owned by its thread.
struct Lane {
    backend: Box<dyn Backend>,
    max_batch: usize,
    temperature: f32,
    connections: HashMap<u64, Connection>,
    next_id: u64,
    /// Complete requests of all connections, in arrival order.
    jobs: VecDeque<Job>,
    chunk: Vec<u8>,
    /// New connections from the acceptor, announced by a byte on `wakened`.
    incoming: Receiver<UnixStream>,
    wakened: UnixStream,
    /// Open connections, for the acceptor's balancing.
    load: Arc<AtomicUsize>,
}

impl Lane {
    /// Serves until the backend fails or the acceptor is gone; returns why.
    fn run(mut self) -> io::Error {
        loop {
            // Block only when nothing is pending; otherwise just pick up what has arrived.
            let wait = if self.jobs.is_empty() {
                PollTimeout::NONE
            } else {
                PollTimeout::ZERO
            };
            if let Err(e) = self.gather(wait) {
                return e;
            }
            if let Err(e) = self.evaluate_batch() {
                return io::Error::other(e);
            }
        }
    }

    /// Waits up to `wait` for activity, then takes new connections and queues every complete
    /// request that has arrived.
    fn gather(&mut self, wait: PollTimeout) -> io::Result<()> {
        let ids: Vec<u64> = self.connections.keys().copied().collect();
        let ready: Vec<bool> = {
            let mut fds = Vec::with_capacity(ids.len() + 1);
            fds.push(PollFd::new(self.wakened.as_fd(), PollFlags::POLLIN));
            for id in &ids {
                fds.push(PollFd::new(
                    self.connections[id].stream.as_fd(),
                    PollFlags::POLLIN,
                ));
            }
            match poll(&mut fds, wait) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
            fds.iter().map(|fd| fd.any().unwrap_or(false)).collect()
        };
        if ready[0] {
            self.take_connections()?;
        }
        for (id, _) in ids.iter().zip(&ready[1..]).filter(|(_, ready)| **ready) {
            self.read_requests(*id);
        }
        Ok(())
    }

    /// Takes the connections the acceptor has handed over.
    fn take_connections(&mut self) -> io::Result<()> {
        let mut bytes = [0; 64];
        loop {
            match (&self.wakened).read(&mut bytes) {
                Ok(0) => return Err(io::Error::other("the acceptor stopped")),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        while let Ok(stream) = self.incoming.try_recv() {
            let id = self.next_id;
            self.next_id += 1;
            let pending = Vec::new();
            self.connections.insert(id, Connection { stream, pending });
        }
        Ok(())
    }

    /// Reads what connection `id` has sent and queues its complete requests; closes it on end
    /// of stream, an error or a malformed message.
    fn read_requests(&mut self, id: u64) {
        let conn = self
            .connections
            .get_mut(&id)
            .expect("polled connections exist");
        let fd = conn.stream.as_raw_fd();
        let ended = loop {
            match recv(fd, &mut self.chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => break true,
                Ok(n) => conn.pending.extend_from_slice(&self.chunk[..n]),
                Err(Errno::EAGAIN) => break false,
                Err(Errno::EINTR) => {}
                Err(e) => {
                    tracing::debug!(conn = id, "evaluator: connection ended: {e}");
                    break true;
                }
            }
        };
        match take_requests(&mut conn.pending) {
            Ok(batches) => {
                self.jobs
                    .extend(batches.into_iter().map(|batch| Job { conn: id, batch }));
                if ended {
                    self.close(id);
                }
            }
            Err(e) => {
                tracing::error!(conn = id, "evaluator: closing connection: {e}");
                self.close(id);
            }
        }
    }

    /// Forgets connection `id` and shuts its socket (the peer sees end of stream).
    fn close(&mut self, id: u64) {
        if let Some(conn) = self.connections.remove(&id) {
            // Relaxed: a balancing hint.
            self.load.fetch_sub(1, Ordering::Relaxed);
            // Ignored: the peer may already be gone, which is what closing wants anyway.
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
    }

    /// Evaluates the queued requests, up to the batch limit (always at least one request), and
    /// writes their answers. A request larger than the limit is evaluated in several passes.
    fn evaluate_batch(&mut self) -> Result<(), String> {
        let mut taken = 0;
        let mut count = 0;
        for job in &self.jobs {
            if count > 0 && count + job.batch.len() > self.max_batch {
                break;
            }
            count += job.batch.len();
            taken += 1;
        }
        if taken == 0 {
            return Ok(());
        }
        let jobs: Vec<Job> = self.jobs.drain(..taken).collect();
        let inputs: Vec<EvalInput<'_>> = jobs
            .iter()
            .flat_map(|job| (0..job.batch.len()).map(|i| job.batch.get(i)))
            .collect();
        let mut raw: Vec<RawEval> = Vec::with_capacity(inputs.len());
        let mut chunk_raw = Vec::new();
        for chunk in inputs.chunks(self.max_batch) {
            self.backend.evaluate(chunk, &mut chunk_raw)?;
            raw.append(&mut chunk_raw);
        }
        let mut answers = raw.iter();
        let mut priors = Vec::new();
        let mut buf = Vec::new();
        for job in &jobs {
            protocol::begin_response(&mut buf);
            for answer in answers.by_ref().take(job.batch.len()) {
                softmax_priors(&answer.logits, self.temperature, &mut priors);
                protocol::push_answer(&mut buf, answer.wdl, &priors);
            }
            protocol::finish_response(&mut buf, job.batch.len());
            let Some(conn) = self.connections.get(&job.conn) else {
                continue; // Closed meanwhile: nobody to answer.
            };
            if let Err(e) = (&conn.stream).write_all(&buf) {
                // A client that hung up with requests in flight is normal at shutdown.
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) {
                    tracing::debug!(conn = job.conn, "evaluator: client gone: {e}");
                } else {
                    tracing::warn!(conn = job.conn, "evaluator: dropping connection: {e}");
                }
                self.close(job.conn);
            }
        }
        Ok(())
    }
}

/// Removes every complete request from the front of `pending` and decodes it.
fn take_requests(pending: &mut Vec<u8>) -> Result<Vec<RequestBatch>, ProtocolError> {
    let mut batches = Vec::new();
    let mut start = 0;
    while let Some(header) = pending.get(start..start + HEADER_LEN) {
        let header = Header::decode(header.try_into().expect("HEADER_LEN bytes"))?;
        if header.kind != Kind::Request {
            return Err(ProtocolError::UnexpectedKind(header.kind));
        }
        let body_start = start + HEADER_LEN;
        let Some(body) = pending.get(body_start..body_start + header.len as usize) else {
            break;
        };
        let mut batch = RequestBatch::default();
        batch.decode(header.count, body)?;
        batches.push(batch);
        start = body_start + header.len as usize;
    }
    pending.drain(..start);
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::{CacheStats, EvalCache};
    use crate::client::{ClientError, EvalClient};
    use crate::encode::InputPlanes;
    use crate::heuristic::{Heuristic, tests::planes};
    use crate::policy::{for_each_legal_move, move_index};
    use cozy_chess::Board;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::thread;

    const FENS: [&str; 3] = [
        "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1",
        "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3",
        "4k3/8/8/1p1q4/8/8/8/R2RK3 b - - 7 40",
    ];

    fn positions() -> Vec<(InputPlanes, Vec<u16>)> {
        FENS.iter()
            .map(|fen| {
                let board: Board = fen.parse().unwrap();
                let mut moves = Vec::new();
                for_each_legal_move(&board, |mv| {
                    moves.push(move_index(mv, board.side_to_move()))
                });
                (planes(&board), moves)
            })
            .collect()
    }

    /// A heuristic server on a socket in a fresh directory, removed on drop.
    struct TestServer {
        dir: PathBuf,
        socket: PathBuf,
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir); // Best effort.
        }
    }

    /// A server with one lane per backend, answering on a fresh socket.
    fn start_lanes(max_batch: usize, backends: Vec<Box<dyn Backend>>) -> TestServer {
        static SERVERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "banyan-server-test-{}-{}",
            std::process::id(),
            SERVERS.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let config = ServerConfig {
            max_batch,
            policy_temperature: 1.359,
        };
        thread::spawn(move || serve(listener, backends, config));
        TestServer { dir, socket }
    }

    fn start_server(max_batch: usize) -> TestServer {
        start_lanes(max_batch, vec![Box::new(Heuristic::new(64))])
    }

    /// The heuristic, evaluating each batch only once the test lets it through.
    struct Gated {
        gate: mpsc::Receiver<()>,
        inner: Heuristic,
    }

    impl Backend for Gated {
        fn evaluate(
            &mut self,
            batch: &[EvalInput<'_>],
            out: &mut Vec<RawEval>,
        ) -> Result<(), String> {
            self.gate.recv().map_err(|e| e.to_string())?;
            self.inner.evaluate(batch, out)
        }

        fn max_batch(&self) -> usize {
            self.inner.max_batch()
        }

        fn describe(&self) -> String {
            "gated heuristic".into()
        }
    }

    /// Connections go to the lane with the fewest, and a lane busy with a long batch holds up
    /// only its own connections.
    #[test]
    fn lanes_serve_their_connections_side_by_side() {
        let (open, gate) = mpsc::channel();
        let gated = Gated {
            gate,
            inner: Heuristic::new(64),
        };
        let server = start_lanes(8, vec![Box::new(gated), Box::new(Heuristic::new(64))]);
        let positions = positions();
        let input = [EvalInput {
            planes: &positions[0].0,
            moves: &positions[0].1,
        }];
        let mut first = EvalClient::connect(&server.socket).unwrap();
        let mut second = EvalClient::connect(&server.socket).unwrap();
        // Lanes that held each other up would fail here, not hang.
        second.set_timeout(Some(Duration::from_secs(10))).unwrap();
        let waiting = first.send(&input).unwrap();
        // The first connection's lane waits at the gate; the second's answers.
        assert_eq!(second.evaluate(&input).unwrap().len(), 1);
        open.send(()).unwrap();
        assert_eq!(first.recv(waiting).unwrap().len(), 1);
        // A third connection joins the lane with the fewest: either, as both hold one.
        let mut third = EvalClient::connect(&server.socket).unwrap();
        let asked = third.send(&input).unwrap();
        let _ = open.send(()); // In case it joined the gated lane.
        assert_eq!(third.recv(asked).unwrap().len(), 1);
    }

    #[test]
    fn answers_match_the_backend_and_softmax_in_process() {
        let server = start_server(2);
        let socket = &server.socket;
        let positions = positions();
        let inputs: Vec<EvalInput<'_>> = positions
            .iter()
            .map(|(planes, moves)| EvalInput { planes, moves })
            .collect();
        let mut expected = Vec::new();
        Heuristic::new(64).evaluate(&inputs, &mut expected).unwrap();

        let mut client = EvalClient::connect(socket).unwrap();
        // Two batches in flight, one larger than the server's batch limit.
        let first = client.send(&inputs).unwrap();
        let second = client.send(&inputs[1..]).unwrap();
        assert!(matches!(client.recv(second), Err(ClientError::OutOfOrder)));
        let answers = client.recv(first).unwrap();
        let later = client.recv(second).unwrap();
        assert_eq!(later[..], answers[1..]);
        let mut priors = Vec::new();
        for (answer, raw) in answers.iter().zip(&expected) {
            assert_eq!(answer.wdl, raw.wdl);
            softmax_priors(&raw.logits, 1.359, &mut priors);
            assert_eq!(answer.priors, priors);
        }
    }

    #[test]
    fn a_malformed_message_closes_only_its_connection() {
        let server = start_server(8);
        let socket = &server.socket;
        let positions = positions();
        let input = [EvalInput {
            planes: &positions[0].0,
            moves: &positions[0].1,
        }];
        let mut good = EvalClient::connect(socket).unwrap();
        assert_eq!(good.evaluate(&input).unwrap().len(), 1);

        let mut bad = UnixStream::connect(socket).unwrap();
        bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // The server closes it: end of stream (or a reset, as bytes were left unread).
        let mut rest = Vec::new();
        match io::Read::read_to_end(&mut bad, &mut rest) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }

        assert_eq!(good.evaluate(&input).unwrap().len(), 1);
        let mut fresh = EvalClient::connect(socket).unwrap();
        assert_eq!(fresh.evaluate(&input).unwrap().len(), 1);
    }

    #[test]
    fn cached_and_fresh_answers_merge_in_order() {
        let server = start_server(64);
        let socket = &server.socket;
        let positions = positions();
        let inputs: Vec<EvalInput<'_>> = positions
            .iter()
            .map(|(planes, moves)| EvalInput { planes, moves })
            .collect();
        let cache = Arc::new(EvalCache::create(1).unwrap());
        let mut plain = EvalClient::connect(socket).unwrap();
        let mut cached = EvalClient::connect(socket)
            .unwrap()
            .with_cache(Arc::clone(&cache));
        let expected = plain.evaluate(&inputs).unwrap();
        // Position 1 only, then all: the second batch mixes a hit with misses.
        cached.evaluate(&inputs[1..2]).unwrap();
        let mixed = cached.evaluate(&inputs).unwrap();
        assert_eq!(
            cache.stats(),
            CacheStats {
                lookups: 4,
                hits: 1
            }
        );
        for (got, want) in mixed.iter().zip(&expected) {
            assert_eq!(got.wdl, want.wdl);
            assert_eq!(got.priors.len(), want.priors.len());
            for (p, q) in got.priors.iter().zip(&want.priors) {
                assert!((p - q).abs() <= q * 2.5e-4 + 1e-9);
            }
        }
    }

    #[test]
    fn requests_split_across_reads_are_reassembled() {
        let positions = positions();
        let inputs: Vec<EvalInput<'_>> = positions
            .iter()
            .map(|(planes, moves)| EvalInput { planes, moves })
            .collect();
        let mut one = Vec::new();
        protocol::encode_request(&inputs, &mut one);
        let stream = [one.clone(), one.clone()].concat();
        // Fed in awkward pieces, two whole requests come out, nothing is left over.
        let mut pending = Vec::new();
        let mut got = Vec::new();
        for piece in stream.chunks(7) {
            pending.extend_from_slice(piece);
            got.extend(take_requests(&mut pending).unwrap());
        }
        assert!(pending.is_empty());
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].get(2).moves, inputs[2].moves);
        pending.extend_from_slice(b"BNYN\x07\0");
        pending.extend_from_slice(&[0; 10]);
        assert_eq!(
            take_requests(&mut pending).unwrap_err(),
            ProtocolError::BadVersion(7)
        );
    }
}
