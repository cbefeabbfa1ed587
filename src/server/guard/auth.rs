//! Basic auth that a flood of wrong passwords cannot turn into a denial of service:
//!
//! * bcrypt compares in constant time, and an unknown user is checked against a decoy hash
//!   of the users' cost, so the time taken tells nothing;
//! * a verified user and password are remembered (by a keyed hash, never in clear), so a
//!   scraper pays bcrypt once, and a wrong pair tried again costs nothing either;
//! * bcrypt runs on the blocking pool, never on the listener's thread, one check at a time
//!   (one core at most); at most [`MAX_WAITING`] requests wait for it, each at most
//!   [`VERIFY_WAIT`], past which they get `503` with `Retry-After: 1`. A remembered scraper
//!   waits for none of it.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use base64::Engine;
use hyper::header;
use hyper::HeaderMap;
use ring::hmac;
use tokio::sync::Semaphore;

use crate::server::stats::Reason;

/// Requests waiting for a password check at once; past it, `503` at once.
pub(super) const MAX_WAITING: usize = 16;

/// Longest wait for a password check.
pub(super) const VERIFY_WAIT: Duration = Duration::from_secs(2);

/// Verified credentials remembered (a few scrapers; the oldest make room).
const VERIFIED: usize = 64;

/// Refused credentials remembered (forgotten all at once when full).
const REFUSED: usize = 4096;

type Tag = [u8; 32];

/// See the module documentation.
pub(crate) struct BasicAuth(Arc<Inner>);

