//! The evaluator's wire protocol: compact little-endian binary messages over a Unix-domain
//! stream socket.
//!
//! Every message is a 16-byte header followed by `len` body bytes:
//!
//! | field   | type | meaning                                             |
//! |---------|------|-----------------------------------------------------|
//! | magic   | u32  | [`MAGIC`] (`"BNYN"`)                                |
//! | version | u16  | [`VERSION`]                                         |
//! | kind    | u16  | [`Kind::Request`] or [`Kind::Response`]             |
//! | count   | u32  | positions in the message, 1..=[`MAX_POSITIONS`]     |
//! | len     | u32  | body length in bytes (bounded by `count`)           |
//!
//! A request body holds `count` positions, each:
//! `present: u128` (bit i set = plane i is not all zero), `rule50: u8`, `n_moves: u16`
//! (at most [`MAX_MOVES`]), the non-zero plane masks as `u64` in plane order, then the
//! `n_moves` policy indices as `u16` (each below [`crate::policy::POLICY_SIZE`]).
//!
//! A response body holds `count` answers in request order, each: W, D, L as `f32`,
//! `n_moves: u16` (equal to the request's), then one prior per listed move as `f32`.
//!
//! Anything else (bad magic, version or kind, absurd counts, truncated or trailing bytes) is a
//! [`ProtocolError`]; the evaluator closes that connection.

use std::io::{self, Read};

use thiserror::Error;

use crate::backend::EvalInput;
use crate::encode::{INPUT_PLANES, InputPlanes};

/// First header word of every message: the bytes `BNYN`.
pub const MAGIC: u32 = u32::from_le_bytes(*b"BNYN");
/// Protocol version; bumped on any layout change.
pub const VERSION: u16 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 16;
/// Most positions one message may carry.
pub const MAX_POSITIONS: u32 = 4096;
/// Most legal moves a chess position can have; a larger `n_moves` is malformed.
pub const MAX_MOVES: usize = 218;
/// Policy indices must be below this (the 1858-move map).
const POLICY_SIZE: u16 = crate::policy::POLICY_SIZE as u16;

/// Largest encoded request position: bitmap, rule50, n_moves, all masks, all moves.
const MAX_REQUEST_POSITION: usize = 16 + 1 + 2 + INPUT_PLANES * 8 + MAX_MOVES * 2;
/// Largest encoded response answer: W, D, L, n_moves, all priors.
const MAX_RESPONSE_POSITION: usize = 12 + 2 + MAX_MOVES * 4;

/// The evaluator's answer for one position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Eval {
    /// Win, draw, loss probabilities from the side to move's view.
    pub wdl: [f32; 3],
    /// One prior per move of the request, in the request's order (sums to 1).
    pub priors: Vec<f32>,
}

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Kind {
    /// Positions to evaluate (client → evaluator).
    Request = 1,
    /// Their evaluations (evaluator → client).
    Response = 2,
}

/// A decoded, validated message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    /// Number of positions in the body.
    pub count: u32,
    /// Body length in bytes.
    pub len: u32,
}

/// Why a message was rejected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProtocolError {
    #[error("bad magic {0:#010x}")]
    BadMagic(u32),
    #[error("unsupported protocol version {0} (expected {VERSION})")]
    BadVersion(u16),
    #[error("unknown message kind {0}")]
    BadKind(u16),
    #[error("unexpected message kind {0:?}")]
    UnexpectedKind(Kind),
    #[error("position count {0} outside 1..={MAX_POSITIONS}")]
    BadCount(u32),
    #[error("body length {len} too large for {count} positions")]
    BodyTooLong { count: u32, len: u32 },
    #[error("message body truncated")]
    Truncated,
    #[error("{0} trailing bytes after the last position")]
    TrailingBytes(usize),
    #[error("{0} moves in one position (at most {MAX_MOVES})")]
    TooManyMoves(usize),
    #[error("plane bitmap names planes beyond {INPUT_PLANES}")]
    BadPlaneBits,
    #[error("policy index {0} out of range")]
    BadMoveIndex(u16),
}

impl Header {
    /// Writes this header to `buf`.
    pub fn encode(&self, buf: &mut Vec<u8>) {
        buf.extend_from_slice(&MAGIC.to_le_bytes());
        buf.extend_from_slice(&VERSION.to_le_bytes());
        buf.extend_from_slice(&(self.kind as u16).to_le_bytes());
        buf.extend_from_slice(&self.count.to_le_bytes());
        buf.extend_from_slice(&self.len.to_le_bytes());
    }

