//! The order of the name table's changes, kept apart from NATS so that it
//! can be tested alone.
//!
//! Claims and releases of names are key-value round trips. Awaited one by
//! one in the thread's loop, each held up the stream behind it: ten
//! clients renaming at 300 a second raised everyone's message latency
//! tenfold. They now run side by side, and [`NameJobs`] keeps the only
//! orders that matter:
//! - the changes of one name run one after the other, in the order asked
//!   (a release of a name, then another user's claim of it, must not
//!   swap);
//! - an op goes to the stream only after every release asked before it is
//!   done, so that a user who sees a leave or a rename finds the name free.

use std::collections::{BTreeSet, HashMap, VecDeque};

use super::NameAsk;
use crate::server::core::Release;

/// One change of the name table.
#[derive(Debug)]
pub enum Job {
    Claim(NameAsk),
    /// `ticket` orders it among the ops (see [`NameJobs::op`]).
    Release {
        gone: Release,
        ticket: u64,
    },
}

impl Job {
    pub fn name(&self) -> &str {
        match self {
            Job::Claim(ask) => &ask.name,
            Job::Release { gone, .. } => &gone.name,
        }
    }
}

/// Jobs waiting for their name, and ops waiting for releases; `T` is an
/// op as the publisher takes it.
pub struct NameJobs<T> {
    /// Names with a job running, each with the jobs asked after it.
    busy: HashMap<String, VecDeque<Job>>,
    /// The tickets of releases asked and not done.
    open: BTreeSet<u64>,
    next_ticket: u64,
    /// Ops, each with the first ticket given after it was asked.
    held: VecDeque<(u64, T)>,
}

impl<T> Default for NameJobs<T> {
    fn default() -> Self {
        NameJobs {
            busy: HashMap::new(),
            open: BTreeSet::new(),
            next_ticket: 0,
            held: VecDeque::new(),
        }
    }
}

impl<T> NameJobs<T> {
    /// A claim: returned when it may start now.
    pub fn claim(&mut self, ask: NameAsk) -> Option<Job> {
        self.queue(Job::Claim(ask))
    }

    /// A release: returned when it may start now. Ops asked from now on
    /// wait for it.
    pub fn release(&mut self, gone: Release) -> Option<Job> {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.open.insert(ticket);
        self.queue(Job::Release { gone, ticket })
    }

    fn queue(&mut self, job: Job) -> Option<Job> {
        match self.busy.get_mut(job.name()) {
            Some(waiting) => {
                waiting.push_back(job);
                None
            }
            None => {
                self.busy.insert(job.name().to_owned(), VecDeque::new());
                Some(job)
            }
        }
    }

    /// An op to publish: returned when no release asked before it is
    /// still running, else held until then.
    pub fn op(&mut self, op: T) -> Option<T> {
        if self.held.is_empty() && self.open.is_empty() {
            return Some(op);
        }
        self.held.push_back((self.next_ticket, op));
        None
    }

    /// A job on `name` is done (`ticket`: a release's): the next job on
    /// that name to start, if any, and the ops now free to go, in order.
    pub fn done(&mut self, name: &str, ticket: Option<u64>, free: &mut Vec<T>) -> Option<Job> {
        if let Some(ticket) = ticket {
            self.open.remove(&ticket);
        }
        while let Some((after, _)) = self.held.front() {
            // Free once every ticket given before it is done.
            if self.open.first().is_some_and(|oldest| oldest < after) {
                break;
            }
            if let Some((_, op)) = self.held.pop_front() {
                free.push(op);
            }
        }
        let waiting = self.busy.get_mut(name)?;
        match waiting.pop_front() {
            Some(next) => Some(next),
            None => {
                self.busy.remove(name);
                None
            }
        }
    }

    /// Whether a release is still running or waiting.
    pub fn releasing(&self) -> bool {
        !self.open.is_empty()
    }

    /// Every op held, at the end, whatever is still running.
    pub fn take_held(&mut self) -> impl Iterator<Item = T> + '_ {
        self.held.drain(..).map(|(_, op)| op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(name: &str) -> NameAsk {
        NameAsk {
            token: 1,
            id: 7,
            nick: name.into(),
            name: name.into(),
            arrival: false,
        }
    }

    fn gone(name: &str) -> Release {
        Release {
            name: name.into(),
            id: 7,
        }
    }

    fn ticket(job: &Job) -> Option<u64> {
        match job {
            Job::Claim(_) => None,
            Job::Release { ticket, .. } => Some(*ticket),
        }
    }

    #[test]
    fn jobs_on_different_names_run_at_once_and_on_one_name_in_turn() {
        let mut jobs: NameJobs<&str> = NameJobs::default();
        let r = jobs.release(gone("ann")).expect("nothing runs on ann");
        assert!(jobs.claim(ask("bob")).is_some(), "bob is another name");
        assert!(
            jobs.claim(ask("ann")).is_none(),
            "ann waits for her release"
        );
        let mut free = Vec::new();
        let next = jobs.done("ann", ticket(&r), &mut free);
        assert!(matches!(next, Some(Job::Claim(a)) if a.name == "ann"));
        assert!(jobs.done("ann", None, &mut free).is_none());
        // Nothing runs on ann now: the next job starts at once.
        assert!(jobs.claim(ask("ann")).is_some());
    }

    #[test]
    fn an_op_waits_for_the_releases_asked_before_it_only() {
        let mut jobs: NameJobs<&str> = NameJobs::default();
        assert_eq!(jobs.op("say 1"), Some("say 1"), "no release: at once");
        let first = jobs.release(gone("ann")).expect("runs");
        assert_eq!(jobs.op("leave ann"), None);
        let second = jobs.release(gone("bob")).expect("runs");
        assert_eq!(jobs.op("nick bob"), None);
        // The later release ends first: nothing may go yet, as the first
        // op waits for ann's.
        let mut free = Vec::new();
        jobs.done("bob", ticket(&second), &mut free);
        assert!(free.is_empty());
        jobs.done("ann", ticket(&first), &mut free);
        assert_eq!(free, ["leave ann", "nick bob"]);
        assert!(!jobs.releasing());
        assert_eq!(jobs.op("say 2"), Some("say 2"));
    }

    #[test]
    fn ops_keep_their_order_behind_a_release() {
        let mut jobs: NameJobs<&str> = NameJobs::default();
        let r = jobs.release(gone("ann")).expect("runs");
        assert_eq!(jobs.op("leave ann"), None);
        let mut free = Vec::new();
        let _ = jobs.done("ann", ticket(&r), &mut free);
        // Asked after the release ended, while nothing is held: at once.
        assert_eq!(free, ["leave ann"]);
        let r = jobs.release(gone("cy")).expect("runs");
        assert_eq!(jobs.op("a"), None);
        // Held ops come out in order even once nothing is open.
        assert!(jobs.claim(ask("dee")).is_some());
        jobs.done("dee", None, &mut free);
        assert_eq!(free, ["leave ann"], "a claim frees nothing");
        jobs.done("cy", ticket(&r), &mut free);
        assert_eq!(free, ["leave ann", "a"]);
        assert_eq!(jobs.take_held().count(), 0);
    }
}
