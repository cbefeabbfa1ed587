//! The symbol table of a Remote-Write 2.0 request: every string once, in one buffer, found
//! by hash, referred to by index (`symbols[0]` is the empty string).

use hashbrown::HashTable;

/// See the module documentation.
#[derive(Default)]
pub(crate) struct Symbols {
    text: String,
    /// Where each symbol ends in `text`.
    ends: Vec<usize>,
    index: HashTable<u32>,
    hasher: hashbrown::DefaultHashBuilder,
    /// The symbols of strings seen lately, by address: the store hands out the same `&str`
    /// for a label key or value each time, so most lookups skip hashing (the text is still
    /// compared).
    recent: Vec<(usize, u32)>,
}

/// Slots of [`Symbols::recent`].
const RECENT: usize = 1024;

impl Symbols {
    /// Empties the table, keeping its room; interns `""` as symbol 0.
    pub(crate) fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
        self.index.clear();
        self.recent.clear();
        self.recent.resize(RECENT, (0, 0));
        self.intern("");
    }

    /// The bytes the table adds to a request, about (each symbol's tag and length take at
    /// least two).
    pub(crate) fn size(&self) -> usize {
        self.text.len() + 2 * self.ends.len()
    }

    /// [`intern`](Self::intern), through the cache of recent addresses.
    pub(crate) fn intern_at(&mut self, text: &str) -> u32 {
        let address = text.as_ptr() as usize;
        let slot = ((address >> 3) ^ text.len()) % RECENT;
        match self.recent.get(slot) {
            Some(&(seen, at)) if seen == address && self.get(at) == text => at,
            _ => {
                let at = self.intern(text);
                if let Some(recent) = self.recent.get_mut(slot) {
                    *recent = (address, at);
                }
                at
            }
        }
    }

    pub(crate) fn get(&self, at: u32) -> &str {
        let at = at as usize;
        let start = if at == 0 { 0 } else { self.ends[at - 1] };
        &self.text[start..self.ends[at]]
    }

    /// The reference of `text`, interning it if new.
    pub(crate) fn intern(&mut self, text: &str) -> u32 {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(text);
        let Self {
            text: all,
            ends,
            index,
            hasher,
            ..
        } = self;
        let symbol = |at: u32| {
            let at = at as usize;
            let start = if at == 0 { 0 } else { ends[at - 1] };
            &all[start..ends[at]]
        };
        if let Some(at) = index.find(hash, |at| symbol(*at) == text) {
            return *at;
        }
        let at = ends.len() as u32;
        all.push_str(text);
        ends.push(all.len());
        let (all, ends) = (&*all, &*ends);
        index.insert_unique(hash, at, |at| {
            let at = *at as usize;
            let start = if at == 0 { 0 } else { ends[at - 1] };
            hasher.hash_one(&all[start..ends[at]])
        });
        at
    }

    /// Writes every symbol as `Request` field 4.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        for at in 0..self.ends.len() {
            crate::encode::wire::string(4, self.get(at as u32), out);
        }
    }
}
