//! Kernel choice by measurement. Where a pass of an op has more than one kernel (a convolution's
//! forward, input gradient and weight gradient: direct or unfolded), the first time a shape is met
//! the engine times every candidate on this adapter, keeps the fastest and remembers it: in memory,
//! in a cache file per adapter and driver (so the next process skips the timing), and, through
//! `Engine::kernel_choices`, in a run's directory, so that `--resume` replays the same kernels
//! (and therefore the same rounding) bit for bit.
//!
//! With tuning off every pass takes its static default for the kind of adapter (the first
//! candidate an op lists), which is also what tests and benches get unless they ask otherwise.

use super::Engine;
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether ops time their candidate kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TuneMode {
    /// Each pass's static default for this kind of adapter.
    #[default]
    Off,
    /// Time the candidates the first time a shape is met and keep the fastest.
    On,
}

/// Where a decision came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChoiceSource {
    /// Tuning is off: the pass's static default.
    Default,
    /// Timed in this process.
    Measured,
    /// Read from the tune cache file.
    Cache,
    /// Pinned by the run being resumed (`kernels.json`).
    Run,
}

/// One decision: the pass and shape (`key`), the kernel, and what was measured (empty unless
/// `source` is `Measured`): each candidate's best time in seconds, or its error.
#[derive(Clone, Debug)]
pub struct KernelChoice {
    pub key: String,
    pub kernel: String,
    pub source: ChoiceSource,
    pub timings: Vec<(String, std::result::Result<f64, String>)>,
}

/// Timed runs of each candidate after one warm-up run (which compiles its pipelines); the best
/// counts, as the least disturbed by whatever else the machine does.
const TIMED_RUNS: usize = 3;

/// Another kernel replaces the static default only when it takes at most this fraction of the
/// default's time: near-ties stay with the default, so that timing noise does not make two
/// processes on one machine choose differently.
const SWITCH_BELOW: f64 = 0.9;

const CACHE_FORMAT: &str = "byol-wgpu tune cache 1";

#[derive(Default)]
pub(crate) struct Tuner {
    mode: TuneMode,
    cache_file: Option<PathBuf>,
    /// The adapter, driver and version this process's entries in the cache file belong to.
    adapter_key: String,
    choices: BTreeMap<String, KernelChoice>,
    cached: BTreeMap<String, String>,
}

impl Tuner {
    pub(crate) fn new(mode: TuneMode, cache_file: Option<PathBuf>, adapter_key: String) -> Tuner {
        let mut t = Tuner {
            mode,
            cache_file,
            adapter_key,
            ..Default::default()
        };
        if mode == TuneMode::On {
            if let Some(path) = &t.cache_file {
                match read_cache(path) {
                    Ok(mut all) => t.cached = all.remove(&t.adapter_key).unwrap_or_default(),
                    Err(e) => eprintln!("warning: {e}; measuring again"),
                }
            }
        }
        t
    }
}

/// The default cache file: `BYOL_TUNE_CACHE`, else `$XDG_CACHE_HOME/byol-wgpu/tune.json`, else
/// `~/.cache/byol-wgpu/tune.json`; none when no such directory can be named.
pub fn default_cache_file() -> Option<PathBuf> {
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(p) = var("BYOL_TUNE_CACHE") {
        return Some(PathBuf::from(p));
    }
    let base = var("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("byol-wgpu").join("tune.json"))
}

type CacheFile = BTreeMap<String, BTreeMap<String, String>>;

fn read_cache(path: &Path) -> Result<CacheFile> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::new()),
        Err(e) => return Err(Error::Io(format!("tune cache {}: {e}", path.display()))),
    };
    let bad = |why: String| {
        Error::Io(format!(
            "tune cache {} is not usable: {why}",
            path.display()
        ))
    };
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    if v["format"] != CACHE_FORMAT {
        return Err(bad(format!("its format is not \"{CACHE_FORMAT}\"")));
    }
    serde_json::from_value(v["adapters"].clone()).map_err(|e| bad(e.to_string()))
}

/// Adds `entries` to this adapter's part of the cache file (re-read first, so that another
/// process's entries survive), through a temporary file of this write and a rename.
fn write_cache(path: &Path, adapter: &str, entries: &BTreeMap<String, String>) -> Result<()> {
    let mut all = read_cache(path).unwrap_or_default();
    all.entry(adapter.to_string())
        .or_default()
        .extend(entries.iter().map(|(k, v)| (k.clone(), v.clone())));
    let json = serde_json::json!({ "format": CACHE_FORMAT, "adapters": all });
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::Io(format!("creating {}: {e}", dir.display())))?;
    }
    // A name of this write alone: other processes and threads may write the cache at once.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".{}-{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let body = serde_json::to_string_pretty(&json).map_err(|e| Error::Io(e.to_string()))?;
    std::fs::write(&tmp, body)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io(format!("writing the tune cache {}: {e}", path.display()))
        })
}

