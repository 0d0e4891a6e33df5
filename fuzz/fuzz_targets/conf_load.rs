//! The configuration loader on arbitrary text: never panics, and every diagnostic points
//! inside the text it was given.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // The path's folder does not exist, so a `policy_file` or table file fails to read
    // (cleanly) instead of touching real files.
    let path = Path::new("/nonexistent-rampart-fuzz/fw.toml");
    match rampart_conf::load_str(path, text) {
        Ok(loaded) => {
            // A valid configuration compiles into a policy and prints its rules.
            let policy = rampart_dataplane::filter::CompiledPolicy::compile(&loaded.config);
            assert_eq!(policy.rule_count(), loaded.config.rules.len());
            for r in &loaded.config.rules {
                let _ = r.to_pf_string(&loaded.config);
            }
        }
        Err(diags) => {
            assert!(!diags.is_empty());
            let lines = text.lines().count().max(1) + 1;
            for d in diags {
                if d.file == path {
                    assert!(d.line >= 1 && d.line <= lines, "line {} of {lines}: {d}", d.line);
                    assert!(d.column >= 1);
                }
            }
        }
    }
});
