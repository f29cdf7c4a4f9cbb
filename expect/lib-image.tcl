# expect/lib-image.tcl: helpers for the disk-image proofs (image.exp, image-bios.exp,
# image-nvme.exp, image-limine.exp). Source it after lib.tcl and lib-blk.tcl. These proofs boot
# capmon from a throwaway copy of a disk image built by `make image` (never the image itself,
# and no ISO), the way `make run-disk` does, and check it against the image file on the host:
# sgdisk, mtools, SHA-256 of byte ranges (scripts/blkpattern.py), scripts/check-image.sh,
# cmp, capmon-store (the store in the data partition) and the sample tree it holds.
#
#   image_begin NAME IMG IF ?opts?   two sparse copies of IMG under build/imageproof/: the
#                                 one QEMU boots and a pristine reference (::image(copy),
#                                 ::image(ref)), removed when the proof exits; then proof_begin
#                                 booting the copy on bus IF (virtio|ide|nvme). A missing IMG
#                                 ends the proof.
#   image_boot IF ?opts?          boot the same copy again on bus IF
#   image_gpt IMG                 sgdisk oracle: dict disk_guid, sectors, first_usable,
#                                 last_usable, parts {N {first last sectors type guid name}}
#   image_check_blk DISK GPT      `blk` and `blk info` against the sgdisk oracle (DISK's
#                                 partitions are vda1.. or nvme0n1p1..: blk_part_name)
#   image_check_part_sum DEV IMG FIRST COUNT   `blk sum DEV 0 COUNT` = host SHA-256 of IMG
#                                 sectors FIRST..FIRST+COUNT
#   image_check_esp_files IMG FIRST PATHS     mdir lists each ::/PATH in the ESP
#   image_check_esp_file IMG FIRST PATH HOSTFILE   ::/PATH is byte-identical to HOSTFILE
#   image_check_script TAG ARGV   run a PASS/FAIL script (check-image.sh); each line a check
#   image_data_part GPT           the capmon data partition: {N first sectors}, or {"" "" ""}
#   image_tree_dirs / image_tree_files   the sample tree's directories ("" = the root) and
#                                 files, relative, in byte order (::image(tree))
#   image_tree_listing REL        what `fs ls /REL` prints for the tree's directory REL,
#                                 computed on the host (kinds, sizes, names, `N entries`)
#   image_check_store DISK GPT ?BOOTLOG?   in the guest: the boot log and `store` name the
#                                 data partition of DISK, `store fsck` is clean with the
#                                 tree's counts, `fs ls` of every directory and `fs sum` of
#                                 every file equal the host's (sha256sum) for ::image(tree)
#   image_store_region IMG N      the store's region length in IMG's partition N, from
#                                 `capmon-store info` (bytes after the 4096-byte superblock)
#   image_check_untouched COPY REF GPT WHAT   after poweroff: every byte of COPY (what QEMU
#                                 ran on) outside the data partition equals REF (each region
#                                 of sgdisk's layout on its own); in the data partition the
#                                 store is closed and sound and holds the tree (capmon-store
#                                 fsck, ls, sum on COPY), and the bytes past the store's
#                                 region equal REF
#   image_check_boot_part V DISK GPT ESP_N   `version` output V names the ESP's GPT partition
#                                 GUID (GRUB's boot_part=) and its block device on DISK

# Which disk the next boot attaches instead of the ISO ("" = lib.tcl's own -cdrom boot).
array set ::image {if "" copy "" ref "" files {}}
# The tree `make image` imports into the data partition's store (mk/image.mk's DATA_TREE) and
# the host tool that reads the store in an image file.
set ::image(tree) [file join $::repo scripts sample-tree]
set ::image(store_tool) [file join $::repo target release capmon-store]
set ::image_data_type c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e
set ::image_dir [file join $::build imageproof]

