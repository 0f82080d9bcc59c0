//! `basic_auth` (docs/configuration.md, Authentication): HTTP Basic
//! credentials checked against an htpasswd file of bcrypt or argon2id hashes.
//!
//! A bcrypt of cost 10 costs tens of milliseconds of CPU, far more than
//! proxying the request, so:
//! - a credential that verified once is remembered, keyed by an HMAC of the
//!   `Authorization` token under a key made for this policy at load (the cache
//!   holds no password, nor a hash anyone could test guesses against), in a
//!   fixed table: memory is bounded whatever clients send;
//! - verification runs on tokio's blocking threads, at most half the cores
//!   at once per policy, with a bounded queue behind it: a client guessing
//!   passwords waits for its own answers (and gets 429 past the queue), while
//!   other routes and cached users keep being served.
//!
//! The policy is rebuilt with the configuration, so a reload re-reads the file
//! and starts an empty cache: a removed user or changed password takes effect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use tokio::sync::Semaphore;

use crate::config::{BasicAuthConfig, PasswordHash};
use crate::http1::view::RequestFields;
use crate::upstream::ResponseBody;

/// Remembered credentials per policy: 1024 x 32 bytes.
const CACHE_SLOTS: usize = 1024;
/// Verifications waiting for a turn, per policy, before new ones get 429.
const MAX_QUEUED: usize = 64;
/// Longer `Authorization` tokens are refused unread (no user needs them).
const MAX_TOKEN: usize = 1024;

pub struct BasicAuth {
    challenge: HeaderValue,
    users: HashMap<Box<[u8]>, Arc<PasswordHash>>,
    /// Verified against when the user is unknown, so that an unknown name
    /// costs as long as a wrong password (names cannot be probed by timing).
    decoy: Arc<PasswordHash>,
    forward_credentials: bool,
    key: hmac::Key,
    cache: Box<[[AtomicU64; 4]]>,
    verifying: Arc<Semaphore>,
    queued: AtomicUsize,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth").field("challenge", &self.challenge).field("users", &self.users.len()).finish()
    }
}

impl BasicAuth {
    pub fn new(cfg: &BasicAuthConfig) -> BasicAuth {
        let challenge = HeaderValue::try_from(format!("Basic realm=\"{}\", charset=\"UTF-8\"", cfg.realm))
            .expect("the realm was checked to be a valid quoted-string");
        let users: HashMap<Box<[u8]>, Arc<PasswordHash>> =
            cfg.users.iter().map(|u| (u.name.as_bytes().into(), Arc::new(u.hash.clone()))).collect();
        let decoy = Arc::new(cfg.users.first().expect("a users file holds at least one user").hash.clone());
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source works");
        let permits = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        BasicAuth {
            challenge,
            users,
            decoy,
            forward_credentials: cfg.forward_credentials,
            key,
            cache: (0..CACHE_SLOTS).map(|_| Default::default()).collect(),
            verifying: Arc::new(Semaphore::new(permits)),
            queued: AtomicUsize::new(0),
        }
    }

    /// Lets the request on (the caller then removes its `Authorization` unless
    /// [`forwards_credentials`](Self::forwards_credentials)), or answers it: 401 with
    /// the challenge, or 429 when too many verifications wait.
    pub(crate) async fn check(&self, headers: RequestFields<'_>) -> Result<(), Response<ResponseBody>> {
        let Some(token) = headers.get(&header::AUTHORIZATION).and_then(basic_token) else {
            return Err(self.unauthorized());
        };
        let tag = self.tag(token);
        if !self.cached(&tag) {
            match self.verify(token).await {
                Verdict::Valid => self.remember(&tag),
                Verdict::Invalid => return Err(self.unauthorized()),
                Verdict::Busy => return Err(busy()),
            }
        }
        Ok(())
    }

    /// `forward_credentials`: the server gets the client's `Authorization`.
    pub fn forwards_credentials(&self) -> bool {
        self.forward_credentials
    }

