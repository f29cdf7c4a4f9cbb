@0xe5b1c6bc804a55d7;
# capmon's storage schema: the objects a Store holds, the names a Namespace binds, the files and
# directories a Directory serves, and the records the disk engine keeps for each of them.
#
# Inside the kernel each interface below is a Rust trait of the same shape (capmon-storage's
# `caps` module): capnp-rpc needs std. What is stored on disk, and what will cross a wire, is a
# real message of the structs below, always read with bounded ReaderOptions.

# ---- Objects ----

struct Object {
  # The typed envelope of every stored object: what the body is, and which version of it.
  # The Store's content hash (SHA-256) is taken over the whole message in its canonical form.
  schemaId @0 :UInt64;   # the id of the body's struct type (e.g. TextBody's)
  version @1 :UInt16;    # the body's schema version; a reader refuses newer ones it does not know
  body @2 :AnyPointer;   # a struct of type schemaId
}

struct TextBody {
  # `store put NAME TEXT`
  text @0 :Text;
}

struct BytesBody {
  # `store put NAME --pattern P SIZE`, and any opaque bytes
  data @0 :Data;
}

struct ObjectStat {
  hash @0 :Data;          # 32 bytes, SHA-256 of the object message
  size @1 :UInt64;        # bytes of the message
  schemaId @2 :UInt64;
  version @3 :UInt16;
  refs @4 :UInt32;        # names bound to it (an object with refs > 0 cannot be deleted)
}

# ---- Rights and capabilities ----

struct Rights {
  # What a capability may do. Derived capabilities carry at most the rights of their source.
  read @0 :Bool;
  write @1 :Bool;          # create, replace, remove, bind, unbind, put, delete
  append @2 :Bool;         # files: write only at the end
}

struct SturdyRef {
  # How a capability bound in a persistent Namespace is kept on disk: what it designates inside
  # the same store, and the rights it was bound with. A lookup turns it back into a live
  # capability with these rights, narrowed by the Namespace's own.
  rights @0 :Rights;
  union {
    store @1 :Void;          # the store itself
    namespace @2 :Text;      # a namespace confined to this prefix ("" is the root)
    directory @3 :Text;      # the directory at this path ("" is the root)
    file @4 :Text;           # the file at this path
  }
}

struct StoredBinding {
  # The value of one name in a Namespace, as the engine stores it.
  union {
    object @0 :Data;         # the hash of an object in the same store
    capability @1 :SturdyRef;
  }
}

struct Value {
  # A name's value as a Namespace hands it out: an object, or a live capability.
  union {
    object @0 :Data;
    store @1 :Store;
    namespace @2 :Namespace;
    directory @3 :Directory;
    file @4 :File;
  }
}

struct NameEntry {
  name @0 :Text;
  kind @1 :Text;             # "object", "store", "namespace", "directory", "file"
  hash @2 :Data;             # objects only
  rights @3 :Rights;         # capabilities only
}

# ---- Files ----

enum NodeKind {
  file @0;
  directory @1;
}

struct Stat {
  kind @0 :NodeKind;
  size @1 :UInt64;           # bytes (files); entries (directories)
  inode @2 :UInt64;
  generation @3 :UInt64;     # bumped by every change to the node
  mtimeNs @4 :UInt64;        # nanoseconds since the Unix epoch, 0 if the clock was unknown
  ctimeNs @5 :UInt64;
  chunkSize @6 :UInt32;      # files: the size of the chunks the data is kept in
}

struct DirEntry {
  name @0 :Text;
  kind @1 :NodeKind;
  inode @2 :UInt64;
  size @3 :UInt64;
}

struct OpenFlags {
  read @0 :Bool;
  write @1 :Bool;
  append @2 :Bool;
  create @3 :Bool;           # create the file if it is missing
  exclusive @4 :Bool;        # with create: fail if it exists
  truncate @5 :Bool;         # with write: cut to zero length on open
}

enum ErrorCode {
  notFound @0;
  exists @1;
  notDirectory @2;
  isDirectory @3;
  notEmpty @4;
  permissionDenied @5;       # the capability lacks the right
  invalidName @6;
  tooLarge @7;
  malformed @8;              # a message that does not parse
  inUse @9;                  # an object still bound by a name
  busy @10;                  # the writer policy refused a second writer
  noSpace @11;
  corrupt @12;
  io @13;
  unsupported @14;
  foreignCapability @15;     # a capability from another store cannot be bound here
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
}

struct Inode {
  # The engine's record of one file or directory (table `fs_inodes`, keyed by inode number).
  kind @0 :NodeKind;
  size @1 :UInt64;
  generation @2 :UInt64;
  mtimeNs @3 :UInt64;
  ctimeNs @4 :UInt64;
  chunkSize @5 :UInt32;      # files: data lives in table `fs_chunks` under (inode, index)
  parent @6 :UInt64;         # directories: the parent's inode (the root is its own parent)
}

# ---- Interfaces ----

interface Store {
  put @0 (object :Object) -> (hash :Data);
  get @1 (hash :Data) -> (object :Object);
  has @2 (hash :Data) -> (present :Bool);
  delete @3 (hash :Data) -> ();
  list @4 () -> (objects :List(ObjectStat));
  stat @5 (hash :Data) -> (stat :ObjectStat);
}

interface Namespace {
  bind @0 (name :Text, value :Value, replace :Bool) -> ();
  lookup @1 (name :Text) -> (value :Value);
  unbind @2 (name :Text) -> ();
  list @3 (prefix :Text) -> (entries :List(NameEntry));
  sub @4 (prefix :Text) -> (namespace :Namespace);
  readOnly @5 () -> (namespace :Namespace);
}

interface File {
  read @0 (offset :UInt64, length :UInt32) -> (data :Data);
  stat @1 () -> (stat :Stat);
  write @2 (offset :UInt64, data :Data) -> ();
  append @3 (data :Data) -> (offset :UInt64);
  truncate @4 (size :UInt64) -> ();
  sync @5 () -> ();
}

interface Directory {
  list @0 () -> (entries :List(DirEntry));
  stat @1 (path :Text) -> (stat :Stat);
  open @2 (path :Text, flags :OpenFlags) -> (file :File);
  openDir @3 (path :Text) -> (directory :Directory);
  mkdir @4 (path :Text) -> (directory :Directory);
  remove @5 (path :Text, recursive :Bool) -> ();
  rename @6 (from :Text, to :Text) -> ();
  sync @7 () -> ();
  readOnly @8 () -> (directory :Directory);
}