# lib.tcl always boots `-cdrom ISO`; a disk-image boot replaces that pair with the disk, the
# same QEMU arguments mk/image.mk's DISK_IF uses. (lib.tcl could take a `-disk` option.)
rename qemu_cmdline image_qemu_cmdline_iso
proc qemu_cmdline {} {
    set cmd [image_qemu_cmdline_iso]
    if {$::image(if) eq ""} { return $cmd }
    set i [lsearch -exact $cmd -cdrom]
    if {$i < 0} { error "lib.tcl's QEMU command line has no -cdrom to replace: [join $cmd]" }
    set drive "if=none,id=capmon-disk,format=raw,file=$::opt(-iso)"
    switch -- $::image(if) {
        virtio { set dev virtio-blk-pci,drive=capmon-disk }
        nvme   { set dev nvme,drive=capmon-disk,serial=capmon0 }
        ide    { set dev ide-hd,drive=capmon-disk,bus=ide.0 }
        default { error "disk bus must be virtio, nvme or ide, not '$::image(if)'" }
    }
    return [lreplace $cmd $i [expr {$i + 1}] -drive $drive -device $dev]
}

# The copies go when the script ends, however it ends (lib.tcl's handler kills QEMU first).
set ::image_prev_onexit [exit -onexit]
exit -onexit {
    eval $::image_prev_onexit
    foreach f $::image(files) { catch {file delete -force $f} }
}

proc image_prepare {name img} {
    set ::proof(name) $name
    if {![file exists $img]} {
        fail "disk image" "no $img (run 'make image', with LIMINE_DIR for the Limine image)"
        proof_finish
    }
    file mkdir $::image_dir
    set base [file join $::image_dir "$name-[pid]"]
    set ::image(copy) "$base.img"
    set ::image(ref) "$base-ref.img"
    lappend ::image(files) $::image(copy) $::image(ref)
    foreach f [list $::image(copy) $::image(ref)] {
        if {[catch {exec cp --sparse=always $img $f} err]} {
            fail "disk image" "cannot copy $img: $err"
            proof_finish
        }
    }
}

# Returns the boot log.
proc image_begin {name img bus args} {
    image_prepare $name $img
    set ::image(if) $bus
    return [proof_begin $name -iso $::image(copy) {*}$args]
}

proc image_boot {bus args} {
    set ::image(if) $bus
    return [boot -iso $::image(copy) {*}$args]
}

# ---------------------------------------------------------------- host oracles

proc image_gpt {img} {
    set p [host_run "sgdisk -p [file tail $img]" [list sgdisk -p $img]]
    set g [dict create disk_guid "" sectors "" parts [dict create]]
    dict set g disk_guid [string tolower [line_value {^Disk identifier \(GUID\): (\S+)$} $p]]
    dict set g sectors [line_value {^Disk \S+: (\d+) sectors} $p]
    dict set g first_usable [line_value {^First usable sector is (\d+),} $p]
    dict set g last_usable [line_value {last usable sector is (\d+)$} $p]
    foreach {- n} [regexp -all -line -inline {^\s+(\d+)\s+\d+\s+\d+\s} $p] {
        dict set g parts $n [blk_part $img $n]
    }
    return $g
}

# The ESP's partition number and first sector: the partition of type EFI System.
proc image_esp {gpt} {
    dict for {n p} [dict get $gpt parts] {
        if {[dget $p type] eq "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"} {
            return [list $n [dget $p first] [dget $p sectors]]
        }
    }
    return [list "" "" ""]
}

# mtools on the ESP inside the image file: IMG@@BYTE_OFFSET.
proc image_mtools {args} {
    set ::env(MTOOLS_SKIP_CHECK) 1
    return [exec -ignorestderr -- timeout 60 {*}$args 2>@1]
}

proc image_check_esp_files {img first paths} {
    set at "$img@@[expr {$first * 512}]"
    foreach path $paths {
        set dir [file dirname $path]
        if {[catch {image_mtools mdir -b -i $at ::$dir} out]} {
            fail "ESP lists $path" "mdir ::$dir: [brief $out]"
            continue
        }
        send_log "\n#### host: mdir -b ::$dir -> [brief $out 2000]\n"
        # mdir -b prints one path a line (mtools keeps the case it was written with).
        check_match "ESP (mdir) lists $path" "(?i)^::/[regsub -all {\W} $path {\\&}]/?\$" $out
    }
}

proc image_check_esp_file {img first path hostfile} {
    set name "ESP ::/$path is byte-identical to [file tail $hostfile]"
    set tmp [file join $::image_dir "[file tail $path]-[pid].esp"]
    lappend ::image(files) $tmp
    if {[catch {image_mtools mcopy -n -o -i "$img@@[expr {$first * 512}]" ::/$path $tmp} out]} {
        fail $name "mcopy ::/$path: [brief $out]"
        return
    }
    if {[catch {exec cmp -s $tmp $hostfile}]} {
        fail $name "the files differ (image older than $hostfile? run make again)"
    } else {
        pass $name
    }
    file delete -force $tmp
}

