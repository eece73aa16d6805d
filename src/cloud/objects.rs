//! Log objects in S3-compatible storage: where they go, how they are named, and a bounded cache
//! of byte ranges read back.
//!
//! Invariants: an object is written once under a fresh name and never changed (so a cached
//! range can never be stale); object names embed the broker id, the time and random bits, so
//! two brokers never write the same name; the cache never holds more than its byte budget.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::Mutex;

use super::error::{CloudError, CloudResult};
use super::stats::Stats;
use crate::telemetry::names;

/// A parsed `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectsUrl {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl ObjectsUrl {
    pub fn parse(url: &str) -> CloudResult<Self> {
        let bad = || CloudError::BadObjectsUrl(url.to_owned());
        let rest = url.trim().strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = !bucket.is_empty()
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid_bucket {
            return Err(bad());
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }
}

/// The object store with the engine's counters and read cache.
#[derive(Debug)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    broker_id: u32,
    stats: Arc<Stats>,
    cache: RangeCache,
}

/// The creation time a log object's name embeds (`.../<ms:013>-<random:016x>.batches`).
pub fn named_ms(key: &str) -> Option<i64> {
    let name = key.rsplit('/').next()?;
    let (ms, rest) = name.split_once('-')?;
    let valid = ms.len() == 13
        && ms.bytes().all(|b| b.is_ascii_digit())
        && rest.len() == 16 + ".batches".len()
        && rest.ends_with(".batches");
    if !valid {
        return None;
    }
    ms.parse().ok()
}

impl Objects {
    /// An S3 client for `url`; endpoint, region, credentials and `AWS_ALLOW_HTTP` come from
    /// the environment, as every AWS tool reads them.
    pub fn s3(
        url: &ObjectsUrl,
        broker_id: u32,
        cache_bytes: usize,
        stats: Arc<Stats>,
    ) -> CloudResult<Self> {
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .build()
            .map_err(CloudError::objects("configuring the S3 client"))?;
        Ok(Self::with_store(
            Arc::new(store),
            url.prefix.clone(),
            broker_id,
            cache_bytes,
            stats,
        ))
    }

    pub fn with_store(
        store: Arc<dyn ObjectStore>,
        prefix: String,
        broker_id: u32,
        cache_bytes: usize,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            store,
            prefix,
            broker_id,
            stats,
            cache: RangeCache::new(cache_bytes),
        }
    }

    /// A fresh object name: `<prefix>/logs/<broker>/<ms>-<random>.batches`.
    pub fn new_key(&self, now_ms: i64) -> CloudResult<String> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random)
            .map_err(|error| CloudError::FlushFailed(format!("no randomness: {error}")))?;
        let name = format!(
            "logs/{}/{now_ms:013}-{:016x}.batches",
            self.broker_id,
            u64::from_be_bytes(random)
        );
        Ok(if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        })
    }

    /// Writes `body` as object `key`. The body may be several chunks (a flush's batches): they
    /// are streamed in order, never joined into one more copy.
    pub async fn put(&self, key: &str, body: impl Into<PutPayload>) -> CloudResult<()> {
        let body = body.into();
        self.stats.puts.inc();
        self.stats.put_bytes.add(body.content_length() as u64);
        let started = Instant::now();
        let put = self.store.put(&Path::from(key), body).await;
        metrics::histogram!(names::CLOUD_OBJECT_PUT_SECONDS).record(started.elapsed());
        put.map_err(CloudError::objects("writing a log object"))?;
        Ok(())
    }

    /// The bytes `range` of object `key`, from the cache when there.
    pub async fn get_range(&self, key: &str, range: Range<u64>) -> CloudResult<Bytes> {
        if let Some(hit) = self.cache.get(key, &range) {
            self.stats.cache_hits.inc();
            return Ok(hit);
        }
        self.stats.gets.inc();
        let started = Instant::now();
        let got = self.store.get_range(&Path::from(key), range.clone()).await;
        metrics::histogram!(names::CLOUD_OBJECT_GET_SECONDS).record(started.elapsed());
        let bytes = got.map_err(CloudError::objects("reading a log object"))?;
        self.stats.get_bytes.add(bytes.len() as u64);
        let wanted = range.end - range.start;
        if bytes.len() as u64 != wanted {
            return Err(CloudError::FlushFailed(format!(
                "object {key}: asked for {wanted} bytes, got {}",
                bytes.len()
            )));
        }
        self.cache.insert(key, range, bytes.clone());
        Ok(bytes)
    }

    /// The bytes of `range` of `key` if the cache holds exactly that range.
    pub fn cached(&self, key: &str, range: &Range<u64>) -> Option<Bytes> {
        let hit = self.cache.get(key, range);
        if hit.is_some() {
            self.stats.cache_hits.inc();
        }
        hit
    }

    /// The directories log objects are written under, one per broker that ever wrote
    /// (`<prefix>/logs/<broker>`).
    pub async fn log_dirs(&self) -> CloudResult<Vec<String>> {
        let logs = if self.prefix.is_empty() {
            Path::from("logs")
        } else {
            Path::from(format!("{}/logs", self.prefix))
        };
        let listed = self
            .store
            .list_with_delimiter(Some(&logs))
            .await
            .map_err(CloudError::objects("listing log directories"))?;
        Ok(listed
            .common_prefixes
            .into_iter()
            .map(|dir| dir.to_string())
            .collect())
    }

    /// Names of log objects in `dir` after `after` (name order) whose name says they were
    /// created before `cutoff_ms`, at most `limit`. Listing stops at the first younger one:
    /// names sort by creation time within a directory (13-digit zero-padded milliseconds) and
    /// S3 lists in name order. Names that are not the engine's are skipped, never returned.
    pub async fn logs_named_before(
        &self,
        dir: &str,
        after: Option<&str>,
        cutoff_ms: i64,
        limit: usize,
    ) -> CloudResult<Vec<String>> {
        use futures_lite::StreamExt;
        let dir = Path::from(dir);
        let mut listing = match after {
            Some(after) => self.store.list_with_offset(Some(&dir), &Path::from(after)),
            None => self.store.list(Some(&dir)),
        };
        let mut out = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(CloudError::objects("listing log objects"))?;
            let key = meta.location.to_string();
            let Some(named_ms) = named_ms(&key) else {
                continue;
            };
            if named_ms >= cutoff_ms || out.len() >= limit {
                break;
            }
            out.push(key);
        }
        Ok(out)
    }

    /// Deletes `key`; an object already gone counts as deleted.
    pub async fn delete(&self, key: &str) -> CloudResult<()> {
        match self.store.delete(&Path::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(CloudError::objects("deleting a log object")(error)),
        }
    }

    /// Remembers bytes just written, so tailing readers need no GET.
    pub fn cache_written(&self, key: &str, range: Range<u64>, bytes: Bytes) {
        self.cache.insert(key, range, bytes);
    }
}

