//! A node's simulated disk: redb's storage backend in memory, which remembers what was synced.
//! Reads see every write; `sync_data` makes the writes so far durable. A power cut keeps what
//! was durable and, of the pages written since, some drawn from the seed, each with its latest
//! content or not at all (a page cache writes back in no order), one of them perhaps torn
//! between sectors: what a disk may hold when the power goes before the next flush. Whatever a
//! node was told is durable must survive it.

use rand::rngs::StdRng;
use rand::RngExt;
use redb::StorageBackend;
use std::collections::BTreeSet;
use std::io::Error as BackendIoError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// The unit a drive writes whole or not at all, in bytes: a torn page keeps whole sectors.
pub const SECTOR_BYTES: usize = 512;
/// The page cache's unit, in bytes: each dirty page is written back whole, or torn, or not.
pub const PAGE_BYTES: usize = 4096;

/// One write since the last sync: a length change or bytes at an offset.
#[derive(Clone, Debug)]
enum Unsynced {
    SetLen(u64),
    Write { offset: u64, data: Vec<u8> },
}

#[derive(Debug, Default)]
struct Platters {
    /// What reads see.
    current: Vec<u8>,
    /// What a power cut cannot take.
    durable: Vec<u8>,
    unsynced: Vec<Unsynced>,
    /// Whether a database has it open (redb closes its backend when the database goes).
    open: bool,
    /// The disk as the power left it (durable image and the writes not yet synced then), from
    /// the moment of a power cut until the disk is restored: what the dying node writes after
    /// it never reaches the disk.
    cut: Option<AtCut>,
    /// Disk operations (writes, length changes, syncs) left before the power goes, when a cut
    /// is on its way: it may fall in the middle of a commit.
    cut_in_ops: Option<u32>,
}

/// The disk at the moment its power went.
#[derive(Debug)]
struct AtCut {
    /// What the last sync made durable.
    durable: Vec<u8>,
    /// What the page cache held: every write so far, in order (the latest content of a page).
    cached: Vec<u8>,
    /// The pages written since the last sync, by index.
    dirty: BTreeSet<usize>,
}

/// Takes the disk as the power leaves it: the durable image, the page cache over it, and which
/// pages are dirty, `in_flight` (the operation under way) included.
fn cut(platters: &mut Platters, power: &AtomicBool, in_flight: Option<Unsynced>) {
    if platters.cut.is_none() {
        let mut cached = platters.durable.clone();
        let mut dirty = BTreeSet::new();
        for write in platters.unsynced.iter().chain(in_flight.as_ref()) {
            apply(&mut cached, write);
            if let Unsynced::Write { offset, data } = write {
                let first = usize::try_from(*offset).unwrap_or(usize::MAX) / PAGE_BYTES;
                let last = (usize::try_from(*offset).unwrap_or(usize::MAX) + data.len().max(1) - 1) / PAGE_BYTES;
                dirty.extend(first..=last);
            }
        }
        platters.cut = Some(AtCut { durable: platters.durable.clone(), cached, dirty });
    }
    platters.cut_in_ops = None;
    power.store(false, Ordering::Relaxed);
}

/// Counts one disk operation towards a planned cut; true when the power goes with it.
fn countdown(platters: &mut Platters) -> bool {
    match platters.cut_in_ops {
        Some(0) => true,
        Some(n) => {
            platters.cut_in_ops = Some(n - 1);
            false
        }
        None => false,
    }
}

fn apply(image: &mut Vec<u8>, write: &Unsynced) {
    match write {
        Unsynced::SetLen(len) => image.resize(usize::try_from(*len).unwrap_or(usize::MAX), 0),
        Unsynced::Write { offset, data } => {
            let start = usize::try_from(*offset).unwrap_or(usize::MAX);
            let end = start.saturating_add(data.len());
            if image.len() < end {
                image.resize(end, 0);
            }
            image[start..end].copy_from_slice(data);
        }
    }
}

