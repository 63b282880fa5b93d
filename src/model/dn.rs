//! LDAP distinguished names (DNs): parsing, normalisation and comparison.
//!
//! Group values that come from a directory (an LDAP `memberOf`, an SSO attribute carrying group
//! DNs) must be compared as DNs, not as raw strings: `CN=Admins, OU=Groups,DC=Example,DC=com` and
//! `cn=admins,ou=groups,dc=example,dc=com` name the same entry, and so do
//! `uid=comma\2Cuser,ou=People` and `uid=comma\,user,ou=People`. This module parses the string
//! form of [RFC 4514] into a [`Dn`] and gives every DN one canonical string,
//! [`Dn::normalized`], that is stable across releases and therefore usable as a map key and for
//! storage. Two DNs are equal exactly when their canonical strings are equal; this approximates
//! `distinguishedNameMatch` ([RFC 4517] §4.2.15) without access to the directory's schema.
//!
//! # Syntax accepted
//!
//! * The [RFC 4514] grammar: RDNs separated by `,`, attribute-value assertions (AVAs) inside a
//!   multi-valued RDN separated by `+`, `type=value` in each AVA.
//! * Spaces around `=`, `,`, `+` and unescaped spaces at the start and end of the whole string are
//!   ignored, as [RFC 2253] §4 asks of parsers for compatibility with older producers. A value's
//!   leading and trailing spaces are only kept when escaped (`\ ` or `\20`).
//! * `;` is accepted as an RDN separator ([RFC 2253] §4 legacy). This is unambiguous: RFC 4514
//!   requires a `;` inside a value to be escaped, so an unescaped one can only be a separator.
//! * Attribute types are either a name (`descr`: a letter, then letters, digits and hyphens) or a
//!   dotted-decimal OID ([RFC 4512] §1.4), optionally written with the `OID.` prefix of
//!   [RFC 1779] (`OID.2.5.4.3`).
//! * Escapes: `\` followed by two hex digits is one byte (`\2C`, `\2c`); `\` followed by any other
//!   character is that character (`\,`). RFC 4514 only defines the second form for its special
//!   characters, but every parser in use treats an escaped ordinary character as itself, and
//!   some producers write e.g. `\/`. The decoded bytes must be UTF-8; binary data belongs in the
//!   `#hex` form.
//! * A value starting with an unescaped `#` is a hex-encoded BER value (RFC 4514 §2.4):
//!   `#` followed by an even, non-zero number of hex digits.
//! * The characters `"`, `<`, `>` and NUL must be escaped in a value (RFC 4514 §3). Quoted values
//!   (`cn="a,b"`, RFC 1779) are not supported: RFC 4514 dropped them and directories do not
//!   produce them.
//! * The empty string (or a string of spaces) is the empty DN, the root of the tree.
//! * Input longer than [`MAX_DN_LEN`] bytes, with more than [`MAX_RDNS`] RDNs or more than
//!   [`MAX_AVAS_PER_RDN`] AVAs in one RDN is refused: no directory produces such names, and the
//!   limits bound the work an untrusted attribute value can cause.
//!
//! # Normalisation
//!
//! * **Attribute types** are case-insensitive ([RFC 4512] §2.5) and written in lower case.
//!   Well-known OIDs and long names map to the usual short name, so `2.5.4.3`, `OID.2.5.4.3`,
//!   `commonName` and `CN` are all `cn`; see [`canonical_attribute_type`] for the table. Unknown
//!   OIDs stay numeric, unknown names are lower-cased.
//! * **String values** are compared the way `caseIgnoreMatch` ([RFC 4517] §4.2.11) prepares them
//!   ([RFC 4518]): control and invisible formatting characters (e.g. soft hyphen, zero-width space,
//!   byte-order mark) are dropped, every white-space character (tab, no-break space, line
//!   separator…) counts as a space, runs of spaces collapse to one and leading and trailing spaces
//!   are dropped, and the value is lower-cased character by character with Unicode's lowercase
//!   mapping (plus final sigma `ς` to `σ`, so that the result does not depend on a letter's
//!   position in a word). Unicode normalisation (NFKC) is not applied: a precomposed `é` and `e`
//!   followed by a combining accent stay different.
//! * **Unknown attribute types** are treated the same way. The common naming attributes (`cn`,
//!   `ou`, `o`, `dc`, `uid`, `l`, `st`, `c`, `street`, `mail`…) all use case-ignoring matching
//!   rules in the standard schemas, Active Directory compares every DN value case-insensitively,
//!   and a directory cannot hold two siblings whose names differ only in case under such rules;
//!   folding everything avoids missing a match because the schema is unknown here.
//! * **`#hex` values** compare by their bytes and are written with lower-case hex digits. They are
//!   not decoded, so `cn=#0c0161` (a BER UTF8String "a") does not equal `cn=a`.
//! * **Multi-valued RDNs** are sets (X.501): their AVAs are sorted by their canonical text, so
//!   `cn=a+uid=b` equals `uid=b+cn=a`, and exact duplicates collapse to one.
//! * **Escaping in the canonical form** uses [`escape_value`], so `\,` and `\2C` both come out as
//!   `\,`; `;` separators come out as `,`, and no spaces are left around separators.
//!
//! [RFC 1779]: https://www.rfc-editor.org/rfc/rfc1779
//! [RFC 2253]: https://www.rfc-editor.org/rfc/rfc2253
//! [RFC 4512]: https://www.rfc-editor.org/rfc/rfc4512
//! [RFC 4514]: https://www.rfc-editor.org/rfc/rfc4514
//! [RFC 4517]: https://www.rfc-editor.org/rfc/rfc4517
//! [RFC 4518]: https://www.rfc-editor.org/rfc/rfc4518

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

/// Longest DN string accepted, in bytes.
pub const MAX_DN_LEN: usize = 64 * 1024;
/// Most RDNs accepted in one DN. Real directory trees are a few dozen levels deep at most.
pub const MAX_RDNS: usize = 256;
/// Most attribute-value assertions accepted in one multi-valued RDN.
pub const MAX_AVAS_PER_RDN: usize = 64;
/// How much of the offending DN an error message quotes.
const ERROR_EXCERPT_LEN: usize = 256;

/// Why a string is not a distinguished name. Every message names the problem, the byte offset
/// where it was found and (an excerpt of) the DN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    #[error("DN is {len} bytes long; at most {max} bytes are accepted (DN starts {dn:?})")]
    TooLong { len: usize, max: usize, dn: String },

    #[error("DN has more than {max} RDNs (limit reached at position {position}) in DN {dn:?}")]
    TooManyRdns {
        max: usize,
        position: usize,
        dn: String,
    },

    #[error(
        "RDN has more than {max} attribute-value assertions (limit reached at position \
         {position}) in DN {dn:?}"
    )]
    TooManyAvas {
        max: usize,
        position: usize,
        dn: String,
    },

    #[error(
        "expected attribute=value at position {position} in DN {dn:?} (empty RDN, or a stray \
         ',', ';' or '+'; escape a literal one with '\\')"
    )]
    EmptyRdn { position: usize, dn: String },

    #[error("missing '=' after the attribute type at position {position} in DN {dn:?}")]
    MissingEquals { position: usize, dn: String },

    #[error(
        "invalid attribute type {attribute_type:?} at position {position} in DN {dn:?}: \
         expected a name such as cn or a numeric OID such as 2.5.4.3"
    )]
    InvalidAttributeType {
        attribute_type: String,
        position: usize,
        dn: String,
    },

    #[error(
        "unterminated escape at position {position} in DN {dn:?}: '\\' must be followed by two \
         hex digits or by the character it escapes"
    )]
    UnterminatedEscape { position: usize, dn: String },

    #[error(
        "invalid hex escape at position {position} in DN {dn:?}: expected two hex digits after \
         '\\'"
    )]
    InvalidHexEscape { position: usize, dn: String },

    #[error(
        "character {character:?} at position {position} must be escaped with '\\' in DN {dn:?}"
    )]
    UnescapedCharacter {
        character: char,
        position: usize,
        dn: String,
    },

    #[error(
        "escaped bytes at position {position} are not valid UTF-8 in DN {dn:?}; binary values \
         must use the #hex form"
    )]
    InvalidUtf8 { position: usize, dn: String },

    #[error("invalid #hex value at position {position} in DN {dn:?}: {problem}")]
    InvalidHexValue {
        problem: &'static str,
        position: usize,
        dn: String,
    },
}

