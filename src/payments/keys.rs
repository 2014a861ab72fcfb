//! The providers' keys and what is done with them: RSA PKCS#1 v1.5 SHA-256 signatures
//! (WeChat Pay's and Alipay's), and WeChat Pay's AES-256-GCM. Keys are read from PEM files
//! (or, as Alipay's console hands them out, a bare base64 line), checked when ordo starts,
//! and never shown: a key's `Debug` says only what it is.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{self, RsaKeyPair};
use rustls_pki_types::pem::{PemObject, SectionKind};
use std::path::Path;
use std::sync::Arc;

/// Why a key could not be used. Names the file and what is wrong, never the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} = {path}: {problem}")]
pub struct KeyError {
    pub setting: &'static str,
    pub path: String,
    pub problem: String,
}

/// A merchant's RSA private key: signs requests and the front end's payment parameters.
#[derive(Clone)]
pub struct PrivateKey(Arc<RsaKeyPair>);

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "PrivateKey(RSA-{} bits)",
            self.0.public().modulus_len() * 8
        )
    }
}

/// A provider's RSA public key (PKCS#1 `RSAPublicKey` DER): verifies its answers and
/// notifications.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Arc<[u8]>);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PublicKey(RSA)")
    }
}

impl PrivateKey {
    /// Reads a private key: PEM PKCS#8 (`BEGIN PRIVATE KEY`, WeChat Pay's
    /// `apiclient_key.pem`), PEM PKCS#1 (`BEGIN RSA PRIVATE KEY`), or bare base64 of either.
    pub fn from_file(setting: &'static str, path: &str) -> Result<PrivateKey, KeyError> {
        let text = read(setting, path)?;
        Self::from_text(&text).map_err(|problem| KeyError {
            setting,
            path: path.to_owned(),
            problem,
        })
    }

    pub fn from_text(text: &[u8]) -> Result<PrivateKey, String> {
        let pair = match pem_section(text)? {
            Some((SectionKind::PrivateKey, der)) => RsaKeyPair::from_pkcs8(&der),
            Some((SectionKind::RsaPrivateKey, der)) => RsaKeyPair::from_der(&der),
            Some((kind, _)) => {
                return Err(format!("holds a {kind:?}, not an RSA private key"));
            }
            None => {
                let der = bare_base64(text)?;
                RsaKeyPair::from_pkcs8(&der).or_else(|_| RsaKeyPair::from_der(&der))
            }
        }
        .map_err(|e| format!("not a usable RSA private key of 2048 bits or more ({e})"))?;
        Ok(PrivateKey(Arc::new(pair)))
    }

    /// The base64 RSA PKCS#1 v1.5 SHA-256 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        let rng = ring::rand::SystemRandom::new();
        let mut signature = vec![0; self.0.public().modulus_len()];
        // Signing fails only for a wrong buffer length (sized above) or a failing RNG.
        if self
            .0
            .sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .is_err()
        {
            return String::new();
        }
        BASE64.encode(signature)
    }

    /// The matching public key (what the provider holds to check ordo's signatures).
    pub fn public_key(&self) -> PublicKey {
        PublicKey(Arc::from(self.0.public().as_ref()))
    }
}

impl PublicKey {
    /// Reads a public key: PEM `BEGIN PUBLIC KEY` (WeChat Pay's public key, Alipay's), a PEM
    /// certificate (a WeChat Pay platform certificate), or bare base64 of a
    /// SubjectPublicKeyInfo (as Alipay's console shows it).
    pub fn from_file(setting: &'static str, path: &str) -> Result<PublicKey, KeyError> {
        let text = read(setting, path)?;
        Self::from_text(&text).map_err(|problem| KeyError {
            setting,
            path: path.to_owned(),
            problem,
        })
    }

    pub fn from_text(text: &[u8]) -> Result<PublicKey, String> {
        let pkcs1 = match pem_section(text)? {
            Some((SectionKind::PublicKey, der)) => der::rsa_key_of_spki(&der)?,
            Some((SectionKind::Certificate, der)) => der::rsa_key_of_certificate(&der)?,
            Some((kind, _)) => return Err(format!("holds a {kind:?}, not an RSA public key")),
            None => der::rsa_key_of_spki(&bare_base64(text)?)?,
        };
        // Refuse now what would fail every verification later.
        if pkcs1.len() < 200 {
            return Err("the RSA key is shorter than 2048 bits".to_owned());
        }
        Ok(PublicKey(Arc::from(pkcs1)))
    }