# Runs a script printing `PASS name` / `FAIL name: why` lines; each becomes a check of this
# proof, and the script's exit status must agree with its lines.
proc image_check_script {tag argv} {
    set rc [catch {exec -ignorestderr -- timeout 300 {*}$argv 2>@1} out]
    send_log "\n#### host: [join $argv] (exit $rc)\n$out\n"
    set n 0
    set failed 0
    foreach line [split $out "\n"] {
        if {[regexp {^PASS (.*)$} $line -> what]} {
            pass "$tag: $what"
            incr n
        } elseif {[regexp {^FAIL ([^:]*): (.*)$} $line -> what why]} {
            fail "$tag: $what" $why
            incr n
            incr failed
        }
    }
    check "$tag: ran checks ($n) and its exit status agrees" \
        {$n > 0 && ($failed > 0) == ($rc != 0)}
}

# ---------------------------------------------------------------- guest against host

# `blk` lists DISK with the image's size and every GPT partition (no more) with its size,
# start LBA and name; `blk info` gives the disk GUID, each partition's range, type and
# unique GUID. Oracle: GPT, from image_gpt (sgdisk).
proc image_check_blk {disk gpt} {
    set rows [blk_rows [monitor "blk"]]
    set parts [dict get $gpt parts]
    set np [dict size $parts]
    check_eq "blk: $disk has the image's [dict get $gpt sectors] sectors" \
        [dict get $gpt sectors] [blk_row_field $rows $disk sectors]
    # After the model and serial, for drivers that know them (nvme).
    check_match "blk: $disk: GPT with $np partitions" "(?:^|\\s)GPT, $np partitions\$" \
        [blk_row_field $rows $disk details]
    set part_re "^[blk_part_name $disk {\d+}]\$"
    set listed [lsort [lsearch -all -inline -regexp [dict keys $rows] $part_re]]
    set want {}
    foreach n [dict keys $parts] { lappend want [blk_part_name $disk $n] }
    check_eq "blk: $disk's partitions are the GPT's" [lsort $want] $listed

    set info [monitor "blk info $disk"]
    check_eq "blk info $disk: disk GUID = sgdisk -p" [dict get $gpt disk_guid] \
        [line_value {^\s+GPT: disk (\S+),} $info]
    dict for {n p} $parts {
        set dev [blk_part_name $disk $n]
        set first [dget $p first]
        set last [dget $p last]
        set sectors [dget $p sectors]
        check_eq "blk: $dev sectors = sgdisk -i $n" $sectors [blk_row_field $rows $dev sectors]
        check_eq "blk: $dev bytes" [expr {$sectors * 512}] [blk_row_field $rows $dev bytes]
        check_match "blk: $dev start LBA $first and name '[dget $p name]' = sgdisk -i $n" \
            "^start $first, \[^,\]+, \"[regsub -all {\W} [dget $p name] {\\&}]\"\$" \
            [blk_row_field $rows $dev details]
        set pi [monitor "blk info $dev"]
        check_match "blk info $dev: LBA $first..=$last = sgdisk -i $n" \
            "^\\s+partition $n of $disk: LBA $first\\.\\.=$last \\($sectors sectors\\)\$" $pi
        check_eq "blk info $dev: type GUID = sgdisk -i $n" [dget $p type] \
            [line_value {^\s+type: (\S+) } $pi]
        check_eq "blk info $dev: unique GUID = sgdisk -i $n" [dget $p guid] \
            [line_value {^\s+unique GUID: (\S+)$} $pi]
    }
    return $rows
}

proc image_check_part_sum {dev img first count {timeout 240}} {
    set want [blk_host_sum $img $first $count]
    blk_check_sum "blk sum $dev 0 $count = host sha256 of image sectors $first+$count" \
        $dev 0 $count $want $timeout
}

# ---------------------------------------------------------------- the data partition's store

proc image_data_part {gpt} {
    dict for {n p} [dict get $gpt parts] {
        if {[dget $p type] eq $::image_data_type} {
            return [list $n [dget $p first] [dget $p sectors]]
        }
    }
    return [list "" "" ""]
}