impl DnError {
    /// Byte offset in the input where the problem was found (`None` for an overlong input).
    pub fn position(&self) -> Option<usize> {
        match self {
            DnError::TooLong { .. } => None,
            DnError::TooManyRdns { position, .. }
            | DnError::TooManyAvas { position, .. }
            | DnError::EmptyRdn { position, .. }
            | DnError::MissingEquals { position, .. }
            | DnError::InvalidAttributeType { position, .. }
            | DnError::UnterminatedEscape { position, .. }
            | DnError::InvalidHexEscape { position, .. }
            | DnError::UnescapedCharacter { position, .. }
            | DnError::InvalidUtf8 { position, .. }
            | DnError::InvalidHexValue { position, .. } => Some(*position),
        }
    }
}

/// An attribute value as written in the DN, escapes decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeValue {
    /// A string value, with unescaped leading and trailing spaces removed and case preserved.
    Text(String),
    /// The bytes of a `#hex` (BER-encoded) value.
    Ber(Vec<u8>),
}

impl AttributeValue {
    /// The text of a string value; `None` for a `#hex` value.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            AttributeValue::Text(text) => Some(text),
            AttributeValue::Ber(_) => None,
        }
    }
}

/// One attribute-value assertion (`type=value`, RFC 4514 `attributeTypeAndValue`).
///
/// Equality, hashing and ordering follow the canonical form ([`Ava::normalized_str`]).
#[derive(Clone)]
pub struct Ava {
    attribute_type: String,
    value: AttributeValue,
    normalized: String,
}

impl Ava {
    fn new(attribute_type: String, value: AttributeValue) -> Ava {
        let normalized = match &value {
            AttributeValue::Text(text) => {
                format!(
                    "{attribute_type}={}",
                    escape_value(&prepare_for_matching(text))
                )
            }
            AttributeValue::Ber(bytes) => format!("{attribute_type}=#{}", lower_hex(bytes)),
        };
        Ava {
            attribute_type,
            value,
            normalized,
        }
    }

    /// The canonical attribute type: lower case, well-known OIDs and long names mapped to their
    /// short name (`cn`, `ou`, `dc`…).
    pub fn attribute_type(&self) -> &str {
        &self.attribute_type
    }

    /// The value as written (escapes decoded, original case kept): what to show a person.
    pub fn value(&self) -> &AttributeValue {
        &self.value
    }

    /// The canonical `type=value` text used for comparison.
    pub fn normalized_str(&self) -> &str {
        &self.normalized
    }
}

/// A relative distinguished name: one or more attribute-value assertions, in canonical order.
///
/// Equality, hashing and ordering follow the canonical form ([`Rdn::normalized_str`]).
#[derive(Clone)]
pub struct Rdn {
    avas: Vec<Ava>,
    normalized: String,
}

impl Rdn {
    fn from_avas(mut avas: Vec<Ava>) -> Rdn {
        // An RDN is a set of AVAs: order them canonically and drop exact duplicates.
        avas.sort_by(|a, b| a.normalized.cmp(&b.normalized));
        avas.dedup_by(|a, b| a.normalized == b.normalized);
        let normalized = avas
            .iter()
            .map(|ava| ava.normalized.as_str())
            .collect::<Vec<_>>()
            .join("+");
        Rdn { avas, normalized }
    }

    /// The attribute-value assertions, sorted by their canonical text.
    pub fn avas(&self) -> &[Ava] {
        &self.avas
    }

    /// True for an RDN with more than one AVA, such as `cn=a+uid=b`.
    pub fn is_multi_valued(&self) -> bool {
        self.avas.len() > 1
    }

    /// The value, as written, of the first AVA of the given attribute type, which may be spelled
    /// any way the parser accepts (`CN`, `2.5.4.3`, `commonName`). `None` when there is none or
    /// the type is not a valid attribute type.
    pub fn value_of(&self, attribute_type: &str) -> Option<&AttributeValue> {
        let wanted = canonical_attribute_type(attribute_type.trim_matches(' '))?;
        self.avas
            .iter()
            .find(|ava| ava.attribute_type == wanted)
            .map(|ava| &ava.value)
    }

    /// The canonical text of this RDN (`cn=a+uid=b`).
    pub fn normalized_str(&self) -> &str {
        &self.normalized
    }
}

/// A parsed distinguished name: RDNs, most specific first, as in its string form.
///
/// Equality, hashing and ordering are those of [`Dn::normalized`] (ordering is the byte order of
/// the canonical strings), so a `Dn` can be used directly as a map or set key.
#[derive(Clone)]
pub struct Dn {
    rdns: Vec<Rdn>,
    normalized: String,
}

impl Dn {
    /// The empty DN (the root of the tree), which is what the empty string parses to.
    pub fn root() -> Dn {
        Dn {
            rdns: Vec::new(),
            normalized: String::new(),
        }
    }

    /// Parse the RFC 4514 string form; see the module documentation for what is accepted.
    pub fn parse(s: &str) -> Result<Dn, DnError> {
        if s.len() > MAX_DN_LEN {
            return Err(DnError::TooLong {
                len: s.len(),
                max: MAX_DN_LEN,
                dn: excerpt(s),
            });
        }
        Parser::new(s).parse_dn()
    }

    fn from_rdns(rdns: Vec<Rdn>) -> Dn {
        let normalized = rdns
            .iter()
            .map(|rdn| rdn.normalized.as_str())
            .collect::<Vec<_>>()
            .join(",");
        Dn { rdns, normalized }
    }

    /// The canonical string form: stable, suitable as a map key and for storage. Parsing it
    /// gives back an equal `Dn`.
    pub fn normalized(&self) -> String {
        self.normalized.clone()
    }

    /// The canonical string form, borrowed.
    pub fn normalized_str(&self) -> &str {
        &self.normalized
    }

    /// The RDNs, most specific first (`cn=x` of `cn=x,dc=example`).
    pub fn rdns(&self) -> &[Rdn] {
        &self.rdns
    }

    /// True for the empty (root) DN.
    pub fn is_root(&self) -> bool {
        self.rdns.is_empty()
    }

    /// True when `self` is `base` or lies anywhere below it (`cn=x,ou=a,dc=b` is a descendant of
    /// `ou=a,dc=b`, of `dc=b`, of the root DN and of itself).
    pub fn is_descendant_of(&self, base: &Dn) -> bool {
        // Compare whole RDNs, not string suffixes: `cn=a\,dc=b` ends with the text `,dc=b`
        // without being below `dc=b`.
        self.rdns.len() >= base.rdns.len()
            && self.rdns[self.rdns.len() - base.rdns.len()..] == base.rdns[..]
    }

    /// The DN one level up (`ou=a,dc=b` for `cn=x,ou=a,dc=b`); `None` for the root DN. The parent
    /// of a one-RDN DN is the root DN.
    pub fn parent(&self) -> Option<Dn> {
        let (_, ancestors) = self.rdns.split_first()?;
        Some(Dn::from_rdns(ancestors.to_vec()))
    }
}

impl Default for Dn {
    fn default() -> Dn {
        Dn::root()
    }
}

impl FromStr for Dn {
    type Err = DnError;

    fn from_str(s: &str) -> Result<Dn, DnError> {
        Dn::parse(s)
    }
}

/// Implements equality, hashing, ordering, `Display` and `Debug` through the canonical string
/// held in the `normalized` field, so they can never disagree with it.
macro_rules! by_normalized_form {
    ($type:ident) => {
        impl PartialEq for $type {
            fn eq(&self, other: &$type) -> bool {
                self.normalized == other.normalized
            }
        }

        impl Eq for $type {}

        impl Hash for $type {
            fn hash<H: Hasher>(&self, state: &mut H) {
                self.normalized.hash(state);
            }
        }

        impl PartialOrd for $type {
            fn partial_cmp(&self, other: &$type) -> Option<Ordering> {
                Some(self.cmp(other))
            }
        }

        impl Ord for $type {
            fn cmp(&self, other: &$type) -> Ordering {
                self.normalized.cmp(&other.normalized)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.normalized)
            }
        }

        impl fmt::Debug for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($type), self.normalized)
            }
        }
    };
}

