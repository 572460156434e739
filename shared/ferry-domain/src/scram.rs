//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka uses them (KIP-84): the
//! verifiers a consumer group's password leaves behind, the server side of a sign-in (the
//! consumer gateway) and the client side (the gateway signing in to an upstream broker).
//!
//! Written here rather than taken from a crate: the maintained SCRAM crates either lack
//! SHA-512 or keep the salted password (as good as the password itself) on the server side;
//! the gateway must only ever hold StoredKey and ServerKey. The primitives are RustCrypto's.
//!
//! Kafka specifics: no channel binding (`n,,` only), the `tokenauth` extension is refused
//! (delegation tokens are not Ferry's), iterations between 4096 and 16384. librdkafka before
//! 2.6.1 repeats the client nonce in its final message; like Kafka 3.8.1 the server accepts a
//! final nonce that ends with the full nonce.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

/// The iterations Ferry uses for new verifiers (Kafka's minimum; Kafka accepts up to 16384).
pub const ITERATIONS: u32 = 4096;
/// The iterations Kafka accepts.
pub const MIN_ITERATIONS: u32 = 4096;
pub const MAX_ITERATIONS: u32 = 16384;

/// The hash of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Sha256,
    Sha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::Sha256, Mechanism::Sha512];

    /// The SASL mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Sha256 => "SCRAM-SHA-256",
            Mechanism::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length: new_from_slice cannot fail.
        match self {
            Mechanism::Sha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
            Mechanism::Sha512 => {
                let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key)
                    .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
                mac.update(data);
                mac.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Mechanism::Sha256 => Sha256::digest(data).to_vec(),
            Mechanism::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    /// `Hi(password, salt, i)` of RFC 5802: PBKDF2 with this HMAC, one block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut first = salt.to_vec();
        first.extend_from_slice(&1u32.to_be_bytes());
        let mut u = self.hmac(password, &first);
        let mut out = u.clone();
        for _ in 1..iterations {
            u = self.hmac(password, &u);
            out.iter_mut().zip(&u).for_each(|(o, x)| *o ^= x);
        }
        out
    }
}

/// What the server keeps of a password for one mechanism: enough to check a proof, not enough
/// to sign in (RFC 5802 §3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifier {
    /// Base64.
    pub salt: String,
    pub iterations: u32,
    /// Base64 of H(ClientKey).
    pub stored_key: String,
    /// Base64 of HMAC(SaltedPassword, "Server Key").
    pub server_key: String,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// A group's verifiers for both mechanisms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verifiers {
    pub sha256: Verifier,
    pub sha512: Verifier,
}

impl Verifiers {
    /// Computes both verifiers of `password` with fresh random salts.
    pub fn new(password: &str) -> Self {
        Self {
            sha256: Verifier::new(Mechanism::Sha256, password, &random::<16>(), ITERATIONS),
            sha512: Verifier::new(Mechanism::Sha512, password, &random::<16>(), ITERATIONS),
        }
    }

    pub fn get(&self, m: Mechanism) -> &Verifier {
        match m {
            Mechanism::Sha256 => &self.sha256,
            Mechanism::Sha512 => &self.sha512,
        }
    }
}

