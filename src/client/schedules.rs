//! `trainyard schedules`: create (from flags or a JSON file), list, show, pause, resume and
//! delete periodic trainings (`/schedules`).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;

use super::tasks::{RequestArgs, model_names};
use super::{Body, Client, ClientError, cell, table};
use crate::api::TrainRequest;

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// Create a schedule from flags, or from a JSON file with the body of POST /schedules.
    Create(Box<CreateArgs>),
    /// List the schedules with their next due time.
    List,
    /// Show one schedule.
    Show(NameArgs),
    /// Stop firing a schedule until it is resumed.
    Pause(NameArgs),
    /// Fire a paused schedule again (from its next due time; the paused ones are not fired).
    Resume(NameArgs),
    /// Delete a schedule for good.
    Delete(NameArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The schedule's name.
    pub name: String,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// A JSON file with the whole body of POST /schedules (instead of the flags).
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["name", "cron", "model"])]
    pub file: Option<PathBuf>,
    /// 1 to 64 letters, digits, '-', '_' or '.'; unique in the cluster.
    #[arg(long, required_unless_present = "file")]
    pub name: Option<String>,
    /// A cron expression: 5 fields, or 6 with seconds (e.g. "0 3 * * *").
    #[arg(long, required_unless_present = "file")]
    pub cron: Option<String>,
    /// The model type each firing trains.
    #[arg(long, value_parser = model_names(), required_unless_present = "file")]
    pub model: Option<String>,
    /// IANA time zone of the cron expression (e.g. Europe/Paris); UTC when absent.
    #[arg(long)]
    pub timezone: Option<String>,
    /// What to do with due times missed while the cluster was down (default run_once).
    #[arg(long, value_parser = ["run_once", "skip"])]
    pub missed: Option<String>,
    /// How late a due time may still fire, in seconds (default 60, at most 7 days).
    #[arg(long)]
    pub misfire_grace_s: Option<u64>,
    /// Create it paused.
    #[arg(long)]
    pub paused: bool,
    /// Register each successful result as the next version of this model.
    #[arg(long, value_name = "MODEL_NAME")]
    pub register: Option<String>,
    /// With --register: move this alias to a new version that beats the one it points at.
    #[arg(long, requires = "register")]
    pub promote_alias: Option<String>,
    /// With --promote-alias: the metric compared (default test_r2).
    #[arg(long, requires = "register")]
    pub metric: Option<String>,
    /// With --promote-alias: max (higher is better) or min.
    #[arg(long, requires = "register", value_parser = ["max", "min"])]
    pub mode: Option<String>,
    #[command(flatten)]
    pub request: RequestArgs,
}

/// The body of `POST /schedules` as the flags make it: the fields of
/// [`crate::api::ScheduleRequest`] (a test checks that it reads this back).
#[derive(Debug, Serialize)]
struct ScheduleBody<'a> {
    name: Option<&'a str>,
    cron: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<&'a str>,
    model_type: Option<&'a str>,
    request: TrainRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    missed: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    misfire_grace_s: Option<u64>,
    paused: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    register: Option<Value>,
}

impl CreateArgs {
    /// The body to POST: the file's, or the flags'.
    fn body(&self) -> Result<Value, ClientError> {
        if let Some(path) = &self.file {
            let local = |reason: String| ClientError::LocalFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| local(e.to_string()))?;
            return serde_json::from_str(&text).map_err(|e| local(format!("not JSON: {e}")));
        }
        let body = ScheduleBody {
            name: self.name.as_deref(),
            cron: self.cron.as_deref(),
            timezone: self.timezone.as_deref(),
            model_type: self.model.as_deref(),
            request: self.request.request(),
            missed: self.missed.as_deref(),
            misfire_grace_s: self.misfire_grace_s,
            paused: self.paused,
            register: self.register.as_ref().map(|name| {
                serde_json::json!({
                    "name": name,
                    "promote_alias": self.promote_alias,
                    "metric": self.metric,
                    "mode": self.mode,
                })
            }),
        };
        serde_json::to_value(&body).map_err(|e| ClientError::Usage(e.to_string()))
    }
}

/// Runs one `trainyard schedules` subcommand.
pub fn schedules(client: &Client, command: &SchedulesCommand) -> Result<(), ClientError> {
    let answer = match command {
        SchedulesCommand::Create(args) => {
            client.call("POST", "/schedules", &[], Body::Json(args.body()?))?
        }
        SchedulesCommand::List => client.get("/schedules")?,
        SchedulesCommand::Show(NameArgs { name }) => client.get(&format!("/schedules/{name}"))?,
        SchedulesCommand::Pause(NameArgs { name }) => {
            client.post(&format!("/schedules/{name}/pause"))?
        }
        SchedulesCommand::Resume(NameArgs { name }) => {
            client.post(&format!("/schedules/{name}/resume"))?
        }
        SchedulesCommand::Delete(NameArgs { name }) => {
            client.delete(&format!("/schedules/{name}"))?
        }
    };
    if client.json {
        Client::print_json(&answer);
        return Ok(());
    }
    if let Some(deleted) = answer["deleted"].as_str() {
        println!("schedule {deleted} deleted");
        return Ok(());
    }
    let list: Vec<&Value> = match answer["schedules"].as_array() {
        Some(all) => all.iter().collect(),
        None => vec![&answer["schedule"]],
    };
    let mut rows = vec![
        [
            "NAME",
            "CRON",
            "TIMEZONE",
            "MODEL",
            "PAUSED",
            "NEXT_DUE_AT",
            "FIRED",
            "LAST_TASK",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in list {
        rows.push(vec![
            cell(&s["name"]),
            cell(&s["cron"]),
            cell(&s["timezone"]),
            cell(&s["model_type"]),
            cell(&s["paused"]),
            cell(&s["next_due_at"]),
            cell(&s["fired"]),
            cell(&s["last_task_id"]),
        ]);
    }
    println!("{}", table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: SchedulesCommand,
    }

    #[test]
    fn the_flags_make_a_body_the_api_reads() {
        let cli = Cli::parse_from([
            "x",
            "create",
            "--name",
            "nightly",
            "--cron",
            "0 3 * * *",
            "--model",
            "gbdt",
            "--timezone",
            "Europe/Paris",
            "--missed",
            "skip",
            "--trees",
            "20",
            "--priority",
            "3",
            "--paused",
        ]);
        let SchedulesCommand::Create(args) = cli.command else {
            panic!("not create");
        };
        let body = args.body().unwrap();
        let read: crate::api::ScheduleRequest = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(read.name.as_deref(), Some("nightly"));
        assert_eq!(read.paused, Some(true));
        let request: TrainRequest = serde_json::from_value(read.request.unwrap()).unwrap();
        assert_eq!(request.gbdt.unwrap().n_trees, 20);
        assert_eq!(request.priority, Some(3));
    }
}
