# expect/lib-blk.tcl: helpers for the block proofs (blk.exp, blk-write.exp, blk-ro.exp).
# Source it after lib.tcl. Host-side oracles: scripts/blkpattern.py (the test patterns and
# SHA-256 of image ranges), expect/blkoracle.py (query-block, query-pci, x-query-virtio-*,
# sgdisk -i, pattern placement, image comparison).
#
#   blk_image_path TAG            build/blkproof/PROOF-LOADER-FIRMWARE-TAG.img
#   blk_image_make PATH SEED      64 MiB image: seed:SEED everywhere, then a fresh GPT with
#                                 vda1 "alpha" (Linux fs, LBA 2048..18431) and vda2 "data"
#                                 (capmon data, LBA 18432..100351)
#   blk_disk_args IMG MODE ?RO?   QEMU args for IMG on virtio-blk-pci id vblk0, drive vd0;
#                                 MODE transitional|modern; RO 1 adds readonly=on
#   host_run NAME ARGV            run a host command; its output, or "" and a FAIL
#   blk_part IMG N                dict of sgdisk -i N (first last sectors type guid name)
#   blk_part_name DISK N          partition N's device name: vda1, nvme0n1p1
#   blk_host_sum IMG LBA COUNT    SHA-256 of IMG sectors LBA..LBA+COUNT
#   blk_pattern_sum PAT LBA COUNT SHA-256 of the pattern's bytes for those sectors
#   blk_guest_sum DEV LBA COUNT   `blk sum` in the guest: the hex digest, or ""
#   blk_check_sum NAME DEV LBA COUNT WANT   guest sum must equal WANT
#   blk_rows TEXT                 `blk` output as a dict NAME -> dict of its columns
#   blk_drive / blk_pci / blk_virtio / blk_queue   the QMP oracles as dicts
#   blk_guest_queue TEXT Q        one row of `virtio queues`: dict size avail used free ...
#   blk_check_virtio MODE ?RO?    `virtio`/`lspci` for vda against query-pci and
#                                 x-query-virtio-status (BDF, device ID, status, features)
#   blk_check_queue WHAT          `virtio queues vda` against x-query-virtio-queue-status;
#                                 returns the guest's row
#   blk_proof_finish IMAGES       proof_finish; the images are deleted when all checks passed

set ::blkpattern [file join $::repo scripts blkpattern.py]
set ::blkoracle [file join $::lib_dir blkoracle.py]
set ::blk_dir [file join $::build blkproof]
file mkdir $::blk_dir

# The layout blk_image_make builds; proofs read the real values back with sgdisk (blk_part).
set ::blk_size_mib 64
set ::blk_capmon_data_type c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e

# An image path for this proof run (after proof_init): run-all.sh runs a proof under BIOS and
# UEFI at the same time, so each run gets its own images.
proc blk_image_path {tag} {
    set loader [env_or CAPMON_LOADER grub]
    return [file join $::blk_dir "$::proof(name)-$loader-$::opt(-firmware)-$tag.img"]
}

proc host_run {name argv {timeout 120}} {
    if {[catch {exec -ignorestderr -- timeout $timeout {*}$argv 2>@1} out]} {
        fail $name "[join $argv]: [brief $out]"
        return ""
    }
    send_log "\n#### host: [join $argv] -> [brief $out 2000]\n"
    return $out
}

proc blk_image_make {path seed} {
    file delete -force $path
    set steps [list \
        [list truncate -s ${::blk_size_mib}M $path] \
        [list python3 $::blkpattern write $path seed:$seed 0 ${::blk_size_mib}M] \
        [list sgdisk -o -n 1:2048:18431 -t 1:8300 -c 1:alpha \
             -n 2:18432:100351 -t 2:$::blk_capmon_data_type -c 2:data $path]]
    foreach argv $steps {
        if {[catch {exec -ignorestderr -- timeout 120 {*}$argv 2>@1} out]} {
            fail "disk image" "[join $argv]: [brief $out]"
            proof_finish
        }
        send_log "\n#### host: [join $argv] -> [brief $out 2000]\n"
    }
    pass "host built [file tail $path]: ${::blk_size_mib} MiB of seed:$seed, GPT with 2 partitions"
}

