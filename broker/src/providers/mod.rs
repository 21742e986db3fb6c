//! The registry of configured identity providers: each config section built by the
//! factory for its `type`. Nothing above this module can tell a built-in provider from
//! one loaded at run time.

pub mod plugin;

use crate::config::{ProviderPolicy, ProviderSection};
use std::collections::BTreeMap;
use std::sync::Arc;
use switchboard_plugin_api::{Provider, ProviderContext, ProviderError, ProviderFactory};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("providers.{id}.type: unknown provider type {kind:?} (known: {known})")]
    UnknownType {
        id: String,
        kind: String,
        known: String,
    },
    #[error("{0}")]
    Create(ProviderError),
}

/// One configured provider.
#[derive(Debug, Clone)]
pub struct ProviderEntry {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// The broker's keys of its section: registration, profile sync, email trust.
    pub policy: ProviderPolicy,
    pub provider: Arc<dyn Provider>,
}

#[derive(Debug, Default)]
pub struct ProviderRegistry {
    entries: Vec<ProviderEntry>,
}

impl ProviderRegistry {
    pub fn build(
        sections: &[ProviderSection],
        factories: &[Arc<dyn ProviderFactory>],
        dev_mode: bool,
    ) -> Result<Self, RegistryError> {
        let by_type: BTreeMap<&str, &Arc<dyn ProviderFactory>> =
            factories.iter().map(|f| (f.provider_type(), f)).collect();
        let mut entries = Vec::new();
        for s in sections {
            let factory =
                by_type
                    .get(s.kind.as_str())
                    .ok_or_else(|| RegistryError::UnknownType {
                        id: s.id.clone(),
                        kind: s.kind.clone(),
                        known: by_type.keys().copied().collect::<Vec<_>>().join(", "),
                    })?;
            let provider = factory
                .create(ProviderContext::new(&s.id, s.options.clone(), dev_mode))
                .map_err(RegistryError::Create)?;
            entries.push(ProviderEntry {
                id: s.id.clone(),
                name: s.name.clone(),
                kind: s.kind.clone(),
                policy: s.policy,
                provider,
            });
        }
        Ok(ProviderRegistry { entries })
    }

    pub fn get(&self, id: &str) -> Option<&ProviderEntry> {
        self.entries.iter().find(|e| e.id == id)
    }

    pub fn all(&self) -> &[ProviderEntry] {
        &self.entries
    }
}