    /// Parses and validates a header (magic, version, kind, count, body length bound).
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Header, ProtocolError> {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let u16_at = |i: usize| u16::from_le_bytes(bytes[i..i + 2].try_into().unwrap());
        let magic = u32_at(0);
        if magic != MAGIC {
            return Err(ProtocolError::BadMagic(magic));
        }
        let version = u16_at(4);
        if version != VERSION {
            return Err(ProtocolError::BadVersion(version));
        }
        let kind = match u16_at(6) {
            1 => Kind::Request,
            2 => Kind::Response,
            other => return Err(ProtocolError::BadKind(other)),
        };
        let count = u32_at(8);
        if count == 0 || count > MAX_POSITIONS {
            return Err(ProtocolError::BadCount(count));
        }
        let len = u32_at(12);
        let per_position = match kind {
            Kind::Request => MAX_REQUEST_POSITION,
            Kind::Response => MAX_RESPONSE_POSITION,
        };
        if len as usize > count as usize * per_position {
            return Err(ProtocolError::BodyTooLong { count, len });
        }
        Ok(Header { kind, count, len })
    }
}

/// Reads one whole message (header and body) of the `expected` kind from `reader`; the body
/// lands in `body`. Returns `Ok(None)` on a clean end of stream before a header.
pub fn read_message(
    reader: &mut impl Read,
    expected: Kind,
    body: &mut Vec<u8>,
) -> Result<Option<Header>, ReadError> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        match reader.read(&mut header[filled..]) {
            Ok(0) if filled == 0 => return Ok(None),
            Ok(0) => return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
    let header = Header::decode(&header)?;
    if header.kind != expected {
        return Err(ProtocolError::UnexpectedKind(header.kind).into());
    }
    body.resize(header.len as usize, 0);
    reader.read_exact(body)?;
    Ok(Some(header))
}

/// A failure reading a message: the stream broke, or the bytes were malformed.
#[derive(Debug, Error)]
pub enum ReadError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("malformed message: {0}")]
    Protocol(#[from] ProtocolError),
}

/// Encodes a whole request message (header and body) for `batch` into `buf` (cleared first).
///
/// # Panics
/// If `batch` is empty or longer than [`MAX_POSITIONS`], or a position lists more than
/// [`MAX_MOVES`] moves: callers split their batches.
pub fn encode_request(batch: &[EvalInput<'_>], buf: &mut Vec<u8>) {
    assert!(!batch.is_empty() && batch.len() <= MAX_POSITIONS as usize);
    buf.clear();
    buf.resize(HEADER_LEN, 0);
    for input in batch {
        assert!(
            input.moves.len() <= MAX_MOVES,
            "too many moves in one position"
        );
        let present = input
            .planes
            .masks
            .iter()
            .enumerate()
            .filter(|(_, m)| **m != 0)
            .fold(0u128, |bits, (i, _)| bits | 1 << i);
        buf.extend_from_slice(&present.to_le_bytes());
        buf.push(input.planes.rule50);
        buf.extend_from_slice(&(input.moves.len() as u16).to_le_bytes());
        for &mask in input.planes.masks.iter().filter(|m| **m != 0) {
            buf.extend_from_slice(&mask.to_le_bytes());
        }
        for &mv in input.moves {
            buf.extend_from_slice(&mv.to_le_bytes());
        }
    }
    write_header(buf, Kind::Request, batch.len());
}

/// The positions of one decoded request, stored flat so buffers can be reused.
#[derive(Clone, Debug, Default)]
pub struct RequestBatch {
    planes: Vec<InputPlanes>,
    moves: Vec<u16>,
    /// `moves[ends[i - 1]..ends[i]]` are position i's moves.
    ends: Vec<usize>,
}

impl RequestBatch {
    /// Number of positions.
    pub fn len(&self) -> usize {
        self.planes.len()
    }

    /// Whether there is no position.
    pub fn is_empty(&self) -> bool {
        self.planes.is_empty()
    }

    /// Position `i` as a backend input.
    pub fn get(&self, i: usize) -> EvalInput<'_> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        EvalInput {
            planes: &self.planes[i],
            moves: &self.moves[start..self.ends[i]],
        }
    }

    /// Decodes a request body of `count` positions, replacing the current contents.
    pub fn decode(&mut self, count: u32, body: &[u8]) -> Result<(), ProtocolError> {
        self.planes.clear();
        self.moves.clear();
        self.ends.clear();
        let mut r = Cursor(body);
        for _ in 0..count {
            let present = u128::from_le_bytes(r.take()?);
            let rule50 = r.take::<1>()?[0];
            let n_moves = u16::from_le_bytes(r.take()?) as usize;
            if n_moves > MAX_MOVES {
                return Err(ProtocolError::TooManyMoves(n_moves));
            }
            if present >> INPUT_PLANES != 0 {
                return Err(ProtocolError::BadPlaneBits);
            }
            let mut planes = InputPlanes {
                masks: [0; INPUT_PLANES],
                rule50,
            };
            for (i, mask) in planes.masks.iter_mut().enumerate() {
                if present >> i & 1 != 0 {
                    *mask = u64::from_le_bytes(r.take()?);
                }
            }
            for _ in 0..n_moves {
                let mv = u16::from_le_bytes(r.take()?);
                if mv >= POLICY_SIZE {
                    return Err(ProtocolError::BadMoveIndex(mv));
                }
                self.moves.push(mv);
            }
            self.planes.push(planes);
            self.ends.push(self.moves.len());
        }
        r.finish()
    }
}

