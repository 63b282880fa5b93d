//! pysaml2 (PyPI) as a second, independent SAML identity provider: `tests/support/pysaml2_idp.py`
//! builds and signs a response with pysaml2's own IdP code, through its xmlsec1 backend.
//! Nothing here shares XML or signature code with idsync or with the xmlsec1 harness.
//!
//! `scripts/setup.sh` makes the virtualenv and exports `IDSYNC_PYSAML2_PYTHON`; without it the
//! tests fail and say so, they never skip. Included by path next to the `saml` harness, whose
//! IdP keys and metadata it signs with.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::saml::Idp;

/// Which parts pysaml2 signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sign {
    Assertion,
    Response,
    Both,
}

impl Sign {
    fn as_str(self) -> &'static str {
        match self {
            Sign::Assertion => "assertion",
            Sign::Response => "response",
            Sign::Both => "both",
        }
    }
}

/// A response pysaml2 signed.
#[derive(Debug, Clone)]
pub struct Signed {
    pub b64: String,
    pub xml: String,
    pub assertion_id: String,
}

fn python() -> String {
    std::env::var("IDSYNC_PYSAML2_PYTHON").unwrap_or_else(|_| {
        panic!(
            "IDSYNC_PYSAML2_PYTHON is not set: run the tests through scripts/test.sh, or \
             `source scripts/setup.sh && idsync_setup` first (it makes pysaml2's virtualenv)"
        )
    })
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/pysaml2_idp.py")
}

/// Has pysaml2 sign a response of `idp` (its key and certificate) for this SP and ACS: for
/// `alice@example.com` in `groups`, answering `in_response_to`, issued at `issue_instant` and
/// valid for `valid_secs`.
#[allow(clippy::too_many_arguments)]
pub fn sign(
    idp: &Idp,
    sp_entity_id: &str,
    acs_url: &str,
    groups: &[&str],
    in_response_to: Option<&str>,
    sign: Sign,
    issue_instant: i64,
    valid_secs: i64,
) -> Signed {
    let spec = json!({
        "idp_entity_id": idp.entity_id,
        "key_file": idp.key_path(),
        "cert_file": idp.cert_path(),
        "sp_entity_id": sp_entity_id,
        "acs_url": acs_url,
        "name_id": "alice@example.com",
        "group_attribute": "groups",
        "groups": groups,
        "in_response_to": in_response_to,
        "sign": sign.as_str(),
        "issue_instant": issue_instant,
        "not_on_or_after_secs": valid_secs,
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let spec_file = dir.path().join("spec.json");
    std::fs::write(&spec_file, spec.to_string()).expect("write spec");
    let output = Command::new(python())
        .arg(script())
        .arg("--spec")
        .arg(&spec_file)
        .output()
        .expect("run pysaml2_idp.py");
    assert!(
        output.status.success(),
        "pysaml2_idp.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).expect("pysaml2_idp.py output");
    Signed {
        b64: answer["response_b64"].as_str().expect("b64").to_owned(),
        xml: answer["response_xml"].as_str().expect("xml").to_owned(),
        assertion_id: answer["assertion_id"].as_str().expect("id").to_owned(),
    }
}
