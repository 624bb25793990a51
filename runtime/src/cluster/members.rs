//! The coordinator's view of its workers: the control server that accepts them, one reader
//! and one writer thread per connection, heartbeat supervision, and the relay that turns the
//! current attempt's worker events into [`JobEvent`]s for the checkpoint coordinator.

use std::collections::HashMap;
use std::io::BufReader;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use tracing::{info, warn};

use weir_api_types::AdminToken;

use super::protocol::{receive, send, ToCoordinator, ToWorker, WireEvent, PROTOCOL_VERSION};
use super::summary::{LostWorker, RestoreShare, WorkerLoss};
use crate::metrics::JobMetrics;
use crate::net::auth;
use crate::runner::JobEvent;

/// A registered worker.
pub(crate) struct Member {
    /// The worker's id.
    pub id: String,
    /// Where peers reach its data server.
    pub data_addr: SocketAddr,
    /// Registrations of the worker process with a coordinator, this one included.
    pub registrations: u32,
    conn: u64,
    tx: Sender<ToWorker>,
    last_seen: Instant,
    /// Subtasks it runs in the current attempt.
    pub subtasks: Vec<u32>,
}

impl Member {
    /// Sends `msg` (dropped if the worker is gone; its loss is reported separately).
    pub fn send(&self, msg: ToWorker) {
        let _ = self.tx.send(msg);
    }
}

/// The attempt the relay forwards events for.
struct Attempt {
    attempt: u64,
    events: Sender<JobEvent>,
    /// `uid#subtask` -> task index.
    tasks: HashMap<String, usize>,
    metrics: Arc<JobMetrics>,
    /// What each worker (by id) read of the snapshot the attempt restores.
    restores: HashMap<String, RestoreShare>,
}

#[derive(Default)]
pub(crate) struct State {
    /// Registered workers, in registration order.
    pub members: Vec<Member>,
    current: Option<Attempt>,
    /// The job ended: disconnecting workers are expected.
    closing: bool,
    /// Workers lost while the job ran, in order.
    lost: Vec<LostWorker>,
}

/// The workers of a coordinator, shared by the control server, the relay and the job loop.
#[derive(Clone)]
pub(crate) struct Members {
    pub state: Arc<Mutex<State>>,
}

enum Incoming {
    Registered {
        id: String,
        data_addr: SocketAddr,
        registrations: u32,
        conn: u64,
        tx: Sender<ToWorker>,
    },
    Message {
        conn: u64,
        msg: ToCoordinator,
    },
    Closed {
        conn: u64,
        cause: WorkerLoss,
    },
}

impl Members {
    /// Listens for workers on `bind` and supervises them: a worker whose connection closes or
    /// who sends no heartbeat for `heartbeat_timeout` is removed (and reported lost when it
    /// runs subtasks of the current attempt). Returns the members and the bound address.
    ///
    /// # Errors
    /// I/O errors binding the address.
    pub fn serve(
        bind: SocketAddr,
        heartbeat_timeout: Duration,
        token: Option<AdminToken>,
    ) -> std::io::Result<(Self, SocketAddr)> {
        let listener = TcpListener::bind(bind)?;
        let token = Arc::new(token);
        let addr = listener.local_addr()?;
        let (incoming_tx, incoming) = unbounded();
        std::thread::Builder::new()
            .name("control-server".into())
            .spawn(move || {
                for (conn, stream) in (1u64..).zip(listener.incoming()) {
                    let Ok(stream) = stream else { continue };
                    let tx = incoming_tx.clone();
                    let token = token.clone();
                    let _ = std::thread::Builder::new()
                        .name(format!("worker-{conn}"))
                        .spawn(move || serve_worker(conn, stream, tx, token.as_ref().as_ref()));
                }
            })?;
        let members = Members {
            state: Arc::default(),
        };
        let m = members.clone();
        std::thread::Builder::new()
            .name("members".into())
            .spawn(move || m.relay(incoming, heartbeat_timeout))?;
        Ok((members, addr))
    }

