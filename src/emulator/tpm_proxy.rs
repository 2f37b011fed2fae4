//! `skr-emulator tpm-proxy`: a swtpm front that behaves like the Azure paravisor when the guest
//! writes user data (PROTOCOLS.md §4.1 "Refreshing with user data"): after a successful
//! `TPM2_NV_Write` to NV 0x01400002 it reads the 64 bytes back, signs a fresh HCL report binding
//! them (test firmware of the state directory, [`provision::signed_hcl_report`]) and writes it to
//! NV 0x01400001, all over the same upstream connection and before the NV_Write response goes back
//! to the client; so a client that reads the report right after writing sees the new one.
//!
//! The command port carries raw TPM 2.0 command/response frames (tcti-swtpm); the control port
//! (command port + 1) is forwarded byte for byte. The refresh uses hand-marshalled commands (TPM
//! 2.0 Part 3: NV_Read, ReadPublic, NV_Write) with the owner hierarchy and an empty password
//! session (TPM_RS_PW), like provisioning; a failed refresh is logged and the client's response is
//! forwarded unchanged.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;

use crate::error::ErrorCode;
use crate::evidence::vtpm::{AK_HANDLE, HCL_REPORT_NV_INDEX, USER_DATA_NV_INDEX, USER_DATA_SIZE};
use crate::format::tpm::Public;

use super::provision;
use super::EmulatorError;

/// TPM_ST_NO_SESSIONS.
const ST_NO_SESSIONS: u16 = 0x8001;
/// TPM_ST_SESSIONS.
const ST_SESSIONS: u16 = 0x8002;
/// TPM_CC_NV_Write.
const CC_NV_WRITE: u32 = 0x0000_0137;
/// TPM_CC_NV_Read.
const CC_NV_READ: u32 = 0x0000_014E;
/// TPM_CC_ReadPublic.
const CC_READ_PUBLIC: u32 = 0x0000_0173;
/// TPM_RH_OWNER.
const RH_OWNER: u32 = 0x4000_0001;
/// TPM_RS_PW.
const RS_PW: u32 = 0x4000_0009;
/// Bytes per NV_Write of the report (below every TPM's MAX_NV_BUFFER_SIZE).
const NV_CHUNK: usize = 512;
/// Largest frame accepted from either side (TPM 2.0 buffers are at most a few KiB).
const MAX_FRAME: usize = 1 << 16;

/// Errors of `skr-emulator tpm-proxy`.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}; choose another --listen port (the control port is PORT+1)")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The swtpm does not accept connections.
    #[error("cannot connect to the swtpm at {addr}: {source}; start swtpm with --server type=tcp,port=P and --ctrl type=tcp,port=P+1")]
    Upstream {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A TPM frame is malformed.
    #[error("TPM {what} frame is malformed: {reason}")]
    Frame {
        /// Command or response.
        what: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A refresh command failed in the TPM.
    #[error("{command} for the HCL report refresh failed with TPM response code {rc:#010x}; provision the TPM with `skr-emulator provision-tpm` first")]
    Command {
        /// The command.
        command: &'static str,
        /// TPM_RC.
        rc: u32,
    },
    /// Building the HCL report failed.
    #[error(transparent)]
    Emulator(#[from] EmulatorError),
}

impl ErrorCode for ProxyError {
    fn code(&self) -> &'static str {
        match self {
            Self::Listen { .. } => "emulator-proxy-listen-failed",
            Self::Upstream { .. } => "emulator-proxy-upstream-unreachable",
            Self::Frame { .. } => "emulator-proxy-frame-invalid",
            Self::Command { .. } => "emulator-proxy-tpm-command-failed",
            Self::Emulator(e) => e.code(),
        }
    }
}

/// Options of `skr-emulator tpm-proxy`.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// The swtpm command port (its control port is the next one).
    pub swtpm: SocketAddr,
    /// The proxy's command port (port 0: any free pair); control = port + 1.
    pub listen: SocketAddr,
    /// The emulator state directory used by `provision-tpm` (test chain, VM id).
    pub state_dir: PathBuf,
}

