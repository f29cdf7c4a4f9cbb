# expect/lib-pci.tcl: helpers for the PCI and ACPI proofs (pci-q35.exp, pci-pc.exp, acpi.exp).
# Source it after lib.tcl. Oracles: QEMU's `query-pci` over QMP, flattened by
# expect/pci_oracle.py, and `info mtree`.
#
#   pci_disk TAG                  a 1 MiB blank image build/pciproof/PROOF-LOADER-FW-PID-TAG.img,
#                                 deleted when the script exits
#   pci_qemu                      query-pci as a dict BB:DD.F -> function dict (below)
#   pci_guest_verbose TEXT        `lspci -v` output as the same kind of dict
#   pci_guest_list TEXT           `lspci` output as a dict BB:DD.F -> VVVV:DDDD
#   pci_guest_tree TEXT           `lspci -t` output as a dict BB:DD.F -> VVVV:DDDD, each
#                                 function keyed by the bus it is drawn on; bridges' [SS-UU]
#                                 in the key "BB:DD.F range"
#   pci_by_qdev QEMU ID           the BB:DD.F of QEMU's device with qdev id ID, or ""
#   pci_irq BB:DD.F               QEMU's irq (interrupt line register) for it now, or ""
#   pci_compare TAG QEMU GUEST    PASS/FAIL per function: ids, class, irq, BARs, ROM, bridge
#   pci_compare_ids TAG QEMU D    the same set of functions, the same VVVV:DDDD
#   pci_compare_tree TAG QEMU T   every function under its bus in `lspci -t`, bridge ranges
#   mtree_region NAME             {START END} of the first region NAME in `info mtree`, or ""
#
# A function dict has: vd (VVVV:DDDD), class (CCCC: base class and subclass), irq (line or -),
# pin (0..4), qdev, bars (dict N -> {kind pref|- addr size}), rom ({addr size} from QEMU,
# {addr size enabled|disabled} from capmon, or ""), bridge ({primary secondary subordinate}
# hex, or ""), windows (dict io|mem|pref -> {base limit}, open windows only).
# Addresses and sizes are 0x-prefixed lower-case hex; QEMU's unmapped BARs have addr unmapped.

set ::pci_oracle_py [file join $::lib_dir pci_oracle.py]
set ::pci_dir [file join $::build pciproof]
file mkdir $::pci_dir

# The images carry the script's pid: two runs of a proof at once (QEMU locks its images) do
# not collide. They are deleted when the script exits.
set ::pci_disks {}
exit -onexit "[exit -onexit]\nforeach f \$::pci_disks { catch { file delete -force \$f } }"

proc pci_disk {tag} {
    set fw [env_or CAPMON_FIRMWARE bios]
    set loader [env_or CAPMON_LOADER grub]
    set path [file join $::pci_dir "$::proof(name)-$loader-$fw-[pid]-$tag.img"]
    lappend ::pci_disks $path
    set fh [open $path w]
    chan truncate $fh [expr {1 << 20}]
    close $fh
    return $path
}

proc pci_hex {v} { return [format 0x%llx $v] }

proc pci_new_function {} {
    return [dict create vd "" class "" irq - pin 0 qdev - bars [dict create] rom "" \
                bridge "" windows [dict create]]
}

proc pci_qemu {} {
    set text [qmp_run [list python3 $::pci_oracle_py $::proof(sock)] "query-pci (pci_oracle.py)"]
    set d [dict create]
    foreach line [split $text "\n"] {
        set w [split $line " "]
        switch -- [lindex $w 0] {
            fn {
                lassign $w - b vd class - irq - pin - qdev
                set f [pci_new_function]
                dict set f vd $vd
                dict set f class $class
                dict set f irq $irq
                dict set f pin $pin
                dict set f qdev $qdev
                dict set d $b $f
            }
            bar {
                lassign $w - b n kind pref addr size
                if {$addr ne "unmapped"} { set addr [pci_hex $addr] }
                dict set d $b bars $n [list $kind $pref $addr [pci_hex $size]]
            }
            rom {
                lassign $w - b addr size
                if {$addr ne "unmapped"} { set addr [pci_hex $addr] }
                dict set d $b rom [list $addr [pci_hex $size]]
            }
            bridge {
                lassign $w - b p s u
                dict set d $b bridge [list $p $s $u]
            }
            window {
                lassign $w - b name base limit
                dict set d $b windows $name [list [pci_hex $base] [pci_hex $limit]]
            }
        }
    }
    return $d
}

proc pci_by_qdev {qemu id} {
    dict for {b f} $qemu {
        if {[dict get $f qdev] eq $id} { return $b }
    }
    return ""
}

