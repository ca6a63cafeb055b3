//! A pair of IDX files (images and labels) through the page's loader: the first two bytes say
//! where the input splits into the two files.
#![no_main]

use burnish_core::data::images::FolderFile;
use burnish_core::session::workspace::{LoadRequest, Role, Workspace};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [a, b, rest @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_le_bytes([*a, *b])).min(rest.len());
    let files = [
        FolderFile {
            path: "images.idx3".into(),
            bytes: rest[..cut].to_vec(),
        },
        FolderFile {
            path: "labels.idx1".into(),
            bytes: rest[cut..].to_vec(),
        },
    ];
    let _ = Workspace::new().load(Role::Train, &LoadRequest::Idx, &files);
});
