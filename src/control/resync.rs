//! `POST /v1/resync[?source=ID][&wait=SECS]`: asks sources to read
//! everything again now, and with `wait` answers once each delivered its
//! complete listing (its `source_synced` event).

use super::events::Kind;
use super::server::{error, forbidden, may_change, wait_of, Context};
use reconciler::SourceId;
use serde_json::json;
use std::collections::BTreeSet;
use tokio::sync::broadcast::error::RecvError;

/// Triggers the resync of the sources `target` names (all without
/// `source=`; an id, or the start of ids, like `dir://`).
pub(crate) async fn resync(context: &Context, uid: Option<u32>, target: &str) -> (u16, String) {
    if !may_change(uid, context.owner) {
        return forbidden(uid, context.owner, "resync sources");
    }
    let wanted = super::http::query(target, "source")
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned());
    let chosen = choose(context.sources.ids(), wanted.as_deref());
    if chosen.is_empty() {
        return (404, error(&format!("no such source: {}", wanted.unwrap_or_default())));
    }
    // Subscribed before asking, so that no listing is missed.
    let mut live = context.handle.events.subscribe();
    let (listing, messages): (Vec<_>, Vec<_>) = chosen.into_iter().partition(|(_, lists)| *lists);
    let mut waiting: BTreeSet<String> = BTreeSet::new();
    for (id, _) in &listing {
        if context.sources.resync(id) {
            tracing::info!(source = %id, uid, "control socket: resync asked");
            waiting.insert(id.0.clone());
        }
    }
    let asked: Vec<&String> = waiting.iter().collect();
    let skipped: Vec<&String> = messages.iter().map(|(id, _)| &id.0).collect();
    let mut body = json!({ "resyncing": asked, "skipped": skipped });
    if let Some(timeout) = wait_of(target) {
        let synced = async {
            while !waiting.is_empty() {
                match live.recv().await {
                    Ok(posted) if posted.event.event == Kind::SourceSynced => {
                        posted.event.source.as_ref().map(|s| waiting.remove(s));
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return false,
                }
            }
            true
        };
        match tokio::time::timeout(timeout, synced).await {
            Ok(true) => body["synced"] = json!(body["resyncing"]),
            _ => return (504, error(&"timed out waiting for the sources to deliver their listing")),
        }
    }
    (200, body.to_string())
}

/// The sources named by `wanted` (an id or the start of ids; all without
/// it), with whether each delivers complete listings.
fn choose(ids: Vec<(SourceId, bool)>, wanted: Option<&str>) -> Vec<(SourceId, bool)> {
    let Some(wanted) = wanted else { return ids };
    if let Some(exact) = ids.iter().find(|(id, _)| id.0 == wanted) {
        return vec![exact.clone()];
    }
    ids.into_iter().filter(|(id, _)| !wanted.is_empty() && id.0.starts_with(wanted)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_is_chosen_by_id_or_by_the_start_of_ids() {
        let ids = vec![
            (SourceId("dir:///a".into()), true),
            (SourceId("dir:///a/b".into()), true),
            (SourceId("amqp://h/q".into()), false),
        ];
        let names = |wanted| choose(ids.clone(), wanted).into_iter().map(|(id, _)| id.0).collect::<Vec<_>>();
        assert_eq!(names(None).len(), 3);
        assert_eq!(names(Some("dir:///a")), ["dir:///a"]);
        assert_eq!(names(Some("dir://")), ["dir:///a", "dir:///a/b"]);
        assert!(names(Some("pg://")).is_empty());
        assert!(names(Some("")).is_empty());
    }
}
