# capmon: build, boot images, run, test, benchmark, debug.
#   make            kernel ELF (build/capmon.elf) and its symbol table (build/capmon.sym)
#   make iso        build/capmon.iso: GRUB, hybrid BIOS + UEFI, with the boot binaries
#   make bins       the boot binaries (user/) and their manifest, staged in build/iso_root
#   make iso-limine build/capmon-limine.iso (needs LIMINE_DIR=<Limine 8.x binary release>)
#   make run        boot the ISO under SeaBIOS, serial on this terminal (quit: Ctrl-A X), with
#                   the persistent data disk build/data.img on virtio-blk (vda, its store on
#                   vda1): 64 MiB, a GPT with one capmon data partition formatted by
#                   capmon-store, made on first use and never re-made, so `store put` survives
#                   a restart (rm it, or make clean, for an empty store; RUN_DATA= for none)
#   make run-uefi   the same under OVMF
#   make store-tool target/release/capmon-store, the host tool for stores in image files
#   make test       host tests, lints, every expect proof; ends with "N passed, N failed"
#   make crash-test every crash state of the disk engine's crash-consistency harness (release)
#   make bench      every benchmark (bench-store: the object store, bench-fs: its files, each
#                   against ext4 in a Linux guest)
#   make fuzz       every fuzz target for FUZZ_TIME (60) seconds
#   make gdb        boot paused with QEMU's gdbstub and attach GDB
# QEMU_EXTRA="..." adds QEMU arguments to every run target.

BUILD       := build
PROFILE     ?= release
KERNEL_ELF  := $(BUILD)/capmon.elf
KERNEL_SYM  := $(BUILD)/capmon.sym
# The same kernel with full debug information, for GDB (the boot media carry the stripped one).
KERNEL_DEBUG := $(BUILD)/capmon-debug.elf
ISO         := $(BUILD)/capmon.iso
LIMINE_ISO  := $(BUILD)/capmon-limine.iso
QEMU        := qemu-system-x86_64
QEMU_EXTRA  ?=
MEM         ?= 256M
SMP         ?= 2
OVMF_CODE   ?= /usr/share/OVMF/OVMF_CODE_4M.fd
OVMF_VARS_TEMPLATE ?= /usr/share/OVMF/OVMF_VARS_4M.fd
OVMF_VARS   := $(BUILD)/OVMF_VARS.fd
CARGO       := cargo
TARGET      := x86_64-unknown-none
CARGO_OUT   := target/$(TARGET)/$(PROFILE)/capmon
SETUP_STAMP := $(BUILD)/.setup-done
# The host tool that formats and fills capmon stores in image files (tools/capmon-store).
STORE_TOOL  := target/release/capmon-store
# The data disk of `make run`; empty for none.
RUN_DATA    ?= $(BUILD)/data.img
RUN_DATA_SIZE ?= 64M

export CARGO_TERM_COLOR ?= never

.PHONY: all setup kernel bins iso iso-limine store-tool run run-uefi run-limine test test-host test-proofs lint crash-test \
        bench bench-boot bench-pci bench-blk bench-nvme bench-irq bench-smp bench-store bench-fs bench-iso fuzz gdb \
        clean

all: $(KERNEL_ELF)

setup $(SETUP_STAMP):
	@scripts/setup.sh

KERNEL_SRCS := $(shell find kernel shell cmds drivers storage schema bootpkg -name '*.capnp' -o -name '*.rs' -o -name '*.s' -o -name '*.ld' -o -name Cargo.toml 2>/dev/null) Cargo.toml rust-toolchain.toml

$(KERNEL_ELF): $(SETUP_STAMP) $(KERNEL_SRCS)
	@mkdir -p $(BUILD)
	$(CARGO) build -p capmon-kernel --target $(TARGET) $(if $(filter release,$(PROFILE)),--release,)
	cp $(CARGO_OUT) $(KERNEL_DEBUG)
	objcopy --strip-debug $(KERNEL_DEBUG) $@
	nm -n -C --defined-only $@ | awk '$$2 ~ /^[tTwW]$$/ { $$2=""; sub(/  /, " "); print }' > $(KERNEL_SYM)

$(KERNEL_SYM) $(KERNEL_DEBUG): $(KERNEL_ELF)

kernel: $(KERNEL_ELF)

# ---- The host store tool (a std binary sharing the kernel's storage code) ----
STORE_TOOL_SRCS := $(shell find tools/capmon-store storage schema drivers/block drivers/hal shell \
                     -name '*.capnp' -o -name '*.rs' -o -name Cargo.toml 2>/dev/null) Cargo.toml Cargo.lock

# cargo leaves the binary's time alone when it is up to date: touch it, or make would ask again.
$(STORE_TOOL): $(SETUP_STAMP) $(STORE_TOOL_SRCS)
	$(CARGO) build -p capmon-store --release
	@touch $@

store-tool: $(STORE_TOOL)

