//! A thin KServe v2 gRPC client for Triton (tonic + prost): readiness checks and batched
//! inference with raw binary tensors, several requests in flight, spread over servers.
//!
//! The client owns a small single-threaded tokio runtime and blocks on it, so the evaluator's
//! serving loop stays synchronous. Every call has a deadline, so a stalled server surfaces as
//! an error, never as a hang (the evaluator then exits and the engine starts a new one, which
//! connects afresh).

use std::time::Duration;

use thiserror::Error;
use tokio::runtime::Runtime;
use tonic::transport::{Channel, Endpoint};

use super::export::{MASKS, OUTPUT, OUTPUT_SIZE, RULE50};
use crate::encode::{INPUT_PLANES, InputPlanes};

/// The protocol's messages and client stub, generated from `proto/kserve_v2.proto`.
#[allow(clippy::all, missing_docs)]
mod proto {
    tonic::include_proto!("inference");
}

use proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use proto::{ModelInferRequest, ModelReadyRequest, ServerLiveRequest};

/// Largest message the client accepts: a batch of 1024 positions' outputs is 7.6 MB.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Positions per request at least, when a batch is split to keep several requests in flight.
const MIN_REQUEST: usize = 16;
/// Positions per request at most: the smallest `max_batch_size` a model written by
/// `export-triton` accepts (Triton's dynamic batcher merges requests again).
pub const MAX_REQUEST: usize = 64;
/// Requests in flight per server for one batch.
const REQUESTS_PER_SERVER: usize = 2;
/// Deadline of the liveness and readiness checks, run on every server at once: a new
/// evaluator must not hold up a move for long when a server is gone.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Why talking to Triton failed.
#[derive(Debug, Error)]
pub enum TritonError {
    #[error("{0:?} is not a Triton address (host:port, the gRPC port)")]
    BadAddress(String),
    #[error("no Triton model named (TritonModel)")]
    NoModel,
    #[error("Triton at {url}: {message}")]
    Server { url: String, message: String },
    #[error("Triton at {url} is not live")]
    NotLive { url: String },
    #[error("Triton at {url}: model {model:?} is not ready")]
    ModelNotReady { url: String, model: String },
    #[error("Triton at {url}: {message}")]
    BadAnswer { url: String, message: String },
    #[error("starting the Triton client: {0}")]
    Runtime(std::io::Error),
}

/// Where the network is served, as the user wrote it: `TritonUrl` (gRPC addresses
/// `host:port`, separated by commas) and `TritonModel`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TritonTarget {
    pub urls: String,
    pub model: String,
}

impl TritonTarget {
    /// The addresses, checked.
    pub fn addresses(&self) -> Result<Vec<String>, TritonError> {
        let urls: Vec<String> = self
            .urls
            .split(',')
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(str::to_string)
            .collect();
        if urls.is_empty() {
            return Err(TritonError::BadAddress(self.urls.clone()));
        }
        for url in &urls {
            let valid = url.rsplit_once(':').is_some_and(|(host, port)| {
                !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
            });
            if !valid || url.contains('/') {
                return Err(TritonError::BadAddress(url.clone()));
            }
        }
        Ok(urls)
    }
}

/// One server's channel.
struct Server {
    url: String,
    client: GrpcInferenceServiceClient<Channel>,
}

/// A connected client: every server answered live and has the model ready.
pub struct TritonClient {
    runtime: Runtime,
    servers: Vec<Server>,
    model: String,
    timeout: Duration,
    /// The server the next request goes to first (round robin).
    next: usize,
}

impl TritonClient {
    /// Connects to every server of `target` and checks that it is live and its model ready
    /// (within a second); every inference call has `timeout` as its deadline.
    pub fn connect(target: &TritonTarget, timeout: Duration) -> Result<TritonClient, TritonError> {
        if target.model.trim().is_empty() {
            return Err(TritonError::NoModel);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(TritonError::Runtime)?;
        let addresses = target.addresses()?;
        let mut servers = Vec::with_capacity(addresses.len());
        for url in addresses {
            let endpoint = Endpoint::from_shared(format!("http://{url}"))
                .map_err(|_| TritonError::BadAddress(url.clone()))?
                .connect_timeout(CHECK_TIMEOUT.min(timeout))
                .timeout(timeout)
                .tcp_nodelay(true);
            // Lazy: connecting is part of the first call, under its deadline.
            let _guard = runtime.enter();
            let client = GrpcInferenceServiceClient::new(endpoint.connect_lazy())
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE);
            servers.push(Server { url, client });
        }
        let client = TritonClient {
            runtime,
            servers,
            model: target.model.trim().to_string(),
            timeout,
            next: 0,
        };
        client.check()?;
        Ok(client)
    }

