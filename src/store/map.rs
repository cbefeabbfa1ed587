//! A family's map from canonical label set to series, with dense indices: the series sit
//! in one vector, in the order they came, and the hash table holds their 4-byte indices.
//! A scrape walks the vector, whose series were allocated one after the other: a straight
//! walk through memory that the processor prefetches, not a hop per series.

use hashbrown::HashTable;

/// What the map holds: anything with a label set to find it by.
pub(crate) trait Keyed {
    fn key(&self) -> &str;
}

/// See the module documentation.
pub(crate) struct SeriesMap<T> {
    table: HashTable<u32>,
    list: Vec<T>,
}

impl<T> Default for SeriesMap<T> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            list: Vec::new(),
        }
    }
}

impl<T: Keyed> SeriesMap<T> {
    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The series with the label set `labels` (of hash `hash`).
    pub(crate) fn find(&self, hash: u64, labels: &str) -> Option<&T> {
        let list = &self.list;
        self.table
            .find(hash, |&at| list[at as usize].key() == labels)
            .map(|&at| &list[at as usize])
    }

    /// Adds a series whose label set is not in the map; `hash` hashes label sets.
    pub(crate) fn insert(&mut self, series: T, hash: impl Fn(&str) -> u64) {
        let at = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        let list = &self.list;
        self.table
            .insert_unique(hash(series.key()), at, |&i| hash(list[i as usize].key()));
        self.list.push(series);
    }

    /// Every series, in the vector's order.
    pub(crate) fn iter(&self) -> std::slice::Iter<'_, T> {
        self.list.iter()
    }

    /// Keeps the series `keep` says to keep; the last series fills each hole.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&T) -> bool, hash: impl Fn(&str) -> u64) {
        let mut at = 0;
        while at < self.list.len() {
            if keep(&self.list[at]) {
                at += 1;
                continue;
            }
            let index = at as u32;
            if let Ok(entry) = self
                .table
                .find_entry(hash(self.list[at].key()), |&i| i == index)
            {
                entry.remove();
            }
            let last = (self.list.len() - 1) as u32;
            self.list.swap_remove(at);
            if last != index {
                if let Some(slot) = self
                    .table
                    .find_mut(hash(self.list[at].key()), |&i| i == last)
                {
                    *slot = index;
                }
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.table.clear();
        self.list.clear();
    }
}
