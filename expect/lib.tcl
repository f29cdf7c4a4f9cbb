# expect/lib.tcl: the capmon proof harness. A proof sources this file, boots capmon in QEMU,
# types into the monitor and checks what the machine printed against an oracle outside the
# kernel (QMP, the QEMU command line, the source tree). See expect/README.md.
#
#   proof_begin NAME ?options?   boot (options below), wait for the first prompt
#   proof_init NAME ?options?    the same without booting (a proof that runs QEMU itself)
#   boot ?options?               kill this QEMU and boot again (other -m, -cpu, ...)
#   booted                       1 while the last boot reached the prompt and QEMU runs
#   monitor CMD ?TIMEOUT?        type CMD, return its output (no echo, no prompt, no CR)
#   monitor_error CMD PATTERN    CMD must print a line matching PATTERN; the prompt must return
#   monitor_fault CMD            CMD must fault: exception report, then back to the monitor
#   check NAME EXPR              EXPR (evaluated in the caller) must be true
#   check_eq NAME WANT GOT       check_range NAME LO HI GOT
#   check_match NAME RE TEXT     check_no_match NAME RE TEXT    (RE matches whole lines)
#   line_value RE TEXT           first capture group of the first line matching RE, or ""
#   qmp CMD ?ARGS_JSON? ?-field PATH?   qom_get PATH PROP   qom_get_many PATH PROPS
#   hmp COMMAND-LINE             QMP oracles (expect/qmp.py); "" and a FAIL on error
#   paste LINES ?TIMEOUT?        send many command lines in one write (a terminal paste),
#                                wait for one prompt per line; the combined output
#   oracle_lapic ?APIC_ID? ?MODE? oracle_ioapic ?N?  oracle_msix ADDR N ?PBA?  oracle_cpus
#                                interrupt-controller state as QEMU has it (irqoracle.py)
#   qemu_pid / idle_cost SECONDS QEMU's pid; its host CPU use over SECONDS (idlecost.py), in %
#   cmdline_iso WORDS            a copy of the proof's GRUB ISO (::proof(iso)) that adds WORDS
#                                to the kernel command line (`boot -iso` it; removed at exit),
#                                or "" with the reason in ::proof(cmdline_why) (Limine, tools)
#   pass NAME / fail NAME WHY    record a result computed by the proof itself
#   skip NAME WHY                a check this configuration cannot run (printed, not counted)
#   poweroff                     `poweroff`: QEMU must exit 0 by itself (a check)
#   proof_end                    poweroff if QEMU still runs, print the summary, exit 0 or 1
#   proof_skip WHY               the proof cannot run here: SKIP line, exit 77 (run-all: skipped)
#
# Options: -machine q35|pc  -firmware bios|uefi  -iso PATH  -m SIZE  -smp N  -cpu MODEL
#          -args {extra QEMU args}  -expect_faults 0|1|2 (2: panics in commands too)
#          -boot_timeout SECONDS
# Environment: CAPMON_FIRMWARE (bios|uefi, default bios), CAPMON_ISO (default
# build/capmon.iso), CAPMON_LOADER (a tag for transcript names, default grub), OVMF_CODE,
# OVMF_VARS_TEMPLATE, QEMU (default qemu-system-x86_64).

package require Expect

set ::lib_dir [file dirname [file normalize [info script]]]
set ::repo [file dirname $::lib_dir]
set ::build [file join $::repo build]
set ::prompt_re {(?:^|\n)capmon> }

# Results and state of the running proof.
array set ::proof {
    name "" pass 0 fail 0 echo "" sid "" pid "" running 0 boots 0 sock "" vars "" log "" iso ""
}
# Options for the next boot; proof_begin sets them, boot overrides some.
array set ::opt {
    -machine q35 -firmware "" -iso "" -m 256M -smp 1 -cpu "" -args {}
    -expect_faults 0 -boot_timeout ""
}

log_user 0
# QEMU keeps output post-processing on its stdio; without -onlcr the pty turns the kernel's
# CRLF into CR CR LF in the transcript.
set stty_init -onlcr
match_max -d 4000000

proc env_or {name default} {
    if {[info exists ::env($name)] && $::env($name) ne ""} { return $::env($name) }
    return $default
}

# ---------------------------------------------------------------- results

