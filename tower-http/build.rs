//! Lists the dashboard's files (`dashboard/`) for the binary to embed: every file of the folder,
//! so adding one needs no hand-kept list. Each is served at `/assets/<name>` with the content type
//! of its extension; a file of another kind stops the build, so nothing is served with a guess.
//!
//! The embedded `index.html` also gets a `<link rel="modulepreload">` for every module before its
//! `<script type="module">`: the browser then fetches all of them at once instead of discovering
//! them import by import (three round trips deep).

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
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR").unwrap());
    let mut out = String::from("const ASSETS: &[Asset] = &[\n");
    for name in &names {
        let Some(ty) = content_type(name) else {
            panic!("dashboard/{name}: no content type for this kind of file; add it in build.rs")
        };
        let mut path = dir.join(name);
        if name == "index.html" {
            path = out_dir.join("index.html");
            std::fs::write(&path, with_preloads(&dir.join(name), &names))
                .expect("write index.html");
        }
        println!("cargo:rerun-if-changed={}", path.display());
        writeln!(
            out,
            "    Asset {{ name: {name:?}, content_type: {ty:?}, body: include_bytes!({:?}) }},",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    std::fs::write(out_dir.join("assets.rs"), out).expect("write assets.rs");
}

/// `index.html` with a module preload for every `.js` file, before its module script.
fn with_preloads(index: &Path, names: &[String]) -> String {
    let html = std::fs::read_to_string(index).expect("dashboard/index.html");
    let script = html.find("<script type=\"module\"").expect("index.html loads a module script");
    let indent = html[..script].rsplit('\n').next().unwrap_or("");
    let links: String = names
        .iter()
        .filter(|n| n.ends_with(".js"))
        .map(|n| format!("<link rel=\"modulepreload\" href=\"/assets/{n}\">\n{indent}"))
        .collect();
    format!("{}{links}{}", &html[..script], &html[script..])
}