type RangeKey = (Arc<str>, u64, u64);

/// Byte ranges of objects, evicted oldest first once over budget.
#[derive(Debug)]
struct RangeCache {
    budget: usize,
    state: Mutex<CacheState>,
}

#[derive(Debug, Default)]
struct CacheState {
    held: usize,
    entries: HashMap<RangeKey, Bytes>,
    order: VecDeque<RangeKey>,
}

impl RangeCache {
    fn new(budget: usize) -> Self {
        Self {
            budget,
            state: Mutex::new(CacheState::default()),
        }
    }

    fn get(&self, key: &str, range: &Range<u64>) -> Option<Bytes> {
        let state = self.state.lock();
        state
            .entries
            .get(&(Arc::from(key), range.start, range.end))
            .cloned()
    }

    fn insert(&self, key: &str, range: Range<u64>, bytes: Bytes) {
        if bytes.len() > self.budget {
            return;
        }
        let entry: RangeKey = (Arc::from(key), range.start, range.end);
        let mut state = self.state.lock();
        if state.entries.contains_key(&entry) {
            return;
        }
        state.held += bytes.len();
        state.entries.insert(entry.clone(), bytes);
        state.order.push_back(entry);
        while state.held > self.budget {
            let Some(oldest) = state.order.pop_front() else {
                break;
            };
            if let Some(evicted) = state.entries.remove(&oldest) {
                state.held -= evicted.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_give_back_their_creation_time() {
        let objects = Objects::with_store(
            Arc::new(object_store::memory::InMemory::new()),
            "cluster/a".to_owned(),
            7,
            0,
            Arc::new(Stats::default()),
        );
        let key = objects.new_key(1_234_567).expect("key");
        assert_eq!(named_ms(&key), Some(1_234_567));
        for foreign in [
            "cluster/a/logs/7/notes.txt",
            "cluster/a/logs/7/123-0123456789abcdef.batches",
            "cluster/a/logs/7/0000001234567-0123456789abcdef.tmp",
        ] {
            assert_eq!(named_ms(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn objects_urls_parse() {
        let url = ObjectsUrl::parse("s3://logs/a/b/").expect("valid");
        assert_eq!((url.bucket.as_str(), url.prefix.as_str()), ("logs", "a/b"));
        let bare = ObjectsUrl::parse("s3://logs").expect("valid");
        assert_eq!(bare.prefix, "");
        assert!(ObjectsUrl::parse("http://logs").is_err());
        assert!(ObjectsUrl::parse("s3:///x").is_err());
    }

    #[test]
    fn the_cache_stays_within_its_budget() {
        let cache = RangeCache::new(10);
        cache.insert("a", 0..6, Bytes::from_static(b"012345"));
        cache.insert("b", 0..6, Bytes::from_static(b"abcdef"));
        assert!(cache.get("a", &(0..6)).is_none(), "oldest evicted");
        assert!(cache.get("b", &(0..6)).is_some());
        cache.insert("c", 0..11, Bytes::from_static(b"01234567890"));
        assert!(cache.get("c", &(0..11)).is_none(), "larger than the budget");
    }
}