struct Inner {
    /// User and bcrypt hash.
    users: HashMap<String, String>,
    /// The highest cost among the users' hashes, for the decoy.
    cost: u32,
    decoy: OnceLock<String>,
    /// Keys the remembered credentials' hashes; made at start, never leaves memory.
    key: hmac::Key,
    /// Verified credentials, in the order verified.
    verified: Mutex<Vec<Tag>>,
    refused: Mutex<HashSet<Tag>>,
    /// One bcrypt at a time.
    bcrypt: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl BasicAuth {
    /// Basic auth for `users` (user and bcrypt hash, checked already).
    pub(crate) fn new(users: &[(String, String)]) -> Self {
        let cost = users
            .iter()
            .filter_map(|(_, hash)| bcrypt::HashParts::from_str(hash).ok())
            .map(|parts| parts.get_cost())
            .max()
            .unwrap_or(bcrypt::DEFAULT_COST);
        let rng = ring::rand::SystemRandom::new();
        // Without randomness the key is fixed: the remembered tags stay in memory only.
        let key = hmac::Key::generate(hmac::HMAC_SHA256, &rng)
            .unwrap_or_else(|_| hmac::Key::new(hmac::HMAC_SHA256, b"porter-metrics"));
        Self(Arc::new(Inner {
            users: users.iter().cloned().collect(),
            cost,
            decoy: OnceLock::new(),
            key,
            verified: Mutex::new(Vec::new()),
            refused: Mutex::new(HashSet::new()),
            bcrypt: Arc::new(Semaphore::new(1)),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// Whether the request's credentials are a user's; why not otherwise.
    pub(crate) async fn check(&self, headers: &HeaderMap) -> Result<(), Reason> {
        let (user, password) = credentials(headers).ok_or(Reason::NoCredentials)?;
        let inner = &self.0;
        let tag = inner.tag(&user, &password);
        if let Some(known) = inner.remembered(&tag) {
            return known;
        }
        let permit = {
            let _waiting = Waiting::enter(&inner.waiting).ok_or(Reason::AuthBusy)?;
            match tokio::time::timeout(VERIFY_WAIT, inner.bcrypt.clone().acquire_owned()).await {
                Ok(Ok(permit)) => permit,
                _ => return Err(Reason::AuthBusy),
            }
        };
        // Checked by another request while this one waited?
        if let Some(known) = inner.remembered(&tag) {
            return known;
        }
        let checker = inner.clone();
        // The permit and the outcome go with the check: bcrypt ends and is remembered even
        // if the client leaves meanwhile (a scraper whose timeout is shorter than bcrypt is
        // served at its next scrape).
        let verified = tokio::task::spawn_blocking(move || {
            let verified = checker.verify(&user, &password);
            checker.remember(tag, verified);
            drop(permit);
            verified
        })
        .await
        .unwrap_or(false);
        match verified {
            true => Ok(()),
            false => Err(Reason::BadPassword),
        }
    }
}

impl Inner {
    fn tag(&self, user: &str, password: &[u8]) -> Tag {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&(user.len() as u64).to_le_bytes());
        context.update(user.as_bytes());
        context.update(password);
        let mut tag = [0u8; 32];
        tag.copy_from_slice(context.sign().as_ref());
        tag
    }

    /// What was decided for these credentials before, if anything.
    fn remembered(&self, tag: &Tag) -> Option<Result<(), Reason>> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if verified.contains(tag) {
            return Some(Ok(()));
        }
        drop(verified);
        let refused = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
        refused.contains(tag).then_some(Err(Reason::BadPassword))
    }

    fn remember(&self, tag: Tag, verified: bool) {
        if verified {
            let mut remembered = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if remembered.len() >= VERIFIED {
                remembered.remove(0);
            }
            remembered.push(tag);
        } else {
            let mut remembered = self.refused.lock().unwrap_or_else(PoisonError::into_inner);
            if remembered.len() >= REFUSED {
                remembered.clear();
            }
            remembered.insert(tag);
        }
    }

    /// bcrypt: blocking, tens of milliseconds at cost 10.
    fn verify(&self, user: &str, password: &[u8]) -> bool {
        let hash = self.users.get(user);
        let against = match hash {
            Some(hash) => hash.as_str(),
            None => self.decoy.get_or_init(|| {
                bcrypt::hash("porter-metrics decoy", self.cost).unwrap_or_default()
            }),
        };
        let matches = bcrypt::verify(password, against).unwrap_or(false);
        matches && hash.is_some()
    }
}

/// One request waiting for a check, counted while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Option<Self> {
        let before = waiting.fetch_add(1, Ordering::Relaxed);
        let entered = Self(waiting);
        (before < MAX_WAITING).then_some(entered)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The user and password of an `Authorization: Basic` header.
fn credentials(headers: &HeaderMap) -> Option<(String, Vec<u8>)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let colon = decoded.iter().position(|b| *b == b':')?;
    let user = String::from_utf8(decoded.get(..colon)?.to_vec()).ok()?;
    Some((user, decoded.get(colon + 1..)?.to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&format!("Basic {encoded}")).unwrap();
        headers.insert(header::AUTHORIZATION, value);
        headers
    }

    #[test]
    fn credentials_are_read_from_the_header() {
        assert_eq!(
            credentials(&basic("alice", "s:e cret")),
            Some(("alice".to_owned(), b"s:e cret".to_vec()))
        );
        assert_eq!(credentials(&HeaderMap::new()), None);
        let mut bearer = HeaderMap::new();
        bearer.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(credentials(&bearer), None);
        let mut garbage = HeaderMap::new();
        garbage.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(credentials(&garbage), None);
    }

    #[test]
    fn a_scraper_pays_bcrypt_once_and_wrong_passwords_are_refused() {
        let hash = bcrypt::hash("right", 4).unwrap();
        let auth = BasicAuth::new(&[("alice".to_owned(), hash)]);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(
                auth.check(&HeaderMap::new()).await,
                Err(Reason::NoCredentials)
            );
            assert_eq!(auth.check(&basic("alice", "right")).await, Ok(()));
            assert_eq!(
                auth.check(&basic("alice", "wrong")).await,
                Err(Reason::BadPassword)
            );
            assert_eq!(
                auth.check(&basic("bob", "right")).await,
                Err(Reason::BadPassword)
            );
            // Remembered: no bcrypt, even with its only permit taken.
            let _held = auth.0.bcrypt.clone().acquire_owned().await.unwrap();
            assert_eq!(auth.check(&basic("alice", "right")).await, Ok(()));
            assert_eq!(
                auth.check(&basic("alice", "wrong")).await,
                Err(Reason::BadPassword)
            );
        });
        // The unknown user was checked against a decoy of the users' cost.
        let decoy = auth.0.decoy.get().expect("made for bob");
        assert_eq!(bcrypt::HashParts::from_str(decoy).unwrap().get_cost(), 4);
    }

    #[test]
    fn past_the_waiting_bound_a_check_is_refused_at_once() {
        let waiting = AtomicUsize::new(0);
        let held: Vec<_> = (0..MAX_WAITING).map(|_| Waiting::enter(&waiting)).collect();
        assert!(held.iter().all(Option::is_some));
        assert!(Waiting::enter(&waiting).is_none());
        assert_eq!(waiting.load(Ordering::Relaxed), MAX_WAITING);
        drop(held);
        assert_eq!(waiting.load(Ordering::Relaxed), 0);
    }
}
