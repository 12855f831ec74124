//! SIGINT and SIGTERM, listened to from the first moment of a run: a signal
//! that arrives while connectors are still starting is kept and acted on once
//! they are up, instead of killing the process with the default action.

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves when either signal has arrived (also before this call).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
