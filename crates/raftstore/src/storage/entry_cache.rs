//! Recent raft entries kept in memory.
//!
//! raft-rs reads entries back through `Storage` right after handing them to us, before the
//! log writer has made them durable, so every appended entry lands here first. Entries leave
//! the cache once they are both persisted and applied; older ones are read from raft-engine.

use std::collections::VecDeque;

use raft::eraftpb::Entry;

/// A contiguous run of the most recent entries of one region.
#[derive(Default)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
}

impl EntryCache {
    /// Index of the first cached entry.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Index of the last cached entry.
    pub fn last_index(&self) -> Option<u64> {
        self.entries.back().map(|e| e.index)
    }

    /// Appends entries, replacing any cached entries at or after the first new index.
    /// A gap between the cache and the new entries drops the old cache.
    pub fn append(&mut self, entries: &[Entry]) {
        let Some(first) = entries.first() else {
            return;
        };
        match (self.first_index(), self.last_index()) {
            (Some(cache_first), Some(cache_last)) => {
                if first.index <= cache_first || first.index > cache_last + 1 {
                    self.entries.clear();
                } else {
                    let keep = (first.index - cache_first) as usize;
                    self.entries.truncate(keep);
                }
            }
            _ => self.entries.clear(),
        }
        self.entries.extend(entries.iter().cloned());
    }

    /// The term of `index` if cached.
    pub fn term(&self, index: u64) -> Option<u64> {
        self.get(index).map(|e| e.term)
    }

    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.first_index()?;
        if index < first {
            return None;
        }
        self.entries.get((index - first) as usize)
    }

    /// Appends cached entries `[low, high)` to `out`; `low` must be cached.
    pub fn fetch(&self, low: u64, high: u64, out: &mut Vec<Entry>) {
        let Some(first) = self.first_index() else {
            return;
        };
        let start = (low - first) as usize;
        let end = ((high - first) as usize).min(self.entries.len());
        out.extend(self.entries.range(start..end).cloned());
    }

    /// Drops entries with index `<= index`.
    pub fn compact_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.entries.pop_front();
        }
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// Number of cached entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ents(range: std::ops::Range<u64>, term: u64) -> Vec<Entry> {
        range
            .map(|i| Entry {
                index: i,
                term,
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn append_truncates_conflicting_tail() {
        let mut c = EntryCache::default();
        c.append(&ents(5..10, 1));
        c.append(&ents(7..9, 2));
        assert_eq!(c.first_index(), Some(5));
        assert_eq!(c.last_index(), Some(8));
        assert_eq!(c.term(6), Some(1));
        assert_eq!(c.term(7), Some(2));
        assert_eq!(c.term(9), None);
    }

    #[test]
    fn append_with_gap_or_before_start_resets() {
        let mut c = EntryCache::default();
        c.append(&ents(5..10, 1));
        c.append(&ents(12..13, 1));
        assert_eq!((c.first_index(), c.last_index()), (Some(12), Some(12)));
        c.append(&ents(3..6, 2));
        assert_eq!((c.first_index(), c.last_index()), (Some(3), Some(5)));
    }

    #[test]
    fn fetch_and_compact() {
        let mut c = EntryCache::default();
        c.append(&ents(1..11, 1));
        let mut out = vec![];
        c.fetch(3, 6, &mut out);
        assert_eq!(
            out.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        c.compact_to(4);
        assert_eq!(c.first_index(), Some(5));
        assert_eq!(c.len(), 6);
        c.compact_to(100);
        assert!(c.is_empty());
    }
}
