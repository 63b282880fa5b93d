//! The messages of xmlsec and libxml2 (the C libraries under samael), into the structured log.
//!
//! Left alone, both print to the process's standard error: a refused signature writes
//! `func=xmlSecOpenSSLEvpSignatureVerify:…` lines that no log collector can tie to anything.
//! xmlsec takes one process-wide callback, which its OpenSSL back end replaces with its own when
//! samael first initialises it; libxml2 keeps its error handler per thread. So [`capture`]
//! installs both before every verification (each only stores a pointer), and [`initialise`]
//! has samael set xmlsec up early, with the default output off, so even the first
//! verification's messages come here.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::Once;

type XmlSecErrorsCallback = unsafe extern "C" fn(
    file: *const c_char,
    line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    message: *const c_char,
);

/// The leading fields of libxml2's `xmlError` (stable across libxml2 2.x).
#[repr(C)]
struct XmlErrorHead {
    domain: c_int,
    code: c_int,
    message: *const c_char,
    level: c_int,
}

type XmlStructuredErrorFunc = unsafe extern "C" fn(user_data: *mut c_void, error: *const c_void);

extern "C" {
    fn xmlSecErrorsSetCallback(callback: Option<XmlSecErrorsCallback>);
    fn xmlSecErrorsDefaultCallbackEnableOutput(enabled: c_int);
    fn xmlSetStructuredErrorFunc(context: *mut c_void, handler: Option<XmlStructuredErrorFunc>);
}

/// Text of a C string the libraries handed over, or "" when there is none.
///
/// # Safety
/// `text` is null or points to a NUL-terminated string alive for the call.
unsafe fn text(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the caller's contract: a NUL-terminated string alive for this call.
    unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .trim()
        .chars()
        .take(500)
        .collect()
}

unsafe extern "C" fn xmlsec_message(
    _file: *const c_char,
    _line: c_int,
    func: *const c_char,
    error_object: *const c_char,
    error_subject: *const c_char,
    reason: c_int,
    message: *const c_char,
) {
    // SAFETY: xmlsec passes NUL-terminated strings (or null) that live for the call.
    let (func, object, subject, message) = unsafe {
        (
            text(func),
            text(error_object),
            text(error_subject),
            text(message),
        )
    };
    tracing::info!(
        target: "idsync::saml::xmlsec",
        function = %func,
        object = %object,
        subject = %subject,
        reason,
        "{message}"
    );
}

unsafe extern "C" fn libxml2_message(_user_data: *mut c_void, error: *const c_void) {
    if error.is_null() {
        return;
    }
    // SAFETY: libxml2 passes a valid xmlError, whose layout begins as XmlErrorHead.
    let head = unsafe { &*(error as *const XmlErrorHead) };
    // SAFETY: the message is a NUL-terminated string (or null) owned by the error.
    let message = unsafe { text(head.message) };
    tracing::info!(
        target: "idsync::saml::libxml2",
        domain = head.domain,
        code = head.code,
        level = head.level,
        "{message}"
    );
}

/// Sends xmlsec's messages and libxml2's on this thread to the log.
pub fn capture() {
    // SAFETY: both only store the pointer; the functions have the signatures the libraries
    // declare and never unwind; libxml2's handler takes no context.
    unsafe {
        xmlSecErrorsDefaultCallbackEnableOutput(0);
        xmlSecErrorsSetCallback(Some(xmlsec_message));
        xmlSetStructuredErrorFunc(std::ptr::null_mut(), Some(libxml2_message));
    }
}

/// Has samael initialise xmlsec (it does so the first time it loads a key) with the default
/// output off, then installs the callbacks: once per process.
pub fn initialise(certificate: &samael::crypto::CertificateDer) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: only stores a flag.
        unsafe { xmlSecErrorsDefaultCallbackEnableOutput(0) };
        use samael::crypto::CryptoProvider as _;
        // An unsigned document: the key is loaded (which initialises xmlsec), then the check
        // fails, as it must.
        let _ = samael::crypto::Crypto::verify_signed_xml("<unsigned/>", certificate, None);
        capture();
    });
}
