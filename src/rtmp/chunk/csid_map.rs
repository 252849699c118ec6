//! Per-chunk-stream state, keyed by chunk stream id.
//!
//! A connection uses a handful of chunk streams (FFmpeg 2-8, OBS 2-4) and the decoder caps
//! them (64 by default), while every chunk looks its stream up. A short `Vec` scanned
//! linearly beats hashing each lookup (SipHash showed up in profiles of the relay's hot
//! path) and keeps the entries together in memory.

/// A small map from chunk stream id to `T`, in insertion order.
#[derive(Debug, Clone)]
pub(super) struct CsidMap<T> {
    entries: Vec<(u32, T)>,
}

impl<T> Default for CsidMap<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
        }
    }
}

impl<T> CsidMap<T> {
    /// Number of chunk streams known.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The state of `csid`, if it was seen.
    pub(super) fn get(&self, csid: u32) -> Option<&T> {
        self.entries
            .iter()
            .find(|(id, _)| *id == csid)
            .map(|(_, value)| value)
    }

    /// The state of `csid`, mutably, if it was seen.
    pub(super) fn get_mut(&mut self, csid: u32) -> Option<&mut T> {
        self.entries
            .iter_mut()
            .find(|(id, _)| *id == csid)
            .map(|(_, value)| value)
    }

    /// Sets the state of `csid`.
    pub(super) fn insert(&mut self, csid: u32, value: T) {
        match self.get_mut(csid) {
            Some(slot) => *slot = value,
            None => self.entries.push((csid, value)),
        }
    }

    /// The state of `csid`, created with `T::default()` on first use.
    pub(super) fn get_or_default(&mut self, csid: u32) -> &mut T
    where
        T: Default,
    {
        let index = match self.entries.iter().position(|(id, _)| *id == csid) {
            Some(index) => index,
            None => {
                self.entries.push((csid, T::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[index].1
    }

    /// Every state, in insertion order.
    #[cfg(test)]
    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, value)| value)
    }

    /// Forgets every chunk stream.
    pub(super) fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_like_a_map() {
        let mut map = CsidMap::default();
        assert_eq!(map.get(3), None);
        map.insert(3, 30);
        map.insert(4, 40);
        map.insert(3, 31);
        assert_eq!(map.len(), 2);
        assert_eq!(map.get(3), Some(&31));
        *map.get_or_default(5) += 7;
        *map.get_or_default(4) += 1;
        assert_eq!(map.get(5), Some(&7));
        assert_eq!(map.get_mut(4).copied(), Some(41));
        assert_eq!(map.values().copied().collect::<Vec<_>>(), vec![31, 41, 7]);
        map.clear();
        assert_eq!(map.len(), 0);
    }
}
