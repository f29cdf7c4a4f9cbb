//! mkmanifest: writes (or prints) capmon's boot manifest. See README.md.
use capmon_bootpkg::manifest::{self, Manifest, ManifestEntry, MANIFEST_MAX_BYTES};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::ExitCode;

const USAGE: &str =
    "usage: mkmanifest --out MANIFEST [--init NAME] FILE...\n       mkmanifest --print MANIFEST";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mkmanifest: {}", e);
            ExitCode::FAILURE
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut out = None;
    let mut init = String::new();
    let mut print = None;
    let mut files = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--out" => out = Some(it.next().ok_or(USAGE)?),
            "--init" => init = it.next().ok_or(USAGE)?,
            "--print" => print = Some(it.next().ok_or(USAGE)?),
            "-h" | "--help" => {
                println!("{}", USAGE);
                return Ok(());
            }
            f if f.starts_with('-') => return Err(format!("unknown option {}\n{}", f, USAGE)),
            f => files.push(f.to_string()),
        }
    }
    if let Some(p) = print {
        let bytes = std::fs::read(&p).map_err(|e| format!("{}: {}", p, e))?;
        let m = manifest::decode(&bytes).map_err(|e| format!("{}: {}", p, e))?;
        for line in manifest::describe(&m) {
            println!("{}", line);
        }
        println!("init {}", m.init);
        return Ok(());
    }
    let out = out.ok_or(USAGE)?;
    let mut binaries: Vec<ManifestEntry> = Vec::new();
    for f in &files {
        let name = Path::new(f)
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("{}: no file name", f))?
            .to_string();
        if !manifest::valid_name(&name) {
            return Err(format!(
                "{}: '{}' is not a name the kernel accepts",
                f, name
            ));
        }
        if binaries.iter().any(|b| b.name == name) {
            return Err(format!("{}: '{}' is named twice", f, name));
        }
        let data = std::fs::read(f).map_err(|e| format!("{}: {}", f, e))?;
        binaries.push(ManifestEntry {
            name,
            size: data.len() as u64,
            sha256: Sha256::digest(&data).into(),
        });
    }
    let m = Manifest { binaries, init };
    let bytes = manifest::encode(&m);
    if bytes.len() as u64 > MANIFEST_MAX_BYTES {
        return Err(format!(
            "the manifest would be {} bytes, over the kernel's limit of {}",
            bytes.len(),
            MANIFEST_MAX_BYTES
        ));
    }
    // What the kernel will read back, checked here (init among the binaries, and the rest).
    manifest::decode(&bytes).map_err(|e| format!("{}: {}", out, e))?;
    std::fs::write(&out, &bytes).map_err(|e| format!("{}: {}", out, e))?;
    Ok(())
}