proc pass {name} {
    incr ::proof(pass)
    puts "PASS $name"
    catch {send_log "\n#### PASS $name\n"}
}

# A check that cannot run in this configuration; says why, counts neither way.
proc skip {name why} {
    puts "SKIP $name: $why"
    catch {send_log "\n#### SKIP $name: $why\n"}
}

proc fail {name why} {
    incr ::proof(fail)
    puts "FAIL $name: $why"
    catch {send_log "\n#### FAIL $name: $why\n"}
}

# Shortens text for a FAIL line: the first lines, one line.
proc brief {text {max 300}} {
    set t [string map [list "\n" { | }] [string trim $text]]
    if {[string length $t] > $max} { set t "[string range $t 0 $max]..." }
    if {$t eq ""} { return "(nothing)" }
    return $t
}

proc check {name expr} {
    if {[catch {uplevel 1 [list expr $expr]} ok]} {
        fail $name "cannot evaluate {$expr}: $ok"
        return 0
    }
    if {$ok} { pass $name; return 1 }
    if {[catch {uplevel 1 [list subst $expr]} shown]} { set shown $expr }
    fail $name "condition {$shown} is false"
    return 0
}

proc check_eq {name want got} {
    if {$want eq $got} { pass $name; return 1 }
    fail $name "expected '$want', got '$got'"
    return 0
}

proc check_range {name lo hi got} {
    if {[string is wide -strict $got] && $got >= $lo && $got <= $hi} { pass $name; return 1 }
    fail $name "expected a number in \[$lo, $hi\], got '$got'"
    return 0
}

# RE is matched line by line (^ and $ are line ends).
proc check_match {name re text} {
    if {[regexp -line -- $re $text]} { pass $name; return 1 }
    fail $name "expected a line matching /$re/, got: [brief $text]"
    return 0
}

proc check_no_match {name re text} {
    if {![regexp -line -- $re $text m]} { pass $name; return 1 }
    fail $name "expected no line matching /$re/, got: [brief $m]"
    return 0
}

proc line_value {re text} {
    if {[regexp -line -- $re $text -> v]} { return $v }
    return ""
}

# ---------------------------------------------------------------- QEMU

proc parse_opts {argv} {
    if {[llength $argv] % 2} { error "options come in pairs: $argv" }
    foreach {k v} $argv {
        if {![info exists ::opt($k)]} {
            error "unknown option $k (known: [lsort [array names ::opt]])"
        }
        set ::opt($k) $v
    }
}

# A fresh path for this proof's QMP socket; unix socket paths are limited to 107 bytes.
proc qmp_socket_path {} {
    set dir [file join $::build qmp]
    file mkdir $dir
    set p [file join $dir "$::proof(name)-[pid]-$::proof(boots).sock"]
    if {[string length $p] > 100} { set p "/tmp/capmon-qmp-[pid]-$::proof(boots).sock" }
    file delete -force $p
    return $p
}

proc qemu_cmdline {} {
    set fw $::opt(-firmware)
    set cmd [list [env_or QEMU qemu-system-x86_64] -accel tcg -machine $::opt(-machine) \
                 -m $::opt(-m) -smp $::opt(-smp) -no-reboot -display none -monitor none \
                 -serial stdio -qmp "unix:$::proof(sock),server=on,wait=off"]
    if {$::opt(-cpu) ne ""} { lappend cmd -cpu $::opt(-cpu) }
    if {$fw eq "uefi"} {
        set code [env_or OVMF_CODE /usr/share/OVMF/OVMF_CODE_4M.fd]
        set tmpl [env_or OVMF_VARS_TEMPLATE \
                      [string map {OVMF_CODE OVMF_VARS} $code]]
        # Each boot gets its own copy of the variable store: nothing a previous run wrote
        # (boot entries, boot order) changes what this one boots.
        set dir [file join $::build ovmf]
        file mkdir $dir
        set ::proof(vars) [file join $dir "$::proof(name)-[pid]-$::proof(boots)-VARS.fd"]
        file copy -force $tmpl $::proof(vars)
        lappend cmd -drive "if=pflash,format=raw,unit=0,readonly=on,file=$code" \
                    -drive "if=pflash,format=raw,unit=1,file=$::proof(vars)"
    }
    lappend cmd -cdrom $::opt(-iso)
    return [concat $cmd $::opt(-args)]
}

