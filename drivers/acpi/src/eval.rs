//! AML object names and values as capmon sees them: `AmlPath` (an absolute name, parsed
//! without the `acpi` crate's `AmlName::from_str`, which panics on some malformed input) and
//! `AmlValue` (a plain copy of an evaluated object), and `Acpi::evaluate`.
use crate::aml::{AcpiHw, Aml};
use crate::{Acpi, AcpiError};
use acpi::aml::namespace::{AmlName, NameComponent, NameSeg};
use acpi::aml::object::{Object, ReferenceKind, WrappedObject};
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// A name segment: four characters, `A-Z`, `_`, then `A-Z`, `0-9`, `_` (ACPI 6.5 §20.2.2),
/// shorter names padded with `_`.
pub type NameSegBytes = [u8; 4];

/// An absolute AML name (`\_SB.PCI0._PRT`): the segments below the root, at least one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AmlPath(Vec<NameSegBytes>);

fn is_lead_char(c: u8) -> bool {
    c.is_ascii_uppercase() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    is_lead_char(c) || c.is_ascii_digit()
}

/// One segment of a textual name: 1-4 name characters, padded with `_`.
pub(crate) fn parse_seg(s: &str) -> Result<NameSegBytes, AcpiError> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 4 {
        return Err(AcpiError::BadPath("a name segment has 1 to 4 characters"));
    }
    if !is_lead_char(b[0]) || !b.iter().all(|c| is_name_char(*c)) {
        return Err(AcpiError::BadPath(
            "a name segment is A-Z or _ then A-Z, 0-9 or _",
        ));
    }
    let mut seg = [b'_'; 4];
    seg[..b.len()].copy_from_slice(b);
    Ok(seg)
}

impl AmlPath {
    /// An absolute path typed by a user: `\` then dot-separated segments, case-insensitive
    /// (`\_sb.pci0` is `\_SB_.PCI0`).
    pub fn parse(s: &str) -> Result<AmlPath, AcpiError> {
        let rest = s
            .strip_prefix('\\')
            .ok_or(AcpiError::BadPath("an absolute path starts with \\"))?;
        if rest.is_empty() {
            return Err(AcpiError::BadPath("the root itself has no value"));
        }
        let upper = rest.to_ascii_uppercase();
        let segs = upper
            .split('.')
            .map(parse_seg)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AmlPath(segs))
    }

    pub(crate) fn from_segments(segs: Vec<NameSegBytes>) -> AmlPath {
        AmlPath(segs)
    }

    pub fn segments(&self) -> &[NameSegBytes] {
        &self.0
    }

    /// The object `seg` inside this one (`\_SB.PCI0` + `_PRT`).
    pub fn child(&self, seg: NameSegBytes) -> AmlPath {
        let mut v = self.0.clone();
        v.push(seg);
        AmlPath(v)
    }

    /// The first `n` segments (`n` at least 1 and at most the length).
    pub(crate) fn prefix(&self, n: usize) -> Option<AmlPath> {
        (1..=self.0.len())
            .contains(&n)
            .then(|| AmlPath(self.0[..n].to_vec()))
    }

    pub fn last(&self) -> Option<NameSegBytes> {
        self.0.last().copied()
    }

    /// The path as the `acpi` crate's interpreter names it.
    pub(crate) fn to_aml_name(&self) -> Result<AmlName, AcpiError> {
        let mut c = Vec::with_capacity(self.0.len() + 1);
        c.push(NameComponent::Root);
        for s in &self.0 {
            let seg =
                NameSeg::from_bytes(*s).map_err(|_| AcpiError::BadPath("invalid name segment"))?;
            c.push(NameComponent::Segment(seg));
        }
        Ok(AmlName::from_components(c))
    }

    /// Where a name written inside `scope` may refer to, in search order (ACPI 6.5 §5.3): an
    /// absolute name (`\X.Y`) or one with `^` prefixes resolves to one place; a single segment
    /// is looked up in `scope`, then each enclosing scope up to the root; several segments
    /// without a prefix are relative to `scope`.
    pub(crate) fn candidates(scope: &AmlPath, name: &str) -> Result<Vec<AmlPath>, AcpiError> {
        let (base, rest, search) = if let Some(r) = name.strip_prefix('\\') {
            (Vec::new(), r, false)
        } else {
            let ups = name.bytes().take_while(|c| *c == b'^').count();
            let base = scope
                .0
                .len()
                .checked_sub(ups)
                .map(|n| scope.0[..n].to_vec())
                .ok_or(AcpiError::BadPath("^ goes above the root"))?;
            let rest = &name[ups..];
            (base, rest, ups == 0 && !rest.contains('.'))
        };
        let segs = rest
            .split('.')
            .map(parse_seg)
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        let levels = if search { base.len() + 1 } else { 1 };
        for up in 0..levels {
            let mut p = base[..base.len() - up].to_vec();
            p.extend_from_slice(&segs);
            out.push(AmlPath(p));
        }
        Ok(out)
    }
}

