//! Tests of SSO group mapping evaluation.