# Kills QEMU if it runs, reaps it, removes the per-boot files. Safe to call twice.
proc qemu_kill {} {
    if {$::proof(running)} {
        set ::proof(running) 0
        catch {exec kill -9 $::proof(pid)}
        catch {close -i $::proof(sid)}
        catch {wait -i $::proof(sid)}
    }
    foreach f [list $::proof(sock) $::proof(vars)] {
        if {$f ne ""} { catch {file delete -force $f} }
    }
    set ::proof(sock) ""
    set ::proof(vars) ""
}

# Boots QEMU with the proof's options (overridden by ARGS) and waits for the first prompt.
# Returns the boot log. When the boot fails it is a FAIL, QEMU is killed and `booted` says 0:
# the first boot (proof_begin) then ends the proof; a later one returns "" and the proof
# goes on (its monitor calls fail fast).
proc boot {args} {
    qemu_kill
    parse_opts $args
    set fw $::opt(-firmware)
    if {$fw ni {bios uefi}} { error "-firmware must be bios or uefi, not '$fw'" }
    incr ::proof(boots)
    set what "boot ($fw, -m $::opt(-m)"
    if {$::opt(-machine) ne "q35"} { append what ", -machine $::opt(-machine)" }
    if {$::opt(-cpu) ne ""} { append what ", -cpu $::opt(-cpu)" }
    append what ")"
    if {![file exists $::opt(-iso)]} {
        return [boot_failed $what "no ISO at $::opt(-iso) (run 'make iso')"]
    }
    set ::proof(sock) [qmp_socket_path]
    set cmd [qemu_cmdline]
    set tmo $::opt(-boot_timeout)
    if {$tmo eq ""} { set tmo [expr {$fw eq "uefi" ? 90 : 45}] }
    send_log "\n#### boot $::proof(boots): [join $cmd]\n"
    set t0 [clock milliseconds]
    if {[catch {spawn -noecho {*}$cmd} err]} {
        return [boot_failed $what "cannot start QEMU: $err"]
    }
    set ::proof(sid) $spawn_id
    set ::proof(pid) [exp_pid -i $spawn_id]
    set ::proof(running) 1
    set why ""
    expect {
        -i $::proof(sid) -timeout $tmo
        -re $::prompt_re {
            set log $expect_out(buffer)
        }
        -re {\*\*\* (PANIC|EXCEPTION)[^\n]*} {
            # The kernel died before the prompt: give it a moment to finish its report.
            set head $expect_out(0,string)
            after 1500
            set why "the kernel faulted before the prompt: [brief "$head[tail_of $::proof(sid) 4000]" 1200]"
        }
        -re {Failed to boot both default and fallback entries|!!!! X64 Exception[^\n]*} {
            # GRUB gave up (it then waits for a key) or the firmware itself faulted.
            set m [string trim $expect_out(0,string)]
            set t [string map {"\r" ""} $expect_out(buffer)]
            regexp -line {^.*error: .*$} $t m
            set why "the firmware or loader failed before the kernel ran: [brief $m]"
        }
        timeout {
            set why "no 'capmon> ' prompt within $tmo s; last output: [brief [tail_of $::proof(sid)]]"
        }
        eof {
            set t ""
            catch {set t [string map {"\r" ""} $expect_out(buffer)]}
            set why "QEMU exited before the prompt: [brief [string range $t end-600 end]]"
        }
    }
    if {$why ne ""} { return [boot_failed $what $why] }
    set ms [expr {[clock milliseconds] - $t0}]
    set log [string map {"\r" ""} $log]
    if {[scan_faults $what $log 0]} {
        pass "$what reaches the prompt in $ms ms"
    }
    return $log
}

proc boot_failed {what why} {
    fail $what $why
    qemu_kill
    if {$::proof(boots) <= 1} { proof_finish }
    return ""
}

# 1 while the last boot reached the prompt and QEMU still runs.
proc booted {} { return $::proof(running) }

# The last MAX characters the spawned process printed that no pattern consumed (for FAIL
# messages).
proc tail_of {sid {max 600}} {
    set buf ""
    catch {
        expect -i $sid -timeout 0 -re {.+} { set buf $expect_out(buffer) }
    }
    set buf [string map {"\r" ""} $buf]
    return [string range $buf end-$max end]
}

