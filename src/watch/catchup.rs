//! Catching up a subscription that fell behind (or telling a new one what
//! existed): the hub's side of [`Sub::settle`], which computes the
//! differences without holding up the watch.

use super::hub::Hub;
use super::queue::Sub;

impl Hub {
    /// Catches `sub` up after it fell behind, or tells a new one what
    /// existed, as far as its queue has room (see [`Sub::settle`]).
    pub(super) fn settle(&self, sub: &Sub) {
        sub.settle(
            &|| {
                (
                    self.model.snapshot(),
                    self.model.generation(),
                    self.revision(),
                )
            },
            &|| self.model.generation(),
            &|| self.lock(),
        );
    }
}