impl Verifier {
    pub fn new(m: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = m.salted_password(password.as_bytes(), salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        Self {
            salt: B64.encode(salt),
            iterations,
            stored_key: B64.encode(m.hash(&client_key)),
            server_key: B64.encode(m.hmac(&salted, b"Server Key")),
        }
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    // The operating system's generator; failing it leaves nothing safe to do.
    getrandom::fill(&mut b).unwrap_or_else(|e| panic!("the system random generator failed: {e}"));
    b
}

/// A printable nonce of 32 random bytes.
fn nonce() -> String {
    B64.encode(random::<32>())
}

/// Why a SCRAM exchange failed. The messages name what was wrong, never a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding is not supported (use the `n,,` header)")]
    ChannelBinding,
    #[error("SCRAM extensions (tokenauth) are not supported")]
    Extension,
    #[error("the nonce of the final message does not continue the exchange")]
    Nonce,
    #[error("the proof does not match: wrong password")]
    Proof,
    #[error("the server's signature does not match: the server does not know the password")]
    ServerSignature,
    #[error("the server refused the sign-in: {0}")]
    Refused(String),
    #[error("the iteration count {0} is outside 4096..=16384")]
    Iterations(u32),
    #[error("the stored verifier is damaged")]
    Verifier,
}

/// `attr=value` pairs of a SCRAM message, in order.
fn attributes(msg: &str) -> Result<Vec<(char, &str)>, ScramError> {
    msg.split(',')
        .map(|part| {
            let mut chars = part.chars();
            match (chars.next(), chars.next()) {
                (Some(k), Some('=')) if k.is_ascii_alphabetic() => Ok((k, &part[2..])),
                _ => Err(ScramError::Malformed(
                    "an attribute is not of the form a=value",
                )),
            }
        })
        .collect()
}

/// The username of a SCRAM message, with `=2C` and `=3D` decoded.
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("a bad escape in the username")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

/// The client's first message, parsed by the server.
#[derive(Debug, Clone)]
pub struct ClientFirst {
    /// The username the client signs in with.
    pub username: String,
    nonce: String,
    bare: String,
    gs2_header: String,
}

impl ClientFirst {
    pub fn parse(msg: &[u8]) -> Result<Self, ScramError> {
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("the message is not UTF-8"))?;
        // gs2-header: cbind-flag "," [authzid] ","
        let mut parts = msg.splitn(3, ',');
        let flag = parts.next().unwrap_or_default();
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("an unknown channel binding flag")),
        }
        if !(authzid.is_empty() || authzid.starts_with("a=")) {
            return Err(ScramError::Malformed("a bad authorization id"));
        }
        // n=user,r=nonce, then Kafka's extensions (`key=value`, KIP-255), which Ferry ignores
        // except tokenauth (delegation tokens).
        let mut fields = bare.split(',');
        let username = fields
            .next()
            .and_then(|f| f.strip_prefix("n="))
            .ok_or(ScramError::Malformed("expected n=user,r=nonce"))
            .and_then(decode_name)?;
        let nonce = fields
            .next()
            .and_then(|f| f.strip_prefix("r="))
            .filter(|n| !n.is_empty())
            .ok_or(ScramError::Malformed("no nonce"))?
            .to_owned();
        if fields.any(|f| f.starts_with("tokenauth=")) {
            return Err(ScramError::Extension);
        }
        let authz = authzid.strip_prefix("a=").map(decode_name).transpose()?;
        if authz.is_some_and(|a| !a.is_empty() && a != username) {
            return Err(ScramError::Malformed(
                "an authorization id other than the username",
            ));
        }
        Ok(Self {
            username,
            nonce,
            bare: bare.to_owned(),
            gs2_header: format!("{flag},{authzid},"),
        })
    }
}

/// The server side of one exchange, after the server-first message was sent.
pub struct ServerExchange {
    mechanism: Mechanism,
    client_nonce: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
    gs2_header: String,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl fmt::Debug for ServerExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerExchange")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

impl ServerExchange {
    /// Starts an exchange for a client-first message and the user's verifier. Returns the
    /// exchange and the server-first message. For an unknown user, pass a made-up verifier
    /// ([`Verifier::decoy`]) so that the exchange fails at the proof, like a wrong password.
    pub fn start(
        mechanism: Mechanism,
        first: &ClientFirst,
        verifier: &Verifier,
    ) -> Result<(Self, String), ScramError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&verifier.iterations) {
            return Err(ScramError::Iterations(verifier.iterations));
        }
        let decode = |s: &str| B64.decode(s).map_err(|_| ScramError::Verifier);
        let stored_key = decode(&verifier.stored_key)?;
        let server_key = decode(&verifier.server_key)?;
        let nonce = format!("{}{}", first.nonce, nonce());
        let server_first = format!("r={nonce},s={},i={}", verifier.salt, verifier.iterations);
        Ok((
            Self {
                mechanism,
                client_nonce: first.nonce.clone(),
                nonce,
                client_first_bare: first.bare.clone(),
                server_first: server_first.clone(),
                gs2_header: first.gs2_header.clone(),
                stored_key,
                server_key,
            },
            server_first,
        ))
    }

    /// Checks the client-final message; on success returns the server-final message.
    pub fn finish(self, msg: &[u8]) -> Result<String, ScramError> {
        let msg = std::str::from_utf8(msg)
            .map_err(|_| ScramError::Malformed("the message is not UTF-8"))?;
        let (without_proof, proof) = msg
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let attrs = attributes(without_proof)?;
        let (Some(('c', binding)), Some(('r', nonce))) = (attrs.first(), attrs.get(1)) else {
            return Err(ScramError::Malformed("expected c=…,r=…,p=…"));
        };
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(ScramError::ChannelBinding);
        }
        // librdkafka < 2.6.1 sends the client nonce again in front of the full nonce.
        let quirk = nonce
            .strip_suffix(self.nonce.as_str())
            .is_some_and(|front| front == self.client_nonce);
        if *nonce != self.nonce && !quirk {
            return Err(ScramError::Nonce);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("the proof is not base64"))?;
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let m = self.mechanism;
        let signature = m.hmac(&self.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Proof);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        if !bool::from(m.hash(&client_key).ct_eq(&self.stored_key)) {
            return Err(ScramError::Proof);
        }
        let server_signature = m.hmac(&self.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

impl Verifier {
    /// A verifier no password matches, for usernames that do not exist: the exchange then
    /// looks the same as for a wrong password. The salt is derived from the name so that it is
    /// stable across attempts.
    pub fn decoy(m: Mechanism, username: &str, secret: &[u8]) -> Self {
        let salt = m.hmac(secret, username.as_bytes());
        Self {
            salt: B64.encode(&salt[..16]),
            iterations: ITERATIONS,
            stored_key: B64.encode(m.hash(&random::<32>())),
            server_key: B64.encode(random::<32>()),
        }
    }
}

/// The client side of one exchange (the gateway signing in to a broker with SCRAM).
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    nonce: String,
    first_bare: String,
}