# The entries of the tree's directory REL ("" = the root): a list of {name kind size}, in the
# byte order of their names (the store's directory order; Tcl's lsort compares code points,
# the same order as UTF-8 bytes). kind d (size: its entry count) or f (size: bytes).
proc image_tree_entries {rel} {
    set dir [file join $::image(tree) {*}[split $rel /]]
    set names {}
    foreach pat {* .*} {
        foreach n [glob -nocomplain -tails -directory $dir -- $pat] {
            if {$n ni {. ..}} { lappend names $n }
        }
    }
    set out {}
    foreach n [lsort -unique $names] {
        set path [file join $dir $n]
        switch -- [file type $path] {
            directory {
                set sub [expr {$rel eq "" ? $n : "$rel/$n"}]
                lappend out [list $n d [llength [image_tree_entries $sub]]]
            }
            file { lappend out [list $n f [file size $path]] }
            default { error "$path: a [file type $path], which mkimage.sh cannot import" }
        }
    }
    return $out
}

proc image_tree_listing {rel} {
    set lines {}
    set ents [image_tree_entries $rel]
    foreach e $ents {
        lassign $e n k size
        if {$k eq "d"} {
            lappend lines [format "d %12d  %s/" $size $n]
        } else {
            lappend lines [format "f %12d  %s" $size $n]
        }
    }
    lappend lines "[llength $ents] entries"
    return [join $lines "\n"]
}

# Every directory ("" first) or every file of the tree, relative, depth first in byte order.
proc image_tree_walk {rel kind} {
    set out {}
    if {$kind eq "d" && $rel eq ""} { lappend out "" }
    foreach e [image_tree_entries $rel] {
        lassign $e n k
        set sub [expr {$rel eq "" ? $n : "$rel/$n"}]
        if {$k eq $kind} { lappend out $sub }
        if {$k eq "d"} { lappend out {*}[image_tree_walk $sub $kind] }
    }
    return $out
}
proc image_tree_dirs {} { return [image_tree_walk "" d] }
proc image_tree_files {} { return [image_tree_walk "" f] }

# What `fs sum /REL` must print: sha256sum of the host's file, and its size.
proc image_tree_sum {rel} {
    set path [file join $::image(tree) {*}[split $rel /]]
    set out [host_run "host: sha256sum $rel" [list sha256sum $path]]
    return "sha256 [lindex $out 0]  [file size $path] bytes"
}

# The tree's counts as fsck and `store` give them: files, their bytes, directories with the
# root.
proc image_tree_counts {} {
    set bytes 0
    set files [image_tree_files]
    foreach f $files {
        incr bytes [file size [file join $::image(tree) {*}[split $f /]]]
    }
    return [list [llength $files] $bytes [llength [image_tree_dirs]]]
}

# capmon's HumanSize (shell/src/out.rs): 67104768 -> 63.9 MiB.
proc image_human_size {v} {
    set units {B KiB MiB GiB TiB PiB}
    set i 0
    while {$v >= 1024 * 1024 && $i < [llength $units] - 2} {
        set v [expr {$v / 1024}]
        incr i
    }
    if {$v >= 1024 && $i < [llength $units] - 1} {
        return "[expr {$v / 1024}].[expr {($v % 1024) * 10 / 1024}] [lindex $units [expr {$i + 1}]]"
    }
    return "$v [lindex $units $i]"
}

