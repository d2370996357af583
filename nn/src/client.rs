//! A worker's connection to the evaluator process.
//!
//! [`EvalClient::send`] and [`EvalClient::recv`] are split so that a worker can keep a second
//! minibatch in flight while the first is evaluated; answers come back in send order. With a
//! shared [`EvalCache`], positions found there are answered without the socket, and answers
//! that came over it are stored for every other worker.
//!
//! A dead evaluator makes every call return an error (end of stream or broken pipe), never
//! hang; an optional timeout also bounds a stuck one.

use std::collections::VecDeque;
use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::backend::EvalInput;
use crate::cache::{EvalCache, cache_key};
use crate::policy::POLICY_SIZE;
use crate::protocol::{self, Eval, Kind, MAX_MOVES, MAX_POSITIONS, ProtocolError, ReadError};

/// Why an evaluation failed. After any error but [`ClientError::BadBatch`] and
/// [`ClientError::OutOfOrder`] the client is unusable.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("evaluator connection: {0}")]
    Io(#[from] io::Error),
    #[error("evaluator closed the connection")]
    Closed,
    #[error("malformed answer from the evaluator: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("invalid batch: {0}")]
    BadBatch(&'static str),
    #[error("tickets must be received in the order they were sent")]
    OutOfOrder,
    #[error("connection unusable after an earlier error")]
    Broken,
}

/// Names one sent batch; pass it to [`EvalClient::recv`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Ticket(u64);

/// One batch sent and not yet received.
struct Pending {
    ticket: Ticket,
    /// One per position: the cached answer, or `None` if it went to the evaluator.
    answers: Vec<Option<Eval>>,
    /// Cache keys of the positions that went to the evaluator, in order.
    miss_keys: Vec<u64>,
    /// Move counts of those positions, to check the answer.
    miss_moves: Vec<usize>,
}

/// A connection to the evaluator.
pub struct EvalClient {
    stream: UnixStream,
    cache: Option<Arc<EvalCache>>,
    pending: VecDeque<Pending>,
    next_ticket: u64,
    broken: bool,
    buf: Vec<u8>,
}

impl EvalClient {
    /// Connects to the evaluator listening at `socket`.
    pub fn connect(socket: &Path) -> Result<EvalClient, ClientError> {
        Ok(EvalClient {
            stream: UnixStream::connect(socket)?,
            cache: None,
            pending: VecDeque::new(),
            next_ticket: 0,
            broken: false,
            buf: Vec::new(),
        })
    }

    /// Consults and fills `cache` from now on.
    pub fn with_cache(mut self, cache: Arc<EvalCache>) -> EvalClient {
        self.cache = Some(cache);
        self
    }

    /// Bounds every socket read and write (`None`: wait as long as the evaluator lives).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        self.stream.set_read_timeout(timeout)?;
        self.stream.set_write_timeout(timeout)?;
        Ok(())
    }

    /// Evaluates `batch` and waits for the answers (one per position, in order).
    pub fn evaluate(&mut self, batch: &[EvalInput<'_>]) -> Result<Vec<Eval>, ClientError> {
        let ticket = self.send(batch)?;
        self.recv(ticket)
    }

    /// Sends `batch` (at most [`MAX_POSITIONS`] positions of at most [`MAX_MOVES`] moves each)
    /// without waiting for the answer.
    pub fn send(&mut self, batch: &[EvalInput<'_>]) -> Result<Ticket, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        validate(batch)?;
        let mut answers = Vec::with_capacity(batch.len());
        let mut misses = Vec::new();
        let mut miss_keys = Vec::new();
        for input in batch {
            let cached = self.cache.as_ref().and_then(|cache| {
                let key = cache_key(input.planes, input.moves);
                let hit = cache.lookup(key, input.moves.len());
                if hit.is_none() {
                    miss_keys.push(key);
                }
                hit
            });
            if cached.is_none() {
                misses.push(*input);
            }
            answers.push(cached);
        }
        if !misses.is_empty() {
            protocol::encode_request(&misses, &mut self.buf);
            if let Err(e) = write_all(&self.stream, &self.buf) {
                self.broken = true;
                return Err(e.into());
            }
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.pending.push_back(Pending {
            ticket,
            answers,
            miss_keys,
            miss_moves: misses.iter().map(|m| m.moves.len()).collect(),
        });
        Ok(ticket)
    }

    /// Waits for the answers to `ticket`, which must be the oldest batch not yet received.
    pub fn recv(&mut self, ticket: Ticket) -> Result<Vec<Eval>, ClientError> {
        if self.broken {
            return Err(ClientError::Broken);
        }
        if self.pending.front().map(|p| p.ticket) != Some(ticket) {
            return Err(ClientError::OutOfOrder);
        }
        let pending = self.pending.pop_front().expect("checked above");
        let result = self.receive(pending);
        self.broken |= result.is_err();
        result
    }

    /// Number of batches sent and not yet received.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    fn receive(&mut self, pending: Pending) -> Result<Vec<Eval>, ClientError> {
        let Pending {
            mut answers,
            miss_keys,
            miss_moves,
            ..
        } = pending;
        if miss_moves.is_empty() {
            return Ok(answers.into_iter().map(Option::unwrap).collect());
        }
        let mut stream = &self.stream;
        let header = match protocol::read_message(&mut stream, Kind::Response, &mut self.buf) {
            Ok(Some(header)) => header,
            Ok(None) => return Err(ClientError::Closed),
            Err(ReadError::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => {
                return Err(ClientError::Closed);
            }
            Err(ReadError::Io(e)) => return Err(e.into()),
            Err(ReadError::Protocol(e)) => return Err(e.into()),
        };
        if header.count as usize != miss_moves.len() {
            return Err(ClientError::BadBatch(
                "answer count differs from the request",
            ));
        }
        let mut evals = Vec::with_capacity(miss_moves.len());
        protocol::decode_response(header.count, &self.buf, &mut evals)?;
        if evals
            .iter()
            .zip(&miss_moves)
            .any(|(e, &n)| e.priors.len() != n)
        {
            return Err(ClientError::BadBatch(
                "answer move count differs from the request",
            ));
        }
        if let Some(cache) = &self.cache {
            for (key, eval) in miss_keys.iter().zip(&evals) {
                cache.insert(*key, eval);
            }
        }
        let mut fresh = evals.into_iter();
        for slot in answers.iter_mut().filter(|a| a.is_none()) {
            *slot = fresh.next();
        }
        Ok(answers.into_iter().map(Option::unwrap).collect())
    }
}

/// Rejects what the protocol cannot carry, before anything is sent.
fn validate(batch: &[EvalInput<'_>]) -> Result<(), ClientError> {
    if batch.is_empty() || batch.len() > MAX_POSITIONS as usize {
        return Err(ClientError::BadBatch(
            "batch size outside 1..=MAX_POSITIONS",
        ));
    }
    for input in batch {
        if input.moves.len() > MAX_MOVES {
            return Err(ClientError::BadBatch("more than MAX_MOVES moves"));
        }
        if input.moves.iter().any(|&m| usize::from(m) >= POLICY_SIZE) {
            return Err(ClientError::BadBatch("policy index out of range"));
        }
    }
    Ok(())
}

/// Writes all of `buf`, without SIGPIPE on a closed peer (EPIPE comes back as an error).
fn write_all(stream: &UnixStream, mut buf: &[u8]) -> io::Result<()> {
    use nix::sys::socket::{MsgFlags, send};
    use std::os::fd::AsRawFd;
    // Elsewhere the Rust runtime's ignored SIGPIPE does the same.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let flags = MsgFlags::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let flags = MsgFlags::empty();
    while !buf.is_empty() {
        match send(stream.as_raw_fd(), buf, flags) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