    /// The key as a PEM SubjectPublicKeyInfo (what test doubles write for ordo to read).
    pub fn to_pem(&self) -> String {
        let spki = der::spki_of_rsa_key(&self.0);
        let body = BASE64.encode(spki);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// Whether `signature_b64` is this key's RSA PKCS#1 v1.5 SHA-256 signature of
    /// `message`. Anything malformed is simply not a signature.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> bool {
        let Ok(signature) = BASE64.decode(signature_b64.trim()) else {
            return false;
        };
        signature::UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &self.0[..])
            .verify(message, &signature)
            .is_ok()
    }
}

fn read(setting: &'static str, path: &str) -> Result<Vec<u8>, KeyError> {
    std::fs::read(Path::new(path)).map_err(|e| KeyError {
        setting,
        path: path.to_owned(),
        problem: format!("cannot read the key file: {e}"),
    })
}

/// The first PEM section of `text`, or `None` when it holds no PEM armour at all.
fn pem_section(text: &[u8]) -> Result<Option<(SectionKind, Vec<u8>)>, String> {
    if !text.windows(11).any(|w| w == b"-----BEGIN ") {
        return Ok(None);
    }
    <(SectionKind, Vec<u8>)>::from_pem_slice(text)
        .map(Some)
        .map_err(|e| format!("not a readable PEM file ({e})"))
}

fn bare_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    let compact: Vec<u8> = text
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if compact.is_empty() {
        return Err("the file is empty".to_owned());
    }
    BASE64
        .decode(&compact)
        .map_err(|_| "neither PEM nor base64".to_owned())
}

/// AES-256-GCM decryption of WeChat Pay's notification resources with the APIv3 key:
/// `ciphertext_b64` carries the 16-byte tag at its end. `None` when anything does not
/// check out (wrong key, nonce, associated data, or a ciphertext changed in transit).
pub fn aes_256_gcm_open(
    key: &[u8; 32],
    nonce: &[u8],
    associated_data: &[u8],
    ciphertext_b64: &str,
) -> Option<Vec<u8>> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut data = BASE64.decode(ciphertext_b64.trim()).ok()?;
    let plain = key
        .open_in_place(nonce, Aad::from(associated_data), &mut data)
        .ok()?;
    Some(plain.to_vec())
}

/// The reverse of [`aes_256_gcm_open`] (test doubles encrypt notifications with it).
pub fn aes_256_gcm_seal(
    key: &[u8; 32],
    nonce: &[u8],
    associated_data: &[u8],
    plain: &[u8],
) -> Option<String> {
    use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).ok()?);
    let mut data = plain.to_vec();
    key.seal_in_place_append_tag(nonce, Aad::from(associated_data), &mut data)
        .ok()?;
    Some(BASE64.encode(data))
}

