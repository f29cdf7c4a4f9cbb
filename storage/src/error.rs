//! What a storage operation can fail with, by name.
use alloc::string::String;
use capmon_schema::storage_capnp::ErrorCode;
use core::fmt;

/// Every failure of a Store, Namespace, Directory or File operation. The variants mirror the
/// schema's `ErrorCode` (see `code`), so what crosses a wire says the same as the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No object with this hash, no such name, no such file.
    NotFound(String),
    /// The name is bound already (bind without replace), the file exists.
    Exists(String),
    NotDirectory(String),
    IsDirectory(String),
    NotEmpty(String),
    /// The capability lacks the right: `what` the operation needed, `cap` what refused it.
    PermissionDenied {
        what: &'static str,
        cap: String,
    },
    /// A name or path that breaks the naming rules (`name::check`), with the rule.
    InvalidName {
        name: String,
        why: &'static str,
    },
    /// An object (or a file) bigger than the store takes.
    TooLarge {
        what: &'static str,
        size: u64,
        limit: u64,
    },
    /// A message that does not parse as the schema says, with the parser's reason.
    Malformed(String),
    /// An object still bound by `refs` names cannot be deleted.
    InUse {
        refs: u32,
    },
    /// The writer policy refused a second writer.
    Busy(String),
    /// The partition is full.
    NoSpace(String),
    /// The store's contents are inconsistent (a record that does not parse, a hash mismatch).
    Corrupt(String),
    /// The device failed.
    Io(String),
    Unsupported(String),
    /// A capability from another store cannot be bound in this one (it could not be persisted).
    ForeignCapability,
}

pub type Result<T> = core::result::Result<T, StoreError>;

impl StoreError {
    /// The schema's code for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::NotFound(_) => ErrorCode::NotFound,
            StoreError::Exists(_) => ErrorCode::Exists,
            StoreError::NotDirectory(_) => ErrorCode::NotDirectory,
            StoreError::IsDirectory(_) => ErrorCode::IsDirectory,
            StoreError::NotEmpty(_) => ErrorCode::NotEmpty,
            StoreError::PermissionDenied { .. } => ErrorCode::PermissionDenied,
            StoreError::InvalidName { .. } => ErrorCode::InvalidName,
            StoreError::TooLarge { .. } => ErrorCode::TooLarge,
            StoreError::Malformed(_) => ErrorCode::Malformed,
            StoreError::InUse { .. } => ErrorCode::InUse,
            StoreError::Busy(_) => ErrorCode::Busy,
            StoreError::NoSpace(_) => ErrorCode::NoSpace,
            StoreError::Corrupt(_) => ErrorCode::Corrupt,
            StoreError::Io(_) => ErrorCode::Io,
            StoreError::Unsupported(_) => ErrorCode::Unsupported,
            StoreError::ForeignCapability => ErrorCode::ForeignCapability,
        }
    }

    /// The code's name as the schema spells it (`notFound`, `permissionDenied`, ...).
    pub fn code_name(&self) -> &'static str {
        match self.code() {
            ErrorCode::NotFound => "notFound",
            ErrorCode::Exists => "exists",
            ErrorCode::NotDirectory => "notDirectory",
            ErrorCode::IsDirectory => "isDirectory",
            ErrorCode::NotEmpty => "notEmpty",
            ErrorCode::PermissionDenied => "permissionDenied",
            ErrorCode::InvalidName => "invalidName",
            ErrorCode::TooLarge => "tooLarge",
            ErrorCode::Malformed => "malformed",
            ErrorCode::InUse => "inUse",
            ErrorCode::Busy => "busy",
            ErrorCode::NoSpace => "noSpace",
            ErrorCode::Corrupt => "corrupt",
            ErrorCode::Io => "io",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::ForeignCapability => "foreignCapability",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(w) => write!(f, "not found: {}", w),
            StoreError::Exists(w) => write!(f, "already exists: {}", w),
            StoreError::NotDirectory(w) => write!(f, "not a directory: {}", w),
            StoreError::IsDirectory(w) => write!(f, "is a directory: {}", w),
            StoreError::NotEmpty(w) => write!(f, "directory not empty: {}", w),
            StoreError::PermissionDenied { what, cap } => {
                write!(
                    f,
                    "permission denied: {} needs a right {} does not carry",
                    what, cap
                )
            }
            StoreError::InvalidName { name, why } => {
                write!(f, "invalid name '{}': {}", crate::name::Shown(name), why)
            }
            StoreError::TooLarge { what, size, limit } => {
                write!(
                    f,
                    "{} too large: {} bytes, the limit is {}",
                    what, size, limit
                )
            }
            StoreError::Malformed(w) => write!(f, "malformed message: {}", w),
            StoreError::InUse { refs } => {
                write!(f, "object in use: {} name(s) still bind it", refs)
            }
            StoreError::Busy(w) => write!(f, "busy: {}", w),
            StoreError::NoSpace(w) => write!(f, "no space: {}", w),
            StoreError::Corrupt(w) => write!(f, "store corrupt: {}", w),
            StoreError::Io(w) => write!(f, "i/o error: {}", w),
            StoreError::Unsupported(w) => write!(f, "unsupported: {}", w),
            StoreError::ForeignCapability => {
                f.write_str("a capability from another store cannot be bound here")
            }
        }
    }
}

impl From<capnp::Error> for StoreError {
    fn from(e: capnp::Error) -> Self {
        StoreError::Malformed(alloc::format!("{}", e))
    }
}
