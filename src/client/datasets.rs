//! `trainyard datasets`: upload a CSV file, list and delete data sets (`/datasets`).

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::{Body, Client, ClientError, cell, table};

#[derive(Debug, Subcommand)]
pub enum DatasetsCommand {
    /// Upload a CSV file (a header line, numbers below) as a data set; prints its id.
    Upload(UploadArgs),
    /// List the built-in and the uploaded data sets.
    List,
    /// Delete an uploaded data set (refused while a task yet to end uses it).
    Delete(DeleteArgs),
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The CSV file.
    pub file: PathBuf,
    /// The CSV column to predict.
    #[arg(long)]
    pub target: String,
    /// The data set's name, 1 to 100 characters (default: the file's name without extension).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The data set's id.
    pub id: String,
}

/// Runs one `trainyard datasets` subcommand.
pub fn datasets(client: &Client, command: &DatasetsCommand) -> Result<(), ClientError> {
    match command {
        DatasetsCommand::Upload(args) => upload(client, args),
        DatasetsCommand::List => {
            let answer = client.get("/datasets")?;
            if client.json {
                Client::print_json(&answer);
                return Ok(());
            }
            let mut rows = vec![
                ["ID", "NAME", "TARGET", "ROWS", "FEATURES", "BYTES"]
                    .map(String::from)
                    .to_vec(),
            ];
            for name in answer["builtin"].as_array().into_iter().flatten() {
                let builtin = "built-in".to_string();
                let dash = "-".to_string();
                rows.push(vec![
                    builtin,
                    cell(name),
                    dash.clone(),
                    dash.clone(),
                    dash.clone(),
                    dash,
                ]);
            }
            for d in answer["datasets"].as_array().into_iter().flatten() {
                rows.push(vec![
                    cell(&d["id"]),
                    cell(&d["name"]),
                    cell(&d["target"]),
                    cell(&d["rows"]),
                    d["features"].as_array().map_or(0, Vec::len).to_string(),
                    cell(&d["bytes"]),
                ]);
            }
            println!("{}", table(&rows));
            Ok(())
        }
        DatasetsCommand::Delete(DeleteArgs { id }) => {
            let answer = client.delete(&format!("/datasets/{id}"))?;
            if client.json {
                Client::print_json(&answer);
            } else {
                println!("data set {} deleted", cell(&answer["deleted"]));
            }
            Ok(())
        }
    }
}

/// `datasets upload FILE --target COLUMN`: `POST /datasets?name=&target=` with the CSV.
fn upload(client: &Client, args: &UploadArgs) -> Result<(), ClientError> {
    let bytes = std::fs::read(&args.file).map_err(|e| ClientError::LocalFile {
        path: args.file.display().to_string(),
        reason: e.to_string(),
    })?;
    let name = args.name.clone().unwrap_or_else(|| {
        args.file
            .file_stem()
            .map_or("data".into(), |s| s.to_string_lossy().into_owned())
    });
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("name", &name)
        .append_pair("target", &args.target)
        .finish();
    let answer = client.call(
        "POST",
        &format!("/datasets?{query}"),
        &[],
        Body::Raw("text/csv", bytes),
    )?;
    if client.json {
        Client::print_json(&answer);
    } else {
        println!("{}", cell(&answer["dataset_id"]));
    }
    Ok(())
}
