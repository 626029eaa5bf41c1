//! `POST /datasets`, `GET /datasets`, `DELETE /datasets/{id}`.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::schema::DatasetInfoSchema;
use crate::store::DatasetInfo;

/// The query of `POST /datasets` (the body is the CSV, `Content-Type: text/csv`).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The data set's name, 1 to 100 characters.
    #[param(example = "houses")]
    pub name: Option<String>,
    /// The CSV column to predict.
    #[param(example = "price")]
    pub target: Option<String>,
    /// A token, for clients that cannot send headers (accepted on every route).
    pub token: Option<String>,
}

/// The answer of `POST /datasets` (201).
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetAnswer<'a> {
    pub success: bool,
    pub dataset_id: Uuid,
    #[schema(value_type = DatasetInfoSchema)]
    pub dataset: &'a DatasetInfo,
}

/// The answer of `GET /datasets`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetList {
    pub success: bool,
    /// The built-in data sets' names.
    #[schema(example = json!(["friedman1", "diabetes", "winequality"]))]
    pub builtin: &'static [&'static str],
    /// The uploaded data sets.
    #[schema(value_type = Vec<DatasetInfoSchema>)]
    pub datasets: Vec<DatasetInfo>,
}

/// The answer of `DELETE /datasets/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DatasetDeletedAnswer {
    pub success: bool,
    pub deleted: Uuid,
}