/// The disk, shared by every incarnation of one node. Clones share it.
#[derive(Clone, Debug)]
pub struct SimDisk {
    platters: Arc<Mutex<Platters>>,
    /// Whether the node has power; the network carries nothing to or from a node without it.
    power: Arc<AtomicBool>,
}

impl Default for SimDisk {
    fn default() -> Self {
        SimDisk { platters: Arc::default(), power: Arc::new(AtomicBool::new(true)) }
    }
}

/// What a power cut left of the pages dirty since the last sync.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CutReport {
    pub dirty_pages: usize,
    pub pages_landed: usize,
    pub torn: bool,
}

impl SimDisk {
    fn lock(&self) -> MutexGuard<'_, Platters> {
        self.platters.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The backend redb opens, or `None` while an earlier incarnation's database still has
    /// the disk: two databases on one disk would corrupt it, as two processes on one file.
    pub fn backend(&self) -> Option<SimBackend> {
        let mut platters = self.lock();
        if platters.open {
            return None;
        }
        platters.open = true;
        Some(SimBackend { disk: self.clone() })
    }

    pub fn in_use(&self) -> bool {
        self.lock().open
    }

    /// The node's power switch, which the network reads.
    pub fn power(&self) -> Arc<AtomicBool> {
        self.power.clone()
    }

    pub fn has_power(&self) -> bool {
        self.power.load(Ordering::Relaxed)
    }

    /// The power goes now: nothing written from here on reaches the disk.
    pub fn cut_power(&self) {
        cut(&mut self.lock(), &self.power, None);
    }

    /// The power goes after `ops` more disk operations (0: at the next one), perhaps in the
    /// middle of a commit.
    pub fn cut_power_in(&self, ops: u32) {
        let mut platters = self.lock();
        if platters.cut.is_none() {
            platters.cut_in_ops = Some(ops);
        }
    }

    /// Power back, for the node's next incarnation.
    pub fn power_on(&self) {
        self.lock().cut_in_ops = None;
        self.power.store(true, Ordering::Relaxed);
    }

    /// Once the dead node's database has let go of the disk: the disk is what its last sync
    /// made durable, with each page dirty in the page cache at the cut written back whole or
    /// not at all, drawn from `rng` (write-back keeps no order), and one of those written back
    /// perhaps torn between sectors. The file's length is the cached one if it grew or shrank
    /// since the sync, or the durable one, drawn alike (a length is metadata, flushed apart).
    pub fn restore_after_cut(&self, rng: &mut StdRng) -> CutReport {
        let mut platters = self.lock();
        assert!(!platters.open, "a disk is restored only once its database is gone");
        let Some(at) = platters.cut.take() else { return CutReport::default() };
        let len = if rng.random_range(0..2) == 0 { at.cached.len() } else { at.durable.len() };
        let mut image = at.durable.clone();
        image.resize(len, 0);
        let mut report = CutReport { dirty_pages: at.dirty.len(), ..CutReport::default() };
        let landed: Vec<usize> = at.dirty.iter().copied().filter(|_| rng.random_range(0..2) == 0).collect();
        let torn =
            (!landed.is_empty() && rng.random_range(0..2) == 0).then(|| landed[rng.random_range(0..landed.len())]);
        for &page in &landed {
            let start = page * PAGE_BYTES;
            let mut end = (start + PAGE_BYTES).min(len).min(at.cached.len());
            if torn == Some(page) {
                end = end.min(start + rng.random_range(1..PAGE_BYTES / SECTOR_BYTES) * SECTOR_BYTES);
                report.torn = true;
            }
            if start < end {
                image[start..end].copy_from_slice(&at.cached[start..end]);
            }
        }
        report.pages_landed = landed.len();
        platters.current = image.clone();
        platters.durable = image;
        platters.unsynced.clear();
        report
    }

    /// Whether a cut has happened and the disk is not yet restored.
    pub fn is_cut(&self) -> bool {
        self.lock().cut.is_some()
    }
}

/// One incarnation's handle on the disk.
#[derive(Debug)]
pub struct SimBackend {
    disk: SimDisk,
}

