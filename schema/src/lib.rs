//! capmon's Cap'n Proto schemas, generated at build time from `storage.capnp` and `boot.capnp` (see build.rs for
//! the one change made to capnpc's output so that it builds without std).
#![no_std]
extern crate alloc;

#[allow(
    clippy::all,
    dead_code,
    unused_imports,
    unused_parens,
    unused_qualifications
)]
pub mod storage_capnp {
    #[allow(unused_imports)]
    use alloc::boxed::Box;
    #[allow(unused_imports)]
    use alloc::string::ToString;
    include!(concat!(env!("OUT_DIR"), "/storage_capnp.rs"));
}

#[allow(
    clippy::all,
    dead_code,
    unused_imports,
    unused_parens,
    unused_qualifications
)]
pub mod boot_capnp {
    #[allow(unused_imports)]
    use alloc::boxed::Box;
    #[allow(unused_imports)]
    use alloc::string::ToString;
    include!(concat!(env!("OUT_DIR"), "/boot_capnp.rs"));
}