    /// Checks that every server is live and has the model ready, all at once, within a
    /// second.
    pub fn check(&self) -> Result<(), TritonError> {
        let checks: Vec<_> = self
            .servers
            .iter()
            .map(|server| {
                check_server(
                    server.client.clone(),
                    server.url.clone(),
                    self.model.clone(),
                )
            })
            .collect();
        self.runtime.block_on(async {
            let handles: Vec<_> = checks.into_iter().map(tokio::spawn).collect();
            gather(handles, CHECK_TIMEOUT).await.map(|_| ())
        })
    }

    /// The servers' addresses.
    pub fn urls(&self) -> impl Iterator<Item = &str> {
        self.servers.iter().map(|s| s.url.as_str())
    }

    /// Evaluates `batch`: the model's output rows (policy logits then W/D/L, [`OUTPUT_SIZE`]
    /// floats per position), in order. A large batch goes out as several requests at once,
    /// spread over the servers.
    pub fn infer(&mut self, batch: &[InputPlanes]) -> Result<Vec<f32>, TritonError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let parts = (self.servers.len() * REQUESTS_PER_SERVER)
            .min(batch.len() / MIN_REQUEST)
            .max(batch.len().div_ceil(MAX_REQUEST))
            .max(1);
        let size = batch.len().div_ceil(parts);
        let first = self.next;
        self.next = (self.next + 1) % self.servers.len();
        let calls: Vec<_> = batch
            .chunks(size)
            .enumerate()
            .map(|(i, chunk)| {
                let server = &self.servers[(first + i) % self.servers.len()];
                let mut client = server.client.clone();
                let url = server.url.clone();
                let request = infer_request(&self.model, chunk);
                let rows = chunk.len();
                async move {
                    let answer = client.model_infer(request).await.map_err(|status| {
                        TritonError::Server {
                            url: url.clone(),
                            message: status_text(&status),
                        }
                    })?;
                    output_rows(answer.into_inner(), rows)
                        .map_err(|message| TritonError::BadAnswer { url, message })
                }
            })
            .collect();
        let timeout = self.timeout;
        self.runtime.block_on(async move {
            let handles: Vec<_> = calls.into_iter().map(tokio::spawn).collect();
            let rows = gather(handles, timeout).await?;
            Ok(rows.concat())
        })
    }
}

/// Whether `client`'s server is live with `model` ready.
async fn check_server(
    mut client: GrpcInferenceServiceClient<Channel>,
    url: String,
    model: String,
) -> Result<(), TritonError> {
    let error = |status: tonic::Status| TritonError::Server {
        url: url.clone(),
        message: status_text(&status),
    };
    let live = client
        .server_live(ServerLiveRequest {})
        .await
        .map_err(error)?;
    if !live.get_ref().live {
        return Err(TritonError::NotLive { url });
    }
    let ready = client
        .model_ready(ModelReadyRequest {
            name: model.clone(),
            version: String::new(),
        })
        .await
        .map_err(error)?;
    if !ready.get_ref().ready {
        return Err(TritonError::ModelNotReady { url, model });
    }
    Ok(())
}

/// The results of `handles` in order, all within one `deadline`; on the first failure the
/// rest are aborted.
async fn gather<T>(
    handles: Vec<tokio::task::JoinHandle<Result<T, TritonError>>>,
    deadline: Duration,
) -> Result<Vec<T>, TritonError> {
    let aborts: Vec<_> = handles.iter().map(|h| h.abort_handle()).collect();
    let all = async {
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            let result = handle.await.map_err(|e| TritonError::Server {
                url: "(client)".into(),
                message: format!("request task failed: {e}"),
            })?;
            out.push(result?);
        }
        Ok(out)
    };
    let result = tokio::time::timeout(deadline, all)
        .await
        .unwrap_or_else(|_| {
            Err(TritonError::Server {
                url: "(client)".into(),
                message: format!("no answer within {deadline:?}"),
            })
        });
    if result.is_err() {
        aborts.iter().for_each(tokio::task::AbortHandle::abort);
    }
    result
}

