//! What a table source has told the emperor: the whole query's result as a
//! snapshot when it changed, and the few rows a lookup re-read as one
//! upsert or removal each (so a change to one row of a large table costs
//! the emperor one vassal, not the table).

use crate::source::{SourceContext, SourceEvent};
use reconciler::{VassalName, VassalSpec};
use std::collections::{BTreeMap, BTreeSet};

/// Sends what changed, keeping the set the emperor holds for the source.
pub struct Publisher {
    ctx: SourceContext,
    /// The source's vassals as last sent; `None` before the first snapshot.
    sent: Option<BTreeMap<VassalName, VassalSpec>>,
}

impl Publisher {
    /// A publisher that has sent nothing yet.
    pub fn new(ctx: SourceContext) -> Self {
        Self { ctx, sent: None }
    }

    /// Whether a complete snapshot was sent (re-reading a few rows needs one
    /// to apply them to).
    pub fn has_snapshot(&self) -> bool {
        self.sent.is_some()
    }

    /// Sends `specs` (sorted by name, as [`super::rows::collect`] returns
    /// them) unless they equal what was sent; `false` once the emperor is
    /// shutting down.
    pub async fn publish(&mut self, specs: Vec<VassalSpec>) -> bool {
        if let Some(sent) = &self.sent {
            if sent.len() == specs.len() && sent.values().eq(specs.iter()) {
                return true;
            }
        }
        self.sent = Some(specs.iter().map(|s| (s.name.clone(), s.clone())).collect());
        self.ctx.send(SourceEvent::Snapshot { source: self.ctx.id.clone(), specs }).await
    }

    /// Applies the re-read rows `found` of the rows named `names`: a changed
    /// or new one is upserted, a named vassal of ours that is not found any
    /// more is removed. `false` once the emperor is shutting down.
    pub async fn apply(&mut self, names: &BTreeSet<String>, found: BTreeMap<VassalName, VassalSpec>) -> bool {
        let Some(sent) = self.sent.as_mut() else { return true };
        let named = names.iter().filter_map(|n| VassalName::parse(n).ok());
        let touched: BTreeSet<VassalName> = named.chain(found.keys().cloned()).collect();
        let mut found = found;
        for name in touched {
            let event = match found.remove(&name) {
                Some(spec) if sent.get(&name) == Some(&spec) => continue,
                Some(spec) => {
                    sent.insert(name, spec.clone());
                    SourceEvent::Upsert(spec)
                }
                None if sent.remove(&name).is_some() => SourceEvent::Remove { source: self.ctx.id.clone(), name },
                None => continue,
            };
            if !self.ctx.send(event).await {
                return false;
            }
        }
        true
    }
}