proc blk_disk_args {img mode {ro 0}} {
    set drive "if=none,id=vd0,format=raw,file=$img"
    if {$ro} { append drive ",readonly=on" }
    set dev "virtio-blk-pci,drive=vd0,id=vblk0"
    switch -- $mode {
        modern { append dev ",disable-legacy=on,disable-modern=off" }
        transitional {}
        default { error "mode must be modern or transitional, not '$mode'" }
    }
    # -boot d: SeaBIOS would otherwise try the data disk first (its MBR code is pattern bytes).
    return [list -boot d -drive $drive -device $dev]
}

# `KEY VALUE` lines as a dict.
proc kv_dict {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp {^(\S+) ?(.*)$} $line -> k v]} { dict set d $k $v }
    }
    return $d
}

proc blk_part {img n} {
    return [kv_dict [host_run "sgdisk -i $n" [list python3 $::blkoracle part $img $n]]]
}

# As drivers/block's partition_name: a `p` between a disk name ending in a digit and N.
proc blk_part_name {disk n} {
    if {[regexp {\d$} $disk]} { return "${disk}p$n" }
    return "$disk$n"
}

proc blk_host_sum {img lba count} {
    return [string trim [host_run "host sha256 of sectors $lba+$count" \
                             [list python3 $::blkpattern imgsum $img ${lba}s ${count}s]]]
}

proc blk_pattern_sum {pat lba count} {
    return [string trim [host_run "host sha256 of $pat sectors $lba+$count" \
                             [list python3 $::blkpattern sha256 $pat ${lba}s ${count}s]]]
}

proc blk_guest_sum {dev lba count {timeout 120}} {
    set out [monitor "blk sum $dev $lba $count" $timeout]
    return [line_value {^sha256 ([0-9a-f]{64})$} $out]
}

proc blk_check_sum {name dev lba count want {timeout 120}} {
    set got [blk_guest_sum $dev $lba $count $timeout]
    if {$want eq ""} {
        fail $name "no host digest to compare with"
        return 0
    }
    return [check_eq $name $want $got]
}

# `blk` rows: NAME DRIVER SECTORS BYTES SIZE SECTOR MODE DETAILS.
proc blk_rows {text} {
    set d [dict create]
    foreach line [split $text "\n"] {
        if {[regexp {^(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\S+ \S+)\s+(\d+)\s+(RO|RW)\s*(.*)$} \
                 $line -> name drv sectors bytes size ss mode details]} {
            dict set d $name [dict create driver $drv sectors $sectors bytes $bytes size $size \
                                  sector $ss mode $mode details $details]
        }
    }
    return $d
}

proc blk_row_field {rows name field} {
    if {[dict exists $rows $name $field]} { return [dict get $rows $name $field] }
    return ""
}

proc blk_drive {{drive vd0}} {
    set argv [list python3 $::blkoracle drive $::proof(sock) $drive]
    return [kv_dict [qmp_run $argv "query-block $drive"]]
}

proc blk_pci {{id vblk0}} {
    set argv [list python3 $::blkoracle pci $::proof(sock) $id]
    return [kv_dict [qmp_run $argv "query-pci $id"]]
}

proc blk_virtio {{path /machine/peripheral/vblk0/virtio-backend}} {
    set argv [list python3 $::blkoracle virtio $::proof(sock) $path]
    return [kv_dict [qmp_run $argv "x-query-virtio-status $path"]]
}

proc blk_queue {{q 0} {path /machine/peripheral/vblk0/virtio-backend}} {
    set argv [list python3 $::blkoracle queue $::proof(sock) $path $q]
    return [kv_dict [qmp_run $argv "x-query-virtio-queue-status $path $q"]]
}

# A row of `virtio queues DEV`: queue size avail used free notified completed [vector interrupts].
proc blk_guest_queue {text {q 0}} {
    foreach line [split $text "\n"] {
        # Then the queue's interrupt vector and count, or "-" for both when it polls.
        if {[regexp {^(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)(?:\s+(?:0x[0-9a-f]+|-)\s+(?:\d+|-))?$} $line -> \
                 i size avail used free notified completed] && $i == $q} {
            return [dict create size $size avail $avail used $used free $free \
                        notified $notified completed $completed]
        }
    }
    return [dict create size "" avail "" used "" free "" notified "" completed ""]
}

