//! `Activity`: what flows between modules, a tensor or a table of activities.

use bigdl_tensor::Tensor;

use crate::error::{NnError, Result};

/// A module's input or output: one tensor, or a table (list) of activities for
/// multi-input and multi-output modules (Torch7's tables).
#[derive(Clone, Debug)]
pub enum Activity {
    /// One tensor.
    Tensor(Tensor<f32>),
    /// An ordered list of activities.
    Table(Vec<Activity>),
}

impl Activity {
    /// The tensor, or an error naming `layer` if this is a table.
    pub fn tensor(&self, layer: &str) -> Result<&Tensor<f32>> {
        match self {
            Activity::Tensor(t) => Ok(t),
            Activity::Table(_) => Err(NnError::Activity {
                layer: layer.to_string(),
                expected: "a tensor",
                got: "a table",
            }),
        }
    }

    /// The table, or an error naming `layer` if this is a tensor.
    pub fn table(&self, layer: &str) -> Result<&[Activity]> {
        match self {
            Activity::Table(t) => Ok(t),
            Activity::Tensor(_) => Err(NnError::Activity {
                layer: layer.to_string(),
                expected: "a table",
                got: "a tensor",
            }),
        }
    }

    /// Consumes the activity, returning its tensor (or an error naming `layer`).
    pub fn into_tensor(self, layer: &str) -> Result<Tensor<f32>> {
        match self {
            Activity::Tensor(t) => Ok(t),
            Activity::Table(_) => Err(NnError::Activity {
                layer: layer.to_string(),
                expected: "a tensor",
                got: "a table",
            }),
        }
    }
}

impl From<Tensor<f32>> for Activity {
    fn from(t: Tensor<f32>) -> Activity {
        Activity::Tensor(t)
    }
}

impl From<Vec<Activity>> for Activity {
    fn from(t: Vec<Activity>) -> Activity {
        Activity::Table(t)
    }
}