/// Just enough DER to find the RSA key inside a SubjectPublicKeyInfo or a certificate.
mod der {
    /// rsaEncryption, 1.2.840.113549.1.1.1.
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// One TLV: (tag, contents, the rest after it).
    fn next(input: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
        let bad = || "malformed DER".to_owned();
        let (&tag, rest) = input.split_first().ok_or_else(bad)?;
        let (&first, rest) = rest.split_first().ok_or_else(bad)?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return Err(bad());
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            (len, &rest[n..])
        };
        if rest.len() < len {
            return Err(bad());
        }
        Ok((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
        let (found, contents, rest) = next(input)?;
        if found != tag {
            return Err("malformed DER".to_owned());
        }
        Ok((contents, rest))
    }

    /// The PKCS#1 RSAPublicKey inside a SubjectPublicKeyInfo.
    pub fn rsa_key_of_spki(spki: &[u8]) -> Result<Vec<u8>, String> {
        let (body, _) = expect(spki, 0x30)?;
        let (algorithm, rest) = expect(body, 0x30)?;
        let (oid, _) = expect(algorithm, 0x06)?;
        if oid != RSA_ENCRYPTION {
            return Err("not an RSA key".to_owned());
        }
        let (bits, _) = expect(rest, 0x03)?;
        match bits.split_first() {
            Some((0, key)) => Ok(key.to_vec()),
            _ => Err("malformed DER".to_owned()),
        }
    }

    /// The PKCS#1 RSAPublicKey of an X.509 certificate's subject.
    pub fn rsa_key_of_certificate(cert: &[u8]) -> Result<Vec<u8>, String> {
        let (certificate, _) = expect(cert, 0x30)?;
        let (tbs, _) = expect(certificate, 0x30)?;
        let mut rest = tbs;
        // [0] version (optional), serial, signature, issuer, validity, subject, then the key.
        let (tag, _, after) = next(rest)?;
        if tag == 0xa0 {
            rest = after;
        }
        for _ in 0..5 {
            let (_, _, after) = next(rest)?;
            rest = after;
        }
        let (tag, contents, _) = next(rest)?;
        if tag != 0x30 {
            return Err("malformed certificate".to_owned());
        }
        let mut spki = vec![0x30];
        push_len(&mut spki, contents.len());
        spki.extend_from_slice(contents);
        rsa_key_of_spki(&spki)
    }

    fn push_len(out: &mut Vec<u8>, len: usize) {
        if len < 0x80 {
            out.push(len as u8);
        } else {
            let bytes: Vec<u8> = len
                .to_be_bytes()
                .into_iter()
                .skip_while(|&b| b == 0)
                .collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }

    fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        push_len(&mut out, contents.len());
        out.extend_from_slice(contents);
        out
    }

    /// A SubjectPublicKeyInfo around a PKCS#1 RSAPublicKey.
    pub fn spki_of_rsa_key(pkcs1: &[u8]) -> Vec<u8> {
        let mut algorithm = tlv(0x06, RSA_ENCRYPTION);
        algorithm.extend([0x05, 0x00]);
        let mut body = tlv(0x30, &algorithm);
        let mut bits = vec![0];
        bits.extend_from_slice(pkcs1);
        body.extend(tlv(0x03, &bits));
        tlv(0x30, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aes_gcm_round_trip_and_tampering() {
        let key = [7u8; 32];
        let sealed = aes_256_gcm_seal(&key, b"0123456789ab", b"transaction", b"{\"a\":1}").unwrap();
        assert_eq!(
            aes_256_gcm_open(&key, b"0123456789ab", b"transaction", &sealed).unwrap(),
            b"{\"a\":1}"
        );
        assert!(aes_256_gcm_open(&key, b"0123456789ab", b"refund", &sealed).is_none());
        assert!(aes_256_gcm_open(&[8u8; 32], b"0123456789ab", b"transaction", &sealed).is_none());
        let mut bytes = BASE64.decode(&sealed).unwrap();
        bytes[0] ^= 1;
        assert!(
            aes_256_gcm_open(&key, b"0123456789ab", b"transaction", &BASE64.encode(bytes))
                .is_none()
        );
        assert!(aes_256_gcm_open(&key, b"short", b"transaction", &sealed).is_none());
    }

    #[test]
    fn bad_key_files_say_what_is_wrong() {
        assert!(PrivateKey::from_text(b"").is_err());
        assert!(PrivateKey::from_text(b"not a key at all").is_err());
        assert!(
            PrivateKey::from_text(
                b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            )
            .is_err()
        );
        assert!(
            PublicKey::from_text(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .is_err()
        );
        let missing = PrivateKey::from_file("wechatpay_private_key_path", "/nonexistent/key.pem")
            .unwrap_err();
        assert!(missing.to_string().contains("wechatpay_private_key_path"));
        assert!(missing.to_string().contains("/nonexistent/key.pem"));
    }

    #[test]
    fn der_round_trip() {
        let pkcs1 = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        let spki = der::spki_of_rsa_key(&pkcs1);
        assert_eq!(der::rsa_key_of_spki(&spki).unwrap(), pkcs1);
    }
}
