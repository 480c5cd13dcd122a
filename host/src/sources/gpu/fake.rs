//! A scripted [`GpuLibrary`]: devices whose fields answer what a test says, changeable between polls.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::{Connect, Field, GpuError, GpuLibrary, Identity, Reading};

/// One scripted GPU: its identity and the answer to each field (unscripted: not supported).
#[derive(Debug, Clone)]
pub(super) struct FakeDevice {
    pub(super) identity: Result<Identity, GpuError>,
    pub(super) fields: HashMap<Field, Result<Reading, GpuError>>,
}

/// What the fake library answers.
#[derive(Debug, Default)]
pub(super) struct Script {
    /// Why opening the library fails, if it does.
    pub(super) connect_error: Option<String>,
    /// How many times the library was opened.
    pub(super) connects: u32,
    /// An error for `device_count`, if it fails.
    pub(super) count_error: Option<GpuError>,
    pub(super) devices: Vec<FakeDevice>,
}

/// The fake library over a shared script.
struct Fake(Arc<Mutex<Script>>);

impl Fake {
    fn script(&self) -> std::sync::MutexGuard<'_, Script> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Opens the fake library over `script`, counting the openings.
pub(super) fn connect(script: &Arc<Mutex<Script>>) -> Connect {
    let script = script.clone();
    Box::new(move || {
        let mut s = script.lock().unwrap_or_else(PoisonError::into_inner);
        s.connects += 1;
        match &s.connect_error {
            Some(e) => Err(GpuError::Library(e.clone())),
            None => Ok(Box::new(Fake(script.clone())) as Box<dyn GpuLibrary>),
        }
    })
}

impl GpuLibrary for Fake {
    fn device_count(&mut self) -> Result<u32, GpuError> {
        let s = self.script();
        match &s.count_error {
            Some(e) => Err(e.clone()),
            None => Ok(s.devices.len() as u32),
        }
    }

    fn identity(&mut self, index: u32) -> Result<Identity, GpuError> {
        self.script().devices[index as usize].identity.clone()
    }

    fn read(&mut self, index: u32, field: Field) -> Result<Reading, GpuError> {
        self.script().devices[index as usize]
            .fields
            .get(&field)
            .cloned()
            .unwrap_or(Err(GpuError::NotSupported))
    }
}