# FAILs on a panic, or an exception when the proof does not expect faults. 1 if clean.
proc scan_faults {what text allow_exceptions} {
    set ok 1
    # -expect_faults 2: a panic inside a command is expected too (it returns to the prompt).
    if {$allow_exceptions < 2 && [regexp -line {^.*\*\*\* PANIC.*$} $text m]} {
        fail $what "kernel panic: [brief $m]"
        set ok 0
    }
    if {!$allow_exceptions && [regexp -line {^.*\*\*\* EXCEPTION.*$} $text m]} {
        fail $what "unexpected exception: [brief $m]"
        set ok 0
    }
    return $ok
}

# Types CMD (plus CR) at the prompt and returns what it printed before the next prompt, one
# string with "\n" between lines, without the echoed command line. A timeout, QEMU exiting,
# a panic or an unexpected exception is a FAIL; after a timeout QEMU is killed.
proc monitor {cmd {timeout 20}} {
    set ::proof(last_ok) 0
    if {!$::proof(running)} {
        fail "monitor '$cmd'" "QEMU is not running"
        return ""
    }
    # Anything printed since the last prompt (there should be nothing) stays in the transcript.
    catch {expect -i $::proof(sid) -timeout 0 -re {.+} {}}
    send -i $::proof(sid) -- "$cmd\r"
    set raw ""
    set pre ""
    expect {
        -i $::proof(sid) -timeout $timeout
        -re $::prompt_re {
            set raw "$pre$expect_out(buffer)"
        }
        -re {\*\*\* PANIC[^\n]*} {
            # A panic inside a command returns to the prompt; a proof that provokes one on
            # purpose says -expect_faults 2 and keeps waiting for it.
            if {$::opt(-expect_faults) >= 2} {
                append pre $expect_out(buffer)
                exp_continue
            }
            # Otherwise treat it as fatal: let the report finish.
            set head $expect_out(0,string)
            after 1000
            fail "monitor '$cmd'" "kernel panic: [brief "$head[tail_of $::proof(sid) 4000]" 1200]"
            qemu_kill
            return ""
        }
        timeout {
            set t [tail_of $::proof(sid)]
            scan_faults "monitor '$cmd'" $t $::opt(-expect_faults)
            fail "monitor '$cmd'" "no prompt within $timeout s; last output: [brief $t]"
            qemu_kill
            return ""
        }
        eof {
            set t ""
            catch {set t [string map {"\r" ""} $expect_out(buffer)]}
            fail "monitor '$cmd'" "QEMU exited: [brief [string range $t end-600 end]]"
            set ::proof(running) 0
            catch {wait -i $::proof(sid)}
            return ""
        }
    }
    set text [string map {"\r" ""} $raw]
    regsub $::prompt_re\$ $text "" text
    # The first line is the echo of what we typed.
    set nl [string first "\n" $text]
    if {$nl < 0} {
        set echo $text
        set text ""
    } else {
        set echo [string range $text 0 [expr {$nl - 1}]]
        set text [string range $text [expr {$nl + 1}] end]
    }
    # The line editor rings the bell (BEL) for keys it refuses, e.g. past its line limit:
    # the echo is then a prefix of the command.
    set echo [string trimright [string map {"\a" ""} $echo]]
    set ::proof(echo) $echo
    if {[string first $echo $cmd] != 0 || ($echo eq "" && [string trim $cmd] ne "")} {
        fail "monitor '[brief $cmd 60]'" "the echo was '[brief $echo]'"
    }
    set ::proof(last_ok) [scan_faults "monitor '$cmd'" $text $::opt(-expect_faults)]
    return $text
}

proc monitor_error {cmd pattern {name ""}} {
    if {$name eq ""} { set name "error from '$cmd'" }
    set out [monitor $cmd]
    if {!$::proof(running)} { return $out }
    check_match $name $pattern $out
    check_no_match "$name: no exception" {\*\*\* (EXCEPTION|PANIC)} $out
    return $out
}

