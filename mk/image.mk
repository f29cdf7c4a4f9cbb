# mk/image.mk: bootable disk image, run-disk, GCP archive.
#
# Included at the end of the top-level Makefile, which defines BUILD,
# KERNEL_ELF and STORE_TOOL (and their rules), QEMU, QEMU_EXTRA and `setup`.
# Needs no root: sgdisk works on the image file, mtools writes the FAT32 ESP,
# the host tool capmon-store makes the data partition a store holding
# DATA_TREE (see scripts/mkimage.sh for the layout). Packages it uses, all installed by
# scripts/setup.sh: qemu-system-x86 ovmf grub-efi-amd64-bin grub-pc-bin
# grub-common mtools gdisk dosfstools (qemu-utils for the Azure VHD).
#
# Targets:  image image-limine run-disk run-disk-bios image-gcp check-image
#           clean-image
# Knobs:    DATA_SIZE DATA_TREE ESP_SIZE IMAGE_BIOS LIMINE_DIR DISK_IF DISK_MEM
#           DISK_SMP DISK_MACHINE GCP_DISK_SIZE OVMF_CODE OVMF_VARS_TEMPLATE

DATA_SIZE     ?= 64M
# The tree imported into the data partition's store (empty: the partition is
# left zeroed).
DATA_TREE     ?= scripts/sample-tree
ESP_SIZE      ?= 64M
# 1: also make the disk BIOS-bootable (GRUB i386-pc core.img in a BIOS boot
# partition, boot.img code in the protective MBR). UEFI boot never depends on it.
IMAGE_BIOS    ?= 1
LIMINE_DIR    ?=
DISK_IF       ?= virtio
DISK_MEM      ?= $(or $(MEM),256M)
DISK_SMP      ?= $(or $(SMP),1)
DISK_MACHINE  ?= q35
# GCE disks are sized in whole GB (images.diskSizeGb), so disk.raw is padded.
GCP_DISK_SIZE ?= 1G

KERNEL_SYM     ?= $(BUILD)/capmon.sym
IMAGE          := $(BUILD)/capmon.img
ESP_IMG        := $(BUILD)/esp.img
LIMINE_IMAGE   := $(BUILD)/capmon-limine.img
LIMINE_ESP_IMG := $(BUILD)/esp-limine.img
GCP_DIR        := $(BUILD)/gcp
GCP_IMAGE      := $(BUILD)/capmon-gcp.tar.gz
DISK_OVMF_VARS := $(BUILD)/OVMF_VARS-disk.fd

# OVMF: prefer the 4M build; its variable store template must match its size.
OVMF_CODE ?= $(firstword $(wildcard /usr/share/OVMF/OVMF_CODE_4M.fd \
                                    /usr/share/OVMF/OVMF_CODE.fd))
OVMF_VARS_TEMPLATE ?= $(strip $(if $(findstring _4M,$(OVMF_CODE)),\
                        /usr/share/OVMF/OVMF_VARS_4M.fd,/usr/share/OVMF/OVMF_VARS.fd))

MKIMAGE := scripts/mkimage.sh
# The store: the host tool and every file of the tree (a changed file remakes
# the image; the file list is in the config stamp, so a removed one does too).
DATA_TREE_FILES := $(if $(DATA_TREE),$(shell find $(DATA_TREE) -type f 2>/dev/null | LC_ALL=C sort))
DATA_DEPS := $(if $(DATA_TREE),$(STORE_TOOL) $(DATA_TREE_FILES))
DATA_ARGS := $(if $(DATA_TREE),--data-tree $(DATA_TREE) --store-tool $(STORE_TOOL))
MKIMAGE_ARGS := --kernel $(KERNEL_ELF) --esp-size $(ESP_SIZE) \
                --data-size $(DATA_SIZE) $(if $(filter 1,$(IMAGE_BIOS)),--bios) $(DATA_ARGS)

# The disk as QEMU sees it: DISK_IF=virtio (default), nvme or ide.
DISK_DRIVE := -drive if=none,id=capmon-disk,format=raw,file=$(IMAGE)
ifeq ($(DISK_IF),virtio)
DISK_DEVICE := -device virtio-blk-pci,drive=capmon-disk
else ifeq ($(DISK_IF),nvme)
DISK_DEVICE := -device nvme,drive=capmon-disk,serial=capmon0
else ifeq ($(DISK_IF),ide)
DISK_DEVICE := -device ide-hd,drive=capmon-disk,bus=ide.0
else
DISK_DEVICE = $(error DISK_IF=$(DISK_IF): use virtio, nvme or ide)
endif

DISK_QEMU_ARGS = -machine $(DISK_MACHINE) -m $(DISK_MEM) -smp $(DISK_SMP) \
                 $(DISK_DRIVE) $(DISK_DEVICE) \
                 -serial mon:stdio -display none -no-reboot $(QEMU_EXTRA)

