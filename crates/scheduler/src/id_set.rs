//! A set of ids with O(1) insert, remove and uniformly random pick.
//!
//! Schedulers ask "a random region led by store S" many times a second; a `HashSet` would
//! need a linear walk to pick a random element. Keeping the ids densely in a `Vec`, with a
//! map from id to its slot, makes the pick an index and removal a `swap_remove`.

use std::collections::HashMap;

use rand::Rng;

#[derive(Clone, Debug, Default)]
pub(crate) struct IdSet {
    items: Vec<u64>,
    slots: HashMap<u64, usize>,
}

impl IdSet {
    pub(crate) fn insert(&mut self, id: u64) -> bool {
        if self.slots.contains_key(&id) {
            return false;
        }
        self.slots.insert(id, self.items.len());
        self.items.push(id);
        true
    }

    pub(crate) fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slots.remove(&id) else {
            return false;
        };
        self.items.swap_remove(slot);
        // The former last element now lives in `slot`.
        if let Some(moved) = self.items.get(slot) {
            self.slots.insert(*moved, slot);
        }
        true
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn random<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<u64> {
        if self.items.is_empty() {
            return None;
        }
        self.items.get(rng.gen_range(0..self.items.len())).copied()
    }

    /// The ids in increasing order.
    pub(crate) fn sorted(&self) -> Vec<u64> {
        let mut v = self.items.clone();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    #[test]
    fn insert_remove_and_pick() {
        let mut s = IdSet::default();
        let mut rng = StdRng::seed_from_u64(7);
        assert_eq!(s.random(&mut rng), None);
        for id in 1..=10 {
            assert!(s.insert(id));
        }
        assert!(!s.insert(5));
        assert!(s.remove(1)); // moves 10 into slot 0
        assert!(s.remove(10));
        assert!(!s.remove(10));
        assert_eq!(s.sorted(), vec![2, 3, 4, 5, 6, 7, 8, 9]);
        assert!(s.contains(9) && !s.contains(10));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            seen.insert(s.random(&mut rng).unwrap());
        }
        assert_eq!(seen.len(), 8, "every member is eventually picked");
        for id in 2..=9 {
            s.remove(id);
        }
        assert!(s.is_empty());
        assert_eq!(s.len(), 0);
    }
}