# CMD must fault: an exception report, `command aborted; back to the monitor`, the prompt.
proc monitor_fault {cmd {name ""}} {
    if {$name eq ""} { set name "fault from '$cmd'" }
    if {!$::opt(-expect_faults)} { error "monitor_fault needs proof_begin ... -expect_faults 1" }
    set out [monitor $cmd]
    if {!$::proof(running)} { return $out }
    check_match "$name: exception report" {^\*\*\* EXCEPTION } $out
    check_match "$name: back to the monitor" {^command aborted; back to the monitor$} $out
    return $out
}

# ---------------------------------------------------------------- QMP

# qmp CMD ?ARGS_JSON? ?-field PATH?: the answer (JSON, or a bare scalar), "" and a FAIL on error.
proc qmp {cmd args} {
    set field ""
    set jsonargs {}
    for {set i 0} {$i < [llength $args]} {incr i} {
        set a [lindex $args $i]
        if {$a eq "-field"} { incr i; set field [lindex $args $i]; continue }
        lappend jsonargs $a
    }
    set argv [list python3 [file join $::lib_dir qmp.py] $::proof(sock) $cmd {*}$jsonargs]
    if {$field ne ""} { lappend argv --field $field }
    return [qmp_run $argv "qmp $cmd [join $jsonargs] $field"]
}

proc qom_get {path prop} {
    set argv [list python3 [file join $::lib_dir qmp.py] $::proof(sock) qom-get $path $prop]
    return [qmp_run $argv "qom-get $prop"]
}

# Several properties over one connection: a dict PROP -> value ("" and a FAIL on error).
proc qom_get_many {path props} {
    set argv [list python3 [file join $::lib_dir qmp.py] $::proof(sock) qom-get $path {*}$props]
    set d [dict create]
    foreach line [split [qmp_run $argv "qom-get $path ([llength $props] properties)"] "\n"] {
        if {[regexp {^(\S+) (.*)$} $line -> k v]} { dict set d $k $v }
    }
    return $d
}

proc hmp {cmdline} {
    set argv [list python3 [file join $::lib_dir qmp.py] $::proof(sock) hmp $cmdline]
    return [qmp_run $argv "hmp $cmdline"]
}

proc qmp_run {argv what} {
    if {!$::proof(running)} {
        fail $what "QEMU is not running"
        return ""
    }
    if {[catch {exec -ignorestderr -- timeout 20 {*}$argv 2>@1} out]} {
        fail $what [brief $out]
        return ""
    }
    send_log "\n#### $what -> [brief $out 2000]\n"
    return $out
}

# ---------------------------------------------------------------- paste, interrupt oracles

# Sends LINES (a list of command lines, each ended by CR) in one `send`: every byte at once,
# as a terminal paste does. Waits until as many prompts came back as there were lines, at
# most TIMEOUT seconds in all, and returns everything printed meanwhile (echoes, outputs and
# the prompts between them; no CR; without the last prompt). ::proof(paste_prompts) says how
# many prompts came back. Fewer than lines is a FAIL; then one CR is typed to end any half
# line and the output is drained until it settles, so the proof can go on. A panic (unless
# -expect_faults 2), a silent monitor after that CR or QEMU exiting is a FAIL as in `monitor`.
proc paste {lines {timeout 60}} {
    set want [llength $lines]
    set name "paste $want lines"
    set ::proof(paste_prompts) 0
    if {!$::proof(running)} {
        fail $name "QEMU is not running"
        return ""
    }
    if {$want == 0} { return "" }
    catch {expect -i $::proof(sid) -timeout 0 -re {.+} {}}
    set data "[join $lines "\r"]\r"
    send_log "\n#### paste: $want lines, [string length $data] bytes in one write\n"
    send -i $::proof(sid) -- $data
    set acc ""
    set n 0
    set why ""
    set deadline [expr {[clock milliseconds] + $timeout * 1000}]
    while {$n < $want && $why eq ""} {
        set left [expr {($deadline - [clock milliseconds] + 999) / 1000}]
        if {$left <= 0} { set why timeout; break }
        expect {
            -i $::proof(sid) -timeout $left
            -re $::prompt_re {
                append acc $expect_out(buffer)
                incr n
            }
            -re {\*\*\* PANIC[^\n]*} {
                append acc $expect_out(buffer)
                if {$::opt(-expect_faults) < 2} { set why panic }
            }
            timeout { set why timeout }
            eof {
                catch {append acc $expect_out(buffer)}
                set why eof
            }
        }
    }
    set ::proof(paste_prompts) $n
    switch -- $why {
        panic {
            after 1000
            append acc [tail_of $::proof(sid) 4000]
            fail $name "kernel panic after $n prompts: [brief [string map {"\r" ""} \
                [string range $acc [string first "*** PANIC" $acc] end]] 1200]"
            qemu_kill
            return [string map {"\r" ""} $acc]
        }
        eof {
            fail $name "QEMU exited after $n prompts: [brief [string map {"\r" ""} [string range $acc end-600 end]]]"
            set ::proof(running) 0
            catch {wait -i $::proof(sid)}
            return [string map {"\r" ""} $acc]
        }
        timeout {
            fail $name "only $n of $want prompts came back within $timeout s"
            # End a half-typed line, then let the output settle (1 s of quiet, 10 s at most).
            send -i $::proof(sid) -- "\r"
            set t_end [expr {[clock milliseconds] + 10000}]
            set seen 0
            while {[clock milliseconds] < $t_end} {
                set got 0
                expect {
                    -i $::proof(sid) -timeout 1
                    -re {.+} { append acc $expect_out(buffer); set got 1 }
                    eof { set ::proof(running) 0; catch {wait -i $::proof(sid)} }
                }
                if {!$got || !$::proof(running)} { break }
            }
            if {$::proof(running) && ![regexp {(?:^|\n)capmon> $} [string map {"\r" ""} $acc]]} {
                fail "$name: the monitor answers again" "no prompt after a CR; last output: [brief [string map {"\r" ""} [string range $acc end-600 end]]]"
                qemu_kill
            }
        }
    }
    set text [string map {"\r" ""} $acc]
    regsub $::prompt_re\$ $text "" text
    scan_faults $name $text $::opt(-expect_faults)
    return $text
}