proc dget {d key} {
    if {[dict exists $d $key]} { return [dict get $d $key] }
    return ""
}

# `virtio` and `lspci BDF` for vda against QEMU: the BDF and device ID (query-pci: 1af4:1042
# modern-only, 1af4:1001 transitional), the driver status and negotiated features
# (x-query-virtio-status: VERSION_1 among them; RO exactly when RO), the queue count.
proc blk_check_virtio {mode {ro 0}} {
    set want_id [dict get {modern 0x1042 transitional 0x1001} $mode]
    set pci [blk_pci]
    set vs [blk_virtio]
    check_eq "$mode: query-pci: vblk0 is $mode (device ID)" $want_id [dget $pci device]

    set out [monitor "virtio"]
    set bdf [line_value {^\d+: (\S+) virtio-blk vda$} $out]
    check_eq "$mode: virtio: vda at the BDF query-pci reports" [dget $pci bdf] $bdf
    set lsp [monitor "lspci $bdf"]
    check_match "$mode: lspci $bdf: 1af4:[string range $want_id 2 end] ($mode)" \
        "^$bdf \[^\n\]* 1af4:[string range $want_id 2 end] " $lsp

    # vda's lines: from its title to the next title.
    set block ""
    set in 0
    foreach line [split $out "\n"] {
        if {[regexp {^\d+: } $line]} { set in [regexp { vda$} $line] }
        if {$in} { append block $line "\n" }
    }
    set status [line_value {^\s+status\s+(0x[0-9a-f]+) } $block]
    check_eq "$mode: virtio: vda status is 0x0f (DRIVER_OK)" 0x0f $status
    set names [line_value {^\s+status\s+0x[0-9a-f]+ (\S+)$} $block]
    check_eq "$mode: virtio: status bits match QEMU's" [lsort [dget $vs status]] [lsort [split $names |]]
    set feats [line_value {^\s+features\s+0x[0-9a-f]+ (.*)$} $block]
    check_eq "$mode: virtio: negotiated features match QEMU's guest-features" \
        [dget $vs guest] [join [lsort $feats]]
    check "$mode: virtio: VERSION_1 negotiated" {[lsearch -exact $feats VERSION_1] >= 0}
    if {$ro} {
        check "$mode: virtio: RO negotiated on a readonly=on drive" {[lsearch -exact $feats RO] >= 0}
    } else {
        check "$mode: virtio: RO not negotiated on a writable drive" {[lsearch -exact $feats RO] < 0}
    }
    set nq [line_value {^\s+queues\s+\d+ set up of (\d+)} $block]
    check_eq "$mode: virtio: queue count matches QEMU's num-vqs" [dget $vs num-vqs] $nq
}

# `virtio queues vda` against QEMU's view of queue 0 (x-query-virtio-queue-status): same
# size, avail and used indices; with no request in flight every descriptor is free again.
# Returns the guest's row (a dict) so a proof can compare before and after I/O.
proc blk_check_queue {what} {
    set row [blk_guest_queue [monitor "virtio queues vda"]]
    set q [blk_queue]
    check_eq "$what: queue size matches QEMU's vring-num" [dget $q size] [dget $row size]
    check_eq "$what: avail idx matches QEMU's last-avail-idx" \
        [dget $q last-avail-idx] [dget $row avail]
    check_eq "$what: used idx matches QEMU's used-idx" [dget $q used-idx] [dget $row used]
    check_eq "$what: all descriptors free (= queue size)" [dget $row size] [dget $row free]
    return $row
}

# proof_finish, after removing the proof's images when every check passed (64 MiB each; a
# failed run keeps them under build/blkproof/ for a look).
proc blk_proof_finish {images} {
    if {$::proof(fail) == 0} {
        foreach f $images { file delete -force $f }
    }
    proof_finish
}
