//! What a token says, and the policy that decides its issuer, audience and lifetimes.
//!
//! A sign-in starts a [`Session`]; every token of that session carries its id (`sid`) and its end
//! (`session_exp`). A token lives [`TokenPolicy::token_lifetime_secs`] (five minutes by default,
//! the window within which a permission change reaches a signed-in user) but never past the end
//! of its session. A refresh ([`TokenPolicy::refresh_claims`]) keeps the session and puts the
//! user's current groups, permissions and permission version in a new token; it is refused once
//! the session has ended.

use serde::{Deserialize, Serialize};

use super::TokenError;

/// Default token lifetime: five minutes, the refresh window within which a permission change
/// applies.
pub const DEFAULT_TOKEN_LIFETIME_SECS: i64 = 5 * 60;

/// Default session lifetime: eight hours, a working day. Past it the user signs in again.
pub const DEFAULT_SESSION_LIFETIME_SECS: i64 = 8 * 60 * 60;

/// Default clock leeway: thirty seconds of tolerated clock difference between the instance that
/// issued a token and the one (or the other service) that verifies it.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// The claims of an idsync token.
///
/// Times are unix seconds. `iss`, `aud`, `sub`, `iat`, `nbf`, `exp` and `jti` are the registered
/// claims of RFC 7519; the others are idsync's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The stable user id.
    pub sub: String,
    pub username: String,
    /// Names of the groups the user belongs to.
    pub groups: Vec<String>,
    /// The user's effective permissions.
    pub permissions: Vec<String>,
    /// The user's permission version when the token was issued; a verifier that knows a newer
    /// version can tell the permissions in the token are stale.
    pub pv: i64,
    /// The session id, shared by every token of one sign-in.
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// The end of the session: no token of the session is valid, and no refresh is granted,
    /// from this instant on.
    pub session_exp: i64,
    /// When the session began (the sign-in), unix seconds: revoking a user's sessions refuses
    /// to refresh every token whose session began before the revocation.
    #[serde(default)]
    pub auth_time: i64,
    /// The same instant in unix milliseconds: revocations are recorded to the millisecond, and a
    /// sign-in in the same second as a revocation, after it, must not look older than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time_ms: Option<i64>,
    /// A unique id for this token.
    pub jti: String,
}

/// Who a token is about, as read from the store at sign-in or refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSubject {
    /// The stable user id (becomes `sub`).
    pub user_id: String,
    pub username: String,
    pub groups: Vec<String>,
    pub permissions: Vec<String>,
    /// Becomes `pv`.
    pub permission_version: i64,
}

/// A sign-in session: its id and its end (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    /// The sign-in (unix seconds).
    pub started_at: i64,
    /// The sign-in (unix milliseconds), what revocations are compared with.
    pub started_at_ms: i64,
    pub expires_at: i64,
}

impl Session {
    /// The session a (verified) token belongs to.
    pub fn of(claims: &Claims) -> Self {
        Session {
            id: claims.sid.clone(),
            started_at: claims.auth_time,
            started_at_ms: claims
                .auth_time_ms
                .unwrap_or(claims.auth_time.saturating_mul(1000)),
            expires_at: claims.session_exp,
        }
    }

    /// True once the session has ended.
    pub fn has_ended(&self, now: i64) -> bool {
        now >= self.expires_at
    }
}

/// How tokens are issued and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// `iss` of every token issued, and the only `iss` accepted.
    pub issuer: String,
    /// `aud` of every token issued, and the only `aud` accepted.
    pub audience: String,
    /// How long one token is valid; [`DEFAULT_TOKEN_LIFETIME_SECS`] (300 s) by default.
    pub token_lifetime_secs: i64,
    /// How long a session lasts from sign-in; [`DEFAULT_SESSION_LIFETIME_SECS`] (8 h) by
    /// default.
    pub session_lifetime_secs: i64,
    /// Tolerated clock difference when checking `exp`, `nbf`, `iat` and `session_exp`;
    /// [`DEFAULT_LEEWAY_SECS`] (30 s) by default.
    pub leeway_secs: i64,
}

