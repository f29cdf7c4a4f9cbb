# expect/lib-store.tcl: helpers for the store proofs (store-ram, store-corrupt, store-fs,
# store-persist). Source it after lib.tcl and lib-blk.tcl. Host-side oracles:
# expect/storeoracle.py (the canonical Cap'n Proto message of an object and its SHA-256, the
# size limit, the superblock, directory listings), scripts/blkpattern.py (pattern bytes),
# sha256sum, sgdisk, and tools/capmon-store (the host tool, built with cargo).
#
#   so_text TEXT                  dict hash size schema: the object `store put N TEXT` makes
#   so_bytes PAT SIZE             dict hash size schema datasum: `store put N --pattern PAT SIZE`
#   so_run NAME ARGV              storeoracle.py ARGV as a dict (KEY VALUE lines)
#   store_err CMD CODE ?RE? ?NAME? CMD must print `error: ... [CODE]` (and match RE); the
#                                 prompt returns
#   store_info TEXT               `store` as a dict: note mode device format objects bytes
#                                 names files dirs generation
#   store_objects TEXT            `store ls` as a dict HASH -> {bytes schema refs}, and the
#                                 key "" -> {count total} from its last line
#   store_names TEXT              `ns ls` as a dict NAME -> {kind value} (value: hash or rights)
#   store_put_text NAME WORDS TEXT  `store put NAME WORDS` (typed as is, TEXT the text it
#                                 makes) against so_text: the hash, size and schema it prints;
#                                 returns the oracle's dict
#   store_put_pattern NAME PAT SIZE the same for a pattern object
#   store_check_get WHAT NAME O ?TEXT?  `store get NAME` against the oracle dict O: hash, schema,
#                                 version, size; the text, or the data's SHA-256
#   store_check_stat WHAT NAME O REFS   `store stat NAME` against O and REFS
#   store_image_make PATH MIB     a GPT image of MIB MiB with one capmon data partition (zeros)
#   store_disk_args IMG ?ID?      QEMU args: IMG on virtio-blk (drive ID, default vd0)
#   store_nvme_args IMG ?SERIAL?  QEMU args: IMG as an NVMe namespace (nvme0n1)
#   store_tool                    the capmon-store binary (built once), or "" and why in
#                                 ::store_tool_why
#   store_tool_required           skip the proof without tools/capmon-store, fail it when the
#                                 tool does not build
#   tool_run NAME ARGV            capmon-store ARGV: its stdout, or "" and a FAIL
#   file_sha256 PATH              sha256sum of a file
#   check_lines NAME WANT GOT     WANT eq GOT; a FAIL names the first line that differs

set ::storeoracle [file join $::lib_dir storeoracle.py]

proc so_run {name argv} {
    return [kv_dict [host_run $name [list python3 $::storeoracle {*}$argv]]]
}

# The oracle's answers, by its arguments (a proof asks for the same object more than once).
array set ::so_cache {}
proc so_cached {name argv} {
    if {![info exists ::so_cache($argv)]} {
        set d [so_run $name $argv]
        if {[dict size $d] == 0} { return $d }
        set ::so_cache($argv) $d
    }
    return $::so_cache($argv)
}

proc so_text {text} {
    return [so_cached "oracle: text '[brief $text 40]'" [list text $text]]
}

proc so_bytes {pat size} {
    return [so_cached "oracle: $size bytes of $pat" [list bytes $pat $size]]
}

proc re_quote {s} { return [regsub -all {\W} $s {\\&}] }

proc store_err {cmd code {re ""} {name ""}} {
    if {$name eq ""} { set name "'$cmd' refused \[$code\]" }
    set pat "^error: .* \\\[$code\\\]\$"
    if {$re ne ""} { set pat "^error: $re \\\[$code\\\]\$" }
    return [monitor_error $cmd $pat $name]
}

proc store_info {text} {
    set d [dict create]
    if {[regexp -line {^store: (.*) \((read-write|read-only)\)$} $text -> note mode]} {
        dict set d note $note
        dict set d mode $mode
    }
    if {[regexp -line {^device (\S+): format (\d+), (.*) used of (.*)$} $text -> dev fmt used cap]} {
        dict set d device $dev
        dict set d format $fmt
        dict set d used $used
        dict set d capacity $cap
    }
    if {[regexp -line {^objects (\d+) \((\d+) bytes\), names (\d+), files (\d+), directories (\d+), generation (\d+)$} \
             $text -> o b n f dirs g]} {
        foreach k {objects bytes names files dirs generation} v [list $o $b $n $f $dirs $g] {
            dict set d $k $v
        }
    }
    return $d
}

proc store_objects {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp {^([0-9a-f]{64})\s+(\d+)\s+(\S+)\s+(\d+)$} $line -> h b s r]} {
            dict set d $h [dict create bytes $b schema $s refs $r]
        } elseif {[regexp {^(\d+) object\(s\), (\d+) bytes$} $line -> n t]} {
            dict set d "" [dict create count $n total $t]
        }
    }
    return $d
}

proc store_names {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp {^(object)\s+([0-9a-f]{64})\s+(.+)$} $line -> k v n]} {
            dict set d $n [dict create kind $k value $v]
        } elseif {[regexp {^(store|namespace|directory|file)\s+([r-][w-][a-])\s+(.+)$} $line -> k v n]} {
            dict set d $n [dict create kind $k value $v]
        } elseif {[regexp {^(\d+) name\(s\)$} $line -> c]} {
            dict set d "" $c
        }
    }
    return $d
}

