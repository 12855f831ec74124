//! What a task should be doing, as the REST API (pause, resume, stop,
//! restart) and the worker's own shutdown decide, and the loop each task runs
//! around one incarnation of itself.
//!
//! A paused source stops polling but keeps its plugin open (a CDC slot is
//! not released; Connect never stops a paused task either). A paused sink
//! flushes, commits and closes its plugin but keeps its input, so an
//! in-process queue fills up and its sources wait, as Connect's paused
//! consumer holds back its partitions.

use std::time::Instant;

use tokio::sync::watch;

use super::status::{State, StatusBoard};
use super::supervisor::Supervisor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Running,
    Paused,
    /// The task ends for good (connector stopped, deleted or reconfigured).
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Control {
    pub target: Target,
    /// Bumped to restart the task once.
    pub restarts: u64,
}

impl Control {
    pub fn new(target: Target) -> Self {
        Control {
            target,
            restarts: 0,
        }
    }
}

/// Drives one task through its incarnations.
pub struct Lifecycle {
    connector: String,
    task: i32,
    control: watch::Receiver<Control>,
    shutdown: watch::Receiver<bool>,
    status: StatusBoard,
    supervisor: Supervisor,
    /// The control a running incarnation started under.
    current: Control,
    /// Pause without ending the incarnation (sources).
    pause_in_place: bool,
}

/// What one incarnation watches: `stop` ends it; `paused` (sources) holds it.
pub struct Signals {
    pub stop: watch::Receiver<bool>,
    pub paused: watch::Receiver<bool>,
}

impl Lifecycle {
    pub fn new(
        connector: &str,
        task: i32,
        control: watch::Receiver<Control>,
        shutdown: watch::Receiver<bool>,
        status: StatusBoard,
        supervisor: Supervisor,
        pause_in_place: bool,
    ) -> Self {
        let current = *control.borrow();
        Lifecycle {
            connector: connector.to_string(),
            task,
            control,
            shutdown,
            status,
            supervisor,
            current,
            pause_in_place,
        }
    }

    fn ending(&self) -> bool {
        *self.shutdown.borrow() || self.control.borrow().target == Target::Stopped
    }

    /// Waits until the task should run, and returns the signal that ends
    /// this incarnation; `None` when the task is to end for good.
    pub async fn runnable(&mut self) -> Option<Signals> {
        loop {
            if self.ending() {
                return None;
            }
            let c = *self.control.borrow_and_update();
            if c.target == Target::Running {
                self.current = c;
                break;
            }
            self.status
                .set(&self.connector, self.task, State::Paused, None);
            tokio::select! {
                r = self.control.changed() => if r.is_err() { return None },
                _ = self.shutdown.changed() => {}
            }
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let (paused_tx, paused_rx) = watch::channel(false);
        let (mut control, mut shutdown, current, in_place) = (
            self.control.clone(),
            self.shutdown.clone(),
            self.current,
            self.pause_in_place,
        );
        // Ends the incarnation on worker shutdown, a stop or restart request,
        // or (unless it pauses in place) a pause.
        tokio::spawn(async move {
            loop {
                let c = *control.borrow_and_update();
                let ends = c.target == Target::Stopped
                    || c.restarts != current.restarts
                    || (!in_place && c != current);
                if *shutdown.borrow() || ends {
                    let _ = stop_tx.send(true);
                    return;
                }
                let _ = paused_tx.send(c.target == Target::Paused);
                tokio::select! {
                    r = control.changed() => if r.is_err() { let _ = stop_tx.send(true); return },
                    _ = shutdown.changed() => {}
                    _ = stop_tx.closed() => return,
                }
            }
        });
        Some(Signals {
            stop: stop_rx,
            paused: paused_rx,
        })
    }

    fn asked_to_change(&self) -> bool {
        let c = *self.control.borrow();
        c.restarts != self.current.restarts || (!self.pause_in_place && c != self.current)
    }

    /// After an incarnation ended: true to go round again (restart, pause
    /// and later resume, or an automatic restart after a failure).
    pub async fn again(&mut self, result: Result<(), String>, started: Instant) -> bool {
        if self.ending() {
            return false;
        }
        match result {
            // Stopped because it was asked to: pause or restart.
            Ok(()) => self.asked_to_change(),
            Err(_) if self.asked_to_change() => true,
            Err(trace) => {
                let current = self.current;
                let mut control = self.control.clone();
                let changed = async move {
                    while control.changed().await.is_ok() {
                        if *control.borrow() != current {
                            return;
                        }
                    }
                    std::future::pending::<()>().await
                };
                tokio::pin!(changed);
                tokio::select! {
                    again = self.supervisor.retry(trace, started) => {
                        if again {
                            return true;
                        }
                    }
                    // A pause or restart request cuts the backoff short.
                    _ = &mut changed => return !self.ending(),
                }
                // Left FAILED: it stays so until someone restarts, pauses or
                // stops it (Connect's behaviour), or the worker stops.
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    _ = &mut changed => {}
                    _ = shutdown.changed() => {}
                }
                !self.ending()
            }
        }
    }
}
