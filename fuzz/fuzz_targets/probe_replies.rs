#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aupwatch::fuzzing::probe_replies(data));