proc pci_irq {b} {
    set q [pci_qemu]
    if {![dict exists $q $b]} { return "" }
    return [dict get $q $b irq]
}

# The header line every lspci form starts a function with: SSSS:BB:DD.F <class> VVVV:DDDD [...]
set ::pci_head_re {^([0-9a-f]{4}):([0-9a-f]{2}:[0-9a-f]{2}\.[0-7]) .*? ([0-9a-f]{4}:[0-9a-f]{4})(?: \[.*)?$}

proc pci_guest_list {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp $::pci_head_re $line -> seg b vd]} {
            # A function on another segment than QEMU's only one, or listed twice, cannot
            # match QEMU's IDs.
            if {$seg ne "0000"} { set vd "$vd (segment $seg)" }
            if {[dict exists $d $b]} { set vd "$vd (listed twice)" }
            dict set d $b $vd
        }
    }
    return $d
}

proc pci_guest_verbose {text} {
    set d [dict create]
    set b ""
    foreach line [split $text "\n"] {
        if {[regexp $::pci_head_re $line -> seg b vd]} {
            set f [pci_new_function]
            if {$seg ne "0000"} { set vd "$vd (segment $seg)" }
            if {[dict exists $d $b]} { set vd "$vd (listed twice)" }
            dict set f vd $vd
            dict set d $b $f
            continue
        }
        if {$b eq ""} { continue }
        if {[regexp {^  class: ([0-9a-f]{4})[0-9a-f]{2} } $line -> c]} {
            dict set d $b class $c
        } elseif {[regexp {^  irq: line (\d+) pin ([A-D])$} $line -> irq pin]} {
            dict set d $b irq $irq
            dict set d $b pin [expr {[scan $pin %c] - 64}]
        } elseif {[regexp {^  irq: none$} $line]} {
            dict set d $b irq -
            dict set d $b pin 0
        } elseif {[regexp {^  BAR(\d): (\w+)( pref)? (0x[0-9a-f]+) size (0x[0-9a-f]+)$} $line -> n kind pref addr size]} {
            dict set d $b bars $n [list $kind [expr {$pref ne "" ? "pref" : "-"}] [pci_hex $addr] [pci_hex $size]]
        } elseif {[regexp {^  BAR(\d): error: (.*)$} $line -> n why]} {
            dict set d $b bars $n [list error $why]
        } elseif {[regexp {^  ROM: (0x[0-9a-f]+) size (0x[0-9a-f]+)( disabled)?$} $line -> addr size off]} {
            dict set d $b rom [list [pci_hex $addr] [pci_hex $size] [expr {$off eq "" ? "enabled" : "disabled"}]]
        } elseif {[regexp {^  bus: primary (\w+) secondary (\w+) subordinate (\w+)$} $line -> p s u]} {
            dict set d $b bridge [list $p $s $u]
        } elseif {[regexp {^  (io|mem|pref) window: (0x[0-9a-f]+)-(0x[0-9a-f]+)$} $line -> w lo hi]} {
            dict set d $b windows $w [list [pci_hex $lo] [pci_hex $hi]]
        }
    }
    return $d
}

# Columns of the tree: a bus header `[SSSS:BB]` whose `[` is at column C holds the functions
# whose `+-`/`\-` marker is at column C+1 (drawn after it, depth first).
proc pci_guest_tree {text} {
    set d [dict create]
    set bus_at [dict create]
    foreach line [split $text "\n"] {
        if {[regexp -indices {\[[0-9a-f]{4}:([0-9a-f]{2})\]$} $line all busi]} {
            set col [lindex $all 0]
            dict set bus_at [expr {$col + 1}] [string range $line {*}$busi]
            continue
        }
        if {![regexp {^([ |]*)[+\\]-([0-9a-f]{2}\.[0-7]) .*? ([0-9a-f]{4}:[0-9a-f]{4})(?: \[([0-9a-f]{2})-([0-9a-f]{2})\])?$} \
                  $line -> lead df vd sec sub]} {
            continue
        }
        set col [string length $lead]
        # (not `expr ?:`: it would turn the bus "00" into the number 0)
        set bus ??
        if {[dict exists $bus_at $col]} { set bus [dict get $bus_at $col] }
        if {[dict exists $d "$bus:$df"]} { set vd "$vd (drawn twice)" }
        dict set d "$bus:$df" $vd
        if {$sec ne ""} { dict set d "$bus:$df range" "$sec-$sub" }
    }
    return $d
}

