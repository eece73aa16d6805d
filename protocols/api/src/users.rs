//! Users and their credentials, shared by every protocol's authentication and by the
//! `tributary user` command. A user is one record in [`USERS_NAMESPACE`] of the metadata store,
//! keyed by the user name; its value is a [`UserRecord`].
//!
//! No password is stored. For each SCRAM mechanism (RFC 5802, RFC 7677) the record keeps the salt,
//! the iteration count, `StoredKey = H(HMAC(SaltedPassword, "Client Key"))` and
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`, where
//! `SaltedPassword = Hi(password, salt, iterations)` (PBKDF2 with HMAC-H). A PLAIN password is
//! verified by deriving the SCRAM-SHA-256 StoredKey from it and comparing in constant time.
//!
//! Value layout, version 1 (integers big-endian):
//!
//! ```text
//! u8 version = 1, u8 credential count,
//! then per credential: u8 mechanism (1 = SCRAM-SHA-256, 2 = SCRAM-SHA-512), u32 iterations,
//!   u8 salt length, salt, u8 key length, StoredKey, ServerKey (each `key length` bytes)
//! ```
//!
//! Version 2 is version 1 followed by the one credential that is not a hash, kept only for users
//! given one (`tributary user add --rocketmq-secret`): RocketMQ's ACL signs every request with
//! HMAC-SHA1 keyed by the secret key, so the broker needs the secret itself to check it.
//!
//! ```text
//! (version 1 fields, with u8 version = 2), u16 secret length (>= 1), secret (UTF-8)
//! ```
//!
//! Version 3 adds the address whitelist of the user's RocketMQ account (RocketMQ's
//! `whiteRemoteAddress`: requests naming this access key from a matching address are not asked
//! for a signature), kept only for users given one:
//!
//! ```text
//! (version 1 fields, with u8 version = 3), u16 secret length (0 = no secret), secret (UTF-8),
//!   u16 pattern length (>= 1), pattern (UTF-8)
//! ```
//!
//! The pattern's syntax belongs to the RocketMQ frontend, which checks it before a record is
//! stored; here it is text of bounded length.
//!
//! Invariants: every record holds a credential for every [`ScramMechanism`]; iteration counts
//! are at least [`MIN_ITERATIONS`]; a decoded record is checked for both, so a truncated or
//! foreign value is an error, never a partial user. A record without a RocketMQ secret is
//! written as version 1, so records written before version 2 existed and records of users
//! without a secret are byte for byte what they were, and a record without a white address is
//! written as version 1 or 2 as before; a kept secret is never printed (its
//! `Debug` is redacted).

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::error::{EngineError, EngineResult};
use crate::metadata::{MetadataStore, USERS_NAMESPACE};

/// The least iteration count RFC 7677 allows (and the default Kafka's own tools use).
pub const MIN_ITERATIONS: u32 = 4096;
/// Salt length for new credentials.
pub const SALT_BYTES: usize = 24;
/// Longest user name accepted; also bounds what a SASL exchange looks up.
pub const MAX_USER_NAME_BYTES: usize = 255;
/// Longest password accepted (PBKDF2 hashes it once per iteration block; keep it bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;
const RECORD_VERSION: u8 = 1;
/// Version of a record that also keeps the RocketMQ secret key.
const RECORD_VERSION_WITH_SECRET: u8 = 2;
/// Version of a record that also keeps a RocketMQ white address (and maybe a secret).
const RECORD_VERSION_WITH_WHITE_ADDRESS: u8 = 3;
/// Longest RocketMQ white address pattern (list) accepted.
pub const MAX_WHITE_ADDRESS_BYTES: usize = 1024;

