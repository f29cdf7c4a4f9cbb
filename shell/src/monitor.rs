//! The monitor: runs one typed line against the command table, handles the built-in `help` and
//! `history`, and turns command errors into the messages the user sees.
use crate::complete::{Completer, Completion, CompletionEntry};
use crate::history::History;
use crate::registry::{Handler, Registry};
use crate::{outln, parse, Args, CmdError, CmdResult};
use alloc::vec::Vec;
use core::fmt::{self, Write};

/// Runs a command handler. The kernel's invoker wraps the call in a fault guard and returns
/// `None` when the command faulted (the kernel has already printed the fault report).
pub type Invoker<'f, C> =
    dyn FnMut(Handler<C>, &mut C, &mut Args<'_>, &mut dyn Write) -> Option<CmdResult> + 'f;

/// How a line ended; the monitor has already printed whatever the user needs to see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The line was empty.
    Blank,
    /// The command (or built-in) completed.
    Success,
    /// Unknown command, usage error or failed command.
    Error,
    /// The command faulted and the invoker returned to the monitor.
    Faulted,
}

/// A command the monitor handles itself, because it needs the monitor's own state.
struct Builtin {
    name: &'static str,
    usage: &'static str,
    help: &'static str,
    long_help: &'static str,
}

/// The group `help` lists the built-ins under.
const BUILTIN_GROUP: &str = "monitor";

const HELP: Builtin = Builtin {
    name: "help",
    usage: "help [COMMAND]",
    help: "list commands, or show one command's usage and help",
    long_help: "Without an argument, lists every command by group.\n\
                With COMMAND, prints its usage line and a longer description.",
};

const HISTORY: Builtin = Builtin {
    name: "history",
    usage: "history",
    help: "list the lines typed so far, numbered",
    long_help: "Lists the most recent lines typed at the monitor, oldest first, with their\n\
                numbers. Up and Down at the prompt recall them.",
};

const BUILTINS: [Builtin; 2] = [HELP, HISTORY];

/// Longest command name shown in an error message before it is cut.
const MAX_SHOWN: usize = 40;

/// A problem in the command table, found by `Monitor::check_table`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Two commands (or a command and a built-in) share a name; the first one wins.
    DuplicateName(&'static str),
    /// A name that cannot be typed as one word (empty, or with whitespace or quotes).
    BadName(&'static str),
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableError::DuplicateName(n) => write!(f, "command '{}' is defined twice", n),
            TableError::BadName(n) => write!(f, "command name '{}' cannot be typed", n),
        }
    }
}

/// The interactive monitor: a command table, the built-ins and the history of typed lines.
pub struct Monitor<C: ?Sized> {
    registry: Registry<C>,
    history: History,
}

impl<C: ?Sized> Monitor<C> {
    pub fn new(registry: Registry<C>) -> Self {
        Monitor {
            registry,
            history: History::default(),
        }
    }

