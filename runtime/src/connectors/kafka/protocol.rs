//! The few transaction-coordinator requests librdkafka does not offer, over Kafka's wire
//! protocol (messages encoded by the `kafka-protocol` crate): committing a transaction that
//! a producer of an earlier run pre-committed (`EndTxn` with its producer id and epoch, as
//! Flink's Kafka sink does on recovery) and listing the open transactions (`ListTransactions`)
//! so a restored sink can abort those its failed run left behind. Blocking, one request at a
//! time, plain TCP.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, DescribeTransactionsRequest,
    DescribeTransactionsResponse, EndTxnRequest, EndTxnResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, ListTransactionsRequest, ListTransactionsResponse, ProducerId,
    RequestHeader, ResponseHeader, TransactionalId,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, StrBytes};
use thiserror::Error;

/// How long connecting and each request may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request is retried while the coordinator is loading or busy.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Kafka error codes this module acts on.
mod code {
    pub const NONE: i16 = 0;
    pub const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    pub const NOT_COORDINATOR: i16 = 16;
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    pub const INVALID_TXN_STATE: i16 = 48;
    pub const CONCURRENT_TRANSACTIONS: i16 = 51;
    pub const PRODUCER_FENCED: i16 = 90;
}

/// A failed coordinator request.
#[derive(Debug, Error)]
pub enum ProtocolError {
    /// The broker could not be reached or the connection broke.
    #[error("talk to kafka broker {broker}")]
    Io {
        /// `host:port`.
        broker: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// A request or response did not encode or decode.
    #[error("kafka protocol: {0}")]
    Codec(String),
    /// The broker speaks no version of a request this client knows.
    #[error("kafka broker {broker} does not support {api} (api key {key})")]
    Unsupported {
        /// `host:port`.
        broker: String,
        /// The request's name.
        api: &'static str,
        /// Its api key.
        key: i16,
    },
    /// The transaction's producer epoch is no longer current: the broker aborted the
    /// transaction (its timeout passed) or a later producer took its id over.
    #[error("transaction `{transactional_id}` was fenced (error {code}): the broker aborted it, or a later producer took over its id")]
    Fenced {
        /// The transactional id.
        transactional_id: String,
        /// The Kafka error code.
        code: i16,
    },
    /// Another error code.
    #[error("kafka {api} failed with error code {code}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The request's name.
        api: &'static str,
        /// The Kafka error code.
        code: i16,
        /// The broker's message, if any.
        message: Option<String>,
    },
}

fn codec(e: impl std::fmt::Display) -> ProtocolError {
    ProtocolError::Codec(e.to_string())
}

/// A request this client sends: its api key and the response it gets (the `kafka-protocol`
/// crate's own `Request` trait needs its broker side too).
trait Request: Encodable + HeaderVersion + Message {
    /// The api key.
    const KEY: i16;
    /// The response.
    type Response: Decodable + HeaderVersion;
}

impl Request for ApiVersionsRequest {
    const KEY: i16 = 18;
    type Response = ApiVersionsResponse;
}

impl Request for FindCoordinatorRequest {
    const KEY: i16 = 10;
    type Response = FindCoordinatorResponse;
}

impl Request for EndTxnRequest {
    const KEY: i16 = 26;
    type Response = EndTxnResponse;
}

impl Request for DescribeTransactionsRequest {
    const KEY: i16 = 65;
    type Response = DescribeTransactionsResponse;
}

impl Request for ListTransactionsRequest {
    const KEY: i16 = 66;
    type Response = ListTransactionsResponse;
}

/// One connection to one broker, with the request versions both sides speak.
struct Connection {
    broker: String,
    stream: TcpStream,
    correlation: i32,
    /// Per api key, the versions the broker supports.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Connection {
    fn open(broker: &str) -> Result<Self, ProtocolError> {
        let io = |source| ProtocolError::Io {
            broker: broker.to_string(),
            source,
        };
        let addr = broker
            .to_socket_addrs()
            .map_err(io)?
            .next()
            .ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(io)?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(io)?;
        let _ = stream.set_nodelay(true);
        let mut c = Self {
            broker: broker.to_string(),
            stream,
            correlation: 0,
            versions: BTreeMap::new(),
        };
        // Version 0 is understood by every broker; its answer lists the rest.
        let response = c.call_version(&ApiVersionsRequest::default(), 0)?;
        if response.error_code != code::NONE {
            return Err(ProtocolError::Broker {
                api: "ApiVersions",
                code: response.error_code,
                message: None,
            });
        }
        c.versions = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Ok(c)
    }