impl fmt::Debug for ClientExchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientExchange")
            .field("mechanism", &self.mechanism)
            .finish_non_exhaustive()
    }
}

/// After the client-final message: what the server-final message must carry.
#[derive(Debug)]
pub struct ClientFinal {
    server_signature: Vec<u8>,
}

impl ClientExchange {
    /// Starts an exchange; returns it and the client-first message.
    pub fn start(mechanism: Mechanism, username: &str, password: &str) -> (Self, String) {
        Self::start_with_nonce(mechanism, username, password, nonce())
    }

    fn start_with_nonce(
        mechanism: Mechanism,
        username: &str,
        password: &str,
        nonce: String,
    ) -> (Self, String) {
        let first_bare = format!("n={},r={nonce}", encode_name(username));
        let message = format!("n,,{first_bare}");
        (
            Self {
                mechanism,
                password: password.to_owned(),
                nonce,
                first_bare,
            },
            message,
        )
    }

    /// Answers the server-first message with the client-final message.
    pub fn respond(self, server_first: &[u8]) -> Result<(ClientFinal, String), ScramError> {
        let server_first = std::str::from_utf8(server_first)
            .map_err(|_| ScramError::Malformed("the message is not UTF-8"))?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let attrs = attributes(server_first)?;
        let (Some(('r', nonce)), Some(('s', salt)), Some(('i', iterations))) =
            (attrs.first(), attrs.get(1), attrs.get(2))
        else {
            return Err(ScramError::Malformed("expected r=…,s=…,i=…"));
        };
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::Nonce);
        }
        let salt = B64
            .decode(salt)
            .map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let m = self.mechanism;
        let salted = m.salted_password(self.password.as_bytes(), &salt, iterations);
        let client_key = m.hmac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c={},r={nonce}", B64.encode("n,,"));
        let auth_message = format!("{},{server_first},{without_proof}", self.first_bare);
        let signature = m.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = m.hmac(&salted, b"Server Key");
        Ok((
            ClientFinal {
                server_signature: m.hmac(&server_key, auth_message.as_bytes()),
            },
            format!("{without_proof},p={}", B64.encode(proof)),
        ))
    }
}