    /// Number of registered workers.
    pub fn count(&self) -> usize {
        self.lock().members.len()
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("invariant: not poisoned")
    }

    /// Starts forwarding the events of `attempt` to `events`.
    pub fn start_attempt(
        &self,
        attempt: u64,
        events: Sender<JobEvent>,
        tasks: HashMap<String, usize>,
        metrics: Arc<JobMetrics>,
    ) {
        self.lock().current = Some(Attempt {
            attempt,
            events,
            tasks,
            metrics,
            restores: HashMap::new(),
        });
    }

    /// Cancels `attempt` on every worker and stops forwarding its events. Returns what each
    /// worker (by id) reported it read of the snapshot the attempt restored.
    pub fn end_attempt(&self, attempt: u64) -> HashMap<String, RestoreShare> {
        let mut s = self.lock();
        let restores = s.current.take().map(|c| c.restores).unwrap_or_default();
        for m in &mut s.members {
            m.subtasks.clear();
            m.send(ToWorker::Cancel { attempt });
        }
        restores
    }

    /// The workers lost so far, in order.
    pub fn lost(&self) -> Vec<LostWorker> {
        self.lock().lost.clone()
    }

    /// Tells every worker the job ended.
    pub fn shutdown(&self) {
        let mut s = self.lock();
        s.closing = true;
        for m in &s.members {
            m.send(ToWorker::Shutdown);
        }
    }

