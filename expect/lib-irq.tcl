# expect/lib-irq.tcl: helpers for proofs that read capmon's interrupt tables (irq.exp,
# nvme.exp). Source it after lib.tcl and lib-pci.tcl. Oracles: QEMU's MSI-X table in guest
# memory (oracle_msix, HMP `xp`), the CPUs' APIC IDs (oracle_cpus), query-pci's BARs.
#
#   hnorm V                       canonical 0x-hex of a number, "" when V is not one
#   check_hex NAME WANT GOT       check_eq on hnorm'd numbers (0x00 and 0x0 compare equal)
#   rget DICT KEY                 the value, or "" when KEY is absent
#   irq_rows TEXT                 `irq` output as a list of dicts {vector source mech cpu count}
#   irq_row ROWS RE               the first row whose source matches RE, or an empty dict
#   irq_check_msix TAG BDF QEMU NVEC WHAT ROWS
#                                 `pci msix BDF` against QEMU: NVEC table entries (WHAT names
#                                 the QOM property NVEC came from), the table address = its
#                                 BAR (QEMU, a pci_qemu dict) + offset, every entry = guest
#                                 memory, and each `irq` row of BDF on MSI-X names an unmasked
#                                 entry holding its vector, aimed at its CPU. Returns a dict
#                                 {used size bir toff taddr pbir poff bsize entries}, or an
#                                 empty dict when the header is missing (a FAIL).

proc hnorm {v} {
    if {[string is wide -strict $v] || [regexp {^0x[0-9a-fA-F]+$} $v]} {
        return [format 0x%llx $v]
    }
    return ""
}

proc check_hex {name want got} {
    if {[hnorm $want] ne "" && [hnorm $want] eq [hnorm $got]} {
        pass $name
        return 1
    }
    fail $name "expected '$want', got '$got'"
    return 0
}

proc rget {d k} {
    if {[dict exists $d $k]} { return [dict get $d $k] }
    return ""
}

# Columns are parsed from both ends: the vector first, cpu and count last, the mechanism at
# the end of the middle.
proc irq_rows {text} {
    set rows {}
    foreach line [split $text "\n"] {
        # cpu: an APIC ID, or "all" for vectors every CPU takes (LAPIC timer, IPIs).
        if {![regexp {^(0x[0-9a-f]+)\s+(.*\S)\s+(\d+|all)\s+(\d+)$} $line -> vec mid cpu count]} {
            continue
        }
        if {![regexp {^(.*\S)\s+(LAPIC|IPI|I/O APIC \d+ pin \d+|MSI-X \d+|MSI(?: \d+)?|INTx \(GSI \d+\)|8259 \(masked\))$} $mid -> src mech]} {
            continue
        }
        lappend rows [dict create vector [hnorm $vec] source $src mech $mech cpu $cpu count $count]
    }
    return $rows
}

proc irq_row {rows re} {
    foreach r $rows {
        if {[regexp -- $re [dict get $r source]]} { return $r }
    }
    return [dict create]
}

proc irq_check_msix {tag bdf qemu nvec what rows} {
    set out [monitor "pci msix $bdf"]
    set re "^[regsub -all {\W} $bdf {\\&}] MSI-X: (\\d+) of (\\d+) entries, table BAR (\\d) \\+ (0x\[0-9a-f\]+) \\((0x\[0-9a-f\]+)\\), PBA BAR (\\d) \\+ (0x\[0-9a-f\]+), (enabled|disabled), function mask (on|off)\$"
    if {$bdf eq ""} {
        fail "$tag: query-pci has the function" "not found"
        return [dict create]
    }
    if {![regexp -line -- $re $out -> used size bir toff taddr pbir poff en fmask]} {
        fail "$tag: pci msix $bdf header" "no 'MSI-X: N of M entries, table BAR ...' line: [brief $out]"
        return [dict create]
    }
    check_eq "$tag: MSI-X table size = $what" $nvec $size
    check "$tag: MSI-X: $used of $size entries in use" {$used >= 1 && $used <= $size}
    set bars [rget [dict get $qemu $bdf] bars]
    lassign [rget $bars $bir] kind pref baddr bsize
    check_eq "$tag: MSI-X table BAR $bir is a memory BAR (query-pci)" mem [string range $kind 0 2]
    check_hex "$tag: MSI-X table address = BAR $bir (query-pci) + offset" \
        [format 0x%llx [expr {$baddr + $toff}]] $taddr
    check_eq "$tag: MSI-X enabled, function mask off" "enabled off" "$en $fmask"

    set pbase [lindex [rget $bars $pbir] 2]
    set want [oracle_msix $taddr $size [format 0x%llx [expr {$pbase + $poff}]]]
    set got [dict create]
    foreach line [split $out "\n"] {
        if {[regexp {^entry (\d+): address (0x[0-9a-f]{16}) data (0x[0-9a-f]{8}) (masked|unmasked) pending (yes|no)$} \
                 $line -> i ad da m p]} {
            dict set got $i [dict create address $ad data $da mask $m pending $p]
        }
    }
    check_eq "$tag: pci msix lists all $size entries" $size [dict size $got]
    dict for {i e} $got {
        check_eq "$tag: MSI-X entry $i = guest memory (xp)" [rget $want $i] $e
    }
    # The rows of `irq` for this function: each names an entry whose data holds its vector,
    # unmasked, aimed at the MSI window and the CPU the row names.
    set cpus [oracle_cpus]
    set mrows {}
    foreach r $rows {
        if {[string match "$bdf *" [dict get $r source]] &&
            [regexp {^MSI-X (\d+)$} [dict get $r mech] -> i]} {
            lappend mrows $r
            set e [rget $got $i]
            if {$e eq ""} { fail "$tag: irq row [dict get $r source]: entry $i listed" "no such entry"; continue }
            set ad [dict get $e address]
            check "$tag: [dict get $r source]: entry $i data holds vector [dict get $r vector], unmasked" \
                {[format 0x%x [expr {[dict get $e data] & 0xff}]] eq [dict get $r vector]
                 && [dict get $e mask] eq "unmasked"}
            check "$tag: [dict get $r source]: entry $i address in the MSI window, dest = CPU [dict get $r cpu]'s APIC ID" \
                {($ad >> 20) == 0xfee && (($ad >> 12) & 0xff) == [rget $cpus [dict get $r cpu]]}
        }
    }
    check_eq "$tag: irq: one MSI-X row per entry in use" $used [llength $mrows]
    return [dict create used $used size $size bir $bir toff $toff taddr $taddr pbir $pbir \
                poff $poff bsize $bsize entries $got]
}
