//! The operator console's files (`ui/`) and the API document (`src/routes/openapi.json`) go
//! into the binary gzipped, each with an `ETag` from its bytes (`http::compressed` serves
//! them, inflated for a client that does not take gzip). The console's are listed in a table
//! `src/console/mod.rs` includes. No bundler, no npm: the files in `ui/` are what the browser
//! gets.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=ui");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let gz_dir = Path::new(&out).join("ui");
    std::fs::create_dir_all(&gz_dir).expect("OUT_DIR is writable");
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    let mut names: Vec<String> = std::fs::read_dir(&ui)
        .expect("ui/ holds the console")
        .map(|e| {
            e.expect("ui/ is readable")
                .file_name()
                .into_string()
                .unwrap()
        })
        .filter(|name| !name.starts_with('.'))
        .collect();
    names.sort();
    let mut table = String::from("&[\n");
    for name in &names {
        let body = compressed(&ui.join(name), &gz_dir.join(format!("{name}.gz")));
        writeln!(table, "    ({name:?}, {body}),").unwrap();
    }
    table.push(']');
    std::fs::write(Path::new(&out).join("ui_assets.rs"), table).expect("OUT_DIR is writable");
    let openapi = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes/openapi.json");
    let body = compressed(&openapi, &Path::new(&out).join("openapi.json.gz"));
    std::fs::write(Path::new(&out).join("openapi.rs"), body).expect("OUT_DIR is writable");
}

/// Gzips `source` into `gz_path`; answers the `http::compressed::Compressed` that serves it.
fn compressed(source: &Path, gz_path: &Path) -> String {
    println!("cargo:rerun-if-changed={}", source.display());
    let bytes = std::fs::read(source).expect("a built-in file is readable");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&bytes).unwrap();
    std::fs::write(gz_path, encoder.finish().unwrap()).expect("OUT_DIR is writable");
    let name = source.file_name().unwrap().to_str().unwrap();
    format!(
        "crate::http::compressed::Compressed {{ content_type: {:?}, gzip: include_bytes!({:?}), etag: \"\\\"{:016x}\\\"\" }}",
        content_type(name),
        gz_path.display().to_string(),
        fnv1a(&bytes),
    )
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("txt") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        _ => panic!("ui/{name}: no content type for it in build.rs"),
    }
}

/// FNV-1a, 64 bits: an ETag only needs to change when the bytes do.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
