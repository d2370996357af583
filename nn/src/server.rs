//! The evaluator's serving loop: accepts worker connections on a Unix-domain socket, merges
//! their requests into batches and answers each with W/D/L and the priors of its listed moves.
//!
//! One reader thread per connection reads whole requests into a shared queue. One compute
//! thread owns the [`Backend`]: it waits until something is queued, takes everything pending up
//! to the batch limit (so a batch is flushed when full or when nothing more is pending; there is
//! no fixed wait), runs one evaluation, applies the policy softmax and writes each connection
//! its answers in request order. A malformed message closes that connection with a logged
//! error; the server goes on.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::backend::{Backend, EvalInput, RawEval};
use crate::priors::softmax_priors;
use crate::protocol::{self, Kind, ReadError, RequestBatch};

/// How long a write to a client that does not read may block the compute thread before that
/// client is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serving parameters.
#[derive(Clone, Copy, Debug)]
pub struct ServerConfig {
    /// Most positions per backend evaluation (also capped by the backend's own limit).
    pub max_batch: usize,
    /// Policy softmax temperature.
    pub policy_temperature: f32,
}

/// Serves connections from `listener` with `backend` until accepting fails (never, normally).
pub fn serve(listener: UnixListener, backend: Box<dyn Backend>, config: ServerConfig) -> io::Error {
    let queue = Arc::new(Queue::default());
    let compute_queue = Arc::clone(&queue);
    thread::Builder::new()
        .name("eval-compute".into())
        .spawn(move || compute_loop(&compute_queue, backend, config))
        .expect("spawning the compute thread");
    let next_id = AtomicU64::new(0);
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return e,
        };
        // Relaxed: a plain counter for log lines.
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = stream.set_write_timeout(Some(WRITE_TIMEOUT)) {
            tracing::error!(conn = id, "evaluator: configuring a connection: {e}");
            continue;
        }
        let conn = Arc::new(Connection { id, stream });
        let queue = Arc::clone(&queue);
        let spawned = thread::Builder::new()
            .name(format!("eval-conn-{id}"))
            .spawn(move || read_loop(&conn, &queue));
        if let Err(e) = spawned {
            tracing::error!(conn = id, "evaluator: no thread for a connection: {e}");
        }
    }
}

/// One client connection: read by its reader thread, written by the compute thread.
struct Connection {
    id: u64,
    stream: UnixStream,
}

impl Connection {
    fn close(&self) {
        // Ignored: the peer may already be gone, which is what closing wants anyway.
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

/// One request waiting for the compute thread.
struct Job {
    conn: Arc<Connection>,
    batch: RequestBatch,
}

/// The requests of all connections, in arrival order.
#[derive(Default)]
struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    ready: Condvar,
}

/// Reads requests from one connection into the queue until it closes or misbehaves.
fn read_loop(conn: &Arc<Connection>, queue: &Queue) {
    let mut body = Vec::new();
    loop {
        let mut stream = &conn.stream;
        let header = match protocol::read_message(&mut stream, Kind::Request, &mut body) {
            Ok(Some(header)) => header,
            Ok(None) => break,
            Err(ReadError::Io(e)) => {
                tracing::debug!(conn = conn.id, "evaluator: connection ended: {e}");
                break;
            }
            Err(ReadError::Protocol(e)) => {
                tracing::error!(conn = conn.id, "evaluator: closing connection: {e}");
                break;
            }
        };
        let mut batch = RequestBatch::default();
        if let Err(e) = batch.decode(header.count, &body) {
            tracing::error!(conn = conn.id, "evaluator: closing connection: {e}");
            break;
        }
        queue.jobs.lock().push_back(Job {
            conn: Arc::clone(conn),
            batch,
        });
        queue.ready.notify_one();
    }
    conn.close();
}

/// Takes batches off the queue, evaluates them and writes the answers, forever.
fn compute_loop(queue: &Queue, mut backend: Box<dyn Backend>, config: ServerConfig) {
    let max_batch = config.max_batch.min(backend.max_batch()).max(1);
    let mut jobs = Vec::new();
    let mut raw: Vec<RawEval> = Vec::new();
    let mut chunk_raw = Vec::new();
    let mut priors = Vec::new();
    let mut buf = Vec::new();
    loop {
        take_batch(queue, max_batch, &mut jobs);
        let inputs: Vec<EvalInput<'_>> = jobs
            .iter()
            .flat_map(|job| (0..job.batch.len()).map(|i| job.batch.get(i)))
            .collect();
        // A single request larger than the limit is evaluated in several passes.
        raw.clear();
        for chunk in inputs.chunks(max_batch) {
            backend.evaluate(chunk, &mut chunk_raw);
            raw.append(&mut chunk_raw);
        }
        let mut answers = raw.iter();
        for job in jobs.drain(..) {
            protocol::begin_response(&mut buf);
            for answer in answers.by_ref().take(job.batch.len()) {
                softmax_priors(&answer.logits, config.policy_temperature, &mut priors);
                protocol::push_answer(&mut buf, answer.wdl, &priors);
            }
            protocol::finish_response(&mut buf, job.batch.len());
            if let Err(e) = (&job.conn.stream).write_all(&buf) {
                // A client that hung up with requests in flight is normal at shutdown.
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) {
                    tracing::debug!(conn = job.conn.id, "evaluator: client gone: {e}");
                } else {
                    tracing::warn!(conn = job.conn.id, "evaluator: dropping connection: {e}");
                }
                job.conn.close();
            }
        }
    }
}

