//! Telling a quiet watch stream from a dead one, and a view's currency in a
//! quiet namespace, without writing anything.
//!
//! etcd-client's stream does not notice a dead connection, and etcd's
//! gRPC proxy (3.4) drops watch progress requests without a word, so a
//! quiet stream proves nothing by itself. When the stream has been silent
//! for a while the watcher runs a *check*:
//!
//! 1. It asks the stream for progress. An answer proves the stream
//!    alive, nothing more. The answer's revision is *not* taken as the
//!    model's: etcd before 3.5.8 sends it (watch id -1) on a path that
//!    overtakes events still queued for the stream, so it can name a
//!    revision whose events arrive after it (seen: header 6 while the
//!    model held 5, the DOWN at 6 next). A view taking it would say UP at
//!    a revision including the DOWN. etcd's own periodic progress
//!    notifications (the watch's id) travel with the events and do move
//!    the model's revision.
//! 2. Answered, or unanswered after half a quiet period (a proxy), it
//!    reads etcd's revision: a count-only get of one key, the cheapest
//!    linearizable read. The answer alone cannot end the check: a member
//!    cut off from its peers (no leader) answers progress requests at its
//!    own stale revision, and a reader without a lease has nothing else
//!    to move it off that member; its linearizable read fails or times
//!    out instead, and the stream is reopened (the view is Stale after
//!    its bound meanwhile). If etcd is not past the revision the watch
//!    delivered, nothing happened anywhere since: the model is current.
//! 3. If etcd moved on (another namespace, or ours), it reads the
//!    namespace's keys changed after that revision (keys only, at most
//!    one returned) and the namespace's key count, in one range. None
//!    changed and the count is the model's: the model is etcd's namespace
//!    as of that read, and a view may say so ([`Hub::set_verified`]).
//! 4. Otherwise etcd holds changes the stream has not delivered: if it
//!    still says nothing within a quiet period, it is dead and reopened.
//!
//! Steps 2 and 3 cost etcd a read each: a check costs one count-only
//! read while nothing moves anywhere in etcd, and step 3 (the
//! namespace's keys, not their values) only when other writers moved
//! etcd's revision. In a quiet
//! namespace the checks back off from one quiet period to four (at most
//! half a TTL), so an idle watcher costs little, and a stream that died
//! in silence is left within about one check period after the namespace
//! next changes (it cannot matter before: the model is current until
//! then).
//!
//! [`Hub::set_verified`]: super::hub::Hub::set_verified

use std::time::{Duration, Instant};

use crate::store::Changes;

/// How often a quiet stream is checked: every quiet period while the
/// namespace moves, backing off while it does not.
pub(super) struct Pacing {
    quiet: Duration,
    cap: Duration,
    interval: Duration,
}

impl Pacing {
    pub(super) fn new(quiet: Duration, status_ttl: Duration) -> Pacing {
        Pacing {
            quiet,
            cap: (quiet * 4).min(status_ttl / 2).max(quiet),
            interval: quiet,
        }
    }

    /// How long the stream may stay silent before the next check.
    pub(super) fn interval(&self) -> Duration {
        self.interval
    }

    /// The namespace changed: check again after one quiet period.
    pub(super) fn active(&mut self) {
        self.interval = self.quiet;
    }

    /// A check found nothing new: wait twice as long next time, up to
    /// the cap.
    pub(super) fn idle(&mut self) {
        self.interval = (self.interval * 2).min(self.cap);
    }
}

/// The watch id etcd gives the answer to a progress request (not tied
/// to one watch): `clientv3.InvalidWatchID`.
pub(super) const PROGRESS_ANSWER_ID: i64 = -1;

