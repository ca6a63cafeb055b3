//! CSV, TSV and JSON Lines tables (optionally gzipped) through the loader the page uses, as
//! features (a classifier's table) and as texts; the first byte picks the format.
#![no_main]

use burnish_core::data::images::FolderFile;
use burnish_core::session::text_session::TextSession;
use burnish_core::session::workspace::{LoadRequest, Role, Workspace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let name = ["data.csv", "data.tsv", "data.jsonl", "data.csv.gz"][usize::from(pick % 4)];
    let files = [FolderFile {
        path: name.into(),
        bytes: bytes.to_vec(),
    }];
    let request = LoadRequest::Table {
        label: None,
        has_header: pick & 0x80 == 0,
        image: None,
    };
    let _ = Workspace::new().load(Role::Train, &request, &files);
    let _ = TextSession::default().load(Role::Train, false, None, &files);
});