/// A SCRAM hash function. `SHA-256` also verifies PLAIN passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name (`SCRAM-SHA-256`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    fn code(self) -> u8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.code() == code)
    }

    /// Output length of H, which is also the key length.
    pub fn key_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// H(data).
    pub fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// HMAC-H(key, data).
    pub fn hmac(self, key: &[u8], data: &[u8]) -> EngineResult<Vec<u8>> {
        match self {
            Self::Sha256 => hmac_of::<hmac::Hmac<Sha256>>(key, data),
            Self::Sha512 => hmac_of::<hmac::Hmac<Sha512>>(key, data),
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802 §2.2: PBKDF2 with HMAC-H and one output block.
    pub fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> EngineResult<Vec<u8>> {
        let mut first = Vec::with_capacity(salt.len() + 4);
        first.extend_from_slice(salt);
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut block = self.hmac(password, &first)?;
        let mut result = block.clone();
        for _ in 1..iterations {
            block = self.hmac(password, &block)?;
            xor_into(&mut result, &block);
        }
        Ok(result)
    }
}

fn hmac_of<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> EngineResult<Vec<u8>> {
    // HMAC takes keys of any length, so this never fails; it is mapped rather than unwrapped.
    let mut mac = <M as KeyInit>::new_from_slice(key).map_err(|error| EngineError::Metadata {
        context: "compute an HMAC",
        message: error.to_string(),
    })?;
    mac.update(data);
    Ok(mac.finalize().into_bytes().to_vec())
}

/// `target ^= other`, byte by byte (equal lengths).
pub fn xor_into(target: &mut [u8], other: &[u8]) {
    for (byte, with) in target.iter_mut().zip(other) {
        *byte ^= with;
    }
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// What the server keeps of one password for one SCRAM mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Derives the credential of `password` with `salt` and `iterations`.
    pub fn derive(
        mechanism: ScramMechanism,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> EngineResult<Self> {
        let salted = mechanism.salted_password(password.as_bytes(), salt, iterations)?;
        let client_key = mechanism.hmac(&salted, b"Client Key")?;
        Ok(Self {
            mechanism,
            salt: salt.to_vec(),
            iterations,
            stored_key: mechanism.hash(&client_key),
            server_key: mechanism.hmac(&salted, b"Server Key")?,
        })
    }

    /// A credential no password matches (random keys) with the given `salt`, so an unknown
    /// user goes through the same exchange as a known one and fails only at the proof. The
    /// caller picks a salt that is stable per user name, as a real user's is.
    pub fn unmatchable(mechanism: ScramMechanism, salt: Vec<u8>) -> EngineResult<Self> {
        let mut stored_key = vec![0u8; mechanism.key_len()];
        let mut server_key = vec![0u8; mechanism.key_len()];
        for buf in [&mut stored_key, &mut server_key] {
            fill_random(buf)?;
        }
        Ok(Self {
            mechanism,
            salt,
            iterations: MIN_ITERATIONS,
            stored_key,
            server_key,
        })
    }

    /// Whether `password` is the one this credential was derived from. Costs `iterations`
    /// HMACs: call it off the async runtime.
    pub fn verify_password(&self, password: &str) -> EngineResult<bool> {
        let candidate = Self::derive(self.mechanism, password, &self.salt, self.iterations)?;
        Ok(same_bytes(&candidate.stored_key, &self.stored_key))
    }
}

/// A secret kept in clear because a protocol needs it as a key (RocketMQ's ACL HMAC). Its
/// `Debug` prints nothing of it.
#[derive(Clone, PartialEq, Eq)]
pub struct KeptSecret(String);

impl KeptSecret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for KeptSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeptSecret(..)")
    }
}

/// One user: a credential per SCRAM mechanism, all from the same password, and for users
/// RocketMQ clients sign as, that password kept as the RocketMQ secret key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    credentials: Vec<ScramCredential>,
    rocketmq_secret: Option<KeptSecret>,
    rocketmq_white_address: Option<String>,
}

impl UserRecord {
    /// Credentials for every mechanism with fresh random salts. Blocking (PBKDF2).
    pub fn from_password(password: &str, iterations: u32) -> EngineResult<Self> {
        validate_password(password)?;
        if iterations < MIN_ITERATIONS {
            return Err(invalid_user(format!(
                "iteration count {iterations} is below the minimum {MIN_ITERATIONS}"
            )));
        }
        let mut credentials = Vec::with_capacity(ScramMechanism::ALL.len());
        for mechanism in ScramMechanism::ALL {
            let mut salt = vec![0u8; SALT_BYTES];
            fill_random(&mut salt)?;
            credentials.push(ScramCredential::derive(
                mechanism, password, &salt, iterations,
            )?);
        }
        Ok(Self {
            credentials,
            rocketmq_secret: None,
            rocketmq_white_address: None,
        })
    }