set ::irqoracle_py [file join $::lib_dir irqoracle.py]
set ::idlecost_py [file join $::lib_dir idlecost.py]

# `NAME VALUE` lines as a dict (VALUE is the rest of the line).
proc name_value_dict {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp {^(\S+) ?(.*)$} $line -> k v]} { dict set d $k $v }
    }
    return $d
}

# The local APIC as QEMU has it (expect/irqoracle.py lapic): a dict with CPU APIC_ID
# X2APIC_CPUID MODE VERSION LVT0 LVT1 LVTPC LVTERR LVTTHMR LVTT DCR TMICT SPIV ESR TPR PPR LDR
# (DFR in xAPIC mode) and the volatile TMCCT APR ICR ICR2 ISR IRR. APIC_ID "" is the first
# CPU; MODE xapic|x2apic says which form LDR takes ("": x2apic when the CPU has the feature).
# An empty dict and a FAIL when the oracle fails.
proc oracle_lapic {{apic_id ""} {mode ""}} {
    set argv [list python3 $::irqoracle_py lapic $::proof(sock)]
    if {$apic_id ne ""} { lappend argv $apic_id }
    if {$mode ne ""} { lappend argv --mode $mode }
    return [name_value_dict [qmp_run $argv "irqoracle lapic $apic_id $mode"]]
}

# I/O APIC N (default 0) in `info pic`: a dict with id, version (hex), count (pins) and
# pins (a dict PIN -> raw 64-bit entry, 0x%016x). An empty dict and a FAIL on error.
proc oracle_ioapic {{n 0}} {
    set out [qmp_run [list python3 $::irqoracle_py ioapic $::proof(sock)] "irqoracle ioapic"]
    set d [dict create]
    set in 0
    foreach line [split $out "\n"] {
        if {[regexp {^ioapic (\d+) id (\S+) version (\S+) pins (\d+)$} $line -> i id ver cnt]} {
            set in [expr {$i == $n}]
            if {$in} { set d [dict create id $id version $ver count $cnt pins [dict create]] }
        } elseif {$in && [regexp {^pin (\d+) (0x[0-9a-f]{16})$} $line -> p v]} {
            dict set d pins $p $v
        }
    }
    if {$out ne "" && [dict size $d] == 0} { fail "irqoracle ioapic" "no I/O APIC $n in: [brief $out]" }
    return $d
}

