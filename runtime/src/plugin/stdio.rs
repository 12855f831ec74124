//! A plugin's stdout and stderr, turned into `tracing` events line by line and
//! tagged with the task, so a chatty plugin is readable and attributable.

use std::pin::Pin;
use std::task::{Context, Poll};

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::state::TaskId;

/// Longest line kept; longer output is cut so a plugin cannot make the host
/// buffer without bound.
const MAX_LINE: usize = 8 * 1024;

/// The last few lines a plugin wrote, kept so a trap's report can quote the
/// plugin's own last words (a Rust panic message goes to stderr, then aborts).
pub type RecentLines = Arc<Mutex<VecDeque<String>>>;

const RECENT_LINES: usize = 4;

#[derive(Clone)]
pub struct LogStream {
    id: TaskId,
    stream: &'static str,
    recent: Option<RecentLines>,
}

impl LogStream {
    pub fn new(id: TaskId, stream: &'static str, recent: Option<RecentLines>) -> Self {
        LogStream { id, stream, recent }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            out: self.clone(),
            line: Vec::new(),
        })
    }
}

struct LineWriter {
    out: LogStream,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end();
        if !text.is_empty() {
            tracing::info!(
                connector = %self.out.id.connector,
                task = self.out.id.task,
                stream = self.out.stream,
                "plugin: {text}"
            );
            if let Some(Ok(mut recent)) = self.out.recent.as_ref().map(|r| r.lock()) {
                if recent.len() == RECENT_LINES {
                    recent.pop_front();
                }
                recent.push_back(text.to_string());
            }
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        for &b in buf {
            if b == b'\n' {
                this.emit();
            } else if this.line.len() < MAX_LINE {
                this.line.push(b);
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        this.emit();
        Poll::Ready(Ok(()))
    }
}