    /// [`UserRecord::from_password`] that also keeps `password` as the user's RocketMQ secret
    /// key (the access key is the user name). Blocking (PBKDF2).
    pub fn from_password_with_rocketmq_secret(
        password: &str,
        iterations: u32,
    ) -> EngineResult<Self> {
        let mut record = Self::from_password(password, iterations)?;
        record.rocketmq_secret = Some(KeptSecret(password.to_owned()));
        Ok(record)
    }

    /// The RocketMQ secret key, for users added with one.
    pub fn rocketmq_secret(&self) -> Option<&KeptSecret> {
        self.rocketmq_secret.as_ref()
    }

    /// The address whitelist of the user's RocketMQ account (RocketMQ's `whiteRemoteAddress`).
    pub fn rocketmq_white_address(&self) -> Option<&str> {
        self.rocketmq_white_address.as_deref()
    }

    /// Sets or clears (`None` or blank) the RocketMQ white address. The caller has checked
    /// the pattern's syntax; here only its length and characters are.
    pub fn with_rocketmq_white_address(mut self, pattern: Option<&str>) -> EngineResult<Self> {
        let pattern = pattern.map(str::trim).filter(|p| !p.is_empty());
        if let Some(pattern) = pattern
            && (pattern.len() > MAX_WHITE_ADDRESS_BYTES || pattern.chars().any(char::is_control))
        {
            return Err(invalid_user(format!(
                "a RocketMQ white address has at most {MAX_WHITE_ADDRESS_BYTES} bytes and no control characters"
            )));
        }
        self.rocketmq_white_address = pattern.map(str::to_owned);
        Ok(self)
    }

    /// The credential for `mechanism` (every record has one for each).
    pub fn credential(&self, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.credentials
            .iter()
            .find(|credential| credential.mechanism == mechanism)
    }

