//! A relay's memory follows its connections: each one holds buffers, an outbox, tasks and
//! table entries, all freed when it closes. The allocator gives freed pages back
//! ([`shared::alloc`]); this module keeps the relay's own tables from holding on to the room of
//! their busiest moment.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Smallest capacity [`shrink_sparse`] shrinks to: small tables are not worth rehashing.
const SHRINK_FLOOR: usize = 64;

/// Gives back most of a map's table once the map is mostly empty. A hash table keeps the
/// capacity of its busiest moment (the sessions of 3 000 sockets leave a table for 3 000
/// behind), so, called after a removal, this shrinks a map under a quarter full to twice its
/// length. Each shrink at least halves the capacity, so the rehashing costs less than the
/// removals that led to it.
pub fn shrink_sparse<K: Eq + Hash, V, S: BuildHasher>(map: &mut HashMap<K, V, S>) {
    if map.capacity() > SHRINK_FLOOR && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(SHRINK_FLOOR));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_emptied_after_a_peak_gives_its_table_back() {
        let mut map: HashMap<u32, u32> = (0..3000).map(|i| (i, i)).collect();
        let peak = map.capacity();
        let mut shrinks = 0;
        for i in 0..3000 {
            map.remove(&i);
            let before = map.capacity();
            shrink_sparse(&mut map);
            shrinks += usize::from(map.capacity() < before);
        }
        assert!(peak >= 3000);
        assert!(map.capacity() <= 2 * SHRINK_FLOOR, "{}", map.capacity());
        assert!(shrinks <= 8, "shrinks are amortised: {shrinks}");
    }

    #[test]
    fn a_busy_or_small_map_is_left_alone() {
        let mut busy: HashMap<u32, u32> = (0..3000).map(|i| (i, i)).collect();
        let capacity = busy.capacity();
        busy.remove(&0);
        shrink_sparse(&mut busy);
        // (A removal may leave a tombstone, which costs one slot of capacity.)
        assert!(
            busy.capacity() + 1 >= capacity,
            "{} < {capacity}",
            busy.capacity()
        );
        let mut small: HashMap<u32, u32> = (0..10).map(|i| (i, i)).collect();
        let capacity = small.capacity();
        small.clear();
        shrink_sparse(&mut small);
        assert_eq!(small.capacity(), capacity);
    }
}