impl fmt::Display for AmlPath {
    /// `\_SB.PCI0._PRT`: trailing `_` padding is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\\")?;
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(".")?;
            }
            let keep = s.iter().rposition(|c| *c != b'_').map_or(1, |i| i + 1);
            for c in &s[..keep] {
                fmt::Write::write_char(f, char::from(*c))?;
            }
        }
        Ok(())
    }
}

/// A copy of an evaluated AML object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmlValue {
    Integer(u64),
    /// A string; a name inside a package (e.g. a `_PRT` link `LNKA`) also arrives as one,
    /// because the interpreter keeps such names unresolved as their text.
    String(String),
    Buffer(Vec<u8>),
    Package(Vec<AmlValue>),
    /// A reference (`RefOf`, or an unresolved name) and the object it points at.
    Reference(Box<AmlValue>),
    /// An object with no data value (device, method, mutex, operation region, field unit,
    /// ...), by its type name; or a part of a value left out because it nests too deeply.
    Other(&'static str),
}

/// Bounds on copying a value: packages can refer to each other, even in cycles.
const MAX_DEPTH: usize = 16;
const MAX_NODES: usize = 100_000;

impl AmlValue {
    pub(crate) fn from_object(obj: &WrappedObject) -> AmlValue {
        let mut budget = MAX_NODES;
        copy(obj, 0, &mut budget)
    }
}

fn copy(obj: &Object, depth: usize, budget: &mut usize) -> AmlValue {
    if depth > MAX_DEPTH || *budget == 0 {
        return AmlValue::Other("(nested too deeply)");
    }
    *budget -= 1;
    match obj {
        Object::Integer(v) => AmlValue::Integer(*v),
        Object::String(s) => AmlValue::String(s.clone()),
        Object::Buffer(b) => AmlValue::Buffer(b.clone()),
        Object::Package(elems) => {
            AmlValue::Package(elems.iter().map(|e| copy(e, depth + 1, budget)).collect())
        }
        Object::Reference { kind, inner } => {
            let v = copy(inner, depth + 1, budget);
            match kind {
                // Locals and arguments are transparent: show what they hold.
                ReferenceKind::LocalOrArg => v,
                ReferenceKind::RefOf | ReferenceKind::Unresolved => {
                    AmlValue::Reference(Box::new(v))
                }
            }
        }
        Object::BufferField {
            buffer,
            offset,
            length,
        } => buffer_field(buffer, *offset, *length),
        Object::Uninitialized => AmlValue::Other("uninitialized"),
        Object::Device => AmlValue::Other("device"),
        Object::Event(_) => AmlValue::Other("event"),
        Object::FieldUnit(_) => AmlValue::Other("field unit (not read)"),
        Object::Method { .. } | Object::NativeMethod { .. } => AmlValue::Other("method"),
        Object::Mutex { .. } => AmlValue::Other("mutex"),
        Object::OpRegion(_) => AmlValue::Other("operation region"),
        Object::PowerResource { .. } => AmlValue::Other("power resource"),
        Object::Processor { .. } => AmlValue::Other("processor"),
        Object::RawDataBuffer => AmlValue::Other("raw data buffer"),
        Object::ThermalZone => AmlValue::Other("thermal zone"),
        Object::Debug => AmlValue::Other("debug object"),
    }
}

/// The bits of a buffer field (ACPI 6.5 §19.6.19 CreateField): an integer when they fit in 64
/// bits, else a buffer. Read here, with bounds checks, instead of by the crate's
/// `read_buffer_field`, which indexes past the buffer when the field does.
fn buffer_field(buffer: &Object, offset: usize, length: usize) -> AmlValue {
    let src: &[u8] = match buffer {
        Object::Buffer(b) => b,
        Object::String(s) => s.as_bytes(),
        _ => return AmlValue::Other("buffer field of a non-buffer"),
    };
    let end = offset.checked_add(length);
    if end.is_none_or(|e| e > src.len().saturating_mul(8)) {
        return AmlValue::Other("buffer field past its buffer");
    }
    let bit = |i: usize| (src[(offset + i) / 8] >> ((offset + i) % 8)) & 1;
    if length <= 64 {
        AmlValue::Integer((0..length).fold(0u64, |v, i| v | u64::from(bit(i)) << i))
    } else {
        let mut out = alloc::vec![0u8; length.div_ceil(8)];
        for i in 0..length {
            out[i / 8] |= bit(i) << (i % 8);
        }
        AmlValue::Buffer(out)
    }
}