    /// Verifies a PLAIN password against the SCRAM-SHA-256 credential. Blocking (PBKDF2).
    pub fn verify_plain(&self, password: &str) -> EngineResult<bool> {
        match self.credential(ScramMechanism::Sha256) {
            Some(credential) => credential.verify_password(password),
            None => Ok(false),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut buf = BytesMut::new();
        let version = match (&self.rocketmq_white_address, &self.rocketmq_secret) {
            (Some(_), _) => RECORD_VERSION_WITH_WHITE_ADDRESS,
            (None, Some(_)) => RECORD_VERSION_WITH_SECRET,
            (None, None) => RECORD_VERSION,
        };
        buf.put_u8(version);
        buf.put_u8(self.credentials.len() as u8);
        for credential in &self.credentials {
            buf.put_u8(credential.mechanism.code());
            buf.put_u32(credential.iterations);
            buf.put_u8(credential.salt.len() as u8);
            buf.put_slice(&credential.salt);
            buf.put_u8(credential.stored_key.len() as u8);
            buf.put_slice(&credential.stored_key);
            buf.put_slice(&credential.server_key);
        }
        // `validate_password` bounds a password to 1024 bytes, and a pattern is bounded to
        // MAX_WHITE_ADDRESS_BYTES: both well inside a u16.
        let secret = self.rocketmq_secret.as_ref().map(|s| s.0.as_str());
        if version >= RECORD_VERSION_WITH_SECRET {
            let secret = secret.unwrap_or_default();
            buf.put_u16(secret.len() as u16);
            buf.put_slice(secret.as_bytes());
        }
        if let Some(pattern) = &self.rocketmq_white_address {
            buf.put_u16(pattern.len() as u16);
            buf.put_slice(pattern.as_bytes());
        }
        buf.freeze()
    }

    pub fn decode(value: &[u8]) -> EngineResult<Self> {
        let mut reader = Reader(value);
        let version = reader.u8()?;
        if !(RECORD_VERSION..=RECORD_VERSION_WITH_WHITE_ADDRESS).contains(&version) {
            return Err(corrupt(format!("unknown user record version {version}")));
        }
        let count = reader.u8()?;
        let mut credentials = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let code = reader.u8()?;
            let mechanism = ScramMechanism::from_code(code)
                .ok_or_else(|| corrupt(format!("unknown mechanism code {code}")))?;
            let iterations = u32::from_be_bytes(reader.array()?);
            let salt_len = reader.u8()?;
            let salt = reader.bytes(usize::from(salt_len))?.to_vec();
            let key_len = usize::from(reader.u8()?);
            if key_len != mechanism.key_len() || iterations < MIN_ITERATIONS {
                return Err(corrupt(format!("bad {} credential", mechanism.name())));
            }
            let stored_key = reader.bytes(key_len)?.to_vec();
            let server_key = reader.bytes(key_len)?.to_vec();
            credentials.push(ScramCredential {
                mechanism,
                salt,
                iterations,
                stored_key,
                server_key,
            });
        }
        let rocketmq_secret = if version >= RECORD_VERSION_WITH_SECRET {
            let secret = reader.text("the RocketMQ secret")?;
            // Version 2 exists for its secret; version 3 writes a missing one as empty.
            if secret.is_empty() && version == RECORD_VERSION_WITH_SECRET {
                return Err(corrupt("empty RocketMQ secret".to_owned()));
            }
            (!secret.is_empty()).then(|| KeptSecret(secret.to_owned()))
        } else {
            None
        };
        let rocketmq_white_address = if version == RECORD_VERSION_WITH_WHITE_ADDRESS {
            let pattern = reader.text("the RocketMQ white address")?;
            if pattern.is_empty() {
                return Err(corrupt("empty RocketMQ white address".to_owned()));
            }
            Some(pattern.to_owned())
        } else {
            None
        };
        if !reader.0.is_empty() {
            return Err(corrupt("trailing bytes".to_owned()));
        }
        let record = Self {
            credentials,
            rocketmq_secret,
            rocketmq_white_address,
        };
        match ScramMechanism::ALL
            .into_iter()
            .find(|mechanism| record.credential(*mechanism).is_none())
        {
            Some(missing) => Err(corrupt(format!("no {} credential", missing.name()))),
            None => Ok(record),
        }
    }
}

