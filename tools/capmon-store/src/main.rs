//! capmon-store: makes, fills and reads capmon stores in image files on the host, with the
//! kernel's own storage code (capmon-storage) over a file-backed BlockDevice. Commands print
//! what the monitor's `store`, `ns ls` and `fs` commands print for the same thing.
#![forbid(unsafe_code)]
extern crate alloc;

mod commands;
mod image;
mod import;

use capmon_shell::{Args, CmdError};
use image::Layout;
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str =
    "usage: capmon-store [--raw | --part N] IMAGE COMMAND [ARGS...] (--help for the commands)";

const HELP: &str = "\
capmon-store: capmon's store in an image file, on the host

usage: capmon-store [--raw | --part N] IMAGE COMMAND [ARGS...]

IMAGE is a whole disk with a GPT: the store is its first partition of type capmon data
(c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e), or GPT entry N with --part N (which must be of that
type). With --raw, IMAGE is the partition itself. Options go before COMMAND.

commands that write:
  mkfs [-f]                     format the partition as an empty store; refuses one that holds
                                a store or any non-zero byte in its first 4096 unless -f
  import DIR                    copy the directories and regular files under DIR into the
                                store's file tree, in one transaction (mtimes from the host);
                                a symlink, a special file or a name capmon refuses is an error
  put NAME TEXT...              a TextBody object of TEXT, bound to NAME (replacing its value)
  put NAME --pattern P SIZE     a BytesBody object of SIZE bytes of pattern P (0xa5, inc,
                                seed:N), as the monitor's `store put`
  rm NAME                       unbind NAME; the object goes when no name binds it
  fs VERB ARGS...               change the file tree as the monitor's `fs VERB` does, with the
                                same words and the same output line: mkdir PATH, create PATH,
                                put PATH TEXT... | put PATH --pattern P SIZE,
                                write PATH OFFSET COUNT PATTERN, append PATH TEXT... |
                                append PATH --pattern P COUNT, truncate PATH SIZE, mv FROM TO,
                                rm [-r] PATH, sync; times are the host's; every change is
                                durable when the command returns
  repair                        open the store writable once, which repairs a store that was
                                not closed cleanly (read-only commands refuse such a store)

commands that only read (the image file is opened read-only):
  ls [PATH]                     a directory, as `fs ls`
  cat PATH                      a file's bytes, raw, to stdout
  sum PATH                      SHA-256 of a file, as `fs sum`
  stat PATH                     kind, size, inode, generation, times, as `fs stat`
  get NAME [--raw]              the object NAME is bound to, decoded as `store get`; --raw
                                writes its body (the text, or the data bytes) to stdout
  objects                       every object, as `store ls`
  names [PREFIX]                every name (under PREFIX), as `ns ls`
  fsck                          check every object, name, file and redb's structure, as
                                `store fsck`; exit status 1 if not clean
  info                          the superblock and the store's counts, or why the partition
                                is not a store

Exit status: 0 done, 1 failed (one line on stderr), 2 usage error.";

/// How a run ends, other than well.
enum Failure {
    /// Wrong arguments: the message, and the usage line to show.
    Usage(String, &'static str),
    /// The command failed.
    Failed(String),
}

impl Failure {
    fn from_cmd(e: CmdError, usage: &'static str) -> Failure {
        match e {
            CmdError::Usage => Failure::Usage(String::new(), usage),
            CmdError::BadArg(m) => Failure::Usage(m, usage),
            CmdError::Failed(m) => Failure::Failed(m),
        }
    }
}

/// The command line, split into the tool's options, the image and the command's words.
struct Cli {
    image: PathBuf,
    layout: Layout,
    command: String,
    args: Vec<OsString>,
}

enum Parsed {
    Run(Cli),
    Help,
}

fn parse(argv: Vec<OsString>) -> Result<Parsed, Failure> {
    let usage = |m: &str| Failure::Usage(m.to_string(), USAGE);
    let mut raw = false;
    let mut part = None;
    let mut image = None;
    let mut it = argv.into_iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("-h" | "--help") => return Ok(Parsed::Help),
            Some("--raw") => raw = true,
            Some("--part") => {
                let n = it.next().ok_or_else(|| usage("--part needs N"))?;
                let n = n
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| usage("--part N: N is a GPT entry number (1, 2, ...)"))?;
                part = Some(n);
            }
            Some(s) if s.starts_with('-') && image.is_none() => {
                return Err(usage(&format!("unknown option '{}'", s)))
            }
            _ if image.is_none() => image = Some(PathBuf::from(a)),
            _ => {
                let command = a
                    .into_string()
                    .map_err(|a| usage(&format!("unknown command '{}'", a.to_string_lossy())))?;
                if raw && part.is_some() {
                    return Err(usage("--raw and --part exclude each other"));
                }
                return Ok(Parsed::Run(Cli {
                    image: image.unwrap_or_default(),
                    layout: if raw { Layout::Raw } else { Layout::Gpt(part) },
                    command,
                    args: it.collect(),
                }));
            }
        }
    }
    Err(usage(if image.is_none() {
        "no IMAGE"
    } else {
        "no COMMAND"
    }))
}