by_normalized_form!(Ava);
by_normalized_form!(Rdn);
by_normalized_form!(Dn);

/// The canonical string form of a DN string (see [`Dn::normalized`]).
pub fn normalize(s: &str) -> Result<String, DnError> {
    Dn::parse(s).map(|dn| dn.normalized)
}

/// The key two spellings of one DN share, for matching a directory's values against each
/// other: the canonical form, or the lower-cased text of a value that is not a DN (a
/// directory may hold such values; they still match themselves).
pub fn comparison_key(s: &str) -> String {
    normalize(s).unwrap_or_else(|_| s.to_lowercase())
}

/// True when both strings parse and name the same DN; false when either does not parse.
pub fn dn_eq(a: &str, b: &str) -> bool {
    match (Dn::parse(a), Dn::parse(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Escape a raw value for use after `type=` in a DN string (RFC 4514 §2.4), so that
/// `format!("cn={}", escape_value(v))` parses back to the value `v`.
///
/// Escaped with a backslash: a leading space or `#`, a trailing space, and `,` `+` `"` `\` `<`
/// `>` `;` `=` anywhere. NUL and the other ASCII control characters are written as hex escapes
/// (`\00`, `\0a`) so that the result is safe to log. Everything else, non-ASCII included, is left
/// as it is.
pub fn escape_value(v: &str) -> String {
    let mut escaped = String::with_capacity(v.len() + 2);
    for (index, character) in v.char_indices() {
        let is_first = index == 0;
        let is_last = index + character.len_utf8() == v.len();
        match character {
            ' ' if is_first || is_last => escaped.push_str("\\ "),
            '#' if is_first => escaped.push_str("\\#"),
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                escaped.push('\\');
                escaped.push(character);
            }
            control if control.is_ascii_control() => {
                escaped.push('\\');
                push_hex_byte(&mut escaped, control as u8);
            }
            other => escaped.push(other),
        }
    }
    escaped
}

/// A well-known attribute type: its OID, the short name used in the canonical form (lower case)
/// and other names that mean the same attribute.
struct KnownAttributeType {
    oid: &'static str,
    name: &'static str,
    aliases: &'static [&'static str],
}

/// Attribute types from the standard schemas ([RFC 4519], PKCS #9) that appear in DNs, so that
/// their OID and long-name spellings compare equal to the short name. `mail` (RFC 4524) and PKCS #9
/// `emailAddress` (the `E=` of certificate subjects) are distinct attributes and stay distinct.
///
/// [RFC 4519]: https://www.rfc-editor.org/rfc/rfc4519
const KNOWN_ATTRIBUTE_TYPES: &[KnownAttributeType] = &[
    KnownAttributeType {
        oid: "2.5.4.3",
        name: "cn",
        aliases: &["commonname"],
    },
    KnownAttributeType {
        oid: "2.5.4.4",
        name: "sn",
        aliases: &["surname"],
    },
    KnownAttributeType {
        oid: "2.5.4.5",
        name: "serialnumber",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.6",
        name: "c",
        aliases: &["countryname"],
    },
    KnownAttributeType {
        oid: "2.5.4.7",
        name: "l",
        aliases: &["localityname"],
    },
    KnownAttributeType {
        oid: "2.5.4.8",
        name: "st",
        aliases: &["stateorprovincename"],
    },
    KnownAttributeType {
        oid: "2.5.4.9",
        name: "street",
        aliases: &["streetaddress"],
    },
    KnownAttributeType {
        oid: "2.5.4.10",
        name: "o",
        aliases: &["organizationname"],
    },
    KnownAttributeType {
        oid: "2.5.4.11",
        name: "ou",
        aliases: &["organizationalunitname"],
    },
    KnownAttributeType {
        oid: "2.5.4.12",
        name: "title",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.17",
        name: "postalcode",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.42",
        name: "givenname",
        aliases: &["gn"],
    },
    KnownAttributeType {
        oid: "2.5.4.43",
        name: "initials",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.44",
        name: "generationqualifier",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.46",
        name: "dnqualifier",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "2.5.4.65",
        name: "pseudonym",
        aliases: &[],
    },
    KnownAttributeType {
        oid: "0.9.2342.19200300.100.1.1",
        name: "uid",
        aliases: &["userid"],
    },
    KnownAttributeType {
        oid: "0.9.2342.19200300.100.1.3",
        name: "mail",
        aliases: &["rfc822mailbox"],
    },
    KnownAttributeType {
        oid: "0.9.2342.19200300.100.1.25",
        name: "dc",
        aliases: &["domaincomponent"],
    },
    KnownAttributeType {
        oid: "1.2.840.113549.1.9.1",
        name: "emailaddress",
        aliases: &["email", "e", "pkcs9email"],
    },
];

/// The canonical spelling of an attribute type, or `None` when `spelling` is neither a name
/// (`descr`) nor a numeric OID (with or without the `OID.` prefix).
///
/// Known types (cn, sn, serialnumber, c, l, st, street, o, ou, title,
/// postalcode, givenname, initials, generationqualifier, dnqualifier, pseudonym, uid, mail, dc,
/// emailaddress) map to their lower-case short name from their OID or any alias; unknown numeric
/// OIDs stay numeric (without the prefix); unknown names are lower-cased.
pub fn canonical_attribute_type(spelling: &str) -> Option<String> {
    let lower = spelling.to_ascii_lowercase();
    let (has_oid_prefix, body) = match lower.strip_prefix("oid.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    if is_numeric_oid(body) {
        let known = KNOWN_ATTRIBUTE_TYPES.iter().find(|known| known.oid == body);
        return Some(known.map_or(body, |known| known.name).to_string());
    }
    if has_oid_prefix || !is_descr(body) {
        return None;
    }
    let known = KNOWN_ATTRIBUTE_TYPES
        .iter()
        .find(|known| known.name == body || known.aliases.contains(&body));
    Some(known.map_or(body, |known| known.name).to_string())
}

/// `descr` of RFC 4512 §1.4: a letter followed by letters, digits and hyphens.
fn is_descr(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic())
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// `numericoid` of RFC 4512 §1.4: at least two dot-separated numbers without leading zeros.
fn is_numeric_oid(s: &str) -> bool {
    let mut arc_count = 0;
    for arc in s.split('.') {
        let well_formed = !arc.is_empty()
            && arc.bytes().all(|b| b.is_ascii_digit())
            && (arc == "0" || !arc.starts_with('0'));
        if !well_formed {
            return false;
        }
        arc_count += 1;
    }
    arc_count >= 2
}

/// The form of a string value that matching compares: the Map and Insignificant Space steps of
/// RFC 4518 for `caseIgnoreMatch`, with lower-casing standing in for case folding.
fn prepare_for_matching(value: &str) -> String {
    let mut prepared = String::with_capacity(value.len());
    let mut space_pending = false;
    for character in value.chars() {
        if character.is_whitespace() {
            // Leading spaces are dropped; a run between words becomes one space, written only
            // once the next word starts, so trailing spaces are dropped too.
            space_pending = !prepared.is_empty();
        } else if !is_mapped_to_nothing(character) {
            if space_pending {
                prepared.push(' ');
                space_pending = false;
            }
            push_case_folded(character, &mut prepared);
        }
    }
    prepared
}

/// Lower-case one character. Final sigma is folded to the ordinary sigma so that, as with Unicode
/// case folding, "ΟΔΟΣ", "οδος" and "οδοσ" compare equal.
fn push_case_folded(character: char, out: &mut String) {
    if character == 'ς' {
        out.push('σ');
    } else {
        out.extend(character.to_lowercase());
    }
}

/// Characters RFC 4518 §2.2 maps to nothing: controls (other than the white-space ones, which
/// become spaces), format characters, variation selectors and the zero-width space. They are
/// invisible and often creep in through copy and paste.
fn is_mapped_to_nothing(character: char) -> bool {
    matches!(
        character,
        '\u{0000}'..='\u{0008}'
            | '\u{000E}'..='\u{001F}'
            | '\u{007F}'..='\u{0084}'
            | '\u{0086}'..='\u{009F}'
            | '\u{00AD}'
            | '\u{034F}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{1806}'
            | '\u{180B}'..='\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2063}'
            | '\u{206A}'..='\u{206F}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFC}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

fn push_hex_byte(out: &mut String, byte: u8) {
    const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
    out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
}

fn lower_hex(bytes: &[u8]) -> String {
    let mut hex = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        push_hex_byte(&mut hex, byte);
    }
    hex
}

fn hex_digit_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        b'A'..=b'F' => digit - b'A' + 10,
        _ => 0,
    }
}