    /// The highest version of `R` both sides speak.
    fn version<R: Request>(&self, api: &'static str) -> Result<i16, ProtocolError> {
        let unsupported = || ProtocolError::Unsupported {
            broker: self.broker.clone(),
            api,
            key: R::KEY,
        };
        let (min, max) = *self.versions.get(&R::KEY).ok_or_else(unsupported)?;
        let v = max.min(R::VERSIONS.max);
        if v < min || v < R::VERSIONS.min {
            return Err(unsupported());
        }
        Ok(v)
    }

    fn call<R: Request>(
        &mut self,
        request: &R,
        api: &'static str,
    ) -> Result<R::Response, ProtocolError> {
        let v = self.version::<R>(api)?;
        self.call_version(request, v)
    }

    fn call_version<R: Request>(
        &mut self,
        request: &R,
        version: i16,
    ) -> Result<R::Response, ProtocolError> {
        self.correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation)
            .with_client_id(Some(StrBytes::from_static_str("weir")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .map_err(codec)?;
        request.encode(&mut body, version).map_err(codec)?;
        let io = |source| ProtocolError::Io {
            broker: self.broker.clone(),
            source,
        };
        let mut frame = Vec::with_capacity(4 + body.len());
        frame.extend_from_slice(&(body.len() as i32).to_be_bytes());
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).map_err(io)?;
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).map_err(io)?;
        let mut response = vec![0u8; i32::from_be_bytes(len).max(0) as usize];
        self.stream.read_exact(&mut response).map_err(io)?;
        let mut buf = bytes::Bytes::from(response);
        let header = ResponseHeader::decode(&mut buf, R::Response::header_version(version))
            .map_err(codec)?;
        if header.correlation_id != self.correlation {
            return Err(codec(format!(
                "response {} to request {}",
                header.correlation_id, self.correlation
            )));
        }
        let out = R::Response::decode(&mut buf, version).map_err(codec)?;
        if buf.has_remaining() {
            tracing::trace!(bytes = buf.remaining(), "kafka response has trailing bytes");
        }
        Ok(out)
    }
}

/// Retries `f` while the coordinator is loading, moving or busy, for up to a minute.
fn retrying<T>(mut f: impl FnMut() -> Result<T, ProtocolError>) -> Result<T, ProtocolError> {
    let deadline = Instant::now() + RETRY_FOR;
    let mut pause = Duration::from_millis(50);
    loop {
        match f() {
            Err(ProtocolError::Broker { code: c, .. })
                if matches!(
                    c,
                    code::COORDINATOR_LOAD_IN_PROGRESS
                        | code::COORDINATOR_NOT_AVAILABLE
                        | code::NOT_COORDINATOR
                        | code::CONCURRENT_TRANSACTIONS
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(ProtocolError::Io { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            other => return other,
        }
    }
}

/// `host:port` of the transaction coordinator of `transactional_id`, asked of `bootstrap`.
fn find_coordinator(bootstrap: &str, transactional_id: &str) -> Result<String, ProtocolError> {
    let mut c = Connection::open(bootstrap)?;
    let v = c.version::<FindCoordinatorRequest>("FindCoordinator")?;
    let key = StrBytes::from_string(transactional_id.to_string());
    let mut request = FindCoordinatorRequest::default().with_key_type(1);
    if v >= 4 {
        request = request.with_coordinator_keys(vec![key]);
    } else {
        request = request.with_key(key);
    }
    let r = c.call_version(&request, v)?;
    let (error, message, host, port) = match r.coordinators.first() {
        Some(k) if v >= 4 => (
            k.error_code,
            k.error_message.as_ref().map(|m| m.as_str().to_string()),
            k.host.as_str().to_string(),
            k.port,
        ),
        _ => (
            r.error_code,
            r.error_message.as_ref().map(|m| m.as_str().to_string()),
            r.host.as_str().to_string(),
            r.port,
        ),
    };
    if error != code::NONE {
        return Err(ProtocolError::Broker {
            api: "FindCoordinator",
            code: error,
            message,
        });
    }
    Ok(format!("{host}:{port}"))
}

/// What became of a pre-committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovered {
    /// It was open and is committed now.
    Committed,
    /// Its producer had committed it before the failure.
    AlreadyCommitted,
}

/// The coordinator's view of a transactional id: state (`Ongoing`, `PrepareCommit`,
/// `CompleteCommit`, `CompleteAbort`, `Empty`, ...), producer id and epoch.
fn describe(
    coordinator: &mut Connection,
    transactional_id: &str,
) -> Result<(String, i64, i16), ProtocolError> {
    let request =
        DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(
            StrBytes::from_string(transactional_id.to_string()),
        )]);
    let r = coordinator.call(&request, "DescribeTransactions")?;
    let t = r
        .transaction_states
        .first()
        .ok_or_else(|| codec("DescribeTransactions answered no transaction"))?;
    if t.error_code != code::NONE {
        return Err(ProtocolError::Broker {
            api: "DescribeTransactions",
            code: t.error_code,
            message: None,
        });
    }
    Ok((
        t.transaction_state.as_str().to_string(),
        t.producer_id.0,
        t.producer_epoch,
    ))
}

