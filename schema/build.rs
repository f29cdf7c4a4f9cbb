//! Compiles `storage.capnp` and `boot.capnp` with the `capnp` compiler (installed by
//! scripts/setup.sh).
//!
//! capnpc writes interface code for std: it names `Box` and calls `.to_string()` without
//! importing them, which a `no_std` crate does not have in its prelude. Every generated module
//! gets the two imports, so the output compiles with `alloc` alone.
use std::path::PathBuf;

fn main() {
    for schema in ["storage", "boot"] {
        compile(schema);
    }
}

fn compile(schema: &str) {
    println!("cargo:rerun-if-changed={schema}.capnp");
    capnpc::CompilerCommand::new()
        .file(format!("{schema}.capnp"))
        .run()
        .unwrap_or_else(|e| {
            panic!(
                "compiling {schema}.capnp (is the capnp compiler installed? scripts/setup.sh): {e}"
            )
        });
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join(format!("{schema}_capnp.rs"));
    let text = std::fs::read_to_string(&out).expect("reading the generated code");
    let mut fixed = String::with_capacity(text.len() + text.len() / 8);
    // The imports go after a module's inner attributes (`#![allow(..)]`), which must come first.
    let mut pending = false;
    for line in text.lines() {
        let t = line.trim();
        if pending && !t.starts_with("#![") {
            fixed.push_str("#[allow(unused_imports)] use ::alloc::boxed::Box;\n");
            fixed.push_str("#[allow(unused_imports)] use ::alloc::string::ToString;\n");
            pending = false;
        }
        fixed.push_str(line);
        fixed.push('\n');
        if t.starts_with("pub mod ") && t.ends_with('{') {
            pending = true;
        }
    }
    std::fs::write(&out, fixed).expect("writing the generated code");
}