    /// Waits until every worker disconnected (after [`Members::shutdown`]), at most
    /// `timeout`.
    pub fn wait_disconnected(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn relay(&self, incoming: Receiver<Incoming>, heartbeat_timeout: Duration) {
        let tick = (heartbeat_timeout / 4).max(Duration::from_millis(50));
        loop {
            match incoming.recv_timeout(tick) {
                Ok(Incoming::Registered {
                    id,
                    data_addr,
                    registrations,
                    conn,
                    tx,
                }) => {
                    info!(worker = %id, %data_addr, registrations, "worker registered");
                    self.lock().members.push(Member {
                        id,
                        data_addr,
                        registrations,
                        conn,
                        tx,
                        last_seen: Instant::now(),
                        subtasks: Vec::new(),
                    });
                }
                Ok(Incoming::Message { conn, msg }) => self.on_message(conn, msg),
                Ok(Incoming::Closed { conn, cause }) => self.remove(conn, cause),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let silent: Vec<(u64, Duration)> = self
                .lock()
                .members
                .iter()
                .filter(|m| m.last_seen.elapsed() > heartbeat_timeout)
                .map(|m| (m.conn, m.last_seen.elapsed()))
                .collect();
            for (conn, since) in silent {
                let silent_ms = since.as_millis() as u64;
                self.remove(conn, WorkerLoss::HeartbeatTimeout { silent_ms });
            }
        }
    }

    fn on_message(&self, conn: u64, msg: ToCoordinator) {
        let mut s = self.lock();
        let State {
            members, current, ..
        } = &mut *s;
        let Some(member) = members.iter_mut().find(|m| m.conn == conn) else {
            return;
        };
        member.last_seen = Instant::now();
        let Some(cur) = current.as_mut() else { return };
        match msg {
            ToCoordinator::Heartbeat { figures } => cur.metrics.set_figures(&figures),
            ToCoordinator::Event { attempt, event } if attempt == cur.attempt => {
                let task = |name: &str| cur.tasks.get(name).copied();
                let event = match event {
                    WireEvent::Ack {
                        task: name,
                        checkpoint,
                        metas,
                    } => match task(&name) {
                        Some(task) => JobEvent::Ack {
                            task,
                            checkpoint,
                            metas,
                        },
                        None => return warn!(task = %name, "acknowledgement of an unknown task"),
                    },
                    WireEvent::Declined { checkpoint, cause } => {
                        JobEvent::Declined { checkpoint, cause }
                    }
                    WireEvent::Restored(share) => {
                        cur.restores.insert(member.id.clone(), share);
                        return;
                    }
                    WireEvent::SourceExhausted => JobEvent::SourceExhausted,
                    WireEvent::Finished => JobEvent::Finished,
                    WireEvent::Failed {
                        task: name,
                        category,
                        cause,
                    } => JobEvent::Failed {
                        task: task(&name).unwrap_or(usize::MAX),
                        category,
                        cause: format!("{name} on worker {}: {cause}", member.id),
                    },
                };
                let _ = cur.events.send(event);
            }
            ToCoordinator::Event { .. } | ToCoordinator::Register { .. } => {}
        }
    }

    fn remove(&self, conn: u64, cause: WorkerLoss) {
        let mut s = self.lock();
        let Some(i) = s.members.iter().position(|m| m.conn == conn) else {
            return;
        };
        let m = s.members.remove(i);
        if s.closing {
            info!(worker = %m.id, "worker disconnected");
            return;
        }
        warn!(worker = %m.id, "worker lost: {cause}");
        let had_subtasks = !m.subtasks.is_empty();
        let attempt = s.current.as_ref().map(|c| c.attempt);
        if had_subtasks {
            if let Some(cur) = &s.current {
                let _ = cur.events.send(JobEvent::WorkerLost {
                    worker: m.id.clone(),
                    cause: cause.to_string(),
                });
            }
        }
        s.lost.push(LostWorker {
            worker: m.id.clone(),
            attempt,
            had_subtasks,
            reason: cause,
        });
        // Dropping its sender ends the writer thread, which closes the connection.
    }
}

fn serve_worker(
    conn: u64,
    stream: TcpStream,
    incoming: Sender<Incoming>,
    token: Option<&AdminToken>,
) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let first = receive::<ToCoordinator>(&mut reader);
    let (id, data_addr, registrations) = match first {
        Ok(Some(ToCoordinator::Register {
            protocol,
            worker,
            data_addr,
            registrations,
            token: presented,
        })) if protocol == PROTOCOL_VERSION => {
            let admitted =
                token.is_none_or(|t| presented.as_ref().is_some_and(|p| t.matches(p.expose())));
            if !admitted {
                auth::count_refused(auth::Port::Control);
                let peer = reader.get_ref().peer_addr().ok();
                return warn!(
                    ?peer,
                    worker, "refused a worker without the job's token; its connection was closed"
                );
            }
            (worker, data_addr, registrations)
        }
        Ok(Some(ToCoordinator::Register { protocol, .. })) => {
            warn!(
                "refused a worker speaking protocol {protocol} (this coordinator speaks {PROTOCOL_VERSION})"
            );
            return;
        }
        _ => {
            // Not a registration (or one whose token does not decode): refused as well.
            if token.is_some() {
                auth::count_refused(auth::Port::Control);
            }
            return warn!("a connection that did not register as a worker was closed");
        }
    };
    let (tx, rx) = unbounded::<ToWorker>();
    let _ = incoming.send(Incoming::Registered {
        id,
        data_addr,
        registrations,
        conn,
        tx,
    });
    std::thread::Builder::new()
        .name(format!("worker-{conn}-out"))
        .spawn(move || {
            for msg in rx {
                if send(&mut writer, &msg).is_err() {
                    break;
                }
            }
            let _ = writer.shutdown(Shutdown::Both);
        })
        .expect("invariant: threads can be spawned");
    loop {
        match receive::<ToCoordinator>(&mut reader) {
            Ok(Some(msg)) => {
                if incoming.send(Incoming::Message { conn, msg }).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = incoming.send(Incoming::Closed {
                    conn,
                    cause: WorkerLoss::ConnectionClosed,
                });
                return;
            }
            Err(e) => {
                let _ = incoming.send(Incoming::Closed {
                    conn,
                    cause: WorkerLoss::ConnectionFailed {
                        error: e.to_string(),
                    },
                });
                return;
            }
        }
    }
}
