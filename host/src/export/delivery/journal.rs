//! A queue's write-ahead journal on disk: what a disk queue holds survives a crash, and what
//! its memory cannot hold waits here, to be read back in order.
//!
//! Entries (one per push, holding its items) are appended to numbered segment files, each
//! framed as `[length u32 LE][CRC-32 u32 LE][payload]`, and can be read back by where they
//! are ([`At`]). Items are resolved (delivered, refused or dropped) one by one in memory; a
//! segment whose items are all resolved is deleted. On start every remaining segment is
//! replayed, so an acknowledged item is delivered at least once; a torn tail or a corrupt entry
//! ends its segment's replay, and the bytes skipped are counted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

pub use crate::config::Fsync;

/// Segments are closed, and a new one started, past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// Bytes of an entry's frame before its payload.
const FRAME: usize = 8;

/// The segment an entry was written to: what resolving it needs.
pub type Segment = u64;

/// Where an entry is: its segment, the offset of its frame there, and the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    /// The segment.
    pub segment: Segment,
    offset: u64,
    len: u64,
}

impl At {
    /// The bytes its frame takes on disk.
    pub fn bytes(&self) -> u64 {
        self.len
    }
}

/// An entry found at start: where it is, and its payload.
pub type Entry = (At, Vec<u8>);

/// What replaying a journal found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Replayed {
    /// Entries read back.
    pub entries: u64,
    /// Items in them.
    pub items: u64,
    /// Bytes skipped: torn tails and corrupt entries, with whatever followed them.
    pub skipped_bytes: u64,
    /// Segments that ended early because of them.
    pub damaged_segments: u64,
}

/// A journal directory and its open segment.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    fsync: Fsync,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The segment written now: its number, file and size.
    writing: Option<(Segment, File, u64)>,
    /// Unresolved items per segment.
    live: BTreeMap<Segment, u64>,
    /// Bytes of each segment file but the one written now.
    sizes: BTreeMap<Segment, u64>,
    next: Segment,
    synced: Instant,
}

fn name(segment: Segment) -> String {
    format!("{segment:016}.wal")
}

