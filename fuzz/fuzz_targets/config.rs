//! Config text → parse → compile (`orchestra_config::harness::check_config`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = orchestra_config::harness::check_config(text);
    }
});
