#![no_main]
//! Range headers: never a panic, and any range returned lies inside the object.
use kura_server::common::parse_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let size = u64::from_le_bytes(data[..8].try_into().unwrap()) >> (data[8] % 64);
    let standard = data[8] & 0x80 != 0;
    let Ok(value) = std::str::from_utf8(&data[9..]) else {
        return;
    };
    if let Ok(Some((start, end))) = parse_range(value, size, standard) {
        assert!(
            start < end || (start == end && size == 0),
            "{value} {size}: {start}..{end}"
        );
        assert!(end <= size, "{value} {size}: {start}..{end}");
    }
});