/// Waits until a request is queued, then moves every queued request into `jobs` while the
/// total stays within `max_batch` positions (always at least one request).
fn take_batch(queue: &Queue, max_batch: usize, jobs: &mut Vec<Job>) {
    let mut pending = queue.jobs.lock();
    while pending.is_empty() {
        queue.ready.wait(&mut pending);
    }
    let mut total = 0;
    while let Some(job) = pending.front() {
        let n = job.batch.len();
        if total > 0 && total + n > max_batch {
            break;
        }
        total += n;
        jobs.extend(pending.pop_front());
    }
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

    fn start_server(max_batch: usize) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "banyan-server-test-{}-{max_batch}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let config = ServerConfig {
            max_batch,
            policy_temperature: 1.359,
        };
        thread::spawn(move || serve(listener, Box::new(Heuristic::new(64)), config));
        path
    }

    #[test]
    fn answers_match_the_backend_and_softmax_in_process() {
        let socket = start_server(2);
        let positions = positions();
        let inputs: Vec<EvalInput<'_>> = positions
            .iter()
            .map(|(planes, moves)| EvalInput { planes, moves })
            .collect();
        let mut expected = Vec::new();
        Heuristic::new(64).evaluate(&inputs, &mut expected);

        let mut client = EvalClient::connect(&socket).unwrap();
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
        let socket = start_server(8);
        let positions = positions();
        let input = [EvalInput {
            planes: &positions[0].0,
            moves: &positions[0].1,
        }];
        let mut good = EvalClient::connect(&socket).unwrap();
        assert_eq!(good.evaluate(&input).unwrap().len(), 1);

        let mut bad = UnixStream::connect(&socket).unwrap();
        bad.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // The server closes it: end of stream (or a reset, as bytes were left unread).
        let mut rest = Vec::new();
        match io::Read::read_to_end(&mut bad, &mut rest) {
            Ok(n) => assert_eq!(n, 0),
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::ConnectionReset),
        }

        assert_eq!(good.evaluate(&input).unwrap().len(), 1);
        let mut fresh = EvalClient::connect(&socket).unwrap();
        assert_eq!(fresh.evaluate(&input).unwrap().len(), 1);
    }

    #[test]
    fn cached_and_fresh_answers_merge_in_order() {
        let socket = start_server(64);
        let positions = positions();
        let inputs: Vec<EvalInput<'_>> =
            positions.iter().map(|(planes, moves)| EvalInput { planes, moves }).collect();
        let cache = Arc::new(EvalCache::create(1).unwrap());
        let mut plain = EvalClient::connect(&socket).unwrap();
        let mut cached = EvalClient::connect(&socket).unwrap().with_cache(Arc::clone(&cache));
        let expected = plain.evaluate(&inputs).unwrap();
        // Position 1 only, then all: the second batch mixes a hit with misses.
        cached.evaluate(&inputs[1..2]).unwrap();
        let mixed = cached.evaluate(&inputs).unwrap();
        assert_eq!(cache.stats(), CacheStats { lookups: 4, hits: 1 });
        for (got, want) in mixed.iter().zip(&expected) {
            assert_eq!(got.wdl, want.wdl);
            assert_eq!(got.priors.len(), want.priors.len());
            for (p, q) in got.priors.iter().zip(&want.priors) {
                assert!((p - q).abs() <= q * 2.5e-4 + 1e-9);
            }
        }
    }
}
