//! The cloud engine's one error type, and how it reaches frontends through [`EngineError`].
//!
//! Invariant: every failure of PostgreSQL or the object store maps to a retriable engine error
//! (`EngineError::Io`/`Storage`, which Kafka answers as KAFKA_STORAGE_ERROR), never to a
//! silent success.

use tributary_api::EngineError;

/// Why a cloud engine call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    #[error("cluster.metadata_url is not a valid PostgreSQL URL: {0}")]
    BadMetadataUrl(#[source] tokio_postgres::Error),
    #[error("cluster.objects_url `{0}` is not of the form s3://bucket[/prefix]")]
    BadObjectsUrl(String),
    #[error("PostgreSQL failed during {context}: {source}")]
    Postgres {
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("object store failed during {context}: {source}")]
    Objects {
        context: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error(
        "the metadata schema is at version {found}, newer than the {known} this binary knows: upgrade the broker"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error(
        "partition {partition}: its high watermark in PostgreSQL moved under this broker (expected {expected}); another writer owns it"
    )]
    Fenced { partition: String, expected: i64 },
    #[error("this broker does not lead partition {0} (now); ask the leader")]
    NotLeader(String),
    #[error("flush failed: {0}")]
    FlushFailed(String),
    #[error("internal RPC: {0}")]
    Rpc(String),
    #[error("stored coordinates of {partition} are inconsistent: {detail}")]
    Inconsistent { partition: String, detail: String },
}

impl CloudError {
    /// Whether the object store said the object is not there (deleted after a merge moved
    /// its batches, when a reader still held the old coordinates).
    pub(crate) fn is_missing_object(&self) -> bool {
        matches!(
            self,
            Self::Objects {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    pub(crate) fn pg(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| Self::Postgres { context, source }
    }

    pub(crate) fn objects(context: &'static str) -> impl FnOnce(object_store::Error) -> Self {
        move |source| Self::Objects { context, source }
    }
}

impl From<CloudError> for EngineError {
    fn from(error: CloudError) -> Self {
        EngineError::Storage(Box::new(error))
    }
}

/// Shorthand for cloud engine results.
pub type CloudResult<T> = Result<T, CloudError>;