/// The revision a watch response without events shows the model
/// current at, if any: a periodic progress notification's (sent in order
/// with the watch's events); not an answer to a progress request (etcd
/// before 3.5.8 lets it overtake queued events, see the module doc), nor
/// a "created" response (its header is the store's revision while
/// catch-up events may still be on their way).
pub(super) fn progress_revision(watch_id: i64, created: bool, header: i64) -> Option<i64> {
    (!created && watch_id != PROGRESS_ANSWER_ID).then_some(header)
}

/// What the watcher does next for a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// Nothing until this instant (or the stream speaks).
    WaitUntil(Instant),
    /// Read etcd's current revision.
    ReadRevision,
    /// Read the namespace's changes after `from` (the revision the watch
    /// delivered, when the model held `keys` keys).
    ReadChanges { from: i64, keys: i64 },
    /// The model is etcd's namespace as of this revision.
    Current(i64),
    /// The stream is dead: this says why.
    Dead(String),
}

/// A check of a quiet stream in progress; any message on the stream ends
/// it (the stream spoke).
pub(super) struct Check {
    started: Instant,
    quiet: Duration,
    /// A progress request was sent (and, while the check lasts, not
    /// answered).
    pub(super) progress_sent: bool,
    stage: Stage,
}

#[derive(Debug, Clone, Copy)]
enum Stage {
    /// Waiting for the progress answer until `probe_at`.
    Asked { probe_at: Instant },
    /// A read of etcd is in flight.
    Reading,
    /// etcd holds changes the stream has not delivered: it must speak by
    /// then.
    MustDeliver { by: Instant },
}

impl Check {
    /// A check started at `now`. With a progress request sent, etcd is
    /// read only if no answer came within half a quiet period; without
    /// one (the endpoint ignores them), at once.
    pub(super) fn new(
        now: Instant,
        quiet: Duration,
        progress_sent: bool,
        wait_for_answer: bool,
    ) -> Check {
        let probe_at = if wait_for_answer {
            now + quiet / 2
        } else {
            now
        };
        Check {
            started: now,
            quiet,
            progress_sent,
            stage: Stage::Asked { probe_at },
        }
    }

    /// A progress request has gone unanswered for at least half a quiet
    /// period (an answer from etcd takes milliseconds).
    pub(super) fn progress_overdue(&self, now: Instant) -> bool {
        self.progress_sent && now >= self.started + self.quiet / 2
    }

    /// The stream answered a progress request: it is alive, and the
    /// endpoint answers them. That proves the stream, not the model: a
    /// member cut off from its peers (no leader) still answers at its own
    /// stale revision, and would keep a view "connected" to an old model
    /// for ever. So a check still waiting for the answer reads etcd's
    /// revision at once (a linearizable read such a member cannot serve);
    /// one already reading, or waiting for undelivered changes, goes on.
    pub(super) fn on_progress_answer(&mut self, now: Instant) -> Step {
        self.progress_sent = false;
        match self.stage {
            Stage::Asked { .. } => {
                self.stage = Stage::Reading;
                Step::ReadRevision
            }
            _ => Step::WaitUntil(self.wake(now)),
        }
    }

    /// Read etcd now rather than wait for the progress answer (a view's
    /// `sync` is waiting).
    pub(super) fn hurry(&mut self, now: Instant) -> Step {
        match self.stage {
            Stage::Asked { .. } => {
                self.stage = Stage::Asked { probe_at: now };
                self.on_timer(now)
            }
            _ => Step::WaitUntil(self.wake(now)),
        }
    }

    /// When the watcher must look at this check again.
    pub(super) fn wake(&self, now: Instant) -> Instant {
        match self.stage {
            Stage::Asked { probe_at } => probe_at,
            // The read has its own deadline.
            Stage::Reading => now + self.quiet,
            Stage::MustDeliver { by } => by,
        }
    }