# ---- Boot binaries: the user programs, one copy target each, and the manifest ----
# Each program is built (user/), stripped into build/user/NAME (its time kept when the bytes
# did not change), and copied to $(ISO_ROOT)/boot/bins/NAME only when it changed; the manifest
# (names, sizes, SHA-256; tools/mkmanifest) is remade when a binary is. Both ISOs carry
# $(ISO_ROOT)/boot.
USER_BINS   := hello sha fault spin
USER_OUT    := target/$(TARGET)/release
USER_SRCS   := $(shell find user -name '*.rs' -o -name '*.ld' -o -name Cargo.toml 2>/dev/null) Cargo.toml
ISO_ROOT    := $(BUILD)/iso_root
BINS        := $(addprefix $(ISO_ROOT)/boot/bins/,$(USER_BINS))
MANIFEST    := $(ISO_ROOT)/boot/manifest.capnp
MKMANIFEST  := target/release/mkmanifest
MKMANIFEST_SRCS := $(shell find tools/mkmanifest bootpkg schema drivers/iso9660 drivers/block drivers/hal \
                     -name '*.capnp' -o -name '*.rs' -o -name Cargo.toml 2>/dev/null) Cargo.toml Cargo.lock

$(BUILD)/user/.built: $(SETUP_STAMP) $(USER_SRCS)
	$(CARGO) build -p capmon-user --target $(TARGET) --release
	@mkdir -p $(BUILD)/user && touch $@

$(BUILD)/user/%: $(BUILD)/user/.built
	@objcopy --strip-all $(USER_OUT)/$* $@.new
	@if cmp -s $@.new $@; then rm $@.new; else mv $@.new $@; echo "user: $* changed"; fi

# Kept between runs (make would delete them as intermediates), so an unchanged binary keeps
# its time and is not copied again.
.SECONDARY: $(addprefix $(BUILD)/user/,$(USER_BINS))

$(ISO_ROOT)/boot/bins/%: $(BUILD)/user/%
	@mkdir -p $(@D)
	cp $< $@

$(MKMANIFEST): $(SETUP_STAMP) $(MKMANIFEST_SRCS)
	$(CARGO) build -p mkmanifest --release
	@touch $@

$(MANIFEST): $(BINS) $(MKMANIFEST)
	$(MKMANIFEST) --out $@ --init hello $(BINS)

bins: $(BINS) $(MANIFEST)

# ---- GRUB ISO (BIOS + UEFI, via grub-mkrescue) ----
$(ISO): $(KERNEL_ELF) scripts/grub.cfg $(BINS) $(MANIFEST)
	@rm -rf $(BUILD)/iso && mkdir -p $(BUILD)/iso/boot/grub
	cp $(KERNEL_ELF) $(BUILD)/iso/boot/capmon.elf
	cp $(KERNEL_SYM) $(BUILD)/iso/boot/capmon.sym
	cp scripts/grub.cfg $(BUILD)/iso/boot/grub/grub.cfg
	cp -r $(ISO_ROOT)/boot/. $(BUILD)/iso/boot/
	grub-mkrescue -o $@ $(BUILD)/iso >$(BUILD)/grub-mkrescue.log 2>$(BUILD)/grub-mkrescue.log || { cat $(BUILD)/grub-mkrescue.log; exit 1; }

iso: $(ISO)

# ---- Limine ISO (BIOS + UEFI) ----
iso-limine: $(KERNEL_ELF) $(BINS) $(MANIFEST)
	@if [ -z "$(LIMINE_DIR)" ] || [ ! -f "$(LIMINE_DIR)/limine-bios-cd.bin" ]; then \
	  echo "iso-limine: set LIMINE_DIR to a Limine 8.x binary release (a checkout of the v8.x-binary"; \
	  echo "branch, built with 'make -C \$$LIMINE_DIR'), containing limine-bios-cd.bin,"; \
	  echo "limine-uefi-cd.bin, limine-bios.sys, BOOTX64.EFI and the 'limine' host tool."; exit 1; fi
	@rm -rf $(BUILD)/iso-limine && mkdir -p $(BUILD)/iso-limine/boot/limine $(BUILD)/iso-limine/EFI/BOOT
	cp $(KERNEL_ELF) $(BUILD)/iso-limine/boot/capmon.elf
	cp $(KERNEL_SYM) $(BUILD)/iso-limine/boot/capmon.sym
	cp scripts/limine.conf $(BUILD)/iso-limine/boot/limine/limine.conf
	cp -r $(ISO_ROOT)/boot/. $(BUILD)/iso-limine/boot/
	cp $(LIMINE_DIR)/limine-bios.sys $(LIMINE_DIR)/limine-bios-cd.bin $(LIMINE_DIR)/limine-uefi-cd.bin $(BUILD)/iso-limine/boot/limine/
	cp $(LIMINE_DIR)/BOOTX64.EFI $(BUILD)/iso-limine/EFI/BOOT/
	xorriso -as mkisofs -R -r -J -b boot/limine/limine-bios-cd.bin -no-emul-boot -boot-load-size 4 \
	  -boot-info-table -hfsplus -apm-block-size 2048 --efi-boot boot/limine/limine-uefi-cd.bin \
	  -efi-boot-part --efi-boot-image --protective-msdos-label $(BUILD)/iso-limine -o $(LIMINE_ISO) 2>/dev/null
	$(LIMINE_DIR)/limine bios-install $(LIMINE_ISO) 2>/dev/null