impl TokenPolicy {
    /// A policy for this issuer and audience with the default lifetimes and leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenPolicy {
            issuer: issuer.into(),
            audience: audience.into(),
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            session_lifetime_secs: DEFAULT_SESSION_LIFETIME_SECS,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    /// Checks that the values make sense together; meant for configuration loading.
    pub fn validate(&self) -> Result<(), TokenError> {
        if self.issuer.is_empty() {
            return Err(TokenError::InvalidPolicy("the issuer is empty"));
        }
        if self.audience.is_empty() {
            return Err(TokenError::InvalidPolicy("the audience is empty"));
        }
        if self.token_lifetime_secs <= 0 {
            return Err(TokenError::InvalidPolicy(
                "the token lifetime must be positive",
            ));
        }
        if self.session_lifetime_secs < self.token_lifetime_secs {
            return Err(TokenError::InvalidPolicy(
                "the session lifetime must be at least the token lifetime",
            ));
        }
        if self.leeway_secs < 0 {
            return Err(TokenError::InvalidPolicy("the leeway must not be negative"));
        }
        // A leeway as long as a token would more than double every token's useful life.
        if self.leeway_secs >= self.token_lifetime_secs {
            return Err(TokenError::InvalidPolicy(
                "the leeway must be shorter than the token lifetime",
            ));
        }
        Ok(())
    }

    /// The shortest rotation overlap that orphans no valid token: a token signed just before a
    /// rotation is accepted until its `exp` plus the leeway.
    pub fn min_rotation_overlap_secs(&self) -> i64 {
        self.token_lifetime_secs
            .max(0)
            .saturating_add(self.leeway_secs.max(0))
    }

    /// Starts a session at sign-in, with a random id.
    pub fn new_session(&self, now: i64) -> Session {
        self.new_session_ms(now.saturating_mul(1000))
    }

    /// A session beginning at `now_ms` (unix milliseconds).
    pub fn new_session_ms(&self, now_ms: i64) -> Session {
        let now = now_ms.div_euclid(1000);
        Session {
            id: uuid::Uuid::new_v4().to_string(),
            started_at: now,
            started_at_ms: now_ms,
            expires_at: now.saturating_add(self.session_lifetime_secs),
        }
    }

