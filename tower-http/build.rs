//! Lists the dashboard's files (`dashboard/`) for the binary to embed: every file of the folder,
//! so adding one needs no hand-kept list. Each is served at `/assets/<name>` with the content type
//! of its extension; a file of another kind stops the build, so nothing is served with a guess.

use std::fmt::Write as _;
use std::path::Path;

fn content_type(name: &str) -> Option<&'static str> {
    Some(match name.rsplit_once('.')?.1 {
        "html" => "text/html; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "json" => "application/json",
        "woff2" => "font/woff2",
        _ => return None,
    })
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("the dashboard folder")
        .map(|e| e.expect("a dashboard file"))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().into_string().expect("a UTF-8 file name"))
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    let mut out = String::from("const ASSETS: &[Asset] = &[\n");
    for name in &names {
        let Some(ty) = content_type(name) else {
            panic!("dashboard/{name}: no content type for this kind of file; add it in build.rs")
        };
        let path = dir.join(name);
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    Asset {{ name: {name:?}, content_type: {ty:?}, body: include_bytes!({:?}) }},",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let target = Path::new(&std::env::var("OUT_DIR").unwrap()).join("assets.rs");
    std::fs::write(target, out).expect("write assets.rs");
}
