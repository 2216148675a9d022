//! How the client commands print: a readable table or text by default, one protobuf-JSON object a
//! line with `--json` (the field names of the proto files in camelCase, enum values by name, so
//! scripts can rely on them). Failures print through [`super::failure`] in the same convention.

use std::sync::OnceLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage};

/// lefi's own messages and grpc.health.v1 (`health --json`).
fn descriptors() -> anyhow::Result<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut pool = DescriptorPool::decode(crate::grpc::pb::FILE_DESCRIPTOR_SET).ok()?;
        pool.decode_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .ok()?;
        Some(pool)
    })
    .as_ref()
    .ok_or_else(|| anyhow::anyhow!("the embedded protobuf descriptors do not decode"))
}

/// Prints `message` as one line of protobuf JSON.
pub(super) fn print_json<M: Name>(message: &M) -> anyhow::Result<()> {
    print_json_as(message, &M::full_name())
}

/// Prints `message` as one line of JSON with `--json`, otherwise as `human` prints it for people.
pub(super) fn print_message<M: Name>(
    json: bool,
    message: &M,
    human: impl FnOnce(&M) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if json { print_json(message) } else { human(message) }
}

/// Prints `message`, a message of the descriptor pool named `full_name` (one without
/// `prost::Name`, such as grpc.health.v1's), as one line of protobuf JSON.
pub(super) fn print_json_as<M: Message>(message: &M, full_name: &str) -> anyhow::Result<()> {
    let descriptor = descriptors()?
        .get_message_by_name(full_name)
        .ok_or_else(|| anyhow::anyhow!("no descriptor for {full_name}"))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
    println!("{}", serde_json::to_string(&dynamic)?);
    Ok(())
}

/// Prints each of `items` as a line of JSON with `--json`,
/// otherwise as a table row through `row`.
pub(super) fn print_each<'a, M: Name + 'a>(
    json: bool,
    items: impl IntoIterator<Item = &'a M>,
    mut row: impl FnMut(&M),
) -> anyhow::Result<()> {
    for item in items {
        if json {
            print_json(item)?;
        } else {
            row(item);
        }
    }
    Ok(())
}

/// A protobuf timestamp as RFC 3339 / ISO 8601 (whole seconds), for people.
pub(super) fn instant(t: Option<prost_types::Timestamp>) -> Option<String> {
    t.map(|t| {
        crate::domain::clock::format_instant(crate::domain::clock::from_micros(
            t.seconds.saturating_mul(1_000_000),
        ))
    })
}

pub(super) fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// `s`, cut to `max` characters with an ellipsis.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// A progress bar on stderr over `total` units, drawn by indicatif's `template`; hidden with
/// `--json` (and by indicatif when stderr is not a terminal).
pub(super) fn progress_bar(total: u64, template: &str, json: bool) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    if json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
