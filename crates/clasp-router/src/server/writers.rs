//! Where connection writers run.
//!
//! Reading, routing and the writes of small exchanges happen on the caller's runtime; the writes
//! of large fan-outs run on a pool of their own whose threads ask the OS for a lower CPU priority
//! (a positive nice value). On a busy machine the threads that read input and answer small
//! exchanges are then never stuck behind a burst of a hundred writes: a control surface's
//! single-hop update keeps its latency while a broadcast is being written, and when nothing else
//! needs the CPU the pool still uses every core.
//!
//! Measured with `clasp-bench latency` under a background fan-out load (100 subscribers,
//! 200,000 deliveries/s) on a 2-core VM, single-hop p99 went from about 500 µs with writers on
//! the reading runtime to about 90 µs (see the README for the reproducible figures).

use thread_priority::{ThreadPriority, ThreadPriorityValue};
use tokio::runtime::{Handle, Runtime};

/// The writer pool: its own runtime, or the caller's.
pub(crate) struct WriterPool {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl std::fmt::Debug for WriterPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterPool")
            .field("own_runtime", &self.runtime.is_some())
            .finish()
    }
}

/// The niceness asked for the pool's threads, mapped to the `thread-priority` scale
/// (0 is the lowest priority, 99 the highest; 22 maps to nice 10 on Linux).
const POOL_PRIORITY: u8 = 22;

impl WriterPool {
    /// A pool of `threads` threads at lower priority, or, with 0, the current runtime.
    /// Must be called within a tokio runtime.
    pub(crate) fn new(threads: usize, lower_priority: bool) -> std::io::Result<WriterPool> {
        if threads == 0 {
            return Ok(WriterPool {
                runtime: None,
                handle: Handle::current(),
            });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("clasp-writer")
            .enable_all()
            .on_thread_start(move || {
                if lower_priority {
                    lower_current_thread_priority();
                }
            })
            .build()?;
        let handle = runtime.handle().clone();
        Ok(WriterPool {
            runtime: Some(runtime),
            handle,
        })
    }

    /// A handle that spawns on the pool.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Whether the pool has threads of its own.
    pub(crate) fn separate(&self) -> bool {
        self.runtime.is_some()
    }

    /// Runs `f` on the pool.
    #[cfg(test)]
    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle.spawn(f)
    }
}

impl Drop for WriterPool {
    fn drop(&mut self) {
        // Dropping a runtime from async code panics; the writers have ended by now anyway.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Lowers the calling thread's CPU priority (raising it would need privileges; lowering never
/// does). Failure only costs latency under load, so it is logged, not fatal.
fn lower_current_thread_priority() {
    let priority = ThreadPriorityValue::try_from(POOL_PRIORITY).map(ThreadPriority::Crossplatform);
    match priority {
        Ok(p) => {
            if let Err(e) = thread_priority::set_current_thread_priority(p) {
                tracing::debug!(error = ?e, "cannot lower the writer thread's priority");
            }
        }
        Err(e) => tracing::debug!(error = ?e, "bad writer priority"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The nice value of the calling thread, from /proc (Linux).
    fn current_nice() -> Option<i64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the command name (which is in parentheses): state is field 3, nice 19.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(16)?.parse().ok()
    }

    #[test]
    fn pool_threads_run_at_nice_10_and_the_caller_is_untouched() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let before = current_nice();
        let nice = rt.block_on(async {
            let pool = WriterPool::new(1, true).unwrap_or_else(|e| panic!("{e}"));
            let nice = pool
                .spawn(async { current_nice() })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            drop(pool);
            nice
        });
        if cfg!(target_os = "linux") {
            assert_eq!(nice, Some(10), "writer threads run at nice 10");
            assert_eq!(
                current_nice(),
                before,
                "the calling thread keeps its priority"
            );
        }
    }

    #[test]
    fn zero_threads_use_the_current_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        rt.block_on(async {
            let pool = WriterPool::new(0, true).unwrap_or_else(|e| panic!("{e}"));
            assert!(pool.runtime.is_none());
            let id = std::thread::current().id();
            let ran_on = pool
                .spawn(async { std::thread::current().id() })
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(ran_on, id);
        });
    }
}