/// The request for `chunk` to `model`: masks `[B, 112]` INT64 and rule50 `[B, 1]` FP32 as raw
/// little-endian bytes.
fn infer_request(model: &str, chunk: &[InputPlanes]) -> ModelInferRequest {
    let rows = chunk.len() as i64;
    let mut masks = Vec::with_capacity(chunk.len() * INPUT_PLANES * 8);
    let mut rule50 = Vec::with_capacity(chunk.len() * 4);
    for planes in chunk {
        for mask in planes.masks {
            masks.extend_from_slice(&mask.to_le_bytes());
        }
        rule50.extend_from_slice(&f32::from(planes.rule50).to_le_bytes());
    }
    ModelInferRequest {
        model_name: model.to_string(),
        inputs: vec![
            InferInputTensor {
                name: MASKS.into(),
                datatype: "INT64".into(),
                shape: vec![rows, INPUT_PLANES as i64],
            },
            InferInputTensor {
                name: RULE50.into(),
                datatype: "FP32".into(),
                shape: vec![rows, 1],
            },
        ],
        outputs: vec![InferRequestedOutputTensor {
            name: OUTPUT.into(),
        }],
        raw_input_contents: vec![masks, rule50],
        ..Default::default()
    }
}

/// The `rows` × [`OUTPUT_SIZE`] floats of an answer, checked against what was asked.
fn output_rows(answer: proto::ModelInferResponse, rows: usize) -> Result<Vec<f32>, String> {
    let index = answer
        .outputs
        .iter()
        .position(|o| o.name == OUTPUT)
        .ok_or_else(|| format!("the answer has no {OUTPUT}"))?;
    let output = &answer.outputs[index];
    if output.datatype != "FP32" || output.shape != [rows as i64, OUTPUT_SIZE as i64] {
        return Err(format!(
            "{OUTPUT} is {} {:?}, expected FP32 [{rows}, {OUTPUT_SIZE}]",
            output.datatype, output.shape
        ));
    }
    let raw = answer
        .raw_output_contents
        .get(index)
        .ok_or("the answer has no raw output contents")?;
    if raw.len() != rows * OUTPUT_SIZE * 4 {
        return Err(format!(
            "{} bytes of output for {rows} positions",
            raw.len()
        ));
    }
    Ok(raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// A status as one line: its code and message.
fn status_text(status: &tonic::Status) -> String {
    let message = status.message().replace('\n', " ");
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {message}", status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_read_and_checked() {
        let target = |urls: &str| TritonTarget {
            urls: urls.into(),
            model: "banyan".into(),
        };
        assert_eq!(
            target(" a:8001, 10.0.0.2:9000 ,").addresses().unwrap(),
            ["a:8001", "10.0.0.2:9000"]
        );
        for bad in [
            "",
            " , ",
            "host",
            "host:0",
            "host:port",
            ":8001",
            "http://a:8001",
            "a:70000",
        ] {
            assert!(target(bad).addresses().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn requests_carry_raw_little_endian_tensors() {
        let mut planes = crate::encode::PositionHistory::new(cozy_chess::Board::default()).planes();
        planes.rule50 = 7;
        let request = infer_request("net", &[planes, planes]);
        assert_eq!(request.model_name, "net");
        assert_eq!(request.inputs[0].shape, [2, 112]);
        assert_eq!(request.inputs[1].shape, [2, 1]);
        let (masks, rule50) = (
            &request.raw_input_contents[0],
            &request.raw_input_contents[1],
        );
        assert_eq!(masks.len(), 2 * 112 * 8);
        assert_eq!(masks[..8], planes.masks[0].to_le_bytes());
        assert_eq!(rule50[4..], 7f32.to_le_bytes());
    }

    #[test]
    fn an_unreachable_server_is_a_clear_error() {
        let target = TritonTarget {
            urls: "127.0.0.1:1".into(),
            model: "net".into(),
        };
        // Nothing listens on port 1: connecting fails with a clear error, not a hang.
        let error = TritonClient::connect(&target, Duration::from_secs(2))
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("127.0.0.1:1"), "{error}");
    }
}
