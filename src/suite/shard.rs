//! `--shard I/N` and `--shard auto` (the index from a scheduler's environment).

use crate::error::{Error, Result};
use crate::evaluate::Shard;

/// Parses `I/N` (1-based), or `auto` with the environment `env` (Slurm job arrays, or a
/// Kubernetes Indexed Job together with `shards`).
pub fn parse_shard(
    text: &str,
    shards: Option<usize>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Shard> {
    if text == "auto" {
        return from_environment(shards, env);
    }
    let (i, n) = text
        .split_once('/')
        .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
        .ok_or_else(|| {
            Error::input(format!("--shard '{text}': expected I/N (e.g. 2/4) or auto"))
        })?;
    Shard::new(i, n)
}

fn from_environment(shards: Option<usize>, env: &dyn Fn(&str) -> Option<String>) -> Result<Shard> {
    let number = |name: &str| -> Result<Option<usize>> {
        match env(name) {
            None => Ok(None),
            Some(v) => v.trim().parse().map(Some).map_err(|_| {
                Error::input(format!("--shard auto: {name}='{v}' is not a whole number"))
            }),
        }
    };
    if let Some(task) = number("SLURM_ARRAY_TASK_ID")? {
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let count = number("SLURM_ARRAY_TASK_COUNT")?.ok_or_else(|| {
            Error::input(
                "--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not",
            )
        })?;
        let index = task.checked_sub(min).ok_or_else(|| {
            Error::input(format!(
                "--shard auto: SLURM_ARRAY_TASK_ID {task} is below SLURM_ARRAY_TASK_MIN {min}"
            ))
        })?;
        return Shard::new(index + 1, count);
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let count = shards.ok_or_else(|| {
            Error::input(
                "--shard auto with JOB_COMPLETION_INDEX needs --shards N (the Job's completions)",
            )
        })?;
        return Shard::new(index + 1, count);
    }
    Err(Error::input(
        "--shard auto: neither SLURM_ARRAY_TASK_ID (Slurm job array) nor JOB_COMPLETION_INDEX \
         (Kubernetes Indexed Job) is set; give --shard I/N",
    ))
}
