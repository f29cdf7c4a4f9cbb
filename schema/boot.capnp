@0xaaae14209de8fe43;
# The boot manifest: what /boot/manifest.capnp on the ISO says the boot binaries are. Names,
# sizes and digests only, never the binaries' bytes: each ELF is the plain file
# /boot/bins/NAME beside it, read on demand (docs/boot-binaries.md). tools/mkmanifest writes
# it; the kernel checks it against the ISO at boot and keeps the BootBinary registry.

struct BootPackage {
  # Format version of this message; capmon reads version 1.
  version @0 :UInt32;
  binaries @1 :List(BootBinary);
  # The program to start first, a name in `binaries` ("" for none).
  init @2 :Text;
}

struct BootBinary {
  # The file name under /boot/bins/: 1 to 64 bytes of [A-Za-z0-9._-], not "." or "..".
  name @0 :Text;
  # The file's size in bytes.
  size @1 :UInt64;
  # SHA-256 of the file (32 bytes).
  sha256 @2 :Data;
}

# readBinaryChunk's shape: at most `len` bytes of binary `name` from `offset`, served from the
# ISO on demand (capmon's BootBinary registry implements it; `bins read` is it at the prompt).
interface BootPackageCap {
  list @0 () -> (binaries :List(BootBinary));
  readBinaryChunk @1 (name :Text, offset :UInt64, len :UInt32) -> (data :Data);
}