    pub fn registry(&self) -> &Registry<C> {
        &self.registry
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Reports duplicate or untypeable command names (a wiring mistake, not a user error).
    pub fn check_table(&self) -> Result<(), TableError> {
        let mut seen: Vec<&'static str> = BUILTINS.iter().map(|b| b.name).collect();
        for c in &self.registry.commands {
            let typeable = !c.name.is_empty()
                && !c
                    .name
                    .contains(|ch: char| ch.is_ascii_whitespace() || ch == '"');
            if !typeable {
                return Err(TableError::BadName(c.name));
            }
            if seen.contains(&c.name) {
                return Err(TableError::DuplicateName(c.name));
            }
            seen.push(c.name);
        }
        Ok(())
    }

    /// The completion table (commands and built-ins), for a line editor to own.
    pub fn completer(&self) -> Completer {
        let builtins = BUILTINS.iter().map(|b| CompletionEntry {
            name: b.name,
            subcommands: &[],
            takes_command: b.name == HELP.name,
        });
        let commands = self.registry.commands.iter().map(|c| CompletionEntry {
            name: c.name,
            subcommands: c.subcommands,
            takes_command: false,
        });
        Completer::new(builtins.chain(commands).collect())
    }

    /// Completes the word before the cursor (see `Completer::complete`).
    pub fn complete(&self, before_cursor: &str) -> Completion {
        self.completer().complete(before_cursor)
    }

    /// Runs `line`, calling command handlers directly (no fault guard): for host tests.
    pub fn execute_direct(&mut self, ctx: &mut C, line: &str, out: &mut dyn Write) -> Outcome {
        self.execute(ctx, line, out, &mut |run, ctx, args, out| {
            Some(run(ctx, args, out))
        })
    }

    /// Runs one typed line: records it in the history, then runs the built-in or the command
    /// it names through `invoke`, and prints the error or usage line if it did not complete.
    pub fn execute(
        &mut self,
        ctx: &mut C,
        line: &str,
        out: &mut dyn Write,
        invoke: &mut Invoker<'_, C>,
    ) -> Outcome {
        let words = parse::words(line);
        let Some((&name, rest)) = words.split_first() else {
            return Outcome::Blank;
        };
        self.history.push(line);
        let mut args = Args::new(rest.to_vec());

        if let Some(b) = BUILTINS.iter().find(|b| b.name == name) {
            let result = if b.name == HELP.name {
                self.help(&mut args, out)
            } else {
                self.list_history(&mut args, out)
            };
            return report(result, b.usage, out);
        }
        let Some(cmd) = self.registry.find(name) else {
            outln!(out, "unknown command '{}' (try 'help')", Shown(name));
            return Outcome::Error;
        };
        let (run, usage) = (cmd.run, cmd.usage);
        match invoke(run, ctx, &mut args, out) {
            Some(result) => report(result, usage, out),
            None => Outcome::Faulted,
        }
    }

    /// `help`: every command by group, or `help CMD`: one command's usage and long help.
    fn help(&self, args: &mut Args, out: &mut dyn Write) -> CmdResult {
        let topic = args.opt_str();
        args.finish()?;
        match topic {
            None => {
                self.list_commands(out);
                Ok(())
            }
            Some(name) => self.describe(name, out),
        }
    }

    fn list_commands(&self, out: &mut dyn Write) {
        // (group, name, help) of every command, built-ins last, in table order.
        let all: Vec<(&str, &str, &str)> = self
            .registry
            .commands
            .iter()
            .map(|c| (c.group, c.name, c.help))
            .chain(BUILTINS.iter().map(|b| (BUILTIN_GROUP, b.name, b.help)))
            .collect();
        let width = all.iter().map(|(_, n, _)| n.len()).max().unwrap_or(0);
        let mut groups: Vec<&str> = Vec::new();
        for (g, _, _) in &all {
            if !groups.contains(g) {
                groups.push(g);
            }
        }
        for g in groups {
            outln!(out, "{}:", g);
            for (_, name, help) in all.iter().filter(|(cg, _, _)| *cg == g) {
                outln!(out, "  {:width$}  {}", name, help, width = width);
            }
        }
    }

    fn describe(&self, name: &str, out: &mut dyn Write) -> CmdResult {
        let (usage, help, long_help) = match BUILTINS.iter().find(|b| b.name == name) {
            Some(b) => (b.usage, b.help, b.long_help),
            None => match self.registry.find(name) {
                Some(c) => (c.usage, c.help, c.long_help),
                None => return Err(crate::fail!("unknown command '{}'", Shown(name))),
            },
        };
        outln!(out, "usage: {}", usage);
        let text = if long_help.is_empty() {
            help
        } else {
            long_help
        };
        for l in text.lines() {
            outln!(out, "{}", l);
        }
        Ok(())
    }

    /// `history`: the kept lines with their numbers.
    fn list_history(&self, args: &mut Args, out: &mut dyn Write) -> CmdResult {
        args.finish()?;
        for (n, l) in self.history.numbered() {
            outln!(out, "{:5}  {}", n, Shown(l));
        }
        Ok(())
    }
}

/// Prints why a command did not complete, in the monitor's fixed format.
fn report(result: CmdResult, usage: &str, out: &mut dyn Write) -> Outcome {
    match result {
        Ok(()) => return Outcome::Success,
        Err(CmdError::Usage) => outln!(out, "usage: {}", usage),
        Err(CmdError::BadArg(m)) => {
            outln!(out, "error: {}", m);
            outln!(out, "usage: {}", usage);
        }
        Err(CmdError::Failed(m)) => outln!(out, "error: {}", m),
    }
    Outcome::Error
}

/// Typed text echoed back safely: control and non-ASCII characters escaped, cut at `MAX_SHOWN`
/// characters, so a stray escape sequence cannot drive the terminal.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.0.chars().enumerate() {
            if i == MAX_SHOWN {
                return f.write_str("...");
            }
            if c == ' ' || c.is_ascii_graphic() {
                f.write_char(c)?;
            } else {
                write!(f, "{}", c.escape_default())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{bad_arg, fail, Command};
    use alloc::string::String;
    use alloc::vec;

    /// The fake machine: counts handler calls.
    #[derive(Default)]
    struct Ctx {
        calls: usize,
    }

    fn echo(c: &mut Ctx, a: &mut Args, o: &mut dyn Write) -> CmdResult {
        c.calls += 1;
        let words = a.rest();
        outln!(o, "{}", words.join(" "));
        Ok(())
    }

    fn peek(c: &mut Ctx, a: &mut Args, o: &mut dyn Write) -> CmdResult {
        c.calls += 1;
        let addr = a.u64("address")?;
        a.finish()?;
        if addr > 0xffff {
            return Err(fail!("address {:#x} is not mapped", addr));
        }
        outln!(o, "{:#x}: 00", addr);
        Ok(())
    }

    fn mode(c: &mut Ctx, a: &mut Args, _o: &mut dyn Write) -> CmdResult {
        c.calls += 1;
        match a.str()? {
            "on" | "off" => Ok(()),
            other => Err(bad_arg!("mode '{}' is not on or off", other)),
        }
    }

    fn cmd(
        name: &'static str,
        group: &'static str,
        usage: &'static str,
        help: &'static str,
        run: Handler<Ctx>,
    ) -> Command<Ctx> {
        Command {
            name,
            group,
            subcommands: &[],
            usage,
            help,
            long_help: "",
            run,
        }
    }

    fn monitor() -> Monitor<Ctx> {
        let mut peek_cmd = cmd("peek", "memory", "peek ADDR", "read a byte", peek);
        peek_cmd.long_help = "Reads one byte at ADDR.\nADDR is decimal or 0x hex.";
        Monitor::new(Registry::new(vec![
            cmd("echo", "system", "echo [WORD...]", "print the words", echo),
            peek_cmd,
            cmd("mode", "system", "mode on|off", "switch the mode", mode),
        ]))
    }

    fn run(m: &mut Monitor<Ctx>, ctx: &mut Ctx, line: &str) -> (Outcome, String) {
        let mut out = String::new();
        let outcome = m.execute_direct(ctx, line, &mut out);
        (outcome, out)
    }

    #[test]
    fn help_lists_groups_in_first_seen_order_with_builtins() {
        let (o, out) = run(&mut monitor(), &mut Ctx::default(), "help");
        assert_eq!(o, Outcome::Success);
        assert_eq!(
            out,
            "system:\n\
             \x20 echo     print the words\n\
             \x20 mode     switch the mode\n\
             memory:\n\
             \x20 peek     read a byte\n\
             monitor:\n\
             \x20 help     list commands, or show one command's usage and help\n\
             \x20 history  list the lines typed so far, numbered\n"
        );
    }

    #[test]
    fn help_cmd_prints_usage_then_long_help() {
        let mut m = monitor();
        let (o, out) = run(&mut m, &mut Ctx::default(), "help peek");
        assert_eq!(o, Outcome::Success);
        assert_eq!(
            out,
            "usage: peek ADDR\nReads one byte at ADDR.\nADDR is decimal or 0x hex.\n"
        );
        // Without a long help, the one-line help stands in.
        let (_, out) = run(&mut m, &mut Ctx::default(), "help echo");
        assert_eq!(out, "usage: echo [WORD...]\nprint the words\n");
        let (_, out) = run(&mut m, &mut Ctx::default(), "help history");
        assert!(
            out.starts_with("usage: history\nLists the most recent"),
            "{}",
            out
        );
    }

    #[test]
    fn help_errors() {
        let mut m = monitor();
        let (o, out) = run(&mut m, &mut Ctx::default(), "help nosuch");
        assert_eq!(o, Outcome::Error);
        assert_eq!(out, "error: unknown command 'nosuch'\n");
        let (o, out) = run(&mut m, &mut Ctx::default(), "help echo peek");
        assert_eq!(o, Outcome::Error);
        assert_eq!(
            out,
            "error: unexpected argument 'peek'\nusage: help [COMMAND]\n"
        );
    }

    #[test]
    fn unknown_command_is_reported_exactly() {
        let mut ctx = Ctx::default();
        let (o, out) = run(&mut monitor(), &mut ctx, "frobnicate 1 2");
        assert_eq!(o, Outcome::Error);
        assert_eq!(out, "unknown command 'frobnicate' (try 'help')\n");
        assert_eq!(ctx.calls, 0);
    }

    #[test]
    fn unknown_command_name_is_escaped_and_cut() {
        let (_, out) = run(&mut monitor(), &mut Ctx::default(), "\x1b[2Jx");
        assert_eq!(out, "unknown command '\\u{1b}[2Jx' (try 'help')\n");
        let long = "y".repeat(100);
        let (_, out) = run(&mut monitor(), &mut Ctx::default(), &long);
        assert_eq!(
            out,
            alloc::format!("unknown command '{}...' (try 'help')\n", "y".repeat(40))
        );
    }

    #[test]
    fn command_errors_print_usage_and_messages() {
        let mut m = monitor();
        let mut ctx = Ctx::default();
        assert_eq!(
            run(&mut m, &mut ctx, "peek"),
            (Outcome::Error, "usage: peek ADDR\n".into())
        );
        assert_eq!(
            run(&mut m, &mut ctx, "peek zz"),
            (
                Outcome::Error,
                "error: address: not a number (use decimal or 0x hex)\nusage: peek ADDR\n".into()
            )
        );
        assert_eq!(
            run(&mut m, &mut ctx, "peek 0x10000"),
            (
                Outcome::Error,
                "error: address 0x10000 is not mapped\n".into()
            )
        );
        assert_eq!(
            run(&mut m, &mut ctx, "mode sideways"),
            (
                Outcome::Error,
                "error: mode 'sideways' is not on or off\nusage: mode on|off\n".into()
            )
        );
        assert_eq!(
            run(&mut m, &mut ctx, "peek 0x10"),
            (Outcome::Success, "0x10: 00\n".into())
        );
        assert_eq!(ctx.calls, 5);
    }

    #[test]
    fn blank_lines_do_nothing_and_are_not_recorded() {
        let mut m = monitor();
        assert_eq!(
            run(&mut m, &mut Ctx::default(), "   "),
            (Outcome::Blank, String::new())
        );
        assert_eq!(
            run(&mut m, &mut Ctx::default(), ""),
            (Outcome::Blank, String::new())
        );
        assert!(m.history().is_empty());
    }

    #[test]
    fn history_numbers_previous_lines_and_itself() {
        let mut m = monitor();
        let mut ctx = Ctx::default();
        run(&mut m, &mut ctx, "echo a");
        run(&mut m, &mut ctx, "");
        run(&mut m, &mut ctx, "nosuch");
        let (o, out) = run(&mut m, &mut ctx, "history");
        assert_eq!(o, Outcome::Success);
        assert_eq!(out, "    1  echo a\n    2  nosuch\n    3  history\n");
        let (o, out) = run(&mut m, &mut ctx, "history 3");
        assert_eq!(o, Outcome::Error);
        assert_eq!(out, "error: unexpected argument '3'\nusage: history\n");
    }

    #[test]
    fn quoted_arguments_reach_the_handler_as_one_word() {
        let (_, out) = run(&mut monitor(), &mut Ctx::default(), "echo \"a  b\" c");
        assert_eq!(out, "a  b c\n");
    }

    #[test]
    fn the_invoker_runs_every_command_and_may_report_a_fault() {
        let mut m = monitor();
        let mut ctx = Ctx::default();
        let mut out = String::new();
        let mut invoked = 0;
        let outcome = m.execute(&mut ctx, "echo hi", &mut out, &mut |_run, _c, _a, o| {
            invoked += 1;
            outln!(o, "!! page fault");
            None
        });
        assert_eq!(outcome, Outcome::Faulted);
        assert_eq!(out, "!! page fault\n");
        assert_eq!(invoked, 1);
        // Built-ins are the monitor's own code and do not go through the invoker.
        let outcome = m.execute(&mut ctx, "help echo", &mut out, &mut |_, _, _, _| None);
        assert_eq!(outcome, Outcome::Success);
    }

    #[test]
    fn completion_includes_builtins() {
        let m = monitor();
        assert_eq!(m.complete("hi"), Completion::Unique("story ".into()));
        assert_eq!(
            m.complete("h"),
            Completion::Several {
                insert: "".into(),
                candidates: vec!["help", "history"]
            }
        );
        assert_eq!(m.complete("help pe"), Completion::Unique("ek ".into()));
        assert_eq!(m.complete("e"), Completion::Unique("cho ".into()));
    }

    #[test]
    fn table_check_finds_duplicates_and_bad_names() {
        assert_eq!(monitor().check_table(), Ok(()));
        let dup = Monitor::new(Registry::new(vec![cmd("help", "x", "", "", echo)]));
        assert_eq!(dup.check_table(), Err(TableError::DuplicateName("help")));
        let bad = Monitor::new(Registry::new(vec![cmd("a b", "x", "", "", echo)]));
        assert_eq!(bad.check_table(), Err(TableError::BadName("a b")));
    }
}
