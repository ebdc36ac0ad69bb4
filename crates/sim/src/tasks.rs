//! The simulator's own async executor: the futures of the real storage layer
//! (`server::storage::{RawStorage, TxnStorage}`, awaiting raftstore's callbacks through
//! oneshot channels and latches) and of the simulated clients run here, on the
//! simulator's thread, one poll at a time.
//!
//! - A task that is woken goes to the back of one FIFO queue. Wakers may fire on a store's
//!   thread (a raftstore callback runs there, [`crate::exec`]) while the simulator waits
//!   for that step to end, so the queue is behind a mutex; the order is still fixed by the
//!   simulator's steps, never by a thread race.
//! - [`Tasks::run_until_stalled`] polls queued tasks until none is queued. The world loop
//!   does so as one of its steps when the RNG picks it, so a future resumes at a drawn
//!   point after the callback that woke it, as a tokio worker would pick it up.
//! - [`Tasks::sleep`] is a timer in virtual time: the world loop jumps to the earliest
//!   timer when nothing else can run ([`Tasks::next_timer`]) and fires the due ones
//!   ([`Tasks::fire_timers`]).
//!
//! Tasks are not `Send`: nothing here runs on another thread.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Ids of woken tasks, in the order they were woken.
type Ready = Arc<Mutex<VecDeque<u64>>>;

struct TaskWaker {
    id: u64,
    ready: Ready,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut q = self.ready.lock().expect("ready queue");
        if !q.contains(&self.id) {
            q.push_back(self.id);
        }
    }
}

/// Virtual-time timers: (deadline ns, sequence) → the sleeping task's waker.
#[derive(Default)]
struct Timers {
    now: Cell<u64>,
    seq: Cell<u64>,
    waiting: RefCell<BTreeMap<(u64, u64), Waker>>,
}

/// The executor (see the module doc).
pub struct Tasks {
    tasks: BTreeMap<u64, Task>,
    next_id: u64,
    ready: Ready,
    timers: Rc<Timers>,
    /// Polls made (for the summary).
    pub polls: u64,
}

impl Default for Tasks {
    fn default() -> Self {
        Tasks {
            tasks: BTreeMap::new(),
            next_id: 0,
            ready: Arc::new(Mutex::new(VecDeque::new())),
            timers: Rc::new(Timers::default()),
            polls: 0,
        }
    }
}

impl Tasks {
    /// Adds `f`; it is first polled at the next [`Tasks::run_until_stalled`].
    pub fn spawn(&mut self, f: impl Future<Output = ()> + 'static) {
        let id = self.next_id;
        self.next_id += 1;
        self.tasks.insert(id, Box::pin(f));
        self.ready.lock().expect("ready queue").push_back(id);
    }

    /// Whether a task is queued to be polled.
    pub fn has_ready(&self) -> bool {
        !self.ready.lock().expect("ready queue").is_empty()
    }

    /// Tasks not finished.
    pub fn live(&self) -> usize {
        self.tasks.len()
    }

    /// Polls queued tasks, in queue order, until none is queued.
    pub fn run_until_stalled(&mut self) {
        loop {
            let Some(id) = self.ready.lock().expect("ready queue").pop_front() else {
                return;
            };
            let Some(mut task) = self.tasks.remove(&id) else {
                continue;
            };
            let waker = Waker::from(Arc::new(TaskWaker {
                id,
                ready: self.ready.clone(),
            }));
            self.polls += 1;
            if task
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
            {
                self.tasks.insert(id, task);
            }
        }
    }

    /// A future that is ready once virtual time reaches `at` (ns).
    pub fn sleep_until(&self, at: u64) -> Sleep {
        Sleep {
            at,
            timers: self.timers.clone(),
            key: None,
        }
    }

    /// A handle that makes sleeps from inside tasks (which cannot borrow the executor).
    pub fn clock(&self) -> SimClock {
        SimClock {
            timers: self.timers.clone(),
        }
    }

    /// Moves the executor's virtual time to `now` (ns) and wakes the timers due.
    pub fn fire_timers(&self, now: u64) {
        self.timers.now.set(now);
        let mut waiting = self.timers.waiting.borrow_mut();
        while let Some(entry) = waiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            entry.remove().wake();
        }
    }

    /// The earliest timer (virtual ns), if any.
    pub fn next_timer(&self) -> Option<u64> {
        self.timers
            .waiting
            .borrow()
            .keys()
            .next()
            .map(|(at, _)| *at)
    }
}

/// Virtual time as tasks see it.
#[derive(Clone)]
pub struct SimClock {
    timers: Rc<Timers>,
}

impl SimClock {
    /// Virtual time now, ns.
    pub fn now(&self) -> u64 {
        self.timers.now.get()
    }

    /// Ready `ns` of virtual time from now.
    pub fn sleep(&self, ns: u64) -> Sleep {
        Sleep {
            at: self.now() + ns,
            timers: self.timers.clone(),
            key: None,
        }
    }
}

/// See [`Tasks::sleep_until`]. Dropped before it fires, it takes its timer back.
pub struct Sleep {
    at: u64,
    timers: Rc<Timers>,
    /// The timer it registered (deadline, sequence), if any.
    key: Option<(u64, u64)>,
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(k) = self.key.take() {
            self.timers.waiting.borrow_mut().remove(&k);
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.timers.now.get() >= self.at {
            if let Some(k) = self.key.take() {
                self.timers.waiting.borrow_mut().remove(&k);
            }
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let seq = self.timers.seq.get();
                self.timers.seq.set(seq + 1);
                (self.at, seq)
            }
        };
        self.key = Some(key);
        self.timers
            .waiting
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_in_wake_order_and_sleep_in_virtual_time() {
        let mut t = Tasks::default();
        let log = Rc::new(RefCell::new(Vec::new()));
        for (i, ns) in [(0, 30u64), (1, 10), (2, 20)] {
            let (clock, log) = (t.clock(), log.clone());
            t.spawn(async move {
                log.borrow_mut().push(format!("start {i}"));
                clock.sleep(ns).await;
                log.borrow_mut()
                    .push(format!("woke {i} at {}", clock.now()));
            });
        }
        t.run_until_stalled();
        assert_eq!(t.live(), 3);
        while let Some(at) = t.next_timer() {
            t.fire_timers(at);
            t.run_until_stalled();
        }
        assert_eq!(t.live(), 0);
        assert_eq!(
            *log.borrow(),
            [
                "start 0",
                "start 1",
                "start 2",
                "woke 1 at 10",
                "woke 2 at 20",
                "woke 0 at 30"
            ]
        );
    }
}
