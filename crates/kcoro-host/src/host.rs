//! Several plugins per host, by name: load, look up, unload with a grace period, reload.

use std::collections::HashMap;
use std::path::Path;
use std::sync::RwLock;
use std::time::Duration;

use crate::HostError;
use crate::load::Opened;
use crate::plugin::{LoadOptions, Plugin};

/// A set of loaded plugins, each under the name it declares.
#[derive(Default)]
pub struct Host {
    plugins: RwLock<HashMap<String, Plugin>>,
    options: LoadOptions,
}

impl Host {
    pub fn new() -> Host {
        Host::default()
    }

    /// A host whose loads use `options` unless told otherwise.
    pub fn with_options(options: LoadOptions) -> Host {
        Host { plugins: RwLock::default(), options }
    }

    /// Loads, validates and initialises the plugin at `path`, under its declared name.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<Plugin, HostError> {
        self.load_with(path, self.options.clone())
    }

    pub fn load_with(&self, path: impl AsRef<Path>, options: LoadOptions) -> Result<Plugin, HostError> {
        let opened = Opened::open(path.as_ref(), options)?;
        let mut plugins = self.plugins.write().unwrap_or_else(|e| e.into_inner());
        if plugins.contains_key(&opened.name) {
            return Err(HostError::NameTaken(opened.name));
        }
        let plugin = opened.init()?;
        plugins.insert(plugin.name().to_owned(), plugin.clone());
        Ok(plugin)
    }

    /// The plugin loaded under `name`.
    pub fn get(&self, name: &str) -> Option<Plugin> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// The names of the loaded plugins, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> =
            self.plugins.read().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
        names.sort();
        names
    }

    /// Refuses new calls to `name`, waits up to `grace` for those in flight, shuts the
    /// plugin down and forgets it. Fails with [`HostError::Busy`] (the plugin stays loaded
    /// and serving) if calls are still in flight after `grace`.
    pub fn unload(&self, name: &str, grace: Duration) -> Result<(), HostError> {
        let plugin = self.get(name).ok_or_else(|| HostError::NotLoaded(name.into()))?;
        plugin.shutdown(grace)?;
        self.plugins.write().unwrap_or_else(|e| e.into_inner()).remove(name);
        Ok(())
    }

    /// Unloads `name` (as [`Host::unload`]) and loads its library again from the same path.
    pub fn reload(&self, name: &str, grace: Duration) -> Result<Plugin, HostError> {
        let path = self.get(name).ok_or_else(|| HostError::NotLoaded(name.into()))?.path().to_path_buf();
        self.unload(name, grace)?;
        self.load(path)
    }
}