# N MSI-X table entries at guest-physical ADDR: a dict I -> dict {address 0x%016x data 0x%08x
# mask masked|unmasked} (plus pending yes|no with PBA, the pending-bit array's address).
proc oracle_msix {addr n {pba ""}} {
    set argv [list python3 $::irqoracle_py msix $::proof(sock) $addr $n]
    if {$pba ne ""} { lappend argv --pba $pba }
    set d [dict create]
    foreach line [split [qmp_run $argv "irqoracle msix $addr $n $pba"] "\n"] {
        if {[regexp {^entry (\d+) address (\S+) data (\S+) (masked|unmasked)(?: pending (yes|no))?$} \
                 $line -> i a v m p]} {
            dict set d $i [dict create address $a data $v mask $m pending $p]
        }
    }
    return $d
}

# The CPUs: a dict cpu-index -> APIC ID (decimal), from query-cpus-fast and qom-get apic-id.
proc oracle_cpus {} {
    set d [dict create]
    foreach line [split [qmp_run [list python3 $::irqoracle_py cpus $::proof(sock)] \
                             "irqoracle cpus"] "\n"] {
        if {[regexp {^(\d+) (\d+)$} $line -> i a]} { dict set d $i $a }
    }
    return $d
}

# The process id of the running QEMU ("" when none runs).
proc qemu_pid {} {
    if {!$::proof(running)} { return "" }
    return $::proof(pid)
}

# Host CPU time QEMU burns over SECONDS, in percent of one core (expect/idlecost.py), e.g.
# 0.85; "" and a FAIL when it cannot be measured. The guest should sit at the prompt.
proc idle_cost {seconds} {
    set name "idle cost over $seconds s"
    set pid [qemu_pid]
    if {$pid eq ""} {
        fail $name "QEMU is not running"
        return ""
    }
    set argv [list python3 $::idlecost_py $pid $seconds]
    if {[catch {exec -ignorestderr -- timeout [expr {int($seconds) + 15}] {*}$argv 2>@1} out]} {
        fail $name [brief $out]
        return ""
    }
    send_log "\n#### idlecost.py $pid $seconds -> $out\n"
    if {![regexp {^idle cost: ([0-9.]+)% of one core over } $out -> pct]} {
        fail $name "unexpected answer: [brief $out]"
        return ""
    }
    return $pct
}

# ---------------------------------------------------------------- kernel command line

set ::cmdline_files {}

# GRUB's grub.cfg is inside the ISO: the proof's ISO is taken apart (the kernel, its symbols
# and grub.cfg, all that `make iso` puts in it), the multiboot2 line gets WORDS, and
# grub-mkrescue makes a new ISO of the same kernel, as scripts/bench-irq.sh does.
proc cmdline_iso {words} {
    set ::proof(cmdline_why) ""
    set loader [env_or CAPMON_LOADER grub]
    if {$loader ne "grub"} {
        set ::proof(cmdline_why) "the command line goes into GRUB's grub.cfg; this is a $loader ISO"
        return ""
    }
    set dir [file join $::build cmdline \
                 "$::proof(name)-$::opt(-firmware)-[pid]-[llength $::cmdline_files]"]
    set iso "$dir.iso"
    lappend ::cmdline_files $dir $iso
    file delete -force $dir $iso
    file mkdir $dir
    set argv [list xorriso -osirrox on -indev $::proof(iso)]
    foreach f {boot/capmon.elf boot/capmon.sym boot/grub/grub.cfg} {
        lappend argv -extract /$f [file join $dir $f]
    }
    set cfg [file join $dir boot grub grub.cfg]
    set why ""
    if {[catch {exec -ignorestderr -- timeout 60 {*}$argv 2>@1} out]} {
        set why "xorriso: [brief $out]"
    } elseif {[catch {
        # xorriso extracts files read-only, as they are on the ISO.
        exec chmod -R u+w $dir
        set fh [open $cfg]
        set text [read $fh]
        close $fh
        if {![regsub -line {^(\s*multiboot2 /boot/capmon\.elf\M.*)$} $text "\\1 $words" text]} {
            error "no 'multiboot2 /boot/capmon.elf' line in grub.cfg"
        }
        set fh [open $cfg w]
        puts -nonewline $fh $text
        close $fh
    } err]} {
        set why $err
    } elseif {[catch {exec -ignorestderr -- timeout 120 grub-mkrescue -o $iso $dir 2>@1} out]} {
        set why "grub-mkrescue: [brief $out]"
    }
    if {$why ne ""} {
        set ::proof(cmdline_why) "cannot make an ISO with '$words': $why"
        return ""
    }
    send_log "\n#### [file tail $iso]: grub.cfg with '$words'\n"
    return $iso
}

