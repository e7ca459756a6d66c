//! `r8sctl get`: the server prints (it answers a `Table`), r8sctl aligns.

use futures::StreamExt;
use serde_json::Value;

use crate::discovery::ApiResource;
use crate::printer::{as_list, format_columns, to_json, to_yaml, OutputFormat, TableView};
use crate::session::{Session, JSON, TABLE};
use crate::targets;

#[derive(clap::Args)]
pub struct GetArgs {
    /// TYPE [NAME...] or TYPE/NAME...
    #[arg(required = true)]
    resources: Vec<String>,
    /// Output format: wide, yaml, json, name, jsonpath=TEMPLATE.
    #[arg(short = 'o', long)]
    output: Option<OutputFormat>,
    /// Label selector (`app=web`, `tier in (a,b)`, `!canary`).
    #[arg(short = 'l', long)]
    selector: Option<String>,
    /// Field selector (`spec.nodeName=n1`, `status.phase!=Running`).
    #[arg(long)]
    field_selector: Option<String>,
    /// List across all namespaces.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// After listing, watch for changes.
    #[arg(short = 'w', long)]
    watch: bool,
    /// Show every object's labels as a last column.
    #[arg(long)]
    show_labels: bool,
}

pub async fn run(session: &Session, args: GetArgs) -> anyhow::Result<()> {
    let format = args.output.clone().unwrap_or(OutputFormat::Table);
    let by_name = args.resources.len() > 1 || args.resources[0].contains('/');
    if by_name {
        let mut objects = Vec::new();
        for target in targets::named(session, &args.resources).await? {
            if matches!(format, OutputFormat::Table | OutputFormat::Wide) {
                let table = session.call(http::Method::GET, &target.path(), None, TABLE).await?;
                print_table(&table, &format, false, args.show_labels, true);
            } else {
                objects.push((target.resource.clone(), session.get(&target.path()).await?));
            }
        }
        return print_objects(objects, &format);
    }

    let kinds: Vec<&str> = args.resources[0].split(',').filter(|k| !k.is_empty()).collect();
    if kinds.len() > 1 {
        return run_many(session, &args, &kinds, &format).await;
    }
    let resource = session.resource(&args.resources[0]).await?;
    let namespace = if args.all_namespaces { None } else { session.namespace_for(&resource, None) };
    let path = list_path(&resource, namespace.as_deref(), &args, None);
    let table_wanted = matches!(format, OutputFormat::Table | OutputFormat::Wide);
    let list = session
        .call(http::Method::GET, &path, None, if table_wanted { TABLE } else { JSON })
        .await?;
    let resource_version = list["metadata"]["resourceVersion"].as_str().unwrap_or_default().to_string();
    let namespace_column = args.all_namespaces && resource.namespaced;
    if table_wanted {
        let empty = list["rows"].as_array().is_none_or(Vec::is_empty);
        if empty && !args.watch {
            eprintln!("{}", no_resources_message(namespace.as_deref(), resource.namespaced));
        } else {
            print_table(&list, &format, namespace_column, args.show_labels, true);
        }
    } else {
        let items = list["items"].as_array().cloned().unwrap_or_default();
        let objects = items.into_iter().map(|item| (resource.clone(), with_type(item, &resource))).collect();
        print_objects_as_list(objects, &format)?;
    }
    if args.watch {
        watch(session, &resource, namespace.as_deref(), &args, &format, &resource_version, namespace_column).await?;
    }
    Ok(())
}

/// `get deploy,rs,pods`: one table per type, names prefixed with their type
/// (`deployment.apps/web`), or one `List` of everything, as kubectl prints them.
async fn run_many(session: &Session, args: &GetArgs, kinds: &[&str], format: &OutputFormat) -> anyhow::Result<()> {
    if args.watch {
        anyhow::bail!("you may only specify a single resource type");
    }
    let table_wanted = matches!(format, OutputFormat::Table | OutputFormat::Wide);
    let mut printed_tables = 0;
    let mut objects = Vec::new();
    let mut namespace = None;
    for kind in kinds {
        let resource = session.resource(kind).await?;
        let ns = if args.all_namespaces { None } else { session.namespace_for(&resource, None) };
        namespace = namespace.or(ns.clone());
        let path = list_path(&resource, ns.as_deref(), args, None);
        let list = session.call(http::Method::GET, &path, None, if table_wanted { TABLE } else { JSON }).await?;
        if table_wanted {
            let mut view = TableView::from_table(&list, *format == OutputFormat::Wide, args.all_namespaces && resource.namespaced);
            if view.rows.is_empty() {
                continue;
            }
            let name_column = usize::from(args.all_namespaces && resource.namespaced);
            for row in &mut view.rows {
                row[name_column] = format!("{}/{}", resource.type_name(), row[name_column]);
            }
            if printed_tables > 0 {
                println!();
            }
            print!("{}", format_columns(&view.header, &view.rows));
            printed_tables += 1;
        } else {
            for item in list["items"].as_array().cloned().unwrap_or_default() {
                objects.push((resource.clone(), with_type(item, &resource)));
            }
        }
    }
    if table_wanted {
        if printed_tables == 0 {
            eprintln!("{}", no_resources_message(namespace.as_deref(), true));
        }
        return Ok(());
    }
    print_objects_as_list(objects, format)
}