fn run(argv: Vec<OsString>, out: &mut dyn Write) -> Result<(), Failure> {
    let cli = match parse(argv)? {
        Parsed::Help => {
            commands::emit(out, format_args!("{}\n", HELP)).map_err(Failure::Failed)?;
            return Ok(());
        }
        Parsed::Run(cli) => cli,
    };
    let cmd = commands::find(&cli.command)
        .ok_or_else(|| Failure::Usage(format!("unknown command '{}'", cli.command), USAGE))?;
    report_panics_as_damage(&cli.image);
    // Words are UTF-8, except where the command takes a host path (import DIR).
    let mut words: Vec<String> = Vec::new();
    let mut host_path = None;
    for (i, w) in cli.args.into_iter().enumerate() {
        if i == 0 && cmd.name == "import" {
            host_path = Some(PathBuf::from(w));
            continue;
        }
        match w.into_string() {
            Ok(s) => words.push(s),
            Err(w) => {
                return Err(Failure::Usage(
                    format!("argument '{}' is not UTF-8", w.to_string_lossy()),
                    cmd.usage,
                ))
            }
        }
    }
    let mut args = Args::new(words.iter().map(String::as_str).collect());
    let ctx = commands::Ctx {
        image: cli.image,
        layout: cli.layout,
        host_path,
    };
    (cmd.run)(&ctx, &mut args, out).map_err(|e| Failure::from_cmd(e, cmd.usage))
}

/// redb stops with a panic on some damaged pages (an `unreachable!` in its B-tree code) instead
/// of returning an error. This build aborts on panic (the workspace profile), so the panic
/// cannot be caught: the hook turns it into the tool's one-line error and exit status 1 before
/// the abort would happen. Nothing was committed: redb commits only at the end of a transaction.
fn report_panics_as_damage(image: &std::path::Path) {
    let image = import::shown(image);
    std::panic::set_hook(Box::new(move |info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        // The crate and the file, not the registry's path to them.
        let at = info
            .location()
            .map(|l| {
                let parts: Vec<&str> = l.file().rsplit('/').take(4).collect();
                let file: Vec<&str> = parts.into_iter().rev().collect();
                format!(" at {}:{}", file.join("/"), l.line())
            })
            .unwrap_or_default();
        eprintln!(
            "capmon-store: {}: the store is damaged: reading it stopped inside the storage code \
             ({}{}); no change was committed",
            image, what, at
        );
        std::process::exit(1);
    }));
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().skip(1).collect();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(argv, &mut out);
    let flushed = out.flush();
    match result {
        Ok(()) => match flushed {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("capmon-store: writing to stdout: {}", e);
                ExitCode::from(1)
            }
        },
        Err(Failure::Failed(m)) if m == commands::STDOUT_CLOSED => ExitCode::from(1),
        Err(Failure::Failed(m)) => {
            eprintln!("capmon-store: {}", m);
            ExitCode::from(1)
        }
        Err(Failure::Usage(m, usage)) => {
            if !m.is_empty() {
                eprintln!("capmon-store: {}", m);
            }
            eprintln!("{}", usage);
            ExitCode::from(2)
        }
    }
}