# In the guest booted from the image on DISK: the store capmon opened at boot is the image's
# data partition, and holds the tree. Oracles: sgdisk (which partition, its size), the tree on
# the host (names, kinds, sizes, sha256sum).
proc image_check_store {disk gpt {bootlog ""}} {
    lassign [image_data_part $gpt] n first sectors
    if {$n eq ""} {
        fail "store: the image has a capmon data partition" "sgdisk lists none of type $::image_data_type"
        return
    }
    set dev [blk_part_name $disk $n]
    if {![file isdirectory $::image(tree)]} {
        fail "store: the sample tree" "no directory $::image(tree)"
        return
    }
    lassign [image_tree_counts] nfiles nbytes ndirs
    set tag "store ($dev)"
    if {$bootlog ne ""} {
        check_match "$tag: boot log: redb on $dev with the tree's $nfiles files" \
            "store: redb on $dev: \\d+ objects, \\d+ names, $nfiles files, generation \\d+\$" $bootlog
    }
    set out [monitor "store"]
    check_match "$tag: store: redb on $dev, read-write" "^store: redb on $dev \\(read-write\\)\$" $out
    # The store's capacity is the partition (sgdisk) less its 4096-byte superblock.
    set cap [image_human_size [expr {$sectors * 512 - 4096}]]
    check_match "$tag: store: device $dev, capacity $cap (sgdisk's $sectors sectors less the superblock)" \
        "^device $dev: format \\d+, \[0-9.\]+ \\S+ used of [regsub -all {\W} $cap {\\&}]\$" $out
    check_match "$tag: store: files $nfiles, directories $ndirs (the tree, with its root)" \
        "^objects \\d+ \\(\\d+ bytes\\), names \\d+, files $nfiles, directories $ndirs, generation \\d+\$" $out

    set out [monitor "store fsck" 60]
    check_match "$tag: store fsck: $ndirs directories, $nfiles files ($nbytes bytes) as the tree" \
        "^fsck: \\d+ objects \\(\\d+ bytes\\), \\d+ names, $ndirs directories, $nfiles files \\($nbytes bytes\\), \\d+ chunks\$" $out
    check_no_match "$tag: store fsck: no problem" {^problem: } $out
    check_match "$tag: store fsck: clean" {^fsck: clean$} $out

    foreach d [image_tree_dirs] {
        check_eq "$tag: fs ls /$d = the host's listing of [file tail $::image(tree)]/$d" \
            [image_tree_listing $d] [monitor "fs ls /$d"]
    }
    foreach f [image_tree_files] {
        check_eq "$tag: fs sum /$f = sha256sum of [file tail $::image(tree)]/$f" \
            [image_tree_sum $f] [monitor "fs sum /$f" 60]
    }
}

# capmon-store on an image file (read-only commands: it opens the file read-only); its output,
# or "" and a FAIL (also when it exits non-zero, e.g. fsck not clean).
proc image_store_tool {img n args} {
    if {![file executable $::image(store_tool)]} {
        fail "capmon-store [join $args]" "no $::image(store_tool) (run 'make store-tool')"
        return ""
    }
    return [host_run "capmon-store [file tail $img] [join $args]" \
                [list $::image(store_tool) --part $n $img {*}$args]]
}

proc image_store_region {img n} {
    return [line_value {^superblock: .*, region (\d+) bytes,} [image_store_tool $img $n info]]
}

# The first byte at which A and B differ in LEN bytes from byte OFF of both: "" when none;
# "error: ..." when cmp could not compare.
proc image_cmp {a b off len} {
    if {$len <= 0} { return "" }
    if {![catch {exec -ignorestderr -- timeout 300 cmp --ignore-initial=$off --bytes=$len $a $b 2>@1} out opts]} {
        return ""
    }
    set code [dict get $opts -errorcode]
    if {[lindex $code 0] eq "CHILDSTATUS" && [lindex $code 2] == 1 &&
        [regexp {differ: (?:char|byte) (\d+)} $out -> at]} {
        return [expr {$off + $at - 1}]
    }
    return "error: [brief $out]"
}

# Checks that A and B hold the same bytes in sectors FIRST..FIRST+COUNT (a check named NAME).
proc image_check_same_range {name a b first count} {
    set at [image_cmp $a $b [expr {$first * 512}] [expr {$count * 512}]]
    if {$at eq ""} {
        pass $name
    } elseif {[string match error:* $at]} {
        fail $name "cmp: $at"
    } else {
        fail $name "the bytes differ, first at byte $at (LBA [expr {$at / 512}])"
    }
}

# sgdisk's layout of the whole disk without partition SKIP: {name first count} in LBA order,
# covering every sector: the protective MBR, the primary GPT header and entries, each
# partition, each gap between them, the backup GPT entries and header.
proc image_regions {gpt skip} {
    set sectors [dict get $gpt sectors]
    set fu [dict get $gpt first_usable]
    set lu [dict get $gpt last_usable]
    set parts {}
    dict for {n p} [dict get $gpt parts] {
        lappend parts [list [dget $p first] [dget $p last] $n [dget $p name]]
    }
    set regions [list [list "the protective MBR (LBA 0)" 0 1] \
                     [list "the primary GPT (LBA 1..[expr {$fu - 1}])" 1 [expr {$fu - 1}]]]
    set at $fu
    foreach p [lsort -integer -index 0 $parts] {
        lassign $p first last n name
        if {$first > $at} {
            lappend regions [list "the gap LBA $at..[expr {$first - 1}]" $at [expr {$first - $at}]]
        }
        if {$n ne $skip} {
            lappend regions [list "partition $n '$name' (LBA $first..$last)" $first \
                                 [expr {$last - $first + 1}]]
        }
        set at [expr {$last + 1}]
    }
    if {$lu + 1 > $at} {
        lappend regions [list "the gap LBA $at..$lu" $at [expr {$lu + 1 - $at}]]
    }
    lappend regions [list "the backup GPT (LBA [expr {$lu + 1}]..[expr {$sectors - 1}])" \
                         [expr {$lu + 1}] [expr {$sectors - 1 - $lu}]]
    return $regions
}