/// The start of `dn` for an error message, cut at a character boundary.
fn excerpt(dn: &str) -> String {
    if dn.len() <= ERROR_EXCERPT_LEN {
        return dn.to_string();
    }
    let mut end = ERROR_EXCERPT_LEN;
    while !dn.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &dn[..end])
}

fn is_rdn_separator(byte: u8) -> bool {
    byte == b',' || byte == b';'
}

/// Ends the value of an AVA: an RDN separator or the `+` between the AVAs of one RDN.
fn is_ava_terminator(byte: u8) -> bool {
    is_rdn_separator(byte) || byte == b'+'
}

/// A single pass over the input. Every syntax character is ASCII, so the parser walks bytes; a
/// byte at which it stops or slices is always ASCII or the end, hence a character boundary.
struct Parser<'a> {
    input: &'a str,
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Parser<'a> {
        Parser {
            input,
            bytes: input.as_bytes(),
            position: 0,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.position).copied()
    }

    fn skip_spaces(&mut self) {
        while self.peek() == Some(b' ') {
            self.position += 1;
        }
    }

    fn dn_excerpt(&self) -> String {
        excerpt(self.input)
    }

    fn parse_dn(mut self) -> Result<Dn, DnError> {
        self.skip_spaces();
        if self.peek().is_none() {
            return Ok(Dn::root());
        }
        let mut rdns = Vec::new();
        loop {
            if rdns.len() == MAX_RDNS {
                return Err(DnError::TooManyRdns {
                    max: MAX_RDNS,
                    position: self.position,
                    dn: self.dn_excerpt(),
                });
            }
            rdns.push(self.parse_rdn()?);
            // `parse_ava` only returns at the end of input or before a terminator, and
            // `parse_rdn` consumes the `+`, so what is left here is a separator or nothing.
            // Anything else is refused rather than silently ignored.
            match self.peek() {
                None => break,
                Some(byte) if is_rdn_separator(byte) => self.position += 1,
                Some(_) => {
                    return Err(DnError::UnescapedCharacter {
                        character: self
                            .input
                            .get(self.position..)
                            .and_then(|rest| rest.chars().next())
                            .unwrap_or(char::REPLACEMENT_CHARACTER),
                        position: self.position,
                        dn: self.dn_excerpt(),
                    })
                }
            }
        }
        Ok(Dn::from_rdns(rdns))
    }

    fn parse_rdn(&mut self) -> Result<Rdn, DnError> {
        let mut avas = Vec::new();
        loop {
            if avas.len() == MAX_AVAS_PER_RDN {
                return Err(DnError::TooManyAvas {
                    max: MAX_AVAS_PER_RDN,
                    position: self.position,
                    dn: self.dn_excerpt(),
                });
            }
            avas.push(self.parse_ava()?);
            if self.peek() == Some(b'+') {
                self.position += 1;
            } else {
                break;
            }
        }
        Ok(Rdn::from_avas(avas))
    }

    fn parse_ava(&mut self) -> Result<Ava, DnError> {
        self.skip_spaces();
        match self.peek() {
            None => return Err(self.empty_rdn()),
            Some(byte) if is_ava_terminator(byte) => return Err(self.empty_rdn()),
            Some(_) => {}
        }
        let attribute_type = self.parse_attribute_type()?;
        self.skip_spaces();
        let value = if self.peek() == Some(b'#') {
            AttributeValue::Ber(self.parse_hex_value()?)
        } else {
            AttributeValue::Text(self.parse_string_value()?)
        };
        Ok(Ava::new(attribute_type, value))
    }

    fn empty_rdn(&self) -> DnError {
        DnError::EmptyRdn {
            position: self.position,
            dn: self.dn_excerpt(),
        }
    }

    /// Reads up to and including the `=`, and returns the canonical type.
    fn parse_attribute_type(&mut self) -> Result<String, DnError> {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if byte == b'=' || is_ava_terminator(byte) {
                break;
            }
            self.position += 1;
        }
        if self.peek() != Some(b'=') {
            return Err(DnError::MissingEquals {
                position: self.position,
                dn: self.dn_excerpt(),
            });
        }
        let spelling = self
            .input
            .get(start..self.position)
            .unwrap_or_default()
            .trim_end_matches(' ');
        self.position += 1;
        canonical_attribute_type(spelling).ok_or_else(|| DnError::InvalidAttributeType {
            attribute_type: spelling.to_string(),
            position: start,
            dn: self.dn_excerpt(),
        })
    }

    /// `#` followed by hex digit pairs, then optional spaces before the next terminator.
    fn parse_hex_value(&mut self) -> Result<Vec<u8>, DnError> {
        let hash_position = self.position;
        self.position += 1;
        let digits_start = self.position;
        while self.peek().is_some_and(|byte| byte.is_ascii_hexdigit()) {
            self.position += 1;
        }
        let digits = self
            .bytes
            .get(digits_start..self.position)
            .unwrap_or_default();
        let problem = if digits.is_empty() {
            Some("'#' must be followed by hex digits (escape a literal leading '#' as \\#)")
        } else if digits.len() % 2 == 1 {
            Some("odd number of hex digits")
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(DnError::InvalidHexValue {
                problem,
                position: hash_position,
                dn: self.dn_excerpt(),
            });
        }
        self.skip_spaces();
        if self.peek().is_some_and(|byte| !is_ava_terminator(byte)) {
            return Err(DnError::InvalidHexValue {
                problem: "unexpected character after the hex digits (escape a literal leading \
                          '#' as \\#)",
                position: self.position,
                dn: self.dn_excerpt(),
            });
        }
        Ok(digits
            .chunks_exact(2)
            .map(|pair| (hex_digit_value(pair[0]) << 4) | hex_digit_value(pair[1]))
            .collect())
    }

    /// A string value up to the next terminator, escapes decoded, unescaped trailing spaces
    /// dropped (leading ones were skipped by the caller).
    fn parse_string_value(&mut self) -> Result<String, DnError> {
        let mut decoded: Vec<u8> = Vec::new();
        // Input position of each decoded byte, to point an invalid UTF-8 error at its escape.
        let mut origins: Vec<usize> = Vec::new();
        // Length of `decoded` up to its last byte that is not an unescaped space.
        let mut significant_len = 0;
        while let Some(byte) = self.peek() {
            let start = self.position;
            match byte {
                _ if is_ava_terminator(byte) => break,
                b'\\' => {
                    self.parse_escape(&mut decoded)?;
                    origins.resize(decoded.len(), start);
                    significant_len = decoded.len();
                }
                b'"' | b'<' | b'>' | 0 => {
                    return Err(DnError::UnescapedCharacter {
                        character: char::from(byte),
                        position: start,
                        dn: self.dn_excerpt(),
                    });
                }
                _ => {
                    decoded.push(byte);
                    origins.push(start);
                    self.position += 1;
                    if byte != b' ' {
                        significant_len = decoded.len();
                    }
                }
            }
        }
        decoded.truncate(significant_len);
        String::from_utf8(decoded).map_err(|error| {
            let first_bad_byte = error.utf8_error().valid_up_to();
            DnError::InvalidUtf8 {
                position: origins
                    .get(first_bad_byte)
                    .copied()
                    .unwrap_or(self.position),
                dn: self.dn_excerpt(),
            }
        })
    }

    /// Decodes the escape at the current position (a `\`) into `decoded`.
    fn parse_escape(&mut self, decoded: &mut Vec<u8>) -> Result<(), DnError> {
        let backslash_position = self.position;
        let unterminated = || DnError::UnterminatedEscape {
            position: backslash_position,
            dn: self.dn_excerpt(),
        };
        let first = *self
            .bytes
            .get(backslash_position + 1)
            .ok_or_else(unterminated)?;
        if first.is_ascii_hexdigit() {
            let second = *self
                .bytes
                .get(backslash_position + 2)
                .ok_or_else(unterminated)?;
            if !second.is_ascii_hexdigit() {
                return Err(DnError::InvalidHexEscape {
                    position: backslash_position,
                    dn: self.dn_excerpt(),
                });
            }
            decoded.push((hex_digit_value(first) << 4) | hex_digit_value(second));
            self.position = backslash_position + 3;
        } else {
            // Any other escaped character stands for itself; it may be multi-byte.
            let escaped = self
                .input
                .get(backslash_position + 1..)
                .and_then(|rest| rest.chars().next())
                .ok_or_else(unterminated)?;
            let mut buffer = [0u8; 4];
            decoded.extend_from_slice(escaped.encode_utf8(&mut buffer).as_bytes());
            self.position = backslash_position + 1 + escaped.len_utf8();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, HashMap};

    fn dn(s: &str) -> Dn {
        match Dn::parse(s) {
            Ok(dn) => dn,
            Err(error) => panic!("{s:?} should parse: {error}"),
        }
    }

    fn parse_error(s: &str) -> DnError {
        match Dn::parse(s) {
            Ok(dn) => panic!("{s:?} should not parse, got {dn:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn equal_pairs() {
        let cases: &[(&str, &str, &str)] = &[
            // (why, a, b)
            (
                "case and spaces after separators",
                "CN=Admins, OU=Groups,DC=Example,DC=com",
                "cn=admins,ou=groups,dc=example,dc=com",
            ),
            (
                "backslash escape equals hex escape",
                "uid=comma\\2Cuser,ou=People",
                "uid=comma\\,user,ou=People",
            ),
            ("lower-case hex escape", "cn=a\\2cb", "cn=a\\,b"),
            ("hex escape of a plain letter", "cn=\\41dmins", "cn=Admins"),
            ("spaces around =", "cn = admins", "cn=admins"),
            ("spaces around ,", "cn=a , dc=b", "cn=a,dc=b"),
            ("spaces around +", "cn=a + uid=b", "cn=a+uid=b"),
            (
                "leading and trailing spaces",
                "   cn=a,dc=b   ",
                "cn=a,dc=b",
            ),
            ("semicolon separator", "cn=a;dc=b", "cn=a,dc=b"),
            ("semicolon with spaces", "cn=a ; dc=b", "cn=a,dc=b"),
            ("OID for cn", "2.5.4.3=Admins", "cn=admins"),
            ("OID. prefix", "OID.2.5.4.3=x", "CN=x"),
            ("lower-case oid. prefix", "oid.2.5.4.11=x", "ou=x"),
            ("dc OID", "0.9.2342.19200300.100.1.25=com", "dc=com"),
            ("uid OID", "0.9.2342.19200300.100.1.1=jdoe", "uid=jdoe"),
            (
                "c, l, st, street OIDs",
                "2.5.4.6=DE+2.5.4.7=Bonn+2.5.4.8=NRW+2.5.4.9=Main St",
                "c=de+l=bonn+st=nrw+street=main st",
            ),
            ("o OID", "2.5.4.10=Acme", "o=acme"),
            ("serialNumber OID", "2.5.4.5=42", "SERIALNUMBER=42"),
            (
                "emailAddress aliases",
                "E=a@example.com",
                "1.2.840.113549.1.9.1=a@example.com",
            ),
            (
                "email alias",
                "email=a@example.com",
                "emailAddress=A@example.com",
            ),
            (
                "long names",
                "commonName=a,organizationalUnitName=b,domainComponent=c",
                "cn=a,ou=b,dc=c",
            ),
            ("userid alias", "userid=jdoe", "UID=jdoe"),
            (
                "unknown type is case-insensitive",
                "x-Custom=v",
                "X-CUSTOM=v",
            ),
            (
                "unknown OID kept",
                "1.3.6.1.4.1.99.7=V",
                "1.3.6.1.4.1.99.7=v",
            ),
            ("unicode case", "cn=ÉQUIPE", "cn=équipe"),
            (
                "hex escapes decode as UTF-8",
                "cn=\\c3\\a9quipe",
                "cn=équipe",
            ),
            (
                "hex escapes of upper-case letters",
                "cn=\\C3\\89QUIPE",
                "cn=équipe",
            ),
            ("final sigma", "cn=ΟΔΟΣ", "cn=οδος"),
            (
                "internal space runs collapse",
                "cn=Domain   Admins",
                "cn=domain admins",
            ),
            (
                "tab and no-break space are spaces",
                "cn=Domain\t\u{a0}Admins",
                "cn=domain admins",
            ),
            (
                "escaped spaces are still insignificant at the ends",
                "cn=\\ a\\ ",
                "cn=a",
            ),
            ("hex-escaped space", "cn=a\\20\\20b", "cn=a b"),
            (
                "zero-width space and soft hyphen dropped",
                "cn=Ad\u{200b}mi\u{ad}ns",
                "cn=admins",
            ),
            ("byte-order mark dropped", "cn=\u{feff}admins", "cn=admins"),
            (
                "escaped NUL dropped as a control character",
                "cn=a\\00b",
                "cn=ab",
            ),
            ("unescaped = allowed in a value", "cn=a=b", "cn=a\\=b"),
            ("escaped leading #", "cn=\\#1", "cn=\\231"),
            ("# inside a value needs no escape", "cn=a#1", "cn=a\\#1"),
            ("escaped ordinary character", "cn=a\\/b", "cn=a/b"),
            ("escaped non-ASCII character", "cn=\\é", "cn=é"),
            ("hex values compare by bytes", "cn=#0C0161", "cn=#0c0161"),
            (
                "spaces after a hex value",
                "cn=#0c0161 ,dc=b",
                "cn=#0c0161,dc=b",
            ),
            (
                "multi-valued RDN order",
                "cn=a+uid=b,dc=c",
                "uid=b+cn=a,dc=c",
            ),
            (
                "multi-valued RDN of three",
                "o=x+cn=a+uid=b",
                "uid=b+o=x+cn=a",
            ),
            ("duplicate AVA collapses", "cn=a+cn=A", "cn=a"),
            ("empty DN", "", "   "),
            ("empty value", "cn=,dc=b", "CN= ,DC=b"),
            (
                "escaped special characters",
                "cn=\\\"\\<\\>\\;\\+",
                "cn=\\22\\3c\\3e\\3b\\2b",
            ),
        ];
        for (why, a, b) in cases {
            assert!(dn_eq(a, b), "{why}: {a:?} should equal {b:?}");
            assert_eq!(dn(a), dn(b), "{why}");
            assert_eq!(normalize(a).ok(), normalize(b).ok(), "{why}");
        }
    }

    #[test]
    fn unequal_pairs() {
        let cases: &[(&str, &str, &str)] = &[
            ("different parent", "cn=a,dc=b", "cn=a,dc=c"),
            ("different type", "cn=a", "ou=a"),
            (
                "multi-valued RDN is not two RDNs",
                "cn=a+uid=b",
                "cn=a,uid=b",
            ),
            (
                "escaped comma is not a separator",
                "cn=a\\,cn=b",
                "cn=a,cn=b",
            ),
            (
                "escaped plus is not a separator",
                "cn=a\\+uid=b",
                "cn=a+uid=b",
            ),
            ("RDN order matters", "cn=a,dc=b", "dc=b,cn=a"),
            ("spaces inside a value are kept", "cn=a b", "cn=ab"),
            ("hex value never equals a string", "cn=#0c0161", "cn=a"),
            ("hex value bytes", "cn=#0c0161", "cn=#0c0162"),
            (
                "mail is not emailAddress",
                "mail=a@example.com",
                "emailAddress=a@example.com",
            ),
            ("child is not parent", "cn=a,dc=b", "dc=b"),
            ("root is not a DN with RDNs", "", "dc=b"),
            ("no Unicode normalisation", "cn=\u{e9}", "cn=e\u{301}"),
            ("unknown OID is not a name", "1.3.6.1.4.1.99.7=v", "cn=v"),
            ("invalid a", "cn=a\\", "cn=a\\"),
            ("invalid b", "cn=a", "Admins"),
        ];
        for (why, a, b) in cases {
            assert!(!dn_eq(a, b), "{why}: {a:?} should not equal {b:?}");
        }
    }

    #[test]
    fn normalized_forms() {
        let cases: &[(&str, &str)] = &[
            (
                "CN=Admins, OU=Groups,DC=Example,DC=com",
                "cn=admins,ou=groups,dc=example,dc=com",
            ),
            ("uid=comma\\2Cuser,ou=People", "uid=comma\\,user,ou=people"),
            ("OID.2.5.4.3=X ; 2.5.4.10=Acme", "cn=x,o=acme"),
            ("uid=b+cn=a", "cn=a+uid=b"),
            ("cn=#0C0161", "cn=#0c0161"),
            ("cn=\\#1", "cn=\\#1"),
            ("cn=a=b", "cn=a\\=b"),
            ("cn=\\\\", "cn=\\\\"),
            ("cn=Émile  Zola", "cn=émile zola"),
            ("", ""),
            ("cn=", "cn="),
            ("1.3.6.1.4.1.99.7=V", "1.3.6.1.4.1.99.7=v"),
            ("X-Custom-Attr=V", "x-custom-attr=v"),
            (
                "cn=a\\\"b\\<c\\>d\\;e\\+f\\,g",
                "cn=a\\\"b\\<c\\>d\\;e\\+f\\,g",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize(input).as_deref(), Ok(*expected), "{input:?}");
            assert_eq!(dn(input).to_string(), *expected, "Display of {input:?}");
            assert_eq!(dn(input).normalized(), *expected);
            assert_eq!(dn(input).normalized_str(), *expected);
        }
    }

    #[test]
    fn error_messages() {
        let cases: &[(&str, &str)] = &[
            (
                "cn=admins\\",
                "unterminated escape at position 9 in DN \"cn=admins\\\\\": '\\' must be \
                 followed by two hex digits or by the character it escapes",
            ),
            (
                "cn=a\\4",
                "unterminated escape at position 4 in DN \"cn=a\\\\4\": '\\' must be followed by \
                 two hex digits or by the character it escapes",
            ),
            (
                "cn=a\\4x",
                "invalid hex escape at position 4 in DN \"cn=a\\\\4x\": expected two hex digits \
                 after '\\'",
            ),
            (
                "Admins",
                "missing '=' after the attribute type at position 6 in DN \"Admins\"",
            ),
            (
                "cn=a,Admins,dc=b",
                "missing '=' after the attribute type at position 11 in DN \"cn=a,Admins,dc=b\"",
            ),
            (
                "cn=a,,dc=b",
                "expected attribute=value at position 5 in DN \"cn=a,,dc=b\" (empty RDN, or a \
                 stray ',', ';' or '+'; escape a literal one with '\\')",
            ),
            (
                "cn=a,",
                "expected attribute=value at position 5 in DN \"cn=a,\" (empty RDN, or a stray \
                 ',', ';' or '+'; escape a literal one with '\\')",
            ),
            (
                ",cn=a",
                "expected attribute=value at position 0 in DN \",cn=a\" (empty RDN, or a stray \
                 ',', ';' or '+'; escape a literal one with '\\')",
            ),
            (
                "cn=C++ Devs",
                "expected attribute=value at position 5 in DN \"cn=C++ Devs\" (empty RDN, or a \
                 stray ',', ';' or '+'; escape a literal one with '\\')",
            ),
            (
                "c n=a",
                "invalid attribute type \"c n\" at position 0 in DN \"c n=a\": expected a name \
                 such as cn or a numeric OID such as 2.5.4.3",
            ),
            (
                "cn=a, =b",
                "invalid attribute type \"\" at position 6 in DN \"cn=a, =b\": expected a name \
                 such as cn or a numeric OID such as 2.5.4.3",
            ),
            (
                "2.5.04.3=a",
                "invalid attribute type \"2.5.04.3\" at position 0 in DN \"2.5.04.3=a\": expected \
                 a name such as cn or a numeric OID such as 2.5.4.3",
            ),
            (
                "OID.cn=a",
                "invalid attribute type \"OID.cn\" at position 0 in DN \"OID.cn=a\": expected a \
                 name such as cn or a numeric OID such as 2.5.4.3",
            ),
            (
                "cn=a<b",
                "character '<' at position 4 must be escaped with '\\' in DN \"cn=a<b\"",
            ),
            (
                "cn=\"a,b\"",
                "character '\"' at position 3 must be escaped with '\\' in DN \"cn=\\\"a,b\\\"\"",
            ),
            (
                "cn=a\u{0}",
                "character '\\0' at position 4 must be escaped with '\\' in DN \"cn=a\\0\"",
            ),
            (
                "cn=caf\\e9",
                "escaped bytes at position 6 are not valid UTF-8 in DN \"cn=caf\\\\e9\"; binary \
                 values must use the #hex form",
            ),
            (
                "cn=#",
                "invalid #hex value at position 3 in DN \"cn=#\": '#' must be followed by hex \
                 digits (escape a literal leading '#' as \\#)",
            ),
            (
                "cn=#abc",
                "invalid #hex value at position 3 in DN \"cn=#abc\": odd number of hex digits",
            ),
            (
                "cn=#0c01 61",
                "invalid #hex value at position 9 in DN \"cn=#0c01 61\": unexpected character \
                 after the hex digits (escape a literal leading '#' as \\#)",
            ),
            (
                "cn=#1 Fans",
                "invalid #hex value at position 3 in DN \"cn=#1 Fans\": odd number of hex digits",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_error(input).to_string(), *expected, "{input:?}");
        }
    }

    #[test]
    fn error_positions_point_at_the_problem() {
        assert_eq!(parse_error("cn=admins\\").position(), Some(9));
        // Invalid UTF-8 from a mix of escapes and raw text points at the escape.
        assert_eq!(parse_error("cn=ok,cn=x\\c3y").position(), Some(10));
        assert_eq!(parse_error("cn=é\\a9").position(), Some(5));
        assert_eq!(
            parse_error(&"a".repeat(MAX_DN_LEN + 1)).position(),
            None,
            "overlong input has no position"
        );
    }

    #[test]
    fn overlong_input_is_refused() {
        let value = "x".repeat(MAX_DN_LEN - 3);
        assert!(
            Dn::parse(&format!("cn={value}")).is_ok(),
            "exactly the limit"
        );
        let too_long = format!("cn={value}x");
        assert_eq!(
            parse_error(&too_long).to_string(),
            format!(
                "DN is {} bytes long; at most {MAX_DN_LEN} bytes are accepted \
                 (DN starts \"cn={}…\")",
                MAX_DN_LEN + 1,
                "x".repeat(ERROR_EXCERPT_LEN - 3)
            )
        );
    }

    #[test]
    fn too_many_rdns_is_refused() {
        let at_limit = vec!["dc=x"; MAX_RDNS].join(",");
        assert_eq!(dn(&at_limit).rdns().len(), MAX_RDNS);
        let over = format!("{at_limit},dc=y");
        let error = parse_error(&over);
        assert!(matches!(error, DnError::TooManyRdns { max: MAX_RDNS, .. }));
        assert_eq!(error.position(), Some(at_limit.len() + 1));
        assert!(error.to_string().starts_with(&format!(
            "DN has more than {MAX_RDNS} RDNs (limit reached at position"
        )));
        // The message quotes only the start of a long DN.
        assert!(error.to_string().ends_with("…\""), "{error}");
    }

    #[test]
    fn too_many_avas_is_refused() {
        let at_limit: Vec<String> = (0..MAX_AVAS_PER_RDN).map(|i| format!("cn=v{i}")).collect();
        let at_limit = at_limit.join("+");
        assert_eq!(dn(&at_limit).rdns()[0].avas().len(), MAX_AVAS_PER_RDN);
        let error = parse_error(&format!("{at_limit}+cn=last"));
        assert!(matches!(
            error,
            DnError::TooManyAvas {
                max: MAX_AVAS_PER_RDN,
                ..
            }
        ));
        assert!(error.to_string().starts_with(&format!(
            "RDN has more than {MAX_AVAS_PER_RDN} attribute-value assertions"
        )));
    }

    #[test]
    fn error_excerpt_cuts_at_a_character_boundary() {
        let long = "é".repeat(ERROR_EXCERPT_LEN);
        let cut = excerpt(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() <= ERROR_EXCERPT_LEN + '…'.len_utf8());
    }

    #[test]
    fn empty_string_is_the_root_dn() {
        let root = dn("");
        assert!(root.is_root());
        assert!(root.rdns().is_empty());
        assert_eq!(root, Dn::root());
        assert_eq!(root, Dn::default());
        assert_eq!(root.normalized(), "");
        assert_eq!(root.parent(), None);
    }

    #[test]
    fn rdns_are_most_specific_first_and_keep_written_values() {
        let parsed = dn("CN=Domain Admins+UID=da, OU=Groups , DC=Example");
        let rdns = parsed.rdns();
        assert_eq!(rdns.len(), 3);
        assert!(rdns[0].is_multi_valued());
        assert!(!rdns[1].is_multi_valued());
        assert_eq!(rdns[0].normalized_str(), "cn=domain admins+uid=da");
        assert_eq!(rdns[1].to_string(), "ou=groups");
        let cn = rdns[0].value_of("cn").and_then(AttributeValue::as_text);
        assert_eq!(cn, Some("Domain Admins"));
        assert_eq!(
            rdns[0].value_of("2.5.4.3"),
            Some(&AttributeValue::Text("Domain Admins".to_string()))
        );
        assert_eq!(
            rdns[0]
                .value_of("OID.0.9.2342.19200300.100.1.1")
                .and_then(AttributeValue::as_text),
            Some("da")
        );
        assert_eq!(rdns[0].value_of("ou"), None);
        assert_eq!(rdns[0].value_of("not a type"), None);
        let first = &rdns[0].avas()[0];
        assert_eq!(first.attribute_type(), "cn");
        assert_eq!(first.normalized_str(), "cn=domain admins");
        assert_eq!(rdns[2].avas()[0].value().as_text(), Some("Example"));
    }

    #[test]
    fn written_values_decode_escapes_and_drop_unescaped_edge_spaces() {
        let cases: &[(&str, AttributeValue)] = &[
            ("cn=  a b  ", AttributeValue::Text("a b".into())),
            ("cn=\\ a\\ ", AttributeValue::Text(" a ".into())),
            ("cn=a \\  ", AttributeValue::Text("a  ".into())),
            ("cn=\\c3\\a9", AttributeValue::Text("é".into())),
            (
                "cn=comma\\2Cuser",
                AttributeValue::Text("comma,user".into()),
            ),
            ("cn=#0C0161", AttributeValue::Ber(vec![0x0c, 0x01, 0x61])),
            ("cn=", AttributeValue::Text(String::new())),
        ];
        for (input, expected) in cases {
            assert_eq!(dn(input).rdns()[0].avas()[0].value(), expected, "{input:?}");
        }
        assert_eq!(AttributeValue::Ber(vec![1]).as_text(), None);
    }

    #[test]
    fn descendants_and_parents() {
        let member = dn("CN=Alice,OU=People,DC=Example,DC=com");
        let people = dn("ou=people,dc=example,dc=com");
        let example = dn("dc=example,dc=com");
        let other = dn("dc=other,dc=com");
        assert!(member.is_descendant_of(&people));
        assert!(member.is_descendant_of(&example));
        assert!(
            member.is_descendant_of(&member),
            "a DN is a descendant of itself"
        );
        assert!(member.is_descendant_of(&Dn::root()));
        assert!(Dn::root().is_descendant_of(&Dn::root()));
        assert!(!member.is_descendant_of(&other));
        assert!(
            !example.is_descendant_of(&member),
            "an ancestor is not a descendant"
        );
        assert!(!Dn::root().is_descendant_of(&example));
        // A suffix of the text is not a suffix of the RDNs.
        assert!(!dn("cn=a\\,dc=com").is_descendant_of(&dn("dc=com")));
        assert!(!dn("cn=x,dc=a+dc=b").is_descendant_of(&dn("dc=b")));

        assert_eq!(member.parent(), Some(people.clone()));
        assert_eq!(people.parent(), Some(example.clone()));
        assert_eq!(dn("dc=com").parent(), Some(Dn::root()));
        assert_eq!(
            member
                .parent()
                .and_then(|p| p.parent())
                .map(|p| p.normalized()),
            Some("dc=example,dc=com".to_string())
        );
    }

    #[test]
    fn from_str_display_and_debug() {
        let parsed: Dn = "CN=A, DC=B".parse().expect("parses");
        assert_eq!(parsed.to_string(), "cn=a,dc=b");
        assert_eq!(format!("{parsed:?}"), "Dn(\"cn=a,dc=b\")");
        assert_eq!(format!("{:?}", parsed.rdns()[0]), "Rdn(\"cn=a\")");
        assert!("cn=a\\".parse::<Dn>().is_err());
    }

    #[test]
    fn usable_as_a_map_key_and_ordered_like_the_normalized_string() {
        let mut local_groups = HashMap::new();
        local_groups.insert(
            dn("CN=Admins,OU=Groups,DC=Example,DC=com"),
            "Administrators",
        );
        assert_eq!(
            local_groups.get(&dn("cn=admins, ou=groups; dc=example, dc=com")),
            Some(&"Administrators")
        );

        let inputs = ["ou=b,dc=x", "CN=Z", "cn=a,dc=x", "OU=B, DC=X", ""];
        let sorted: Vec<String> = inputs
            .iter()
            .map(|s| dn(s))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|d| d.normalized())
            .collect();
        let mut expected: Vec<String> = inputs.iter().filter_map(|s| normalize(s).ok()).collect();
        expected.sort();
        expected.dedup();
        assert_eq!(sorted, expected);
    }

    #[test]
    fn escape_value_table() {
        let cases: &[(&str, &str)] = &[
            ("", ""),
            ("plain", "plain"),
            (" lead", "\\ lead"),
            ("trail ", "trail\\ "),
            (" ", "\\ "),
            ("  ", "\\ \\ "),
            ("a  b", "a  b"),
            ("#first", "\\#first"),
            ("not#first", "not#first"),
            ("a,b+c\"d\\e<f>g;h=i", "a\\,b\\+c\\\"d\\\\e\\<f\\>g\\;h\\=i"),
            ("nul\0", "nul\\00"),
            ("tab\tnew\nline", "tab\\09new\\0aline"),
            ("del\u{7f}", "del\\7f"),
            ("équipe ✓", "équipe ✓"),
        ];
        for (raw, expected) in cases {
            assert_eq!(escape_value(raw), *expected, "{raw:?}");
        }
    }

    #[test]
    fn attribute_type_spellings() {
        let cases: &[(&str, Option<&str>)] = &[
            ("CN", Some("cn")),
            ("2.5.4.3", Some("cn")),
            ("OID.2.5.4.3", Some("cn")),
            ("oid.2.5.4.3", Some("cn")),
            ("commonName", Some("cn")),
            ("2.5.4.11", Some("ou")),
            ("2.5.4.10", Some("o")),
            ("0.9.2342.19200300.100.1.25", Some("dc")),
            ("0.9.2342.19200300.100.1.1", Some("uid")),
            ("2.5.4.6", Some("c")),
            ("2.5.4.7", Some("l")),
            ("2.5.4.8", Some("st")),
            ("2.5.4.9", Some("street")),
            ("1.2.840.113549.1.9.1", Some("emailaddress")),
            ("2.5.4.5", Some("serialnumber")),
            ("serialNumber", Some("serialnumber")),
            ("0.9.2342.19200300.100.1.3", Some("mail")),
            ("rfc822Mailbox", Some("mail")),
            ("1.3.6.1.4.1.99", Some("1.3.6.1.4.1.99")),
            ("OID.1.3.6.1.4.1.99", Some("1.3.6.1.4.1.99")),
            ("x-Attr-2", Some("x-attr-2")),
            ("", None),
            ("1", None),
            ("1.", None),
            ("1..2", None),
            ("01.2", None),
            ("2cn", None),
            ("-cn", None),
            ("c_n", None),
            ("OID.", None),
            ("OID.cn", None),
            ("cé", None),
        ];
        for (spelling, expected) in cases {
            assert_eq!(
                canonical_attribute_type(spelling).as_deref(),
                *expected,
                "{spelling:?}"
            );
        }
    }

    /// Exhaustive over every Unicode scalar value: preparing a value twice changes nothing, which
    /// is what makes the canonical form a fixed point.
    #[test]
    fn prepare_for_matching_is_idempotent_for_every_character() {
        let mut buffer = [0u8; 4];
        for character in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let single: &str = character.encode_utf8(&mut buffer);
            let once = prepare_for_matching(single);
            assert_eq!(
                prepare_for_matching(&once),
                once,
                "U+{:04X}",
                u32::from(character)
            );
            let framed = format!("a{single}b");
            let once = prepare_for_matching(&framed);
            assert_eq!(
                prepare_for_matching(&once),
                once,
                "U+{:04X}",
                u32::from(character)
            );
        }
    }

    /// Characters that exercise every branch of the grammar.
    fn tricky_character() -> impl Strategy<Value = char> {
        prop_oneof![
            4 => prop::sample::select(vec![
                ' ', ',', '+', ';', '=', '#', '"', '\\', '<', '>', '\0', '\t', '\u{a0}', '\u{200b}',
                'a', 'B', 'é', 'Σ', 'ς', 'İ', '1', 'f', '.', '-', '\u{301}', '😀',
            ]),
            1 => any::<char>(),
        ]
    }

    fn tricky_string(max_len: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(tricky_character(), 0..max_len)
            .prop_map(|cs| cs.into_iter().collect())
    }

    /// Spellings of one attribute type that must all normalise alike.
    const TYPE_SPELLINGS: &[&[&str]] = &[
        &["cn", "CN", "Cn", "2.5.4.3", "OID.2.5.4.3", "commonName"],
        &["ou", "OU", "2.5.4.11", "oid.2.5.4.11"],
        &["dc", "DC", "0.9.2342.19200300.100.1.25", "domainComponent"],
        &["uid", "UID", "0.9.2342.19200300.100.1.1", "userid"],
        &["x-custom", "X-Custom"],
        &["1.3.6.1.4.1.99.1", "OID.1.3.6.1.4.1.99.1"],
    ];

    #[derive(Debug, Clone)]
    enum LogicalValue {
        Text(String),
        Ber(Vec<u8>),
    }

    /// A DN as a structure: for each RDN, its AVAs as (attribute type index, value).
    type LogicalDn = Vec<Vec<(usize, LogicalValue)>>;

    fn logical_dn() -> impl Strategy<Value = LogicalDn> {
        let value = prop_oneof![
            4 => tricky_string(8).prop_map(LogicalValue::Text),
            1 => prop::collection::vec(any::<u8>(), 1..6).prop_map(LogicalValue::Ber),
        ];
        let ava = (0..TYPE_SPELLINGS.len(), value);
        prop::collection::vec(prop::collection::vec(ava, 1..4), 0..5)
    }

    /// Writes a logical DN in one of the many ways the parser must accept, choosing spellings,
    /// escape styles, spacing and separators from `choices`.
    fn spell(logical: &LogicalDn, choices: &[u8]) -> String {
        let mut choice = choices.iter().copied().cycle();
        let mut next = move || usize::from(choice.next().unwrap_or(0));
        let mut out = String::new();
        for (rdn_index, rdn) in logical.iter().enumerate() {
            if rdn_index > 0 {
                out.push_str([",", ";", " , ", ", ", " ;"][next() % 5]);
            }
            // AVA order inside an RDN does not matter: rotate it.
            let rotation = if rdn.is_empty() {
                0
            } else {
                next() % rdn.len()
            };
            for (ava_index, (type_index, value)) in rdn
                .iter()
                .cycle()
                .skip(rotation)
                .take(rdn.len())
                .enumerate()
            {
                if ava_index > 0 {
                    out.push_str(["+", " + ", "+ "][next() % 3]);
                }
                let spellings = TYPE_SPELLINGS[*type_index];
                out.push_str(spellings[next() % spellings.len()]);
                out.push_str(["=", " = ", "= "][next() % 3]);
                match value {
                    LogicalValue::Ber(bytes) => {
                        let hex = lower_hex(bytes);
                        out.push('#');
                        out.push_str(&if next() % 2 == 0 {
                            hex.to_uppercase()
                        } else {
                            hex
                        });
                    }
                    LogicalValue::Text(text) => out.push_str(&match next() % 3 {
                        0 => escape_value(text),
                        1 => hex_escape_every_byte(text, next() % 2 == 0),
                        _ => backslash_escape_every_character(text),
                    }),
                }
            }
        }
        out
    }

    fn hex_escape_every_byte(text: &str, upper: bool) -> String {
        text.bytes()
            .map(|b| {
                if upper {
                    format!("\\{b:02X}")
                } else {
                    format!("\\{b:02x}")
                }
            })
            .collect()
    }

    fn backslash_escape_every_character(text: &str) -> String {
        text.chars()
            .map(|c| {
                if c.is_ascii_hexdigit() {
                    format!("\\{:02x}", c as u32)
                } else {
                    format!("\\{c}")
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn normalize_is_idempotent(input in prop_oneof![tricky_string(40), any::<String>()]) {
            if let Ok(once) = normalize(&input) {
                prop_assert_eq!(normalize(&once), Ok(once.clone()));
            }
        }

        #[test]
        fn normalize_is_idempotent_on_well_formed_dns(
            logical in logical_dn(),
            choices in prop::collection::vec(any::<u8>(), 1..32),
        ) {
            let written = spell(&logical, &choices);
            let once = normalize(&written);
            prop_assert!(once.is_ok(), "{:?}: {:?}", written, once);
            let once = once.unwrap_or_default();
            prop_assert_eq!(normalize(&once), Ok(once.clone()));
        }

        #[test]
        fn every_spelling_of_a_dn_is_equal(
            logical in logical_dn(),
            first_choices in prop::collection::vec(any::<u8>(), 1..32),
            second_choices in prop::collection::vec(any::<u8>(), 1..32),
        ) {
            let first = spell(&logical, &first_choices);
            let second = spell(&logical, &second_choices);
            prop_assert!(dn_eq(&first, &second), "{:?} vs {:?}", first, second);
        }

        #[test]
        fn escaped_values_round_trip(value in prop_oneof![tricky_string(24), any::<String>()]) {
            let written = format!("cn={}", escape_value(&value));
            let parsed = Dn::parse(&written);
            prop_assert!(parsed.is_ok(), "{:?}: {:?}", written, parsed);
            let parsed = parsed.unwrap_or_default();
            prop_assert_eq!(parsed.rdns().len(), 1);
            let ava = &parsed.rdns()[0].avas()[0];
            prop_assert_eq!(ava.attribute_type(), "cn");
            prop_assert_eq!(ava.value(), &AttributeValue::Text(value.clone()));
            prop_assert_eq!(
                parsed.normalized(),
                format!("cn={}", escape_value(&prepare_for_matching(&value)))
            );
        }

        #[test]
        fn display_reparses_to_an_equal_dn(input in prop_oneof![
            tricky_string(40),
            (logical_dn(), prop::collection::vec(any::<u8>(), 1..32))
                .prop_map(|(logical, choices)| spell(&logical, &choices)),
        ]) {
            if let Ok(parsed) = Dn::parse(&input) {
                let reparsed = Dn::parse(&parsed.to_string());
                prop_assert_eq!(reparsed.as_ref().ok(), Some(&parsed));
                prop_assert!(dn_eq(&input, &parsed.to_string()));
            }
        }

        #[test]
        fn parents_are_ancestors(
            logical in logical_dn(),
            choices in prop::collection::vec(any::<u8>(), 1..32),
        ) {
            let parsed = Dn::parse(&spell(&logical, &choices)).unwrap_or_default();
            prop_assert!(parsed.is_descendant_of(&parsed));
            prop_assert!(parsed.is_descendant_of(&Dn::root()));
            if let Some(parent) = parsed.parent() {
                prop_assert!(parsed.is_descendant_of(&parent));
                prop_assert!(!parent.is_descendant_of(&parsed));
                prop_assert_eq!(parent.rdns(), &parsed.rdns()[1..]);
                prop_assert_eq!(Dn::parse(&parent.normalized()).ok(), Some(parent));
            } else {
                prop_assert!(parsed.is_root());
            }
        }

        #[test]
        fn never_panics(input in prop_oneof![
            tricky_string(64),
            any::<String>(),
            prop::collection::vec(
                prop::sample::select(vec!['\\', '#', '0', 'c', '=', ',', '+', ' ', 'é']),
                0..24,
            )
            .prop_map(|cs| cs.into_iter().collect::<String>()),
        ]) {
            let parsed = Dn::parse(&input);
            let _ = normalize(&input);
            let _ = dn_eq(&input, &input);
            let _ = escape_value(&input);
            if let Err(error) = parsed {
                let message = error.to_string();
                prop_assert!(!message.is_empty());
                if let Some(position) = error.position() {
                    prop_assert!(position <= input.len());
                }
            }
        }
    }
}