# Rebuild the image when a knob changes, not only when the kernel does: the
# stamp is rewritten only when its content differs.
IMAGE_CONFIG := esp=$(ESP_SIZE) data=$(DATA_SIZE) bios=$(IMAGE_BIOS) \
                sym=$(if $(wildcard $(KERNEL_SYM)),yes,no) limine=$(LIMINE_DIR) \
                tree=$(DATA_TREE) $(DATA_TREE_FILES)
$(BUILD)/.image-config: _image_force
	@mkdir -p $(BUILD)
	@echo '$(IMAGE_CONFIG)' | cmp -s - $@ || echo '$(IMAGE_CONFIG)' > $@

.PHONY: image image-limine run-disk run-disk-bios image-gcp check-image \
        clean-image _image_force
_image_force:

image: $(IMAGE) $(if $(LIMINE_DIR),$(LIMINE_IMAGE))

$(IMAGE): $(KERNEL_ELF) $(wildcard $(KERNEL_SYM)) $(MKIMAGE) mk/image.mk \
          $(BUILD)/.image-config $(DATA_DEPS)
	$(MKIMAGE) $(MKIMAGE_ARGS) $(if $(wildcard $(KERNEL_SYM)),--sym $(KERNEL_SYM)) \
	    --out $@ --esp-out $(ESP_IMG)

image-limine: $(LIMINE_IMAGE)

$(LIMINE_IMAGE): $(KERNEL_ELF) $(wildcard $(KERNEL_SYM)) $(MKIMAGE) mk/image.mk \
                 $(BUILD)/.image-config $(DATA_DEPS)
	@test -n "$(LIMINE_DIR)" || { echo "image-limine: set LIMINE_DIR=<dir with BOOTX64.EFI>"; exit 1; }
	$(MKIMAGE) --kernel $(KERNEL_ELF) --esp-size $(ESP_SIZE) --data-size $(DATA_SIZE) $(DATA_ARGS) \
	    $(if $(wildcard $(KERNEL_SYM)),--sym $(KERNEL_SYM)) \
	    --loader limine --limine-dir $(LIMINE_DIR) --out $@ --esp-out $(LIMINE_ESP_IMG)

# A fresh writable copy of the OVMF variable store for each run, so a previous
# run's boot entries never change what this one boots.
run-disk: $(IMAGE)
	@test -n "$(OVMF_CODE)" || { echo "run-disk: no OVMF_CODE found; run 'make setup'"; exit 1; }
	cp $(OVMF_VARS_TEMPLATE) $(DISK_OVMF_VARS)
	$(QEMU) -drive if=pflash,format=raw,readonly=on,file=$(OVMF_CODE) \
	    -drive if=pflash,format=raw,file=$(DISK_OVMF_VARS) $(DISK_QEMU_ARGS)

# The same disk under SeaBIOS (needs IMAGE_BIOS=1, the default).
run-disk-bios: $(IMAGE)
	$(QEMU) $(DISK_QEMU_ARGS)

# GCP: exactly one member, disk.raw, in a gzip'd GNU tar (oldgnu, sparse).
# disk.raw is a sparse copy padded to GCP_DISK_SIZE; sgdisk -e moves the
# backup GPT to the new end.
image-gcp: $(GCP_IMAGE)

$(GCP_IMAGE): $(IMAGE)
	rm -rf $(GCP_DIR) && mkdir -p $(GCP_DIR)
	cp --sparse=always $(IMAGE) $(GCP_DIR)/disk.raw
	@test $$(stat -c %s $(GCP_DIR)/disk.raw) -le $$(numfmt --from=iec $(GCP_DISK_SIZE)) || \
	    { echo "image-gcp: image is larger than GCP_DISK_SIZE=$(GCP_DISK_SIZE)"; exit 1; }
	truncate -s $(GCP_DISK_SIZE) $(GCP_DIR)/disk.raw
	sgdisk -e $(GCP_DIR)/disk.raw >/dev/null
	scripts/check-image.sh --image $(GCP_DIR)/disk.raw >/dev/null || \
	    scripts/check-image.sh --image $(GCP_DIR)/disk.raw
	tar --format=oldgnu -Sczf $@.tmp -C $(GCP_DIR) disk.raw
	mv -f $@.tmp $@
	rm -rf $(GCP_DIR)

check-image: $(IMAGE) $(GCP_IMAGE)
	scripts/check-image.sh --image $(IMAGE) --esp $(ESP_IMG) --kernel $(KERNEL_ELF) \
	    --data-size $(DATA_SIZE) --gcp $(GCP_IMAGE)

clean-image:
	rm -rf $(IMAGE) $(ESP_IMG) $(LIMINE_IMAGE) $(LIMINE_ESP_IMG) $(GCP_IMAGE) \
	    $(GCP_DIR) $(DISK_OVMF_VARS) $(BUILD)/.image-config