impl StorageBackend for SimBackend {
    fn len(&self) -> Result<u64, BackendIoError> {
        Ok(self.disk.lock().current.len() as u64)
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BackendIoError> {
        let platters = self.disk.lock();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let end = start.saturating_add(out.len());
        let bytes = platters
            .current
            .get(start..end)
            .ok_or_else(|| BackendIoError::new(std::io::ErrorKind::UnexpectedEof, "read past the end"))?;
        out.copy_from_slice(bytes);
        Ok(())
    }

    fn set_len(&self, len: u64) -> Result<(), BackendIoError> {
        let mut platters = self.disk.lock();
        let write = Unsynced::SetLen(len);
        if countdown(&mut platters) {
            cut(&mut platters, &self.disk.power, Some(write.clone()));
        }
        apply(&mut platters.current, &write);
        platters.unsynced.push(write);
        Ok(())
    }

    fn sync_data(&self) -> Result<(), BackendIoError> {
        let mut platters = self.disk.lock();
        if countdown(&mut platters) {
            // The power goes before the flush: nothing of it lands.
            cut(&mut platters, &self.disk.power, None);
        }
        let unsynced = std::mem::take(&mut platters.unsynced);
        for write in &unsynced {
            apply(&mut platters.durable, write);
        }
        Ok(())
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), BackendIoError> {
        let mut platters = self.disk.lock();
        let write = Unsynced::Write { offset, data: data.to_vec() };
        if countdown(&mut platters) {
            cut(&mut platters, &self.disk.power, Some(write.clone()));
        }
        apply(&mut platters.current, &write);
        platters.unsynced.push(write);
        Ok(())
    }

    fn close(&self) -> Result<(), BackendIoError> {
        self.disk.lock().open = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn synced_writes_survive_a_power_cut_and_unsynced_pages_land_whole_torn_or_not_at_all() {
        let two_pages = vec![b'N'; 2 * PAGE_BYTES];
        let disk = SimDisk::default();
        let backend = disk.backend().unwrap();
        assert!(disk.backend().is_none(), "one database at a time");
        backend.write(0, b"durable").unwrap();
        backend.sync_data().unwrap();
        backend.write(0, &two_pages).unwrap();
        let mut head = [0u8; 7];
        backend.read(0, &mut head).unwrap();
        assert_eq!(&head, b"NNNNNNN", "reads see unsynced writes");

        let (mut lost, mut landed, mut torn) = (false, false, false);
        for seed in 0..128 {
            let disk = SimDisk::default();
            let backend = disk.backend().unwrap();
            backend.write(0, b"durable").unwrap();
            backend.sync_data().unwrap();
            backend.write(0, &two_pages).unwrap();
            disk.cut_power();
            assert!(!disk.has_power());
            // What the dying database writes after the cut never lands.
            backend.write(0, b"after the cut, never").unwrap();
            backend.sync_data().unwrap();
            backend.close().unwrap();
            disk.restore_after_cut(&mut StdRng::seed_from_u64(seed));
            let after = disk.backend().unwrap();
            let len = after.len().unwrap() as usize;
            assert!(len == 7 || len == 2 * PAGE_BYTES, "the durable or the cached length: {len}");
            let mut page = vec![0u8; len.min(PAGE_BYTES)];
            after.read(0, &mut page).unwrap();
            assert!(!page.starts_with(b"after"));
            if page.starts_with(b"durable") {
                lost = true;
            } else if page.iter().all(|b| *b == b'N') && len > 7 {
                landed = true;
            } else if len > 7 {
                // Whole sectors of the new page, then the old (zeros past the old end).
                let new = page.iter().take_while(|b| **b == b'N').count();
                assert_eq!(new % SECTOR_BYTES, 0, "torn at a sector boundary");
                assert!(page[new..].iter().all(|b| *b == 0), "then the old page");
                torn = true;
            }
        }
        assert!(lost && landed && torn, "lost {lost}, landed whole {landed}, torn {torn}");
    }
}