/// Completes the transaction `transactional_id` that producer `producer_id` at `epoch`
/// pre-committed (flushed) in an earlier run: asks its coordinator for its state first; an
/// open one is committed (`EndTxn`, as Flink's Kafka sink does on recovery), one its
/// producer committed before the failure is left as it is.
///
/// # Errors
/// [`ProtocolError::Fenced`] when the transaction was aborted (its timeout passed while the
/// job was down) or another producer took over the id: its records are lost. Others when
/// the brokers cannot be reached for a minute.
pub fn commit_transaction(
    bootstraps: &[String],
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
) -> Result<Recovered, ProtocolError> {
    let fenced = |code| ProtocolError::Fenced {
        transactional_id: transactional_id.to_string(),
        code,
    };
    retrying(|| {
        let bootstrap = bootstraps.first().map(String::as_str).unwrap_or_default();
        let coordinator = find_coordinator(bootstrap, transactional_id)?;
        let mut c = Connection::open(&coordinator)?;
        let (state, current_producer, current_epoch) = describe(&mut c, transactional_id)?;
        if current_producer != producer_id || current_epoch < epoch {
            return Err(fenced(code::PRODUCER_FENCED));
        }
        match state.as_str() {
            "CompleteCommit" => return Ok(Recovered::AlreadyCommitted),
            // Committing: the markers are being written; ask again.
            "PrepareCommit" => {
                return Err(ProtocolError::Broker {
                    api: "DescribeTransactions",
                    code: code::CONCURRENT_TRANSACTIONS,
                    message: None,
                })
            }
            // Still the pre-committed transaction only at its own epoch.
            "Ongoing" if current_epoch == epoch => {}
            _ => return Err(fenced(code::INVALID_TXN_STATE)),
        }
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_string(
                transactional_id.to_string(),
            )))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(current_epoch)
            .with_committed(true);
        let r = c.call(&request, "EndTxn")?;
        match r.error_code {
            code::NONE => Ok(Recovered::Committed),
            code::INVALID_PRODUCER_EPOCH | code::PRODUCER_FENCED => Err(fenced(r.error_code)),
            c => Err(ProtocolError::Broker {
                api: "EndTxn",
                code: c,
                message: None,
            }),
        }
    })
}

/// The transactional ids of the transactions open (`Ongoing`) on any of `brokers`
/// (`host:port` each: every broker coordinates some transactions).
///
/// # Errors
/// When a broker cannot be reached for a minute or refuses.
pub fn open_transactions(brokers: &[String]) -> Result<Vec<String>, ProtocolError> {
    let mut out = Vec::new();
    for broker in brokers {
        let ids = retrying(|| {
            let mut c = Connection::open(broker)?;
            let request = ListTransactionsRequest::default()
                .with_state_filters(vec![StrBytes::from_static_str("Ongoing")])
                .with_duration_filter(-1);
            let r = c.call(&request, "ListTransactions")?;
            if r.error_code != code::NONE {
                return Err(ProtocolError::Broker {
                    api: "ListTransactions",
                    code: r.error_code,
                    message: None,
                });
            }
            Ok(r.transaction_states
                .iter()
                .map(|t| t.transactional_id.0.as_str().to_string())
                .collect::<Vec<_>>())
        })?;
        out.extend(ids);
    }
    out.sort();
    out.dedup();
    Ok(out)
}