/// The start-up line of the proxy.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ProxyEndpoints {
    /// The TCTI clients use, `swtpm:host=H,port=P`.
    pub tcti: String,
    /// The command port address.
    pub command: String,
    /// The control port address.
    pub control: String,
}

fn with_port(addr: SocketAddr, port: u16) -> SocketAddr {
    let mut a = addr;
    a.set_port(port);
    a
}

fn bind_pair(listen: SocketAddr) -> Result<(TcpListener, TcpListener), ProxyError> {
    let bind = |a: SocketAddr| {
        TcpListener::bind(a).map_err(|source| ProxyError::Listen { addr: a, source })
    };
    if listen.port() != 0 {
        let ctrl = with_port(listen, listen.port().saturating_add(1));
        return Ok((bind(listen)?, bind(ctrl)?));
    }
    let mut last = None;
    for _ in 0..50 {
        let cmd = bind(listen)?;
        let port = cmd.local_addr().map(|a| a.port()).unwrap_or(0);
        let ctrl_addr = with_port(listen, port.saturating_add(1));
        match bind(ctrl_addr) {
            Ok(ctrl) if port != 0 && port != u16::MAX => return Ok((cmd, ctrl)),
            Ok(_) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ProxyError::Listen {
        addr: listen,
        source: std::io::Error::other("no two consecutive free ports"),
    }))
}

/// Runs the proxy until the process is stopped; `on_ready` gets the endpoints once both ports
/// listen.
pub fn run(opts: ProxyOptions, on_ready: impl FnOnce(&ProxyEndpoints)) -> Result<(), ProxyError> {
    // Fail early and clearly when the swtpm is not there.
    drop(connect(opts.swtpm)?);
    let (cmd, ctrl) = bind_pair(opts.listen)?;
    let local = cmd.local_addr().unwrap_or(opts.listen);
    let ctrl_local = ctrl.local_addr().unwrap_or(opts.listen);
    on_ready(&ProxyEndpoints {
        tcti: format!("swtpm:host={},port={}", local.ip(), local.port()),
        command: local.to_string(),
        control: ctrl_local.to_string(),
    });
    let upstream_ctrl = with_port(opts.swtpm, opts.swtpm.port().saturating_add(1));
    std::thread::spawn(move || {
        for client in ctrl.incoming().flatten() {
            std::thread::spawn(move || forward_control(client, upstream_ctrl));
        }
    });
    for client in cmd.incoming().flatten() {
        let (upstream, dir) = (opts.swtpm, opts.state_dir.clone());
        std::thread::spawn(move || {
            if let Err(e) = serve_commands(client, upstream, &dir) {
                tracing::info!(code = e.code(), error = %e, "tpm-proxy connection ended");
            }
        });
    }
    Ok(())
}

fn connect(addr: SocketAddr) -> Result<TcpStream, ProxyError> {
    let s = TcpStream::connect(addr).map_err(|source| ProxyError::Upstream { addr, source })?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn forward_control(client: TcpStream, upstream: SocketAddr) {
    let Ok(up) = connect(upstream) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let (Ok(mut c2), Ok(mut u2)) = (client.try_clone(), up.try_clone()) else {
        return;
    };
    let (mut c, mut u) = (client, up);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut c2, &mut u2);
        let _ = u2.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut u, &mut c);
    let _ = c.shutdown(Shutdown::Write);
    let _ = t.join();
}

