//! Catching up a subscription that fell behind: the differences between
//! what it was told and the model, computed without holding up the watch.

use super::hub::Hub;
use super::queue::Sub;

impl Hub {
    /// Catches `sub` up after it fell behind: the differences between what
    /// it was told and the model, computed from snapshots without the hub
    /// lock, in a few rounds, each covering only the shards that changed
    /// during the one before. A round during which the model stood still
    /// takes it back to live events, under the lock, so no live event slips
    /// between; if the model never stands still, the last small round runs
    /// under the lock.
    pub(super) fn settle(&self, sub: &Sub) {
        const ROUNDS: usize = 3;
        for _ in 0..ROUNDS {
            let Some(told) = sub.behind() else { return };
            let (now, generation, revision) = {
                let _st = self.lock();
                (
                    self.model.snapshot(),
                    self.model.generation(),
                    self.revision(),
                )
            };
            let events = sub.differences(&told, &now, revision);
            let st = self.lock();
            if self.model.generation() == generation {
                sub.commit(&told, events, revision, None);
                return;
            }
            drop(st);
            sub.commit(&told, events, revision, Some(now));
        }
        let _st = self.lock();
        let Some(told) = sub.behind() else { return };
        let now = self.model.snapshot();
        let revision = self.revision();
        let events = sub.differences(&told, &now, revision);
        sub.commit(&told, events, revision, None);
    }
}