# ---------------------------------------------------------------- begin / end

# Starts a proof without booting: options, transcript. proof_begin = proof_init + boot.
proc proof_init {name args} {
    set ::proof(name) $name
    set ::opt(-firmware) [env_or CAPMON_FIRMWARE bios]
    set ::opt(-iso) [env_or CAPMON_ISO [file join $::build capmon.iso]]
    parse_opts $args
    # The proof's own boot medium: `boot -iso` changes ::opt(-iso) for the boots after it.
    set ::proof(iso) $::opt(-iso)
    set loader [env_or CAPMON_LOADER grub]
    set tag [expr {$loader eq "grub" ? $::opt(-firmware) : "$loader-$::opt(-firmware)"}]
    set dir [file join $::build transcripts]
    file mkdir $dir
    set ::proof(log) [file join $dir "$name-$tag.log"]
    log_file -noappend -a $::proof(log)
    puts "proof $name ($tag, [file tail $::opt(-iso)]): transcript $::proof(log)"
}

proc proof_begin {name args} {
    proof_init $name {*}$args
    return [boot]
}

# The whole proof cannot run here (a missing tool or input, say): prints why and exits 77,
# which run-all.sh counts as skipped. Call it before proof_begin.
proc proof_skip {why} {
    puts "SKIP $::proof(name): $why"
    qemu_kill
    exit 77
}

# Prints the summary and exits: 0 when every check passed (and there was at least one).
proc proof_finish {} {
    qemu_kill
    set p $::proof(pass)
    set f $::proof(fail)
    if {$p == 0 && $f == 0} {
        puts "FAIL $::proof(name): the proof checked nothing"
        set f 1
    }
    puts "proof $::proof(name): $p checks passed, $f failed"
    catch {log_file}
    exit [expr {$f > 0 ? 1 : 0}]
}

# `poweroff` at the prompt must make QEMU exit with status 0 on its own (a check). What the
# machine printed until then is left in ::proof(poweroff_out).
proc poweroff {{timeout 30}} {
    set name "poweroff (-machine $::opt(-machine))"
    if {!$::proof(running)} {
        fail $name "QEMU is not running"
        return 0
    }
    send -i $::proof(sid) -- "poweroff\r"
    set t0 [clock milliseconds]
    expect {
        -i $::proof(sid) -timeout $timeout
        eof {
            # What the machine printed after `poweroff` (its shutdown log), for the proof.
            set ::proof(poweroff_out) ""
            catch {set ::proof(poweroff_out) [string map {"\r" ""} $expect_out(buffer)]}
            set st [wait -i $::proof(sid)]
            set ::proof(running) 0
            set ms [expr {[clock milliseconds] - $t0}]
            # wait returns {pid spawn_id os_error(0|-1) status}
            if {[lindex $st 2] == 0 && [lindex $st 3] == 0} {
                pass "$name: QEMU exited with status 0 after $ms ms"
                return 1
            }
            fail $name "QEMU exited with status [lrange $st 2 end]"
        }
        -re $::prompt_re {
            set out [string map {"\r" ""} $expect_out(buffer)]
            regsub $::prompt_re\$ $out "" out
            fail $name "the prompt came back: [brief [regsub {^[^\n]*\n} $out {}]]"
        }
        timeout {
            fail $name "QEMU still running $timeout s after 'poweroff'; last output: [brief [tail_of $::proof(sid)]]"
        }
    }
    qemu_kill
    return 0
}

# Ends the proof: `poweroff` (a check), then the summary; exits.
proc proof_end {{timeout 30}} {
    if {$::proof(running)} { poweroff $timeout }
    proof_finish
}

# Whatever ends the script, QEMU does not outlive it.
exit -onexit {
    qemu_kill
    foreach f $::cmdline_files { catch {file delete -force $f} }
}
trap { puts "FAIL $::proof(name): interrupted"; exit 1 } {SIGINT SIGTERM SIGHUP}