# The same set of functions, each with the same vendor:device.
proc pci_compare_ids {tag qemu got} {
    set want [dict create]
    dict for {b f} $qemu { dict set want $b [dict get $f vd] }
    set wl [lsort [dict keys $want]]
    set gl [lsort [dict keys $got]]
    if {$wl ne $gl} {
        fail "$tag: the functions QEMU has" "QEMU: $wl; capmon: $gl"
        return 0
    }
    set bad {}
    foreach b $wl {
        if {[dict get $want $b] ne [dict get $got $b]} {
            lappend bad "$b QEMU [dict get $want $b], capmon [dict get $got $b]"
        }
    }
    if {[llength $bad]} {
        fail "$tag: vendor:device IDs" [join $bad "; "]
        return 0
    }
    pass "$tag: the same [llength $wl] functions as QEMU, same vendor:device IDs"
    return 1
}

# BARs as one comparable string; where QEMU has the BAR unmapped, the address is left out.
proc pci_bar_string {bars qbars} {
    set out {}
    foreach n [lsort -integer [dict keys $bars]] {
        set v [dict get $bars $n]
        if {[lindex $v 0] eq "error"} { lappend out "BAR$n error: [lindex $v 1]"; continue }
        lassign $v kind pref addr size
        if {[dict exists $qbars $n] && [lindex [dict get $qbars $n] 2] eq "unmapped"} {
            set addr "(unmapped)"
        }
        lappend out "BAR$n $kind $pref $addr size $size"
    }
    return [join $out ", "]
}

proc pci_compare {tag qemu guest} {
    if {![pci_compare_ids $tag $qemu [dict map {b f} $guest { dict get $f vd }]]} { return }
    dict for {b q} $qemu {
        set g [dict get $guest $b]
        set name "$tag: $b [dict get $q vd] ([dict get $q qdev])"
        check_eq "$name: class" [dict get $q class] [dict get $g class]
        check_eq "$name: interrupt line and pin" \
            "[dict get $q irq] pin [dict get $q pin]" "[dict get $g irq] pin [dict get $g pin]"
        set qb [dict get $q bars]
        set want [pci_bar_string $qb $qb]
        set got [pci_bar_string [dict get $g bars] $qb]
        check_eq "$name: BARs ([dict size $qb])" $want $got
        set qr [dict get $q rom]
        set gr [dict get $g rom]
        if {$qr ne "" || $gr ne ""} {
            # A ROM QEMU leaves unmapped has its enable bit clear: capmon says `disabled`.
            lassign $qr qa qs
            lassign $gr ga gs gon
            if {$qa eq "unmapped"} {
                check_eq "$name: ROM (QEMU: unmapped)" "size $qs disabled" "size $gs $gon"
            } else {
                check_eq "$name: ROM" "$qa size $qs enabled" "$ga size $gs $gon"
            }
        }
        if {[dict get $q bridge] ne ""} {
            check_eq "$name: bridge buses (primary secondary subordinate)" \
                [dict get $q bridge] [dict get $g bridge]
            foreach w {io mem pref} {
                set qw [expr {[dict exists $q windows $w] ? [dict get $q windows $w] : "disabled"}]
                set gw [expr {[dict exists $g windows $w] ? [dict get $g windows $w] : "disabled"}]
                check_eq "$name: $w window" $qw $gw
            }
        }
    }
}

# Every function of QEMU drawn on its bus in `lspci -t`, every bridge with its bus range.
proc pci_compare_tree {tag qemu tree} {
    set ids [dict create]
    dict for {k v} $tree {
        if {![string match "* range" $k]} { dict set ids $k $v }
    }
    pci_compare_ids "$tag (lspci -t, each function under its bus)" $qemu $ids
    dict for {b q} $qemu {
        set br [dict get $q bridge]
        if {$br eq ""} { continue }
        lassign $br - s u
        set got [expr {[dict exists $tree "$b range"] ? [dict get $tree "$b range"] : "(none)"}]
        check_eq "$tag: lspci -t draws bridge $b ([dict get $q qdev]) with buses" "$s-$u" $got
    }
}

# QEMU's memory and I/O map: the first region called NAME (`info mtree` prints absolute
# addresses, container offsets applied).
proc mtree_region {name} {
    set text [hmp "info mtree"]
    set re "^\\s*(\[0-9a-f\]+)-(\[0-9a-f\]+) \\(prio -?\\d+, \[a-z/-\]+\\): [regsub -all {\W} $name {\\&}]\$"
    if {[regexp -line -- $re $text -> lo hi]} {
        return [list [pci_hex 0x$lo] [pci_hex 0x$hi]]
    }
    fail "info mtree: region $name" "not found"
    return ""
}