/// Starts a response message in `buf` (cleared first); add answers with [`push_answer`], then
/// call [`finish_response`].
pub fn begin_response(buf: &mut Vec<u8>) {
    buf.clear();
    buf.resize(HEADER_LEN, 0);
}

/// Appends one answer to a response started with [`begin_response`].
pub fn push_answer(buf: &mut Vec<u8>, wdl: [f32; 3], priors: &[f32]) {
    for x in wdl {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.extend_from_slice(&(priors.len() as u16).to_le_bytes());
    for p in priors {
        buf.extend_from_slice(&p.to_le_bytes());
    }
}

/// Writes the header of a response holding `count` answers.
pub fn finish_response(buf: &mut [u8], count: usize) {
    write_header(buf, Kind::Response, count);
}

/// Decodes a response body of `count` answers, appending them to `out`.
pub fn decode_response(count: u32, body: &[u8], out: &mut Vec<Eval>) -> Result<(), ProtocolError> {
    let mut r = Cursor(body);
    for _ in 0..count {
        let mut wdl = [0f32; 3];
        for x in &mut wdl {
            *x = f32::from_le_bytes(r.take()?);
        }
        let n = u16::from_le_bytes(r.take()?) as usize;
        if n > MAX_MOVES {
            return Err(ProtocolError::TooManyMoves(n));
        }
        let mut priors = Vec::with_capacity(n);
        for _ in 0..n {
            priors.push(f32::from_le_bytes(r.take()?));
        }
        out.push(Eval { wdl, priors });
    }
    r.finish()
}

/// Fills the header slot at the front of `buf` for a body of the rest of `buf`.
fn write_header(buf: &mut [u8], kind: Kind, count: usize) {
    let mut header = Vec::with_capacity(HEADER_LEN);
    Header {
        kind,
        count: count as u32,
        len: (buf.len() - HEADER_LEN) as u32,
    }
    .encode(&mut header);
    buf[..HEADER_LEN].copy_from_slice(&header);
}

/// A bounds-checked reader over a message body.
struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or(ProtocolError::Truncated)?;
        self.0 = rest;
        Ok(*head)
    }

    fn finish(self) -> Result<(), ProtocolError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(ProtocolError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planes(seed: u64) -> InputPlanes {
        let mut p = InputPlanes {
            masks: [0; INPUT_PLANES],
            rule50: seed as u8,
        };
        // Some planes zero, some full, some sparse: exercises the bitmap.
        for (i, m) in p.masks.iter_mut().enumerate() {
            *m = match (i as u64 + seed) % 3 {
                0 => 0,
                1 => u64::MAX,
                _ => seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (i % 17),
            };
        }
        p
    }

    fn request(batch: &[(InputPlanes, Vec<u16>)]) -> Vec<u8> {
        let inputs: Vec<EvalInput<'_>> = batch
            .iter()
            .map(|(planes, moves)| EvalInput { planes, moves })
            .collect();
        let mut buf = Vec::new();
        encode_request(&inputs, &mut buf);
        buf
    }

    fn split(buf: &[u8]) -> Result<(Header, &[u8]), ProtocolError> {
        let header = Header::decode(buf[..HEADER_LEN].try_into().unwrap())?;
        Ok((header, &buf[HEADER_LEN..]))
    }

    fn sample() -> Vec<(InputPlanes, Vec<u16>)> {
        vec![
            (planes(1), vec![0, 322, 1857]),
            (planes(2), vec![]),
            (planes(3), (0..218).collect()),
        ]
    }

    #[test]
    fn request_round_trips() {
        let batch = sample();
        let buf = request(&batch);
        let (header, body) = split(&buf).unwrap();
        assert_eq!(header.kind, Kind::Request);
        assert_eq!(header.count, 3);
        assert_eq!(header.len as usize, body.len());
        let mut decoded = RequestBatch::default();
        decoded.decode(header.count, body).unwrap();
        assert_eq!(decoded.len(), 3);
        for (i, (planes, moves)) in batch.iter().enumerate() {
            assert_eq!(decoded.get(i).planes, planes);
            assert_eq!(decoded.get(i).moves, &moves[..]);
        }
    }

    #[test]
    fn zero_planes_are_not_sent() {
        let empty = InputPlanes {
            masks: [0; INPUT_PLANES],
            rule50: 0,
        };
        let buf = request(&[(empty, vec![1])]);
        assert_eq!(buf.len(), HEADER_LEN + 16 + 1 + 2 + 2);
    }

    #[test]
    fn response_round_trips() {
        let mut buf = Vec::new();
        begin_response(&mut buf);
        push_answer(&mut buf, [0.5, 0.25, 0.25], &[0.125, 0.875]);
        push_answer(&mut buf, [1.0, 0.0, 0.0], &[]);
        finish_response(&mut buf, 2);
        let (header, body) = split(&buf).unwrap();
        assert_eq!(header.kind, Kind::Response);
        let mut out = Vec::new();
        decode_response(header.count, body, &mut out).unwrap();
        assert_eq!(
            out,
            vec![
                Eval {
                    wdl: [0.5, 0.25, 0.25],
                    priors: vec![0.125, 0.875]
                },
                Eval {
                    wdl: [1.0, 0.0, 0.0],
                    priors: vec![]
                },
            ]
        );
    }

    #[test]
    fn bad_headers_are_rejected() {
        let good = request(&sample());
        let patch = |at: usize, bytes: &[u8]| {
            let mut buf = good.clone();
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            split(&buf).map(|_| ())
        };
        assert_eq!(
            patch(0, b"XXXX"),
            Err(ProtocolError::BadMagic(u32::from_le_bytes(*b"XXXX")))
        );
        assert_eq!(
            patch(4, &7u16.to_le_bytes()),
            Err(ProtocolError::BadVersion(7))
        );
        assert_eq!(
            patch(6, &9u16.to_le_bytes()),
            Err(ProtocolError::BadKind(9))
        );
        assert_eq!(
            patch(8, &0u32.to_le_bytes()),
            Err(ProtocolError::BadCount(0))
        );
        assert_eq!(
            patch(8, &(MAX_POSITIONS + 1).to_le_bytes()),
            Err(ProtocolError::BadCount(MAX_POSITIONS + 1))
        );
        assert_eq!(
            patch(12, &u32::MAX.to_le_bytes()),
            Err(ProtocolError::BodyTooLong {
                count: 3,
                len: u32::MAX
            })
        );
    }

    #[test]
    fn bad_bodies_are_rejected() {
        let buf = request(&sample());
        let (header, body) = split(&buf).unwrap();
        let mut batch = RequestBatch::default();
        assert_eq!(
            batch.decode(header.count, &body[..body.len() - 1]),
            Err(ProtocolError::Truncated)
        );
        let mut longer = body.to_vec();
        longer.push(0);
        assert_eq!(
            batch.decode(header.count, &longer),
            Err(ProtocolError::TrailingBytes(1))
        );
        assert_eq!(
            batch.decode(header.count + 1, body),
            Err(ProtocolError::Truncated)
        );

        // Position 0 starts at body[0]: bitmap (16), rule50 (1), n_moves (2).
        let mut bad = body.to_vec();
        bad[15] = 0x80; // Plane 127.
        assert_eq!(
            batch.decode(header.count, &bad),
            Err(ProtocolError::BadPlaneBits)
        );
        let mut bad = body.to_vec();
        bad[17..19].copy_from_slice(&219u16.to_le_bytes());
        assert_eq!(
            batch.decode(header.count, &bad),
            Err(ProtocolError::TooManyMoves(219))
        );
        // encode_request does not check indices; the evaluator must.
        let bad = request(&[(planes(0), vec![POLICY_SIZE])]);
        let (header, body) = split(&bad).unwrap();
        assert_eq!(
            batch.decode(header.count, body),
            Err(ProtocolError::BadMoveIndex(POLICY_SIZE))
        );
    }

    #[test]
    fn read_message_checks_kind_and_ends_cleanly() {
        let buf = request(&sample());
        let mut body = Vec::new();
        let header = read_message(&mut &buf[..], Kind::Request, &mut body)
            .unwrap()
            .unwrap();
        assert_eq!(header.len as usize, body.len());
        assert!(matches!(
            read_message(&mut &buf[..], Kind::Response, &mut body),
            Err(ReadError::Protocol(ProtocolError::UnexpectedKind(
                Kind::Request
            )))
        ));
        assert!(matches!(
            read_message(&mut &[][..], Kind::Request, &mut body),
            Ok(None)
        ));
        assert!(matches!(
            read_message(&mut &buf[..5], Kind::Request, &mut body),
            Err(ReadError::Io(_))
        ));
        assert!(matches!(
            read_message(&mut &buf[..HEADER_LEN + 3], Kind::Request, &mut body),
            Err(ReadError::Io(_))
        ));
    }
}