    /// The claims of a token issued at `now` for `subject` in `session`: valid from `now` for the
    /// token lifetime, cut short at the session's end.
    pub fn claims_for(&self, subject: &TokenSubject, session: &Session, now: i64) -> Claims {
        Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: subject.user_id.clone(),
            username: subject.username.clone(),
            groups: subject.groups.clone(),
            permissions: subject.permissions.clone(),
            pv: subject.permission_version,
            sid: session.id.clone(),
            iat: now,
            nbf: now,
            exp: now
                .saturating_add(self.token_lifetime_secs)
                .min(session.expires_at),
            session_exp: session.expires_at,
            auth_time: session.started_at,
            auth_time_ms: Some(session.started_at_ms),
            jti: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// The claims of a refreshed token: the session of `previous` (a token that passed
    /// [`verify`](super::verify)), with the subject's current groups, permissions and permission
    /// version as re-read by the caller.
    ///
    /// Refused with [`TokenError::SessionEnded`] from the session's end on, and with
    /// [`TokenError::SubjectMismatch`] when `subject` is not the session's user.
    pub fn refresh_claims(
        &self,
        previous: &Claims,
        subject: &TokenSubject,
        now: i64,
    ) -> Result<Claims, TokenError> {
        if subject.user_id != previous.sub {
            return Err(TokenError::SubjectMismatch);
        }
        let session = Session::of(previous);
        if session.has_ended(now) {
            return Err(TokenError::SessionEnded);
        }
        Ok(self.claims_for(subject, &session, now))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{policy, subject, T0};
    use super::*;

    #[test]
    fn defaults() {
        let policy = policy();
        assert_eq!(policy.token_lifetime_secs, 300);
        assert_eq!(policy.session_lifetime_secs, 8 * 3600);
        assert_eq!(policy.leeway_secs, 30);
        assert_eq!(policy.min_rotation_overlap_secs(), 330);
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn validate_refuses_inconsistent_policies() {
        type Spoil = fn(&mut TokenPolicy);
        let cases: [(&str, Spoil); 6] = [
            ("empty issuer", |p| p.issuer.clear()),
            ("empty audience", |p| p.audience.clear()),
            ("zero lifetime", |p| p.token_lifetime_secs = 0),
            ("session shorter than token", |p| {
                p.session_lifetime_secs = 299
            }),
            ("negative leeway", |p| p.leeway_secs = -1),
            ("leeway as long as a token", |p| p.leeway_secs = 300),
        ];
        for (name, spoil) in cases {
            let mut policy = policy();
            spoil(&mut policy);
            assert!(
                matches!(policy.validate(), Err(TokenError::InvalidPolicy(_))),
                "{name}"
            );
        }
    }

    #[test]
    fn claims_for_a_new_session() {
        let policy = policy();
        let session = policy.new_session(T0);
        assert_eq!(session.expires_at, T0 + 8 * 3600);
        let claims = policy.claims_for(&subject(), &session, T0);
        assert_eq!(claims.iss, policy.issuer);
        assert_eq!(claims.aud, policy.audience);
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.username, "alice");
        assert_eq!(claims.groups, subject().groups);
        assert_eq!(claims.permissions, subject().permissions);
        assert_eq!(claims.pv, 7);
        assert_eq!(claims.sid, session.id);
        assert_eq!((claims.iat, claims.nbf, claims.exp), (T0, T0, T0 + 300));
        assert_eq!(claims.session_exp, T0 + 8 * 3600);
        assert_ne!(claims.jti, policy.claims_for(&subject(), &session, T0).jti);
        assert_ne!(session.id, policy.new_session(T0).id);
    }

    #[test]
    fn token_expiry_is_cut_at_the_session_end() {
        let policy = policy();
        let session = Session {
            id: "s".to_owned(),
            started_at: T0,
            started_at_ms: T0 * 1000,
            expires_at: T0 + 100,
        };
        let claims = policy.claims_for(&subject(), &session, T0);
        assert_eq!(claims.exp, T0 + 100);
        assert_eq!(claims.session_exp, T0 + 100);
    }

    #[test]
    fn refresh_keeps_the_session_and_takes_current_permissions() {
        let policy = policy();
        let first = policy.claims_for(&subject(), &policy.new_session(T0), T0);
        let mut demoted = subject();
        demoted.groups = vec!["All Users".to_owned()];
        demoted.permissions = vec!["User".to_owned()];
        demoted.permission_version = 8;

        let refreshed = policy.refresh_claims(&first, &demoted, T0 + 290).unwrap();
        assert_eq!(refreshed.sid, first.sid);
        assert_eq!(refreshed.session_exp, first.session_exp);
        assert_eq!(refreshed.permissions, ["User"]);
        assert_eq!(refreshed.groups, ["All Users"]);
        assert_eq!(refreshed.pv, 8);
        assert_eq!(refreshed.iat, T0 + 290);
        assert_eq!(refreshed.exp, T0 + 590);
        assert_ne!(refreshed.jti, first.jti);
    }

    #[test]
    fn refresh_is_refused_after_the_session_end() {
        let policy = policy();
        let first = policy.claims_for(&subject(), &policy.new_session(T0), T0);
        let end = first.session_exp;
        let last = policy.refresh_claims(&first, &subject(), end - 1).unwrap();
        assert_eq!(last.exp, end, "the last token ends with the session");
        assert_eq!(
            policy.refresh_claims(&first, &subject(), end),
            Err(TokenError::SessionEnded)
        );
        assert_eq!(
            policy.refresh_claims(&last, &subject(), end + 1),
            Err(TokenError::SessionEnded)
        );
    }

    #[test]
    fn refresh_is_refused_for_another_user() {
        let policy = policy();
        let first = policy.claims_for(&subject(), &policy.new_session(T0), T0);
        let mut other = subject();
        other.user_id = "43".to_owned();
        assert_eq!(
            policy.refresh_claims(&first, &other, T0 + 10),
            Err(TokenError::SubjectMismatch)
        );
    }
}