# After poweroff. Every byte outside the data partition must be REF's (the proof first puts
# into REF whatever it told the guest to write): neither the firmware, the loader nor capmon
# writes there. The data partition legitimately changes on every boot (every writable open of
# the store runs redb's integrity check, which commits; poweroff closes the store), so there
# the check is the store itself: capmon-store (which refuses a store that was not closed
# cleanly) finds it sound and holding the tree, as the host computes it; and the bytes past
# the store's region (it grows from the partition's start) are still REF's.
proc image_check_untouched {copy ref gpt what} {
    check_eq "the disk after the run has the image's size" [file size $ref] [file size $copy]
    lassign [image_data_part $gpt] n first sectors
    foreach r [image_regions $gpt $n] {
        lassign $r name lba count
        image_check_same_range "after the run: $name = the image $what" $ref $copy $lba $count
    }
    if {$n eq ""} {
        fail "after the run: the data partition" "sgdisk lists no partition of type $::image_data_type"
        return
    }
    set tag "after the run: the store in partition $n"
    lassign [image_tree_counts] nfiles nbytes ndirs
    set out [image_store_tool $copy $n fsck]
    check_match "$tag: capmon-store fsck: $ndirs directories, $nfiles files ($nbytes bytes) as the tree" \
        "^fsck: \\d+ objects \\(\\d+ bytes\\), \\d+ names, $ndirs directories, $nfiles files \\($nbytes bytes\\), \\d+ chunks\$" $out
    check_match "$tag: capmon-store fsck: clean" {^fsck: clean$} $out
    foreach d [image_tree_dirs] {
        check_eq "$tag: capmon-store ls /$d = the host's listing of [file tail $::image(tree)]/$d" \
            [image_tree_listing $d] [string trimright [image_store_tool $copy $n ls /$d] "\n"]
    }
    foreach f [image_tree_files] {
        check_eq "$tag: capmon-store sum /$f = sha256sum of [file tail $::image(tree)]/$f" \
            [image_tree_sum $f] [string trim [image_store_tool $copy $n sum /$f]]
    }
    # Past the store's region (the larger of the image's and the run's): REF's bytes.
    set r0 [image_store_region $ref $n]
    set r1 [image_store_region $copy $n]
    if {![string is wide -strict $r0] || ![string is wide -strict $r1]} {
        fail "$tag: past the store's region" "no region length from capmon-store info ('$r0', '$r1')"
        return
    }
    set end [expr {(4096 + max($r0, $r1) + 511) / 512}]
    check "$tag: the store's region (image $r0, after the run $r1 bytes) ends inside it" \
        {$end <= $sectors}
    if {$end < $sectors} {
        image_check_same_range "$tag past the store's region (LBA [expr {$first + $end}]..) = the image $what" \
            $ref $copy [expr {$first + $end}] [expr {$sectors - $end}]
    }
}

# The image's GRUB passes the ESP's GPT partition GUID as boot_part=; `version` prints it on
# its boot device line with the block device holding it.
proc image_check_boot_part {v disk gpt esp_n} {
    if {$esp_n eq ""} { return }
    set want_guid [dget [dict get $gpt parts $esp_n] guid]
    set want_name [blk_part_name $disk $esp_n]
    check_match "version: cmdline has boot_part= the ESP's partition GUID (sgdisk -i $esp_n)" \
        "^cmdline:\\s+(?:\\S+ )*boot_part=${want_guid}(?: |\$)" $v
    check_match "version: boot device names the ESP's partition GUID as $want_name" \
        "^boot device: (?:\[^\n\]*; )?partition GUID $want_guid \\(boot_part\\) = $want_name\$" $v
}