impl Acpi {
    /// Evaluates the object at `path` (running it if it is a method, with `args` as integer
    /// arguments) in a freshly loaded interpreter, and copies the result.
    pub fn evaluate(
        &self,
        hw: &AcpiHw<'_>,
        path: &AmlPath,
        args: &[u64],
    ) -> Result<AmlValue, AcpiError> {
        let aml = Aml::load(self, *hw)?;
        let args = args.iter().map(|a| Object::Integer(*a).wrap()).collect();
        let v = aml
            .evaluate_path(path, args)?
            .ok_or_else(|| AcpiError::NoSuchObject(alloc::format!("{}", path)))?;
        if aml.pci_config_accesses() != 0 {
            log::warn!(
                "acpi: {} read PCI configuration space, which acpi 6.1 misaddresses (region \
                 offset dropped): the value may be wrong",
                path
            );
        }
        Ok(AmlValue::from_object(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::ToString;
    use alloc::vec;

    fn p(s: &str) -> AmlPath {
        AmlPath::parse(s).unwrap()
    }

    #[test]
    fn parses_absolute_paths() {
        assert_eq!(
            p("\\_SB.PCI0._PRT").segments(),
            [*b"_SB_", *b"PCI0", *b"_PRT"]
        );
        assert_eq!(p("\\_sb.pci0.s10._adr"), p("\\_SB_.PCI0.S10_._ADR"));
        assert_eq!(
            format!("{}", p("\\_SB_.PCI0.S10_._ADR")),
            "\\_SB.PCI0.S10._ADR"
        );
        assert_eq!(format!("{}", p("\\____")), "\\_");
        for bad in [
            "",
            "_S5",
            "\\",
            "\\_SB.",
            "\\.X",
            "\\TOOLONG",
            "\\1ABC",
            "\\A-B",
            "\\_SB..X",
            "\\é",
            "\\_SB.^X",
        ] {
            assert!(
                matches!(AmlPath::parse(bad), Err(AcpiError::BadPath(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn relative_names_follow_the_search_rules() {
        let scope = p("\\_SB.PCI0");
        let c = |n| {
            AmlPath::candidates(&scope, n)
                .unwrap()
                .iter()
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(c("LNKA"), ["\\_SB.PCI0.LNKA", "\\_SB.LNKA", "\\LNKA"]);
        assert_eq!(c("^LNKA"), ["\\_SB.LNKA"]);
        assert_eq!(c("ISA.LNKA"), ["\\_SB.PCI0.ISA.LNKA"]);
        assert_eq!(c("\\_SB.GSIA"), ["\\_SB.GSIA"]);
        assert!(AmlPath::candidates(&scope, "^^^X").is_err());
        assert!(AmlPath::candidates(&scope, "").is_err());
        assert!(AmlPath::candidates(&scope, "^").is_err());
    }

    #[test]
    fn copies_values() {
        let buf = Object::Buffer(vec![0xa5, 0x0f, 0xff]).wrap();
        let pkg = Object::Package(vec![
            Object::Integer(7).wrap(),
            Object::String("LNKA".into()).wrap(),
            Object::Reference {
                kind: ReferenceKind::RefOf,
                inner: Object::Integer(1).wrap(),
            }
            .wrap(),
            Object::Device.wrap(),
            Object::BufferField {
                buffer: buf.clone(),
                offset: 4,
                length: 8,
            }
            .wrap(),
            Object::BufferField {
                buffer: buf.clone(),
                offset: 20,
                length: 8,
            }
            .wrap(),
            Object::BufferField {
                buffer: buf,
                offset: 0,
                length: 72,
            }
            .wrap(),
        ])
        .wrap();
        assert_eq!(
            AmlValue::from_object(&pkg),
            AmlValue::Package(vec![
                AmlValue::Integer(7),
                AmlValue::String("LNKA".into()),
                AmlValue::Reference(Box::new(AmlValue::Integer(1))),
                AmlValue::Other("device"),
                AmlValue::Integer(0xfa),
                AmlValue::Other("buffer field past its buffer"),
                AmlValue::Other("buffer field past its buffer"),
            ])
        );
        // Nesting deeper than MAX_DEPTH is cut, not followed.
        let mut deep = Object::Integer(0).wrap();
        for _ in 0..40 {
            deep = Object::Package(vec![deep]).wrap();
        }
        let mut v = &AmlValue::from_object(&deep);
        let mut levels = 0;
        while let AmlValue::Package(e) = v {
            v = &e[0];
            levels += 1;
        }
        assert_eq!(
            (levels, v),
            (MAX_DEPTH + 1, &AmlValue::Other("(nested too deeply)"))
        );
    }
}