fn list_path(resource: &ApiResource, namespace: Option<&str>, args: &GetArgs, watch_from: Option<&str>) -> String {
    let mut query = Vec::new();
    if let Some(selector) = &args.selector {
        query.push(format!("labelSelector={}", encode(selector)));
    }
    if let Some(selector) = &args.field_selector {
        query.push(format!("fieldSelector={}", encode(selector)));
    }
    match watch_from {
        Some(rv) => {
            query.push("watch=true".into());
            query.push(format!("resourceVersion={}", encode(rv)));
        }
        None => query.push("limit=500".into()),
    }
    format!("{}?{}", resource.collection_path(namespace), query.join("&"))
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn watch(
    session: &Session,
    resource: &ApiResource,
    namespace: Option<&str>,
    args: &GetArgs,
    format: &OutputFormat,
    from: &str,
    namespace_column: bool,
) -> anyhow::Result<()> {
    let table_wanted = matches!(format, OutputFormat::Table | OutputFormat::Wide);
    let path = list_path(resource, namespace, args, Some(from));
    let mut events = Box::pin(session.watch(&path, if table_wanted { TABLE } else { JSON }).await?);
    while let Some(event) = events.next().await {
        let event = event?;
        if event["type"] == "ERROR" {
            anyhow::bail!("watch ended: {}", event["object"]["message"].as_str().unwrap_or("error"));
        }
        if event["type"] == "BOOKMARK" {
            continue;
        }
        let object = event["object"].clone();
        if table_wanted {
            print_table(&object, format, namespace_column, args.show_labels, false);
        } else {
            print_objects(vec![(resource.clone(), object)], format)?;
        }
    }
    Ok(())
}

fn print_table(table: &Value, format: &OutputFormat, namespace_column: bool, show_labels: bool, header: bool) {
    let mut view = TableView::from_table(table, *format == OutputFormat::Wide, namespace_column);
    if show_labels {
        view.header.push("LABELS".into());
        for (row, source) in view.rows.iter_mut().zip(table["rows"].as_array().into_iter().flatten()) {
            row.push(labels_text(&source["object"]["metadata"]["labels"]));
        }
    }
    let text = format_columns(&view.header, &view.rows);
    if header {
        print!("{text}");
    } else {
        // A watch event: the header was printed with the list; keep the widths
        // of this row alone, as kubectl does.
        print!("{}", text.split_once('\n').map_or("", |(_, rows)| rows));
    }
}

fn labels_text(labels: &Value) -> String {
    match labels.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
            .collect::<Vec<_>>()
            .join(","),
        _ => "<none>".into(),
    }
}

/// Items of a list lack `kind` and `apiVersion`; put them back as kubectl does.
fn with_type(mut item: Value, resource: &ApiResource) -> Value {
    if let Some(map) = item.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| resource.api_version().into());
        map.entry("kind").or_insert_with(|| resource.kind.clone().into());
    }
    item
}

fn print_objects(objects: Vec<(ApiResource, Value)>, format: &OutputFormat) -> anyhow::Result<()> {
    if objects.len() == 1 {
        let (resource, object) = objects.into_iter().next().unwrap_or_else(|| unreachable!());
        return print_one(&resource, &object, format);
    }
    print_objects_as_list(objects, format)
}

fn print_objects_as_list(objects: Vec<(ApiResource, Value)>, format: &OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Name => {
            for (resource, object) in &objects {
                print_one(resource, object, format)?;
            }
            Ok(())
        }
        _ => {
            let list = as_list(objects.into_iter().map(|(_, o)| o).collect());
            print_one_value(&list, format)
        }
    }
}

fn print_one(resource: &ApiResource, object: &Value, format: &OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Name => {
            let name = object["metadata"]["name"].as_str().unwrap_or_default();
            println!("{}/{name}", resource.type_name());
            Ok(())
        }
        _ => print_one_value(object, format),
    }
}

fn print_one_value(value: &Value, format: &OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Yaml => print!("{}", to_yaml(value)?),
        OutputFormat::Json => print!("{}", to_json(value)?),
        OutputFormat::JsonPath(template) => print!("{}", template.render(value)?),
        OutputFormat::Table | OutputFormat::Wide | OutputFormat::Name => {}
    }
    Ok(())
}

pub fn no_resources_message(namespace: Option<&str>, namespaced: bool) -> String {
    match namespace {
        Some(ns) if namespaced => format!("No resources found in {ns} namespace."),
        _ => "No resources found".into(),
    }
}
