//! An image folder through the page's loader: the input is one class's image (PNG, JPEG or
//! anything), beside a valid PNG in another class.
#![no_main]

use burnish_core::data::images::{FolderFile, ImageFolderConfig};
use burnish_core::session::workspace::{LoadRequest, Role, Workspace};
use libfuzzer_sys::fuzz_target;

const GOOD: &[u8] = include_bytes!("../../corpus/files/images/one/cats/a.png");

fuzz_target!(|data: &[u8]| {
    let name = if data.starts_with(&[0xff, 0xd8]) { "b.jpg" } else { "b.png" };
    let files = [
        FolderFile {
            path: "imgs/cats/a.png".into(),
            bytes: GOOD.to_vec(),
        },
        FolderFile {
            path: format!("imgs/dogs/{name}"),
            bytes: data.to_vec(),
        },
    ];
    let request = LoadRequest::Images {
        config: ImageFolderConfig::default(),
    };
    let _ = Workspace::new().load(Role::Train, &request, &files);
});
