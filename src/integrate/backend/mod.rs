//! Where a product's configuration lives: its JSON file, or its REST API. Both read the whole
//! document and write only what the plan changes.

pub mod api;
pub mod file;

use std::path::PathBuf;

use serde_json::Value;

use super::plan::Change;

/// How long one request to Mattermost's API may take when `integrate` writes its configuration.
pub const API_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Which back end the command line chose.
#[derive(Debug, Clone)]
pub enum Target {
    /// The configuration file; `None`: the first of the packaged locations that exists.
    File(Option<PathBuf>),
    /// The REST API at `url`, with the token in `token_file`.
    Api { url: String, token_file: PathBuf },
}

/// An opened back end with the document it read.
pub enum Backend {
    File(file::ConfigFile),
    Api {
        api: api::Api,
        url: String,
        doc: Value,
        runtime: tokio::runtime::Runtime,
    },
}

/// Why a back end failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    File(#[from] file::FileError),
    #[error(transparent)]
    Api(#[from] api::ApiError),
    #[error("cannot start the HTTP client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

impl Backend {
    /// Open `target` and read its document; `candidates` are the packaged file locations.
    pub fn open(target: &Target, candidates: &[&str]) -> Result<Backend, BackendError> {
        Backend::open_within(target, candidates, API_TIMEOUT)
    }

    /// [`open`](Self::open), with each API request limited to `timeout` (doctor's deadline is
    /// shorter: one slow Mattermost must not hold up the whole report).
    pub fn open_within(
        target: &Target,
        candidates: &[&str],
        timeout: std::time::Duration,
    ) -> Result<Backend, BackendError> {
        match target {
            Target::File(path) => {
                let path = match path {
                    Some(p) => p.clone(),
                    None => file::find(candidates)?,
                };
                Ok(Backend::File(file::ConfigFile::read(&path)?))
            }
            Target::Api { url, token_file } => {
                let api = api::Api::new(url, token_file)?.with_timeout(timeout);
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(BackendError::Runtime)?;
                let doc = runtime.block_on(api.get())?;
                Ok(Backend::Api {
                    api,
                    url: url.clone(),
                    doc,
                    runtime,
                })
            }
        }
    }

    /// The document as read.
    pub fn doc(&self) -> &Value {
        match self {
            Backend::File(f) => &f.doc,
            Backend::Api { doc, .. } => doc,
        }
    }

    /// What was read, for messages: the file's path or the server's URL.
    pub fn location(&self) -> String {
        match self {
            Backend::File(f) => f.path.display().to_string(),
            Backend::Api { url, .. } => url.clone(),
        }
    }

    /// Whether a key missing from the document may be added. A file may be partial (the product
    /// fills in defaults for what it lacks), the API's answer never is: a key missing there is one
    /// this version does not have, and would be dropped.
    pub fn may_add_keys(&self) -> bool {
        matches!(self, Backend::File(_))
    }

    /// Write `changes`; returns the file back-up's path, if any.
    pub fn write(&self, changes: &[Change]) -> Result<Option<PathBuf>, BackendError> {
        match self {
            Backend::File(f) => Ok(Some(f.write(changes)?)),
            Backend::Api {
                api, runtime, doc, ..
            } => {
                runtime.block_on(api.patch(doc, changes))?;
                Ok(None)
            }
        }
    }
}
