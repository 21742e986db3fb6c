//! Directory entries as the provider reads them, parsed without panicking from what the
//! server sent, with attribute names compared case-insensitively.

use ldap3::ResultEntry;
use ldap3::asn1::StructureTag;
use std::collections::HashMap;

/// One entry of a search result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's distinguished name, as the server wrote it.
    pub dn: String,
    /// Values by lower-cased attribute description.
    attrs: HashMap<String, Vec<Vec<u8>>>,
}

impl Entry {
    /// Parses a `SearchResultEntry` (RFC 4511 §4.5.2). `ldap3`'s own `SearchEntry::construct`
    /// panics on a malformed entry; a server's answer must never crash the broker.
    pub fn parse(raw: ResultEntry) -> Result<Self, String> {
        let malformed = |what: &str| format!("malformed search result entry: {what}");
        let mut top = raw
            .0
            .match_id(4)
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| malformed("not a SearchResultEntry"))?
            .into_iter();
        let dn = top
            .next()
            .and_then(StructureTag::expect_primitive)
            .ok_or_else(|| malformed("no objectName"))?;
        let dn = String::from_utf8(dn).map_err(|_| malformed("objectName is not UTF-8"))?;
        let list = top
            .next()
            .and_then(StructureTag::expect_constructed)
            .ok_or_else(|| malformed("no attribute list"))?;
        let mut attrs: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
        for attribute in list {
            let mut parts = attribute
                .expect_constructed()
                .ok_or_else(|| malformed("attribute is not a sequence"))?
                .into_iter();
            let name = parts
                .next()
                .and_then(StructureTag::expect_primitive)
                .and_then(|n| String::from_utf8(n).ok())
                .ok_or_else(|| malformed("attribute without a readable type"))?;
            let values = parts
                .next()
                .and_then(StructureTag::expect_constructed)
                .ok_or_else(|| malformed("attribute without a value set"))?
                .into_iter()
                .map(|v| {
                    v.expect_primitive()
                        .ok_or_else(|| malformed("attribute value is not an octet string"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            attrs
                .entry(name.to_ascii_lowercase())
                .or_default()
                .extend(values);
        }
        Ok(Entry { dn, attrs })
    }

    /// All values of `attribute` (case-insensitive), raw.
    pub fn values(&self, attribute: &str) -> &[Vec<u8>] {
        self.attrs
            .get(&attribute.to_ascii_lowercase())
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The first value of `attribute` that is UTF-8 text and not empty.
    pub fn first_text(&self, attribute: &str) -> Option<String> {
        self.values(attribute)
            .iter()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .find(|v| !v.is_empty())
            .map(str::to_owned)
    }
}

/// How the provider turns the raw id attribute into the identity's subject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdFormat {
    /// Active Directory `objectGUID`: 16 bytes rendered as the usual GUID string.
    Guid,
    /// Any other attribute: its text, or lower-case hex when it is not UTF-8.
    Text,
}

impl IdFormat {
    /// `objectGUID` (any case) is a GUID; everything else is text.
    pub fn for_attribute(attribute: &str) -> Self {
        if attribute.eq_ignore_ascii_case("objectGUID") {
            IdFormat::Guid
        } else {
            IdFormat::Text
        }
    }

    /// Renders one raw value, or says why it cannot be an id.
    pub fn render(self, raw: &[u8]) -> Result<String, String> {
        if raw.is_empty() {
            return Err("the value is empty".into());
        }
        match self {
            IdFormat::Guid => format_guid(raw),
            IdFormat::Text => Ok(match std::str::from_utf8(raw) {
                Ok(text) => text.to_owned(),
                Err(_) => hex(raw),
            }),
        }
    }
}

fn hex(raw: &[u8]) -> String {
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// Renders a 16-byte Microsoft GUID as `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`: the first
/// three fields are stored little-endian, the last eight bytes in order.
pub fn format_guid(raw: &[u8]) -> Result<String, String> {
    let b: &[u8; 16] = raw
        .try_into()
        .map_err(|_| format!("a GUID has 16 bytes, this value has {}", raw.len()))?;
    Ok(format!(
        "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{}",
        b[3],
        b[2],
        b[1],
        b[0],
        b[5],
        b[4],
        b[7],
        b[6],
        b[8],
        b[9],
        hex(&b[10..])
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{PL, TagClass};

    fn prim(bytes: &[u8]) -> StructureTag {
        StructureTag {
            class: TagClass::Universal,
            id: 4,
            payload: PL::P(bytes.to_vec()),
        }
    }

    fn cons(id: u64, class: TagClass, inner: Vec<StructureTag>) -> StructureTag {
        StructureTag {
            class,
            id,
            payload: PL::C(inner),
        }
    }

    fn raw_entry(dn: &[u8], attrs: Vec<StructureTag>) -> ResultEntry {
        ResultEntry::new(cons(
            4,
            TagClass::Application,
            vec![prim(dn), cons(16, TagClass::Universal, attrs)],
        ))
    }

    fn attr(name: &str, values: &[&[u8]]) -> StructureTag {
        cons(
            16,
            TagClass::Universal,
            vec![
                prim(name.as_bytes()),
                cons(
                    17,
                    TagClass::Universal,
                    values.iter().map(|v| prim(v)).collect(),
                ),
            ],
        )
    }

    #[test]
    fn entries_parse_with_case_insensitive_attribute_names() {
        let guid: &[u8] = &[0xff; 16];
        let e = Entry::parse(raw_entry(
            b"uid=ada,dc=x",
            vec![
                attr("entryUUID", &[b"1234"]),
                attr("mail", &[b"", b"ada@example.org"]),
                attr("objectGUID", &[guid]),
            ],
        ))
        .unwrap();
        assert_eq!(e.dn, "uid=ada,dc=x");
        assert_eq!(e.first_text("ENTRYUUID").as_deref(), Some("1234"));
        assert_eq!(e.first_text("mail").as_deref(), Some("ada@example.org"));
        assert_eq!(e.values("objectguid"), &[guid.to_vec()]);
        assert!(e.values("cn").is_empty());
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let not_entry = ResultEntry::new(prim(b"x"));
        assert!(Entry::parse(not_entry).is_err());
        assert!(Entry::parse(raw_entry(&[0xff, 0xfe], vec![])).is_err());
        let bad_attr = raw_entry(b"dc=x", vec![prim(b"flat")]);
        assert!(Entry::parse(bad_attr).is_err());
        let no_values = raw_entry(
            b"dc=x",
            vec![cons(16, TagClass::Universal, vec![prim(b"cn")])],
        );
        assert!(Entry::parse(no_values).is_err());
    }

    #[test]
    fn object_guid_renders_in_microsoft_byte_order() {
        let raw: Vec<u8> = (0u8..16).map(|i| i * 0x11).collect();
        assert_eq!(
            format_guid(&raw).unwrap(),
            "33221100-5544-7766-8899-aabbccddeeff"
        );
        assert!(format_guid(&raw[..15]).is_err());
        assert_eq!(IdFormat::for_attribute("objectguid"), IdFormat::Guid);
        assert_eq!(
            IdFormat::Guid.render(&raw).unwrap(),
            "33221100-5544-7766-8899-aabbccddeeff"
        );
    }

    #[test]
    fn a_guid_that_happens_to_be_valid_utf8_still_renders_as_a_guid() {
        // ldap3 would file such a value under text attributes; we keep raw bytes.
        let raw = b"ABCDEFGHIJKLMNOP";
        assert_eq!(
            IdFormat::Guid.render(raw).unwrap(),
            "44434241-4645-4847-494a-4b4c4d4e4f50"
        );
    }

    #[test]
    fn text_ids_pass_through_and_binary_ones_become_hex() {
        assert_eq!(
            IdFormat::for_attribute("entryUUID")
                .render(b"6f1c-aa")
                .unwrap(),
            "6f1c-aa"
        );
        assert_eq!(IdFormat::Text.render(&[0xff, 0x00]).unwrap(), "ff00");
        assert!(IdFormat::Text.render(b"").is_err());
    }
}
