//! LMDB as a peer: one 4 KiB value under one key, in an environment in a directory of the
//! benchmark's own `/dev/shm` domain (tmpfs, like ckpt's arena: neither side touches a
//! disk), opened `MDB_NOSYNC` (a commit does not wait for msync/fsync).
//!
//! - put: `mdb_txn_begin` (read-write) + `mdb_put` + `mdb_txn_commit`;
//! - get: `mdb_txn_renew` of a reset read transaction + `mdb_get` + copy-out of the value
//!   into a private buffer + `mdb_txn_reset`.
//!
//! Through the `lmdb` crate: it opens an environment without `unsafe` (tools/ forbids it;
//! heed's `open` is an `unsafe fn`) and exposes `reset`/`renew`.

use std::hint::black_box;
use std::path::{Path, PathBuf};

use lmdb::{Database, DatabaseFlags, Environment, EnvironmentFlags, Transaction as _, WriteFlags};

/// The key every call uses.
const KEY: &[u8; 8] = b"bench-s0";

/// An LMDB environment with one value of `len` bytes stored.
#[derive(Debug)]
pub(super) struct Lmdb {
    env: Environment,
    db: Database,
    dir: PathBuf,
    len: usize,
}

impl Lmdb {
    /// Creates the environment in `dir` (made here; removed on drop) and stores the value.
    pub(super) fn open(dir: &Path, len: usize) -> Result<Self, lmdb::Error> {
        std::fs::create_dir_all(dir)
            .map_err(|e| lmdb::Error::Other(e.raw_os_error().unwrap_or(0)))?;
        let env = Environment::new()
            .set_flags(EnvironmentFlags::NO_SYNC)
            .set_map_size(64 << 20)
            .set_max_readers(16)
            .open(dir)?;
        let db = env.create_db(None, DatabaseFlags::empty())?;
        let mut txn = env.begin_rw_txn()?;
        txn.put(db, KEY, &vec![0x11u8; len], WriteFlags::empty())?;
        txn.commit()?;
        Ok(Self {
            env,
            db,
            dir: dir.to_owned(),
            len,
        })
    }

    /// The environment's directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// A put of `value` in its own committed write transaction.
    pub(super) fn put(&self, value: &[u8]) -> Result<(), lmdb::Error> {
        let mut txn = self.env.begin_rw_txn()?;
        txn.put(
            self.db,
            black_box(KEY),
            black_box(&value),
            WriteFlags::empty(),
        )?;
        txn.commit()
    }

    /// A reader that renews one read transaction per [`Reader::get`].
    pub(super) fn reader(&self) -> Result<Reader<'_>, lmdb::Error> {
        let inactive = self.env.begin_ro_txn()?.reset();
        Ok(Reader {
            lmdb: self,
            inactive: Some(inactive),
        })
    }
}

impl Drop for Lmdb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A reset read transaction kept between gets (the reader slot stays claimed).
#[derive(Debug)]
pub(super) struct Reader<'env> {
    lmdb: &'env Lmdb,
    inactive: Option<lmdb::InactiveTransaction<'env>>,
}

impl Reader<'_> {
    /// Renew, get, copy the value into `out`, reset.
    pub(super) fn get(&mut self, out: &mut [u8]) -> Result<(), lmdb::Error> {
        let inactive = self.inactive.take().ok_or(lmdb::Error::BadTxn)?;
        let txn = inactive.renew()?;
        let value = txn.get(self.lmdb.db, black_box(KEY))?;
        if value.len() != self.lmdb.len || out.len() != value.len() {
            return Err(lmdb::Error::BadValSize);
        }
        out.copy_from_slice(value);
        black_box(&mut *out);
        self.inactive = Some(txn.reset());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_is_read_back_by_a_renewed_reader() {
        let domain = ckpt_bench::BenchDomain::new().unwrap();
        let sut = Lmdb::open(&domain.path().join("lmdb"), 4096).unwrap();
        sut.put(&[0x42; 4096]).unwrap();
        let mut reader = sut.reader().unwrap();
        let mut out = vec![0; 4096];
        for _ in 0..3 {
            reader.get(&mut out).unwrap();
            assert!(out.iter().all(|b| *b == 0x42));
        }
        let dir = sut.dir().to_owned();
        drop(reader);
        drop(sut);
        assert!(!dir.exists());
    }
}