# ---- Running ----
# signal=off: Ctrl-C goes to the guest (it stops a running program); Ctrl-A X quits QEMU.
QEMU_BASE := -machine q35 -m $(MEM) -smp $(SMP) -chardev stdio,id=con,mux=on,signal=off -serial chardev:con \
             -mon chardev=con,mode=readline -display none -no-reboot $(QEMU_EXTRA)

$(OVMF_VARS):
	@mkdir -p $(BUILD) && cp $(OVMF_VARS_TEMPLATE) $@

# The data disk: made once, never re-made while it exists (it holds what `store put` wrote).
# The tool is built only when the disk is made, so `make run` does not wait for it otherwise.
ifneq ($(RUN_DATA),)
$(RUN_DATA):
	@mkdir -p $(dir $@)
	$(MAKE) --no-print-directory $(STORE_TOOL)
	rm -f $@.tmp && truncate -s $(RUN_DATA_SIZE) $@.tmp
	sgdisk --clear --new=1:2048:0 --typecode=1:c0a9d47a-3f1e-4b8b-9a43-6361706d6f6e \
	  --change-name=1:capmon-data $@.tmp >/dev/null
	$(STORE_TOOL) $@.tmp mkfs
	mv -f $@.tmp $@
endif

# -boot d: SeaBIOS would try the data disk first (it has no boot code) before the CD.
RUN_DATA_DISK = -drive if=none,id=capmon-data,format=raw,cache=writeback,file=$(RUN_DATA) \
                -device virtio-blk-pci,drive=capmon-data -boot d
RUN_DATA_ARGS = $(if $(RUN_DATA),$(RUN_DATA_DISK))

run: $(ISO) $(RUN_DATA)
	$(QEMU) $(QEMU_BASE) $(RUN_DATA_ARGS) -cdrom $(ISO)

run-uefi: $(ISO) $(OVMF_VARS) $(RUN_DATA)
	$(QEMU) $(QEMU_BASE) -drive if=pflash,format=raw,readonly=on,file=$(OVMF_CODE) \
	  -drive if=pflash,format=raw,file=$(OVMF_VARS) $(RUN_DATA_ARGS) -cdrom $(ISO)

run-limine: iso-limine
	$(QEMU) $(QEMU_BASE) -cdrom $(LIMINE_ISO)

gdb: $(ISO)
	scripts/gdb/run-gdb.sh $(ISO) $(KERNEL_DEBUG) "$(QEMU_EXTRA)"

# ---- Tests ----
lint: $(SETUP_STAMP)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --exclude capmon-kernel --exclude capmon-user --all-targets -- -D warnings
	$(CARGO) clippy -p capmon-kernel -p capmon-user --target $(TARGET) --release -- -D warnings

test-host: $(SETUP_STAMP)
	$(CARGO) test --workspace --exclude capmon-kernel --exclude capmon-user 2>&1 | tee $(BUILD)/host-tests.log

# The disk engine's crash-consistency harness over its whole space (storage/src/crash.rs):
# every crash state of every workload, in release (about 10 minutes on 2 cores). test-host
# runs a bounded sample of it (CAPMON_CRASH_STATES states).
crash-test: $(SETUP_STAMP)
	$(CARGO) test -p capmon-storage --features std --release crash_states_full -- --ignored --nocapture

test-proofs: $(ISO) image image-gcp
	expect/run-all.sh

# scripts/test.sh runs setup itself, so a fresh clone gets a summary line even if setup fails.
test:
	@scripts/test.sh

# ---- Benchmarks ----
bench: bench-boot bench-pci bench-blk bench-nvme bench-irq bench-smp bench-store bench-fs bench-iso

bench-boot: $(ISO)
	scripts/bench-boot.sh

bench-pci: $(ISO)
	scripts/bench-pci.sh

bench-blk: $(ISO)
	scripts/bench-blk.sh

bench-nvme: $(ISO)
	scripts/bench-nvme.sh

bench-irq: $(ISO)
	scripts/bench-irq.sh

bench-smp: $(ISO)
	scripts/bench-smp.sh

bench-store: $(ISO)
	scripts/bench-store.sh

bench-fs: $(ISO)
	scripts/bench-fs.sh

# A 64 MiB file read from a CD: ATAPI PIO (-M pc) and AHCI (q35) against Linux's isofs.
bench-iso: $(ISO)
	scripts/bench-iso.sh

# Every cargo-fuzz target for FUZZ_TIME seconds each, into scratch corpora under build/fuzz
# (fuzz/corpus keeps the checked-in seeds). Installs cargo-fuzz when it is missing.
FUZZ_TIME ?= 60
fuzz: $(SETUP_STAMP)
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cd fuzz && for t in $$(cargo fuzz list); do \
	  mkdir -p ../$(BUILD)/fuzz/$$t && \
	  cargo fuzz run $$t ../$(BUILD)/fuzz/$$t corpus/$$t -- -max_total_time=$(FUZZ_TIME) || exit 1; \
	done

clean:
	rm -rf $(BUILD) target

-include mk/image.mk