/// A user name any protocol can carry: 1..=255 bytes of UTF-8 without control characters.
pub fn validate_user_name(name: &str) -> EngineResult<()> {
    if name.is_empty() || name.len() > MAX_USER_NAME_BYTES {
        return Err(invalid_user(format!(
            "a user name has 1 to {MAX_USER_NAME_BYTES} bytes"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid_user(
            "a user name has no control characters".to_owned(),
        ));
    }
    Ok(())
}

/// A password PLAIN can carry: 1..=1024 bytes without NUL (PLAIN's separator).
pub fn validate_password(password: &str) -> EngineResult<()> {
    if password.is_empty() || password.len() > MAX_PASSWORD_BYTES {
        return Err(invalid_user(format!(
            "a password has 1 to {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    if password.contains('\0') {
        return Err(invalid_user("a password has no NUL character".to_owned()));
    }
    Ok(())
}

/// The user `name`, if there is one.
pub async fn get_user(store: &dyn MetadataStore, name: &str) -> EngineResult<Option<UserRecord>> {
    match store.get(USERS_NAMESPACE, name).await? {
        Some(value) => UserRecord::decode(&value).map(Some),
        None => Ok(None),
    }
}

/// Namespace of users' tags (RabbitMQ's `administrator`, `monitoring`, ...): key the user name,
/// value the tags joined by `,` in UTF-8. A user without a record here has no tags.
pub const USER_TAGS_NAMESPACE: &str = "users.tags";
/// The tag the admin API requires, as RabbitMQ's management plugin does.
pub const ADMINISTRATOR_TAG: &str = "administrator";
/// The user that logs in as `guest`/`guest` while the store has no record of it (AMQP's
/// built-in user); like RabbitMQ's default user it is an administrator.
pub const BUILT_IN_USER: &str = "guest";
/// Longest tag accepted.
pub const MAX_TAG_BYTES: usize = 64;

/// A tag is 1..=64 bytes with no `,` and no control character.
pub fn validate_tag(tag: &str) -> EngineResult<()> {
    if tag.is_empty()
        || tag.len() > MAX_TAG_BYTES
        || tag.contains(',')
        || tag.chars().any(char::is_control)
    {
        return Err(EngineError::Metadata {
            context: "set user tags",
            message: format!(
                "a tag has 1 to {MAX_TAG_BYTES} bytes, no `,` and no control characters: `{tag}`"
            ),
        });
    }
    Ok(())
}

/// The tags of user `name`; the built-in `guest` (no stored record) is an administrator.
pub async fn get_tags(store: &dyn MetadataStore, name: &str) -> EngineResult<Vec<String>> {
    if let Some(value) = store.get(USER_TAGS_NAMESPACE, name).await? {
        let text = String::from_utf8_lossy(&value);
        return Ok(text
            .split(',')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect());
    }
    if name == BUILT_IN_USER && store.get(USERS_NAMESPACE, name).await?.is_none() {
        return Ok(vec![ADMINISTRATOR_TAG.to_owned()]);
    }
    Ok(Vec::new())
}

/// Replaces the tags of user `name` (an empty list removes them).
pub async fn set_tags(store: &dyn MetadataStore, name: &str, tags: &[String]) -> EngineResult<()> {
    for tag in tags {
        validate_tag(tag)?;
    }
    if tags.is_empty() {
        store.delete(USER_TAGS_NAMESPACE, name).await?;
        return Ok(());
    }
    let value = Bytes::from(tags.join(","));
    store.put(USER_TAGS_NAMESPACE, name, value).await
}

fn fill_random(buf: &mut [u8]) -> EngineResult<()> {
    getrandom::fill(buf).map_err(|error| EngineError::Metadata {
        context: "draw random bytes",
        message: error.to_string(),
    })
}

fn invalid_user(reason: String) -> EngineError {
    EngineError::InvalidUser(reason)
}

fn corrupt(message: String) -> EngineError {
    EngineError::Metadata {
        context: "decode a user record",
        message,
    }
}

/// Reads the value layout, failing on truncation.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize) -> EngineResult<&'a [u8]> {
        if self.0.len() < len {
            return Err(corrupt("truncated".to_owned()));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    /// A u16 length, then that many bytes of UTF-8.
    fn text(&mut self, what: &str) -> EngineResult<&'a str> {
        let len = usize::from(u16::from_be_bytes(self.array()?));
        std::str::from_utf8(self.bytes(len)?).map_err(|_| corrupt(format!("{what} is not UTF-8")))
    }

    fn u8(&mut self) -> EngineResult<u8> {
        Ok(self.bytes(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> EngineResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hi_matches_the_pbkdf2_hmac_sha256_test_vector() {
        // RFC 7914 §11, PBKDF2-HMAC-SHA-256 ("passwd", "salt", c = 1), first 32 bytes.
        let out = ScramMechanism::Sha256
            .salted_password(b"passwd", b"salt", 1)
            .unwrap();
        assert_eq!(
            hex(&out),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn records_round_trip_and_verify_only_their_password() {
        let record = UserRecord::from_password("s3cret", MIN_ITERATIONS).unwrap();
        let decoded = UserRecord::decode(&record.encode()).unwrap();
        assert_eq!(decoded, record);
        assert!(decoded.verify_plain("s3cret").unwrap());
        assert!(!decoded.verify_plain("s3cret ").unwrap());
        let sha512 = decoded.credential(ScramMechanism::Sha512).unwrap();
        assert_eq!(sha512.stored_key.len(), 64);
        assert!(sha512.verify_password("s3cret").unwrap());
        assert_ne!(
            decoded.credential(ScramMechanism::Sha256).unwrap().salt,
            sha512.salt
        );
    }

    #[test]
    fn truncated_or_foreign_values_are_errors() {
        let encoded = UserRecord::from_password("pw", MIN_ITERATIONS)
            .unwrap()
            .encode();
        for len in 0..encoded.len() {
            assert!(UserRecord::decode(&encoded[..len]).is_err(), "len {len}");
        }
        let mut extra = encoded.to_vec();
        extra.push(0);
        assert!(UserRecord::decode(&extra).is_err());
        assert!(UserRecord::decode(b"\x02\x00").is_err());
        assert!(UserRecord::from_password("pw", 10).is_err());
    }

    #[test]
    fn a_rocketmq_secret_is_kept_in_version_2_and_version_1_still_decodes() {
        let plain = UserRecord::from_password("pw", MIN_ITERATIONS).unwrap();
        let v1 = plain.encode();
        assert_eq!(v1[0], 1, "no secret, no new layout");
        assert!(UserRecord::decode(&v1).unwrap().rocketmq_secret().is_none());
        let kept =
            UserRecord::from_password_with_rocketmq_secret("s3cret", MIN_ITERATIONS).unwrap();
        let v2 = kept.encode();
        assert_eq!(v2[0], 2);
        let decoded = UserRecord::decode(&v2).unwrap();
        assert_eq!(decoded.rocketmq_secret().unwrap().expose(), "s3cret");
        assert!(decoded.verify_plain("s3cret").unwrap());
        assert!(!format!("{decoded:?}").contains("s3cret"), "Debug redacts");
        for len in 0..v2.len() {
            assert!(UserRecord::decode(&v2[..len]).is_err(), "len {len}");
        }
        // A version 1 body labelled 2 has no secret: refused, not read as a user without one.
        let mut relabelled = v1.to_vec();
        relabelled[0] = 2;
        assert!(UserRecord::decode(&relabelled).is_err());
    }

    #[test]
    fn a_white_address_is_kept_in_version_3_and_older_layouts_keep_their_bytes() {
        let plain = UserRecord::from_password("pw", MIN_ITERATIONS).unwrap();
        let kept = UserRecord::from_password_with_rocketmq_secret("s3", MIN_ITERATIONS).unwrap();
        // Setting nothing (or blank) leaves the version 1 and 2 bytes as they were.
        for record in [&plain, &kept] {
            let same = record
                .clone()
                .with_rocketmq_white_address(Some(" "))
                .unwrap();
            assert_eq!(same.encode(), record.encode());
        }
        for record in [plain, kept] {
            let had_secret = record.rocketmq_secret().is_some();
            let white = record
                .with_rocketmq_white_address(Some("127.0.0.*"))
                .unwrap();
            let v3 = white.encode();
            assert_eq!(v3[0], 3);
            let decoded = UserRecord::decode(&v3).unwrap();
            assert_eq!(decoded, white);
            assert_eq!(decoded.rocketmq_white_address(), Some("127.0.0.*"));
            assert_eq!(decoded.rocketmq_secret().is_some(), had_secret);
            for len in 0..v3.len() {
                assert!(UserRecord::decode(&v3[..len]).is_err(), "len {len}");
            }
            let cleared = decoded.with_rocketmq_white_address(None).unwrap();
            assert!(cleared.encode()[0] < 3);
        }
        let too_long = "1".repeat(MAX_WHITE_ADDRESS_BYTES + 1);
        let record = UserRecord::from_password("pw", MIN_ITERATIONS).unwrap();
        assert!(
            record
                .clone()
                .with_rocketmq_white_address(Some(&too_long))
                .is_err()
        );
        assert!(
            record
                .with_rocketmq_white_address(Some("1.2\u{7}.3"))
                .is_err()
        );
    }

    #[test]
    fn names_and_passwords_are_validated() {
        assert!(validate_user_name("alice@example,=x").is_ok());
        assert!(validate_user_name("").is_err());
        assert!(validate_user_name("a\nb").is_err());
        assert!(validate_user_name(&"a".repeat(256)).is_err());
        assert!(validate_password("").is_err());
        assert!(validate_password("a\0b").is_err());
    }
}
