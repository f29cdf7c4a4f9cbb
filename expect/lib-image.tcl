# expect/lib-image.tcl: helpers for the disk-image proofs (image.exp, image-bios.exp,
# image-limine.exp). Source it after lib.tcl and lib-blk.tcl. These proofs boot capmon from a
# throwaway copy of a disk image built by `make image` (never the image itself, and no ISO),
# the way `make run-disk` does, and check it against the image file on the host: sgdisk,
# mtools, SHA-256 of byte ranges (scripts/blkpattern.py), scripts/check-image.sh.
#
#   image_begin NAME IMG IF ?opts?   two sparse copies of IMG under build/imageproof/: the
#                                 one QEMU boots and a pristine reference (::image(copy),
#                                 ::image(ref)), removed when the proof exits; then proof_begin
#                                 booting the copy on bus IF (virtio|ide|nvme). A missing IMG
#                                 ends the proof.
#   image_boot IF ?opts?          boot the same copy again on bus IF
#   image_gpt IMG                 sgdisk oracle: dict disk_guid, sectors, parts {N {first
#                                 last sectors type guid name}}
#   image_check_blk DISK GPT      `blk` and `blk info` against the sgdisk oracle (DISK's
#                                 partitions are vda1.. or nvme0n1p1..: blk_part_name)
#   image_check_part_sum DEV IMG FIRST COUNT   `blk sum DEV 0 COUNT` = host SHA-256 of IMG
#                                 sectors FIRST..FIRST+COUNT
#   image_check_esp_files IMG FIRST PATHS     mdir lists each ::/PATH in the ESP
#   image_check_esp_file IMG FIRST PATH HOSTFILE   ::/PATH is byte-identical to HOSTFILE
#   image_check_script TAG ARGV   run a PASS/FAIL script (check-image.sh); each line a check
#   image_check_untouched COPY REF WHAT   COPY (what QEMU ran on) equals REF sector for sector
#   image_check_boot_part V DISK GPT ESP_N   `version` output V names the ESP's GPT partition
#                                 GUID (GRUB's boot_part=) and its block device on DISK

# Which disk the next boot attaches instead of the ISO ("" = lib.tcl's own -cdrom boot).
array set ::image {if "" copy "" ref "" files {}}
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

# After poweroff: COPY (what QEMU ran on) must equal REF sector for sector; the proof first
# puts into REF whatever it told the guest to write.
proc image_check_untouched {copy ref what} {
    set out [host_run "compare [file tail $copy]" \
                 [list python3 $::blkoracle same $ref $copy] 300]
    if {$out eq ""} { return }
    check_eq "the disk after the run = the image $what" same [string trim $out]
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