    /// The stream is still silent at `now`.
    pub(super) fn on_timer(&mut self, now: Instant) -> Step {
        match self.stage {
            Stage::Asked { probe_at } if now >= probe_at => {
                self.stage = Stage::Reading;
                Step::ReadRevision
            }
            Stage::MustDeliver { by } if now >= by => Step::Dead(format!(
                "the watch stream delivered nothing for {:?} while etcd holds changes of the namespace it has not sent",
                now.duration_since(self.started)
            )),
            _ => Step::WaitUntil(self.wake(now)),
        }
    }

    /// etcd's revision is `etcd`; the watch delivered everything up to
    /// `watched`, when the model held `keys` keys.
    pub(super) fn on_revision(&mut self, etcd: i64, watched: i64, keys: i64) -> Step {
        if etcd <= watched {
            Step::Current(watched)
        } else {
            self.stage = Stage::Reading;
            Step::ReadChanges {
                from: watched,
                keys,
            }
        }
    }

    /// The namespace read after `keys` keys at the revision the check
    /// compared with.
    pub(super) fn on_changes(&mut self, changes: &Changes, keys: i64, now: Instant) -> Step {
        if !changes.changed && changes.keys == keys {
            return Step::Current(changes.revision);
        }
        // Changes in flight reach a live stream within milliseconds; a
        // quiet period is plenty on a loaded machine.
        self.stage = Stage::MustDeliver {
            by: now + self.quiet,
        };
        Step::WaitUntil(now + self.quiet)
    }