impl Engine {
    /// The kernel for pass-and-shape `key` among `candidates` (the static default first): a
    /// pinned or earlier decision, the cache file's, or (tuning on) the fastest of `time`d runs.
    /// `time(kernel)` records the pass with that kernel into outputs of its own.
    pub(crate) fn choose_kernel(
        &self,
        key: &str,
        candidates: &[&'static str],
        mut time: impl FnMut(&'static str) -> Result<()>,
    ) -> Result<&'static str> {
        let known = |k: &str| candidates.iter().copied().find(|c| *c == k);
        let (mode, cached) = {
            let t = self.0.tuner.borrow();
            if let Some(c) = t.choices.get(key).and_then(|c| known(&c.kernel)) {
                return Ok(c);
            }
            (t.mode, t.cached.get(key).and_then(|k| known(k)))
        };
        let Some(&default) = candidates.first() else {
            return Err(Error::Invalid(format!("{key}: no kernel to choose from")));
        };
        let (kernel, source, timings) = match (mode, cached) {
            _ if candidates.len() == 1 => (default, ChoiceSource::Default, Vec::new()),
            (TuneMode::Off, _) => (default, ChoiceSource::Default, Vec::new()),
            (TuneMode::On, Some(c)) => (c, ChoiceSource::Cache, Vec::new()),
            (TuneMode::On, None) => {
                let mut timings = Vec::new();
                let mut best: Option<(&'static str, f64)> = None;
                for &c in candidates {
                    match self.best_time(|| time(c)) {
                        Ok(s) => {
                            // The default's time is the bar the others must clear by a margin.
                            let bar = if c == default { s } else { s / SWITCH_BELOW };
                            if best.is_none_or(|(_, b)| bar < b) {
                                best = Some((c, bar));
                            }
                            timings.push((c.to_string(), Ok(s)));
                        }
                        Err(e) => timings.push((c.to_string(), Err(e.to_string()))),
                    }
                }
                let Some((c, _)) = best else {
                    return Err(Error::Device(format!(
                        "{key}: every kernel failed: {timings:?}"
                    )));
                };
                (c, ChoiceSource::Measured, timings)
            }
        };
        let mut t = self.0.tuner.borrow_mut();
        t.choices.insert(
            key.to_string(),
            KernelChoice {
                key: key.to_string(),
                kernel: kernel.to_string(),
                source,
                timings,
            },
        );
        if source == ChoiceSource::Measured {
            if let Some(path) = t.cache_file.clone() {
                let entry = BTreeMap::from([(key.to_string(), kernel.to_string())]);
                if let Err(e) = write_cache(&path, &t.adapter_key, &entry) {
                    eprintln!("warning: {e}");
                }
            }
        }
        Ok(kernel)
    }

    fn best_time(&self, mut run: impl FnMut() -> Result<()>) -> Result<f64> {
        self.time_gpu(&mut run)?;
        let mut best = f64::INFINITY;
        for _ in 0..TIMED_RUNS {
            best = best.min(self.time_gpu(&mut run)?.1);
        }
        Ok(best)
    }

    /// Every decision so far, by key.
    pub fn kernel_choices(&self) -> Vec<KernelChoice> {
        self.0.tuner.borrow().choices.values().cloned().collect()
    }

    /// Pins decisions (from a run's `kernels.json`): they win over the cache and over timing.
    pub fn pin_kernels(&self, choices: &BTreeMap<String, String>) {
        let mut t = self.0.tuner.borrow_mut();
        for (key, kernel) in choices {
            t.choices.insert(
                key.clone(),
                KernelChoice {
                    key: key.clone(),
                    kernel: kernel.clone(),
                    source: ChoiceSource::Run,
                    timings: Vec::new(),
                },
            );
        }
    }

    /// The tune cache file this engine reads and writes, if tuning is on and one can be named.
    pub fn tune_cache_file(&self) -> Option<PathBuf> {
        let t = self.0.tuner.borrow();
        (t.mode == TuneMode::On)
            .then(|| t.cache_file.clone())
            .flatten()
    }
}