/// Reads one TPM frame (10-byte header with the total size at bytes 2..6); `None` at a clean
/// end of stream.
fn read_frame(r: &mut impl Read, what: &'static str) -> Result<Option<Vec<u8>>, ProxyError> {
    let mut header = [0u8; 10];
    let mut got = 0;
    while got < header.len() {
        let n = r.read(&mut header[got..]).map_err(|_| ProxyError::Frame {
            what,
            reason: "the connection failed while reading the header",
        })?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(ProxyError::Frame {
                    what,
                    reason: "the connection closed inside the header",
                })
            };
        }
        got += n;
    }
    let size = usize::try_from(u32::from_be_bytes([
        header[2], header[3], header[4], header[5],
    ]))
    .unwrap_or(usize::MAX);
    if !(10..=MAX_FRAME).contains(&size) {
        return Err(ProxyError::Frame {
            what,
            reason: "the size field is below 10 or above 64 KiB",
        });
    }
    let mut frame = header.to_vec();
    frame.resize(size, 0);
    r.read_exact(&mut frame[10..])
        .map_err(|_| ProxyError::Frame {
            what,
            reason: "the connection closed inside the body",
        })?;
    Ok(Some(frame))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn serve_commands(
    mut client: TcpStream,
    upstream: SocketAddr,
    state_dir: &std::path::Path,
) -> Result<(), ProxyError> {
    let _ = client.set_nodelay(true);
    let mut up = connect(upstream)?;
    while let Some(command) = read_frame(&mut client, "command")? {
        up.write_all(&command).map_err(|_| ProxyError::Frame {
            what: "command",
            reason: "the swtpm connection failed",
        })?;
        let Some(response) = read_frame(&mut up, "response")? else {
            return Ok(());
        };
        let user_data_written = u32_at(&command, 6) == Some(CC_NV_WRITE)
            && u32_at(&command, 14) == Some(USER_DATA_NV_INDEX)
            && u32_at(&response, 6) == Some(0);
        if user_data_written {
            match refresh(&mut up, state_dir) {
                Ok(user_data) => {
                    tracing::info!(user_data = %hex::encode(user_data), "HCL report refreshed")
                }
                Err(e) => tracing::warn!(code = e.code(), error = %e, "HCL report refresh failed"),
            }
        }
        client.write_all(&response).map_err(|_| ProxyError::Frame {
            what: "response",
            reason: "the client connection failed",
        })?;
    }
    Ok(())
}

/// A command frame: tag, size, code, then `body`.
fn frame(tag: u16, cc: u32, body: &[u8]) -> Vec<u8> {
    let size = u32::try_from(10 + body.len()).unwrap_or(u32::MAX);
    let mut f = Vec::with_capacity(10 + body.len());
    f.extend_from_slice(&tag.to_be_bytes());
    f.extend_from_slice(&size.to_be_bytes());
    f.extend_from_slice(&cc.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// Handles (owner, NV index) and a password authorization area with an empty password.
fn owner_nv_auth(index: u32) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&RH_OWNER.to_be_bytes());
    b.extend_from_slice(&index.to_be_bytes());
    b.extend_from_slice(&9u32.to_be_bytes()); // authorizationSize
    b.extend_from_slice(&RS_PW.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 0]); // nonce (empty), attributes, hmac (empty)
    b
}

fn nv_read(index: u32, size: u16, offset: u16) -> Vec<u8> {
    let mut body = owner_nv_auth(index);
    body.extend_from_slice(&size.to_be_bytes());
    body.extend_from_slice(&offset.to_be_bytes());
    frame(ST_SESSIONS, CC_NV_READ, &body)
}

fn nv_write(index: u32, data: &[u8], offset: u16) -> Vec<u8> {
    let mut body = owner_nv_auth(index);
    body.extend_from_slice(&u16::try_from(data.len()).unwrap_or(0).to_be_bytes());
    body.extend_from_slice(data);
    body.extend_from_slice(&offset.to_be_bytes());
    frame(ST_SESSIONS, CC_NV_WRITE, &body)
}

/// Sends `command` upstream and returns its successful response.
fn transact(up: &mut TcpStream, command: &[u8], name: &'static str) -> Result<Vec<u8>, ProxyError> {
    let io = |_| ProxyError::Frame {
        what: "response",
        reason: "the swtpm connection failed",
    };
    up.write_all(command).map_err(io)?;
    let response = read_frame(up, "response")?.ok_or(ProxyError::Frame {
        what: "response",
        reason: "the swtpm closed the connection",
    })?;
    match u32_at(&response, 6) {
        Some(0) => Ok(response),
        rc => Err(ProxyError::Command {
            command: name,
            rc: rc.unwrap_or(u32::MAX),
        }),
    }
}

