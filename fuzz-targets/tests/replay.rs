//! Every fuzz target over its corpus and crash artifacts, on stable: what fuzzing found stays
//! covered by every test run.

use std::path::{Path, PathBuf};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn every_target_replays_its_corpus() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    for (name, target) in flagtower_fuzz_targets::TARGETS {
        let corpus = inputs(&fuzz.join("corpus").join(name));
        assert!(!corpus.is_empty(), "fuzz/corpus/{name}/ has no inputs");
        let artifacts = inputs(&fuzz.join("artifacts").join(name));
        for file in corpus.iter().chain(&artifacts) {
            let data = std::fs::read(file).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "target {name} panicked on {}", file.display());
        }
        println!("{name}: {} corpus inputs, {} artifacts", corpus.len(), artifacts.len());
    }
}