    fn tag(&self, token: &[u8]) -> [u64; 4] {
        let tag = hmac::sign(&self.key, token);
        let bytes = tag.as_ref();
        std::array::from_fn(|i| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes")))
    }

    // One slot per tag, chosen by its first word. Its four words are written
    // without a lock: a reader racing a writer may see a mix of two tags, which
    // matches no real tag (HMAC outputs), so it only costs a verification.
    fn cached(&self, tag: &[u64; 4]) -> bool {
        let slot = &self.cache[tag[0] as usize % CACHE_SLOTS];
        slot.iter().zip(tag).all(|(word, t)| word.load(Ordering::Relaxed) == *t)
    }

    fn remember(&self, tag: &[u64; 4]) {
        let slot = &self.cache[tag[0] as usize % CACHE_SLOTS];
        for (word, t) in slot.iter().zip(tag) {
            word.store(*t, Ordering::Relaxed);
        }
    }

    async fn verify(&self, token: &[u8]) -> Verdict {
        let mut decoded = [0u8; MAX_TOKEN];
        let Some(credentials) = decode(token, &mut decoded) else { return Verdict::Invalid };
        let Some(colon) = credentials.iter().position(|&b| b == b':') else { return Verdict::Invalid };
        let (user, password) = (&credentials[..colon], &credentials[colon + 1..]);
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.clone(), true),
            None => (self.decoy.clone(), false),
        };
        if self.queued.fetch_add(1, Ordering::Relaxed) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            return Verdict::Busy;
        }
        let permit = self.verifying.clone().acquire_owned().await;
        self.queued.fetch_sub(1, Ordering::Relaxed);
        let Ok(permit) = permit else { return Verdict::Invalid };
        let password = password.to_vec();
        let matched = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            password_matches(&hash, &password)
        })
        .await
        .unwrap_or(false);
        if matched && known {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }

    fn unauthorized(&self) -> Response<ResponseBody> {
        let mut response = text(StatusCode::UNAUTHORIZED, "401 Unauthorized: valid credentials are required\n");
        response.headers_mut().insert(header::WWW_AUTHENTICATE, self.challenge.clone());
        response
    }
}

enum Verdict {
    Valid,
    Invalid,
    Busy,
}

fn busy() -> Response<ResponseBody> {
    let mut response =
        text(StatusCode::TOO_MANY_REQUESTS, "429 Too Many Requests: too many password checks in progress\n");
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::full(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

/// The token of `Basic <token>` (the scheme is case-insensitive, RFC 9110 §11.1).
fn basic_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty() && token.len() <= MAX_TOKEN).then_some(token)
}

/// Standard base64, padded or not, into `out`.
fn decode<'a>(token: &[u8], out: &'a mut [u8; MAX_TOKEN]) -> Option<&'a [u8]> {
    let token = token.strip_suffix(b"==").or_else(|| token.strip_suffix(b"=")).unwrap_or(token);
    let mut bits = 0u32;
    let mut held = 0u32;
    let mut len = 0;
    for &c in token {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(v);
        held += 6;
        if held >= 8 {
            held -= 8;
            out[len] = (bits >> held) as u8;
            len += 1;
        }
    }
    Some(&out[..len])
}

fn password_matches(hash: &PasswordHash, password: &[u8]) -> bool {
    match hash {
        PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        PasswordHash::Argon2id(hash) => {
            use argon2::PasswordVerifier;
            argon2::Argon2::default().verify_password(password, hash.as_str()).is_ok()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_tokens() {
        let mut out = [0u8; MAX_TOKEN];
        assert_eq!(decode(b"YWxpY2U6c2VjcmV0", &mut out), Some(&b"alice:secret"[..]));
        assert_eq!(decode(b"YTpi", &mut out), Some(&b"a:b"[..]));
        assert_eq!(decode(b"YTpiYw==", &mut out), Some(&b"a:bc"[..]));
        assert_eq!(decode(b"YTpiYw", &mut out), Some(&b"a:bc"[..]));
        assert_eq!(decode(b"YT!i", &mut out), None);
        assert_eq!(basic_token(b"bAsIc  YTpi "), Some(&b"YTpi"[..]));
        assert_eq!(basic_token(b"Bearer x"), None);
        assert_eq!(basic_token(b"Basic"), None);
    }

    #[test]
    fn argon2id_and_bcrypt_verify() {
        use argon2::PasswordHasher;
        let params = argon2::Params::new(256, 1, 1, None).unwrap();
        let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let hash = argon.hash_password_with_salt(b"pw", b"0123456789abcdef").unwrap().to_string();
        assert!(password_matches(&PasswordHash::Argon2id(hash.clone()), b"pw"));
        assert!(!password_matches(&PasswordHash::Argon2id(hash), b"px"));
        let hash = bcrypt::hash("pw", 4).unwrap();
        assert!(password_matches(&PasswordHash::Bcrypt(hash.clone()), b"pw"));
        assert!(!password_matches(&PasswordHash::Bcrypt(hash), b"px"));
    }
}