/// Reads the user data and the AK, writes a freshly signed HCL report; returns the user data.
fn refresh(
    up: &mut TcpStream,
    state_dir: &std::path::Path,
) -> Result<[u8; USER_DATA_SIZE], ProxyError> {
    let bad = |reason| ProxyError::Frame {
        what: "response",
        reason,
    };
    // NV_Read response: header, parameterSize (4), TPM2B data, auth area.
    let size = u16::try_from(USER_DATA_SIZE).unwrap_or(64);
    let r = transact(
        up,
        &nv_read(USER_DATA_NV_INDEX, size, 0),
        "NV_Read(0x01400002)",
    )?;
    let user_data: [u8; USER_DATA_SIZE] = r
        .get(16..16 + USER_DATA_SIZE)
        .filter(|_| r.get(14..16) == Some(&size.to_be_bytes()[..]))
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| bad("NV_Read did not return 64 bytes"))?;
    // ReadPublic response: header, TPM2B_PUBLIC, name, qualifiedName.
    let r = transact(
        up,
        &frame(ST_NO_SESSIONS, CC_READ_PUBLIC, &AK_HANDLE.to_be_bytes()),
        "ReadPublic(0x81000003)",
    )?;
    let len = r
        .get(10..12)
        .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
        .ok_or_else(|| bad("ReadPublic is truncated"))?;
    let public = r
        .get(10..12 + len)
        .ok_or_else(|| bad("ReadPublic is truncated"))?;
    let ak = Public::parse_tpm2b(public).map_err(|_| bad("the AK public area does not parse"))?;
    let exponent = ak.exponent();
    let (report, _) = provision::signed_hcl_report(state_dir, ak.modulus, exponent, user_data)?;
    for (i, part) in report.chunks(NV_CHUNK).enumerate() {
        let offset = u16::try_from(i * NV_CHUNK).map_err(|_| bad("the report is too large"))?;
        transact(
            up,
            &nv_write(HCL_REPORT_NV_INDEX, part, offset),
            "NV_Write(0x01400001)",
        )?;
    }
    Ok(user_data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_marshalled_per_part_3() {
        // TPM 2.0 Part 3 §31.13 NV_Read: tag 8002, size, cc 0000014e, authHandle 40000001,
        // nvIndex 01400002, authorizationSize 9, TPM_RS_PW 40000009, nonce 0000, attrs 00,
        // hmac 0000, size 0040, offset 0000 = 35 bytes.
        let expected = [
            "8002", "00000023", "0000014e", "40000001", "01400002", "00000009", "40000009", "0000",
            "00", "0000", "0040", "0000",
        ];
        assert_eq!(hex::encode(nv_read(0x0140_0002, 64, 0)), expected.concat());
        // NV_Write: same header and auth area (31 bytes), data TPM2B, offset = 37 bytes.
        let w = nv_write(0x0140_0001, &[0xAA, 0xBB], 512);
        assert_eq!(&w[..10], &[0x80, 0x02, 0, 0, 0, 37, 0, 0, 0x01, 0x37]);
        assert_eq!(&w[31..], &[0, 2, 0xAA, 0xBB, 0x02, 0x00]);
    }

    #[test]
    fn frames_are_bounded() {
        let mut short: &[u8] = &[0x80, 0x01, 0, 0, 0, 5, 0, 0, 0, 0];
        assert!(read_frame(&mut short, "command").is_err());
        let mut huge: &[u8] = &[0x80, 0x01, 0x7f, 0, 0, 0, 0, 0, 0, 0];
        assert!(read_frame(&mut huge, "command").is_err());
        let mut empty: &[u8] = &[];
        assert!(read_frame(&mut empty, "command").unwrap().is_none());
        let mut ok: &[u8] = &[0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x44, 0, 0];
        assert_eq!(read_frame(&mut ok, "command").unwrap().unwrap().len(), 12);
    }
}