impl Journal {
    /// Opens the journal in `dir` (creating it), returning it with the payloads of every entry
    /// it still holds, oldest first, each with its segment; `items` says how many items an
    /// entry holds.
    pub fn open(
        dir: &Path,
        fsync: Fsync,
        items: impl Fn(&[u8]) -> u64,
    ) -> io::Result<(Self, Vec<Entry>, Replayed)> {
        fs::create_dir_all(dir)?;
        let mut segments: Vec<Segment> = fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        segments.sort_unstable();
        let mut entries = Vec::new();
        let mut replayed = Replayed::default();
        let mut live = BTreeMap::new();
        let mut sizes = BTreeMap::new();
        for &segment in &segments {
            let path = dir.join(name(segment));
            let mut bytes = Vec::new();
            File::open(&path)?.read_to_end(&mut bytes)?;
            let (found, skipped) = read_segment(&bytes);
            let size = bytes.len() as u64;
            if skipped > 0 {
                replayed.skipped_bytes += skipped as u64;
                replayed.damaged_segments += 1;
                tracing::warn!(
                    "disk queue {}: {skipped} bytes of a torn or corrupt tail skipped",
                    path.display()
                );
            }
            if found.is_empty() {
                fs::remove_file(&path)?;
                continue;
            }
            replayed.entries += found.len() as u64;
            live.insert(segment, found.iter().map(|(_, p)| items(p)).sum());
            sizes.insert(segment, size);
            entries.extend(found.into_iter().map(|(offset, p)| {
                let len = (FRAME + p.len()) as u64;
                (
                    At {
                        segment,
                        offset,
                        len,
                    },
                    p,
                )
            }));
        }
        let journal = Self {
            dir: dir.to_owned(),
            fsync,
            state: Mutex::new(State {
                writing: None,
                live,
                sizes,
                next: segments.last().map_or(1, |s| s + 1),
                synced: Instant::now(),
            }),
        };
        Ok((journal, entries, replayed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `entry`, holding `items` items, synced as the policy says, and returns where
    /// it is; on an error nothing of it counts as written.
    pub fn append(&self, entry: &[u8], items: u64) -> io::Result<At> {
        let mut s = self.lock();
        if s.writing
            .as_ref()
            .is_none_or(|(_, _, size)| *size >= SEGMENT_BYTES)
        {
            self.rotate(&mut s)?;
        }
        let Some((segment, file, size)) = s.writing.as_mut() else {
            return Err(io::Error::other("no segment is open"));
        };
        let len = u32::try_from(entry.len())
            .map_err(|_| io::Error::other("an entry is larger than 4 GiB"))?;
        let mut frames = Vec::with_capacity(FRAME + entry.len());
        frames.extend_from_slice(&len.to_le_bytes());
        frames.extend_from_slice(&crc32(entry).to_le_bytes());
        frames.extend_from_slice(entry);
        if let Err(e) = file.write_all(&frames) {
            // Whatever part was written is a torn tail: cut it off, so the segment stays whole.
            let _ = file.set_len(*size);
            return Err(e);
        }
        let at = At {
            segment: *segment,
            offset: *size,
            len: frames.len() as u64,
        };
        *size += frames.len() as u64;
        let segment = *segment;
        let sync = match self.fsync {
            Fsync::Always => true,
            Fsync::Never => false,
            Fsync::Every(period) => s.synced.elapsed() >= period,
        };
        if sync {
            if let Some((_, file, _)) = s.writing.as_ref() {
                file.sync_data()?;
            }
            s.synced = Instant::now();
        }
        *s.live.entry(segment).or_default() += items;
        Ok(at)
    }

    /// The payload of the entry at `at`, read back from its segment.
    pub fn read(&self, at: At) -> io::Result<Vec<u8>> {
        use std::io::{Seek, SeekFrom};
        let mut file = File::open(self.dir.join(name(at.segment)))?;
        file.seek(SeekFrom::Start(at.offset))?;
        let mut frame = [0u8; FRAME];
        file.read_exact(&mut frame)?;
        let word =
            |i: usize| u32::from_le_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
        let mut payload = vec![0; word(0) as usize];
        file.read_exact(&mut payload)?;
        if crc32(&payload) != word(4) {
            return Err(io::Error::other(format!(
                "entry at {} of segment {} is corrupt",
                at.offset, at.segment
            )));
        }
        Ok(payload)
    }

    /// Starts a new segment; the one before is deleted if nothing in it is unresolved.
    fn rotate(&self, s: &mut State) -> io::Result<()> {
        let segment = s.next;
        let path = self.dir.join(name(segment));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // The new file's name must survive a power loss too.
        if let Ok(dir) = File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        s.next += 1;
        if let Some((old, _, size)) = s.writing.replace((segment, file, 0)) {
            s.sizes.insert(old, size);
            self.collect(s, old);
        }
        Ok(())
    }

    /// Resolves one item of each of `segments`: a segment left with none is deleted, unless
    /// it is the one written now.
    pub fn resolve(&self, segments: impl IntoIterator<Item = Segment>) {
        let mut s = self.lock();
        let mut emptied = Vec::new();
        for segment in segments {
            if let Some(live) = s.live.get_mut(&segment) {
                *live = live.saturating_sub(1);
                if *live == 0 {
                    emptied.push(segment);
                }
            }
        }
        for segment in emptied {
            self.collect(&mut s, segment);
        }
    }

    /// Deletes `segment` if none of its items is unresolved; the segment being written is
    /// emptied instead, so resolved entries never hold disk space.
    fn collect(&self, s: &mut State, segment: Segment) {
        if s.live.get(&segment).is_some_and(|n| *n > 0) {
            return;
        }
        if let Some((_, file, size)) = s.writing.as_mut().filter(|(w, _, _)| *w == segment) {
            match file.set_len(0) {
                Ok(()) => *size = 0,
                Err(e) => tracing::warn!("disk queue {}: {e}", self.dir.display()),
            }
            return;
        }
        s.live.remove(&segment);
        s.sizes.remove(&segment);
        if let Err(e) = fs::remove_file(self.dir.join(name(segment))) {
            tracing::warn!("disk queue {}: {e}", self.dir.display());
        }
    }

    /// Bytes the journal's segments take on disk.
    pub fn disk_bytes(&self) -> u64 {
        let s = self.lock();
        let writing = s.writing.as_ref().map_or(0, |(_, _, size)| *size);
        s.sizes.values().sum::<u64>() + writing
    }
}

/// The payloads of a segment's whole entries, and how many bytes after them were torn or
/// corrupt.
fn read_segment(bytes: &[u8]) -> (Vec<(u64, Vec<u8>)>, usize) {
    let mut found = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= FRAME {
        let word = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or_default());
        let len = word(at) as usize;
        let crc = word(at + 4);
        let Some(payload) = bytes.get(at + FRAME..at + FRAME + len) else {
            break;
        };
        if crc32(payload) != crc {
            break;
        }
        found.push((at as u64, payload.to_vec()));
        at += FRAME + len;
    }
    (found, bytes.len() - at)
}

/// CRC-32 (IEEE) of `bytes`.
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    /// Each test entry holds one item.
    fn one(_: &[u8]) -> u64 {
        1
    }

    fn append_all(journal: &Journal, entries: &[Vec<u8>]) -> Vec<At> {
        entries
            .iter()
            .map(|e| journal.append(e, 1).expect("append"))
            .collect()
    }

    #[test]
    fn entries_are_replayed_until_resolved_and_emptied_segments_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let (journal, old, replayed) = Journal::open(dir.path(), Fsync::Always, one).expect("open");
        assert!(old.is_empty());
        assert_eq!(replayed, Replayed::default());
        let places = append_all(&journal, &payloads(5));
        assert_eq!(journal.read(places[3]).expect("read back"), b"entry 3");
        journal.resolve(places[..2].iter().map(|at| at.segment));
        drop(journal);
        let (journal, again, replayed) =
            Journal::open(dir.path(), Fsync::Always, one).expect("open");
        // Resolved entries of a segment still holding others come back: at least once.
        assert_eq!(again.len(), 5);
        assert_eq!(again[4].1, b"entry 4");
        assert_eq!(replayed.entries, 5);
        let segments: Vec<Segment> = again.iter().map(|(at, _)| at.segment).collect();
        journal.append(b"new", 1).expect("append");
        journal.resolve(segments);
        // The replayed segment is resolved and not being written: gone.
        let files = fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(files, 1, "only the new segment is left");
        assert_eq!(journal.disk_bytes(), (FRAME + 3) as u64);
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn torn_and_corrupt_tails_are_skipped_and_counted() {
        let dir = tempfile::tempdir().expect("dir");
        let (journal, _, _) = Journal::open(dir.path(), Fsync::Never, one).expect("open");
        append_all(&journal, &payloads(3));
        drop(journal);
        let path = dir.path().join(name(1));
        let mut bytes = fs::read(&path).expect("read");
        let whole = bytes.len();
        // A torn write: half a frame more.
        bytes.extend_from_slice(&[9, 0, 0, 0, 1]);
        fs::write(&path, &bytes).expect("write");
        let (_, found, replayed) = Journal::open(dir.path(), Fsync::Never, one).expect("open");
        assert_eq!(
            (
                found.len(),
                replayed.skipped_bytes,
                replayed.damaged_segments
            ),
            (3, 5, 1)
        );
        // A flipped bit in the second entry: the first is kept, the rest skipped.
        let mut bytes = fs::read(&path).expect("read");
        bytes[whole / 3 + FRAME + 2] ^= 0x40;
        fs::write(&path, &bytes).expect("write");
        let (_, found, replayed) = Journal::open(dir.path(), Fsync::Never, one).expect("open");
        assert_eq!(found.len(), 1);
        assert_eq!(replayed.skipped_bytes as usize, bytes.len() - (FRAME + 7));
    }
}