proc store_put_text {name words text} {
    set o [so_text $text]
    set out [monitor "store put $name $words"]
    check_eq "store put $name [brief $words 40]: hash and size = the canonical TextBody message's (host)" \
        "put $name: [dget $o hash] ([dget $o size] bytes, TextBody)" [string trim $out]
    return $o
}

proc store_put_pattern {name pat size {timeout 60}} {
    set o [so_bytes $pat $size]
    set out [monitor "store put $name --pattern $pat $size" $timeout]
    check_eq "store put $name --pattern $pat $size: hash and size = the canonical BytesBody message's (host)" \
        "put $name: [dget $o hash] ([dget $o size] bytes, BytesBody)" [string trim $out]
    return $o
}

proc store_check_get {what name o {text ""} {timeout 60}} {
    set out [monitor "store get $name" $timeout]
    set schema [expr {[dict exists $o datasum] ? "BytesBody" : "TextBody"}]
    check_match "$what: store get $name: hash, $schema v1, [dget $o size] bytes (host)" \
        "^[re_quote $name]: [dget $o hash] $schema v1, [dget $o size] bytes\$" $out
    if {[dict exists $o datasum]} {
        check_match "$what: store get $name: the data's length and sha256 = the pattern's (host)" \
            "^data: [dget $o datalen] bytes, sha256 [dget $o datasum]\$" $out
    } else {
        check_eq "$what: store get $name: the text" "text: $text" [lindex [split $out "\n"] 1]
    }
    return $out
}

proc store_check_stat {what name o refs} {
    set out [monitor "store stat $name"]
    set schema [expr {[dict exists $o datasum] ? "BytesBody" : "TextBody"}]
    check_eq "$what: store stat $name: hash, size, schema id (capnp compile), version, refs $refs" \
        [list [dget $o hash] "[dget $o size] bytes" "[dget $o schema] ($schema) version 1" $refs] \
        [list [line_value {^hash     (.*)$} $out] [line_value {^size     (.*)$} $out] \
             [line_value {^schema   (.*)$} $out] [line_value {^refs     (.*)$} $out]]
    return $out
}

proc store_image_make {path mib} {
    file delete -force $path
    foreach argv [list [list truncate -s ${mib}M $path] \
                      [list sgdisk -o -n 1:2048:0 -t 1:$::blk_capmon_data_type -c 1:store $path]] {
        if {[catch {exec -ignorestderr -- timeout 60 {*}$argv 2>@1} out]} {
            fail "disk image [file tail $path]" "[join $argv]: [brief $out]"
            return 0
        }
        send_log "\n#### host: [join $argv] -> [brief $out 2000]\n"
    }
    return 1
}

proc store_disk_args {img {id vd0}} {
    return [list -boot d -drive if=none,id=$id,format=raw,file=$img \
                -device virtio-blk-pci,drive=$id,id=vblk-$id]
}

proc store_nvme_args {img {serial capmon-store}} {
    return [list -boot d -drive if=none,id=nv0,format=raw,file=$img \
                -device nvme,id=ctl0,serial=$serial,drive=nv0]
}

proc file_sha256 {path} {
    return [lindex [host_run "sha256sum [file tail $path]" [list sha256sum $path]] 0]
}

# The host tool, built once per proof run (cargo is quiet when it is up to date). A tree
# without it sets ::store_tool_absent (the proof is skipped); one where it does not build is
# a failure.
set ::store_tool_bin ""
set ::store_tool_why ""
set ::store_tool_absent 0
proc store_tool {} {
    if {$::store_tool_bin ne ""} { return $::store_tool_bin }
    if {![file exists [file join $::repo tools capmon-store Cargo.toml]]} {
        set ::store_tool_why "no tools/capmon-store in this tree"
        set ::store_tool_absent 1
        return ""
    }
    if {[catch {exec -ignorestderr -- timeout 600 cargo build --release -q -p capmon-store \
                    --manifest-path [file join $::repo Cargo.toml] 2>@1} out]} {
        set ::store_tool_why "cargo build -p capmon-store: [brief $out]"
        return ""
    }
    set bin [file join $::repo target release capmon-store]
    if {![file executable $bin]} {
        set ::store_tool_why "no $bin after cargo build"
        return ""
    }
    set ::store_tool_bin $bin
    return $bin
}

# Before the first boot: skip the proof when the tree has no host tool, fail it when the tool
# does not build.
proc store_tool_required {} {
    if {[store_tool] ne ""} { return }
    if {$::store_tool_absent} { proof_skip $::store_tool_why }
    fail "capmon-store" $::store_tool_why
    proof_finish
}

proc tool_run {name argv {timeout 120}} {
    return [host_run $name [list [store_tool] {*}$argv] $timeout]
}

proc check_lines {name want got} {
    if {$want eq $got} { pass $name; return 1 }
    set w [split $want "\n"]
    set g [split $got "\n"]
    for {set i 0} {$i < max([llength $w], [llength $g])} {incr i} {
        if {[lindex $w $i] ne [lindex $g $i]} { break }
    }
    fail $name "line [expr {$i + 1}] of [llength $w]: expected '[lindex $w $i]', got '[lindex $g $i]'"
    return 0
}