impl ClientFinal {
    /// Checks the server-final message: the server proved it knows the password.
    pub fn verify(self, server_final: &[u8]) -> Result<(), ScramError> {
        let msg = std::str::from_utf8(server_final)
            .map_err(|_| ScramError::Malformed("the message is not UTF-8"))?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::Refused(e.to_owned()));
        }
        let v = msg
            .split(',')
            .find_map(|a| a.strip_prefix("v="))
            .ok_or(ScramError::Malformed("no server signature"))?;
        let v = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("the signature is not base64"))?;
        if bool::from(v.ct_eq(&self.server_signature)) {
            Ok(())
        } else {
            Err(ScramError::ServerSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3: user "user", password "pencil", SCRAM-SHA-256.
    #[test]
    fn rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let verifier = Verifier::new(Mechanism::Sha256, "pencil", &salt, 4096);
        let first = ClientFirst::parse(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(first.username, "user");
        let mut exchange = ServerExchange::start(Mechanism::Sha256, &first, &verifier)
            .unwrap()
            .0;
        // The RFC's server nonce, for its expected messages.
        exchange.nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        exchange.server_first = format!("r={},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", exchange.nonce);
        let last = exchange
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn client_and_server_agree_for_both_hashes() {
        for m in Mechanism::ALL {
            let verifiers = Verifiers::new("Secret123!");
            let (client, first) = ClientExchange::start(m, "reader-cg_1", "Secret123!");
            let first = ClientFirst::parse(first.as_bytes()).unwrap();
            assert_eq!(first.username, "reader-cg_1");
            let (server, server_first) =
                ServerExchange::start(m, &first, verifiers.get(m)).unwrap();
            let (fin, client_final) = client.respond(server_first.as_bytes()).unwrap();
            let server_final = server.finish(client_final.as_bytes()).unwrap();
            fin.verify(server_final.as_bytes()).unwrap();
        }
    }

    #[test]
    fn a_wrong_password_or_a_decoy_fails_at_the_proof() {
        let verifiers = Verifiers::new("Secret123!");
        for verifier in [
            verifiers.sha512.clone(),
            Verifier::decoy(Mechanism::Sha512, "nobody", b"k"),
        ] {
            let (client, first) = ClientExchange::start(Mechanism::Sha512, "u", "Wrong123!");
            let first = ClientFirst::parse(first.as_bytes()).unwrap();
            let (server, server_first) =
                ServerExchange::start(Mechanism::Sha512, &first, &verifier).unwrap();
            let (_, client_final) = client.respond(server_first.as_bytes()).unwrap();
            assert_eq!(
                server.finish(client_final.as_bytes()).unwrap_err(),
                ScramError::Proof
            );
        }
    }

    #[test]
    fn old_librdkafka_nonce_quirk_is_accepted_other_nonces_are_not() {
        let v = Verifiers::new("Secret123!");
        let m = Mechanism::Sha256;
        let (client, first_msg) = ClientExchange::start(m, "u", "Secret123!");
        let first = ClientFirst::parse(first_msg.as_bytes()).unwrap();
        let (server, server_first) = ServerExchange::start(m, &first, v.get(m)).unwrap();
        // What librdkafka < 2.6.1 sends: r=<client nonce><full nonce>, proof over that message.
        let full = server_first
            .split(',')
            .next()
            .unwrap()
            .strip_prefix("r=")
            .unwrap();
        let quirky_first = server_first.replacen(full, &format!("{}{full}", client.nonce), 1);
        let salted = m.salted_password(b"Secret123!", &B64.decode(&v.sha256.salt).unwrap(), 4096);
        let client_key = m.hmac(&salted, b"Client Key");
        let without = format!("c=biws,r={}{full}", client.nonce);
        let auth = format!("{},{server_first},{without}", client.first_bare);
        let sig = m.hmac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert!(quirky_first.contains(&client.nonce));
        server
            .finish(format!("{without},p={}", B64.encode(&proof)).as_bytes())
            .unwrap();

        let (server, _) = ServerExchange::start(m, &first, v.get(m)).unwrap();
        let bad = format!("c=biws,r=someone-else{full},p={}", B64.encode(&proof));
        assert_eq!(
            server.finish(bad.as_bytes()).unwrap_err(),
            ScramError::Nonce
        );
    }

    #[test]
    fn malformed_first_messages_are_named() {
        for (msg, want) in [
            (&b"p=tls-unique,,n=u,r=x"[..], ScramError::ChannelBinding),
            (b"n,,n=u,r=x,tokenauth=true", ScramError::Extension),
            (b"n,,r=x", ScramError::Malformed("expected n=user,r=nonce")),
            (b"n,,n=u", ScramError::Malformed("no nonce")),
            (b"garbage", ScramError::Malformed("no gs2 header")),
            (
                b"n,,n=a=zz,r=x",
                ScramError::Malformed("a bad escape in the username"),
            ),
            (
                &[0xff, 0xfe][..],
                ScramError::Malformed("the message is not UTF-8"),
            ),
        ] {
            assert_eq!(ClientFirst::parse(msg).unwrap_err(), want, "{msg:?}");
        }
        assert_eq!(
            ClientFirst::parse(b"n,,n=a=2Cb=3Dc,r=x").unwrap().username,
            "a,b=c"
        );
    }

    #[test]
    fn verifiers_never_print_keys() {
        let v = Verifiers::new("Secret123!");
        let text = format!("{v:?}");
        assert!(!text.contains(&v.sha256.stored_key) && !text.contains(&v.sha256.salt));
    }
}
