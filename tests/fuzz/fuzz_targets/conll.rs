//! CoNLL files of tagged words through the page's text loader.
#![no_main]

use burnish_core::data::images::FolderFile;
use burnish_core::session::text_session::TextSession;
use burnish_core::session::workspace::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let files = [FolderFile {
        path: "train.conll".into(),
        bytes: data.to_vec(),
    }];
    let _ = TextSession::default().load(Role::Train, true, None, &files);
});
