#![no_main]

use dse_proto::ReplyParser;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(len)) = ReplyParser::frame_len(data) {
        assert!(len <= data.len());
        assert_eq!(ReplyParser::frame_len(&data[..len]), Ok(Some(len)));
    }
});