    /// Reading etcd failed: the stream must speak within what is left of
    /// the quiet period since the check began (a read that failed on the
    /// connection the stream shares says little good of it).
    pub(super) fn on_error(&mut self, now: Instant) -> Step {
        let by = (self.started + self.quiet).max(now);
        self.stage = Stage::MustDeliver { by };
        self.on_timer(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: Duration = Duration::from_secs(1);

    fn changes(revision: i64, keys: i64, changed: bool) -> Changes {
        Changes {
            revision,
            keys,
            changed,
        }
    }

    #[test]
    fn a_progress_answer_is_awaited_half_a_quiet_period_before_reading() {
        let t = Instant::now();
        let mut c = Check::new(t, Q, true, true);
        assert_eq!(c.on_timer(t), Step::WaitUntil(t + Q / 2));
        assert_eq!(c.on_timer(t + Q / 2), Step::ReadRevision);
        // Ignored progress requests: read at once.
        let mut c = Check::new(t, Q, true, false);
        assert_eq!(c.on_timer(t), Step::ReadRevision);
        let mut c = Check::new(t, Q, true, true);
        assert_eq!(c.hurry(t), Step::ReadRevision);
    }

    #[test]
    fn a_progress_answer_proves_the_stream_alive_but_never_moves_the_model() {
        // etcd 3.5.1 answered a progress request with revision 6 while
        // the model held 5 and the event of 6 (a DOWN) was still queued:
        // taking 6 made a view say UP at 6.
        assert_eq!(progress_revision(PROGRESS_ANSWER_ID, false, 6), None);
        // A periodic notification of the watch itself comes in order.
        assert_eq!(progress_revision(7, false, 6), Some(6));
        assert_eq!(progress_revision(0, false, 6), Some(6));
        // A created response's header is not progress either.
        assert_eq!(progress_revision(0, true, 6), None);
        // The answer does not end a check still waiting for it: it reads
        // etcd's revision at once (a member cut off from its peers answers
        // at its own stale revision; its linearizable read fails)...
        let t = Instant::now();
        let mut c = Check::new(t, Q, true, true);
        assert_eq!(c.on_progress_answer(t), Step::ReadRevision);
        assert!(!c.progress_overdue(t + Q));
        assert_eq!(c.on_revision(10, 10, 5), Step::Current(10));
        let mut c = Check::new(t, Q, true, true);
        c.on_progress_answer(t);
        assert!(matches!(c.on_error(t + Q * 2), Step::Dead(_)));
        // ...and does not cut short one reading etcd (a view's sync may wait
        // for it), nor one that found changes the stream has not delivered.
        let mut c = Check::new(t, Q, true, true);
        assert_eq!(c.hurry(t), Step::ReadRevision);
        assert_eq!(c.on_progress_answer(t), Step::WaitUntil(t + Q));
        assert!(!c.progress_overdue(t + Q));
        c.on_revision(12, 10, 5);
        assert!(matches!(c.on_progress_answer(t), Step::WaitUntil(_)));
        c.on_changes(&changes(13, 4, false), 5, t);
        assert!(matches!(c.on_progress_answer(t), Step::WaitUntil(_)));
        assert!(matches!(c.on_timer(t + Q), Step::Dead(_)));
    }

    #[test]
    fn etcd_not_past_the_watch_means_current() {
        let t = Instant::now();
        let mut c = Check::new(t, Q, false, false);
        assert_eq!(c.on_timer(t), Step::ReadRevision);
        assert_eq!(c.on_revision(10, 10, 5), Step::Current(10));
        assert_eq!(c.on_revision(9, 10, 5), Step::Current(10));
    }

    #[test]
    fn etcd_past_the_watch_reads_the_namespace() {
        let t = Instant::now();
        let mut c = Check::new(t, Q, false, false);
        c.on_timer(t);
        assert_eq!(
            c.on_revision(12, 10, 5),
            Step::ReadChanges { from: 10, keys: 5 }
        );
        // Nothing of ours changed: current as of etcd's read.
        assert_eq!(
            c.on_changes(&changes(13, 5, false), 5, t),
            Step::Current(13)
        );
    }

    #[test]
    fn undelivered_changes_leave_the_stream_a_quiet_period_then_it_is_dead() {
        let t = Instant::now();
        for seen in [
            changes(13, 5, true),
            changes(13, 4, false),
            changes(13, 6, false),
        ] {
            let mut c = Check::new(t, Q, false, false);
            c.on_timer(t);
            c.on_revision(12, 10, 5);
            let at = t + Duration::from_millis(300);
            assert_eq!(c.on_changes(&seen, 5, at), Step::WaitUntil(at + Q));
            assert_eq!(c.on_timer(at + Q / 2), Step::WaitUntil(at + Q));
            assert!(matches!(c.on_timer(at + Q), Step::Dead(_)));
        }
    }

    #[test]
    fn a_failed_read_leaves_the_stream_the_rest_of_the_quiet_period() {
        let t = Instant::now();
        let mut c = Check::new(t, Q, true, true);
        c.on_timer(t + Q / 2);
        assert_eq!(c.on_error(t + Q / 2), Step::WaitUntil(t + Q));
        assert!(matches!(c.on_timer(t + Q), Step::Dead(_)));
        // A read that failed late (its own timeout): dead at once.
        let mut c = Check::new(t, Q, true, true);
        c.on_timer(t + Q / 2);
        assert!(matches!(c.on_error(t + Q * 5), Step::Dead(_)));
    }

    #[test]
    fn checks_back_off_in_a_quiet_namespace_up_to_four_quiet_periods_or_half_a_ttl() {
        let mut p = Pacing::new(Duration::from_secs(2), Duration::from_secs(60));
        let seen: Vec<u64> = (0..5)
            .map(|_| {
                let s = p.interval().as_secs();
                p.idle();
                s
            })
            .collect();
        assert_eq!(seen, [2, 4, 8, 8, 8]);
        p.active();
        assert_eq!(p.interval(), Duration::from_secs(2));
        // A short TTL: at most half of it.
        let mut p = Pacing::new(Duration::from_secs(1), Duration::from_secs(4));
        p.idle();
        p.idle();
        assert_eq!(p.interval(), Duration::from_secs(2));
        // Never below one quiet period.
        let mut p = Pacing::new(Duration::from_millis(250), Duration::from_millis(100));
        p.idle();
        assert_eq!(p.interval(), Duration::from_millis(250));
    }
}
