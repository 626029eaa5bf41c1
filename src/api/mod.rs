//! The HTTP API's request and response types, shared by the server (`crate::http`) and the
//! CLI's client (`crate::client`), and the OpenAPI 3.1 document made from them (`openapi`).
//!
//! Every JSON body the API reads or writes is one of these types (serde derives, no `json!`
//! literals), so they are at once the API's documentation and its wire format:
//! - `train`: `POST /train/{model_type}[/async]`: [`TrainRequest`] (and its one merge with a
//!   model's defaults, [`TrainRequest::spec`]), [`SubmitAnswer`], [`SyncQuery`].
//! - `batch`: `POST /tasks`, many submissions at once: [`BatchItemRequest`], [`BatchAnswer`].
//! - `tasks`: status, result, cancel, inspect and the task list.
//! - `datasets`: upload, list, delete; `predict`: `POST /models/{id}/predict` (and by a
//!   registered name, version or alias); `models`: the model registry.
//! - `cluster`: nodes, drain, purge, health; `schedules`: the schedule routes.
//! - `error`: the error body every refusal has, `{"success": false, "error": {code, message}}`.
//! - `schema`: how types of the store and the training library appear in the document.
//!
//! Query structs refuse unknown parameters (400 `invalid_query`), as bodies refuse unknown fields.

pub mod batch;
pub mod cluster;
pub mod datasets;
pub mod error;
pub mod models;
pub mod openapi;
pub mod predict;
pub mod schedules;
pub mod schema;
pub mod sweeps;
pub mod tasks;
pub mod train;

pub use batch::*;
pub use cluster::*;
pub use datasets::*;
pub use error::*;
pub use models::*;
pub use predict::*;
pub use schedules::*;
pub use sweeps::*;
pub use tasks::*;
pub use train::*;
