//! The bytes the TLS probe writes itself: the SMTP STARTTLS dialogue before a handshake, and a
//! minimal ClientHello for the legacy-protocol check (rustls cannot speak TLS 1.0/1.1).

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::FailureReason;

/// SMTP: read the greeting, EHLO, STARTTLS, and expect 220 before the handshake.
pub(super) async fn smtp_starttls(stream: &mut TcpStream) -> Result<(), FailureReason> {
    let mut reader = BufReader::new(stream);
    read_smtp_reply(&mut reader, "220").await?;
    reader
        .get_mut()
        .write_all(b"EHLO iocwatch\r\n")
        .await
        .map_err(|e| FailureReason::from_io(&e))?;
    read_smtp_reply(&mut reader, "250").await?;
    reader
        .get_mut()
        .write_all(b"STARTTLS\r\n")
        .await
        .map_err(|e| FailureReason::from_io(&e))?;
    read_smtp_reply(&mut reader, "220").await
}

/// Reads one (possibly multi-line) SMTP reply and checks its code.
async fn read_smtp_reply(
    reader: &mut BufReader<&mut TcpStream>,
    code: &str,
) -> Result<(), FailureReason> {
    let mut line = String::new();
    for _ in 0..64 {
        line.clear();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| FailureReason::from_io(&e))?;
        if n == 0 || n > 1024 || !line.starts_with(code) {
            return Err(FailureReason::Banner);
        }
        // "250-..." continues, "250 ..." ends the reply.
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    Err(FailureReason::Banner)
}

/// A minimal ClientHello offering only `version`, with the cipher suites servers of that era
/// speak, SNI, and the extensions ECDHE needs.
pub(super) fn legacy_client_hello(version: u16, sni: Option<&str>) -> Vec<u8> {
    const SUITES: [u16; 9] = [
        0xc013, 0xc014, 0xc009, 0xc00a, 0x002f, 0x0035, 0x0033, 0x0039, 0x000a,
    ];
    let mut extensions = Vec::new();
    if let Some(host) = sni {
        let name = host.as_bytes();
        let mut ext = Vec::new();
        push_u16(&mut ext, (name.len() + 3) as u16);
        ext.push(0);
        push_u16(&mut ext, name.len() as u16);
        ext.extend_from_slice(name);
        push_ext(&mut extensions, 0x0000, &ext);
    }
    push_ext(
        &mut extensions,
        0x000a,
        &[0, 6, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18],
    );
    push_ext(&mut extensions, 0x000b, &[1, 0]);
    push_ext(&mut extensions, 0xff01, &[0]);

    let mut body = Vec::new();
    push_u16(&mut body, version);
    let seed = {
        use std::hash::{BuildHasher, RandomState};
        RandomState::new().hash_one(Instant::now()).to_be_bytes()
    };
    for i in 0..32 {
        body.push(seed[i % 8] ^ (i as u8));
    }
    body.push(0); // no session id
    push_u16(&mut body, (SUITES.len() * 2) as u16);
    for suite in SUITES {
        push_u16(&mut body, suite);
    }
    body.extend_from_slice(&[1, 0]); // null compression only
    push_u16(&mut body, extensions.len() as u16);
    body.extend_from_slice(&extensions);

    let mut handshake = vec![1];
    let len = body.len() as u32;
    handshake.extend_from_slice(&len.to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![22];
    push_u16(&mut record, version);
    push_u16(&mut record, handshake.len() as u16);
    record.extend_from_slice(&handshake);
    record
}

fn push_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn push_ext(out: &mut Vec<u8>, kind: u16, data: &[u8]) {
    push_u16(out, kind);
    push_u16(out, data.len() as u16);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_client_hello_is_well_formed() {
        let hello = legacy_client_hello(0x0301, Some("cong.example"));
        // Record: handshake (22), version, length that matches what follows.
        assert_eq!(&hello[..3], &[22, 3, 1]);
        assert_eq!(
            usize::from(u16::from_be_bytes([hello[3], hello[4]])),
            hello.len() - 5
        );
        // Handshake: ClientHello (1) with a 3-byte length, then the offered version.
        assert_eq!(hello[5], 1);
        let body =
            (usize::from(hello[6]) << 16) | (usize::from(hello[7]) << 8) | usize::from(hello[8]);
        assert_eq!(body, hello.len() - 9);
        assert_eq!(&hello[9..11], &[3, 1]);
        assert!(
            hello.windows(12).any(|w| w == b"cong.example"),
            "SNI present"
        );
        assert!(!legacy_client_hello(0x0302, None)
            .windows(12)
            .any(|w| w == b"cong.example"));
    }
}
